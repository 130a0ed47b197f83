"""A self-contained HTML report: figures embedded as base64 PNG, opens offline."""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
     padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;border-bottom:2px solid #335;padding-bottom:.2em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ccd}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef}
td:first-child,th:first-child{text-align:left}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em}
.skip{background:#f3f3f6;border-left:4px solid #99a;padding:.5em 1em;color:#445}
.fail{background:#ffe8e8;border-left:4px solid #c00;padding:.5em 1em}
nav{font-size:.9em;background:#f7f7fb;padding:.4em 1em;border:1px solid #e4e4ee}
nav a{margin-right:1em}
code{background:#f3f3f6;padding:0 .2em}
"""

_KINDS = {"note": "note", "skip": "skip", "fail": "fail"}


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


@dataclass
class Report:
    """Collects sections of text, figures and tables; ``write`` makes one HTML file.

    Text passed to :meth:`text` is HTML (so it may hold ``<code>`` or ``<b>``); captions,
    titles and table cells are escaped.
    """

    title: str
    blocks: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.sections.append(title)
        self.blocks.append(f'<h2 id="{_anchor(title)}">{html.escape(title)}</h2>')

    def text(self, text: str, *, note: bool = False, kind: str | None = None) -> None:
        """Add a paragraph.

        ``kind`` ``"note"`` (highlighted), ``"skip"`` (a step left out) or ``"fail"`` (a
        step that raised) styles it.
        """
        kind = "note" if note and kind is None else kind
        cls = f' class="{_KINDS[kind]}"' if kind else ""
        self.blocks.append(f"<p{cls}>{text}</p>")

    def mark(self) -> int:
        """Position of the next block, for :meth:`insert`.

        E.g. a summary written last but shown first.
        """
        return len(self.blocks)

    def insert(self, position: int, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.blocks.insert(position, f"<p{cls}>{text}</p>")

    def figure(self, fig, caption: str = "", *, dpi: int = 110, save_to: Path | None = None):
        """Embed ``fig`` as a PNG (also written to ``save_to``), then close it.

        A pyplot figure leaves pyplot's list of open figures; a bare ``Figure`` has nothing
        to close.
        """
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        if save_to is not None:
            Path(save_to).write_bytes(buf.getvalue())
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        self.blocks.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        if getattr(fig.canvas, "manager", None) is not None:  # made by pyplot
            import matplotlib.pyplot as plt

            plt.close(fig)

    def table(
        self,
        df: pd.DataFrame,
        caption: str = "",
        *,
        float_format: str = "{:.3f}",
        index: bool = True,
    ) -> None:
        body = df.to_html(
            border=0,
            float_format=lambda v: float_format.format(v),
            na_rep="–",
            escape=True,
            index=index,
        )
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f"<figure>{body}{cap}</figure>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        nav = ""
        if len(self.sections) > 2:
            links = "".join(f'<a href="#{_anchor(s)}">{html.escape(s)}</a>' for s in self.sections)
            nav = f"<nav>{links}</nav>"
        doc = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + nav
            + "\n".join(self.blocks)
            + "</body></html>"
        )
        path.write_text(doc, encoding="utf-8")
        return path
