"""``madspatial demo``: the whole pipeline, ending in ``OUT/report.html``.

It runs on the synthetic tissue (or the user's data).

Synthetic tissue (or ``--sdata``) -> normalize -> cell views -> pretrain MAD and its two
single-view ablations with one budget -> embed -> Louvain -> decoders (cell type,
expression) -> CCA -> pseudotime -> differential expression (measured vs predicted) ->
enrichment -> an HTML report with embedded figures, CSV tables and a timing summary.

Steps that need ground truth the data lacks (cell types, genes, a trajectory) are skipped
and the report says so. A step that raises is logged, reported in red and the demo goes
on (``strict=True`` re-raises instead, for tests).

The demo is a client of the library, one job per module:

- :mod:`._presets`: the CPU presets, the three models compared, torch threads;
- :mod:`._pipeline`: the analysis steps (public ``pp``/``tl`` calls only);
- :mod:`._scoring`: the scores, from ``mad.tl.evaluate`` (and the few it has no equivalent
  for, each with the reason);
- :mod:`._sections`: the report's figures and prose;
- :mod:`._state`: the run's state, step timer, skip and failure handling;
- :mod:`._main`: :func:`run_demo`, the steps in report order.

What the synthetic tissue plants (genes to map, the DE contrast, subtype pairs, the
trajectory) is declared in :mod:`madspatial.datasets._tissue_spec`; the HTML writer is
:mod:`madspatial._report`.
"""

from ._main import run_demo
from ._presets import DEMO_CPU_PRESET, MODELS, PAPER_SETTING, QUICK_PRESET

__all__ = ["DEMO_CPU_PRESET", "MODELS", "PAPER_SETTING", "QUICK_PRESET", "run_demo"]
