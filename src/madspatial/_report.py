"""A self-contained HTML report: figures embedded as base64 PNG, opens offline."""

from __future__ import annotations

import base64
import html
import io
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
code{background:#f3f3f6;padding:0 .2em}
"""


@dataclass
class Report:
    """Collects sections of text, figures and tables; ``write`` makes one HTML file."""

    title: str
    blocks: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.blocks.append(f"<h2>{html.escape(title)}</h2>")

    def text(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.blocks.append(f"<p{cls}>{text}</p>")

    def figure(self, fig, caption: str = "", *, dpi: int = 110, save_to: Path | None = None):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        if save_to is not None:
            Path(save_to).write_bytes(buf.getvalue())
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        self.blocks.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        import matplotlib.pyplot as plt

        plt.close(fig)

    def table(self, df: pd.DataFrame, caption: str = "", *, float_format: str = "{:.3f}") -> None:
        body = df.to_html(
            border=0, float_format=lambda v: float_format.format(v), na_rep="–", escape=True
        )
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f"<figure>{body}{cap}</figure>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
            + "\n".join(self.blocks)
            + "</body></html>"
        )
        path.write_text(doc, encoding="utf-8")
        return path
