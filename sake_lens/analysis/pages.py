"""Analysis pages: markdown text and plotly figures, rendered as one self-contained HTML file or
as a docs page.

An :class:`AnalysisPage` is what ``sake-lens sweep`` and ``sake-lens report`` write (as
``page.json`` beside their HTML) and what ``sake-lens publish`` turns into documentation. In
HTML, plotly.js is inlined once in ``<head>``; in markdown, each figure is a raw-HTML ``<div>``
snippet (no plotly.js: the docs site loads it once per page, in ``<head>``).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from ..errors import SakeLensError
from .provenance import Provenance, current_provenance, page_front_matter

__all__ = ["PageFigure", "AnalysisPage", "figure_snippet", "markdown_to_html"]

_FORMAT = "sake_lens.page/1"
_PLOTLY_CONFIG = {"responsive": True, "displaylogo": False}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")[:48] or "figure"


@dataclass
class PageFigure:
    """A figure on a page, with an optional caption (markdown) and a stable ``name``."""

    figure: go.Figure
    name: str
    caption: str = ""


def figure_snippet(fig: go.Figure, div_id: str) -> str:
    """The figure as one line of HTML (``<div>`` + inline script), without plotly.js."""
    height = fig.layout.height or 480
    snippet = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=_PLOTLY_CONFIG,
        default_height=f"{int(height)}px",
        default_width="100%",
    )
    return " ".join(snippet.split("\n"))  # one line: a raw-HTML block markdown leaves alone


def markdown_to_html(text: str) -> str:
    """Markdown to HTML with Python-Markdown (tables, fenced code) when installed, else escaped
    paragraphs."""
    try:
        import markdown
    except ImportError:  # pragma: no cover - markdown comes with mkdocs
        return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


@dataclass
class AnalysisPage:
    """A titled sequence of markdown blocks and figures.

    Example:
        >>> page = AnalysisPage("Darrieux sweep")
        >>> page.add_text("The edit works best at the last layers.")
        >>> page.add_figure(go.Figure(), "empty", caption="Nothing here.")
        >>> [type(b).__name__ for b in page.blocks]
        ['str', 'PageFigure']
    """

    title: str
    blocks: list[str | PageFigure] = field(default_factory=list)
    #: What the page was made with (the library version and defaults, the date); None for a
    #: page saved before pages recorded it. Written into the docs page's front matter.
    provenance: Provenance | None = field(default_factory=current_provenance)

    def add_text(self, markdown: str) -> None:
        self.blocks.append(markdown.strip("\n"))

    def add_figure(self, fig: go.Figure, name: str | None = None, *, caption: str = "") -> None:
        taken = {b.name for b in self.figures}
        base = _slug(name or (fig.layout.title.text or "figure"))
        unique, k = base, 2
        while unique in taken:
            unique, k = f"{base}-{k}", k + 1
        self.blocks.append(PageFigure(fig, unique, caption))

    @property
    def figures(self) -> list[PageFigure]:
        return [b for b in self.blocks if isinstance(b, PageFigure)]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = []
        for b in self.blocks:
            if isinstance(b, PageFigure):
                blocks.append(
                    {"figure": json.loads(b.figure.to_json()), "name": b.name, "caption": b.caption}
                )
            else:
                blocks.append({"markdown": b})
        out: dict[str, Any] = {"format": _FORMAT, "title": self.title, "blocks": blocks}
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisPage:
        if data.get("format") != _FORMAT:
            raise SakeLensError(
                f"not a sake_lens analysis page (format {data.get('format')!r}, expected "
                f"{_FORMAT!r}); pass the page.json that `sake-lens sweep` or `report` wrote."
            )
        stamp = data.get("provenance")
        page = cls(data["title"], provenance=Provenance(**stamp) if stamp else None)
        for b in data["blocks"]:
            if "figure" in b:
                fig = pio.from_json(json.dumps(b["figure"]))
                page.blocks.append(PageFigure(fig, b["name"], b.get("caption", "")))
            else:
                page.blocks.append(b["markdown"])
        return page

    def save(self, path: str | Path) -> Path:
        """Write the page as JSON (figures included)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AnalysisPage:
        path = Path(path)
        if not path.is_file():
            raise SakeLensError(f"no analysis page at {path}.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SakeLensError(f"{path} is not valid JSON ({exc}); write it again.") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ rendering
    def to_html(self) -> str:
        """A self-contained HTML document: plotly.js inlined once in ``<head>``, no network."""
        from plotly.offline import get_plotlyjs

        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for b in self.blocks:
            if isinstance(b, PageFigure):
                body.append(f'<figure class="sake-lens-figure">{figure_snippet(b.figure, b.name)}')
                if b.caption:
                    body.append(f"<figcaption>{markdown_to_html(b.caption)}</figcaption>")
                body.append("</figure>")
            else:
                body.append(markdown_to_html(b))
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<style>{_CSS}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def to_markdown(self, *, front_matter: dict[str, Any] | None = None) -> str:
        """A markdown page for mkdocs: front matter (``title``, ``plotly: true`` and the page's
        :attr:`provenance`), the text blocks, and each figure as a one-line raw-HTML block
        (plotly.js not included).

        Returns:
            The page's markdown.
        """
        stamp = page_front_matter(self.provenance) if self.provenance is not None else {}
        meta = {"title": self.title, "plotly": True, **stamp, **(front_matter or {})}
        lines = [
            "---",
            *(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items()),
            "---",
            "",
            f"# {self.title}",
            "",
        ]
        for b in self.blocks:
            if isinstance(b, PageFigure):
                lines += [
                    f'<div class="sake-lens-figure" id="fig-{b.name}">'
                    f"{figure_snippet(b.figure, b.name)}</div>",
                    "",
                ]
                if b.caption:
                    lines += [b.caption, ""]
            else:
                lines += [b, ""]
        return "\n".join(lines)


_CSS = (
    "body{font-family:Inter,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;"
    "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px}"
    "th{background:#f5f5f5}code{background:#f5f5f5;padding:1px 4px}"
    "figure{margin:1.5em 0}figcaption{color:#555;font-size:13px}h2{margin-top:2em;"
    "border-bottom:1px solid #eee}"
)
