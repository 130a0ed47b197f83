"""``python -m madspatial`` and ``torchrun -m madspatial pretrain ...`` run the CLI."""

from __future__ import annotations

import sys


def _main() -> int:
    # imported here, not at module level, so that `import madspatial.__main__` (as tools
    # that scan packages do) runs nothing
    from madspatial.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
