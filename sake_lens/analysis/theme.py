"""The one plotly template of sake_lens, and the colours of its groups of points.

Every analysis figure is drawn with the ``"sake_lens"`` template (registered in
``plotly.io.templates`` the first time a figure is made, not at import) and the same colour for
the same kind of point everywhere: source (old fact) blue, target (new fact) orange, transported
(``T(source)``) green, out-of-scope grey.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence

import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "TEMPLATE_NAME",
    "COLORS",
    "GROUP_LABELS",
    "register_template",
    "apply_theme",
    "group_color",
    "hover_texts",
]

TEMPLATE_NAME = "sake_lens"

#: Colour of each kind of point, the same in every figure.
COLORS: dict[str, str] = {
    "source": "#3b6fb6",  # the old fact
    "target": "#e07b39",  # the new fact
    "transported": "#2e9e6a",  # T(source)
    "out_of_scope": "#9a9a9a",  # prompts the edit must leave alone
    "in_scope": "#3b6fb6",
    "probe": "#c0392b",
    "efficacy": "#e07b39",
    "generalisation": "#2e9e6a",
    "specificity": "#3b6fb6",
    "score": "#222222",
    "promoted": "#2e9e6a",
    "demoted": "#c0392b",
    "recommended": "#8e44ad",
    "neutral": "#555555",
    "distance": "#8c564b",
}

#: Legend names of the groups.
GROUP_LABELS: dict[str, str] = {
    "source": "source",
    "target": "target",
    "transported": "transported T(source)",
    "out_of_scope": "out of scope",
    "in_scope": "in scope",
    "probe": "probe",
}

_COLORWAY = [
    COLORS["source"],
    COLORS["target"],
    COLORS["transported"],
    COLORS["out_of_scope"],
    COLORS["recommended"],
    COLORS["probe"],
    "#17becf",
    "#bcbd22",
]


def _template() -> go.layout.Template:
    base = pio.templates["plotly_white"]
    template = go.layout.Template(base)
    template.layout.update(
        colorway=_COLORWAY,
        font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 13, "color": "#222222"},
        title={"x": 0.02, "xanchor": "left", "y": 0.985, "yanchor": "top", "font": {"size": 16}},
        hoverlabel={"font": {"family": "monospace", "size": 12}, "align": "left"},
        legend={"bgcolor": "rgba(255,255,255,0.7)", "borderwidth": 0},
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        bargap=0.05,
    )
    return template


def register_template() -> str:
    """Register the ``"sake_lens"`` plotly template (idempotent) and return its name.

    Returns:
        The template's name, ``"sake_lens"``.
    """
    if TEMPLATE_NAME not in pio.templates:
        pio.templates[TEMPLATE_NAME] = _template()
    return TEMPLATE_NAME


def apply_theme(fig: go.Figure, *, title: str | None = None) -> go.Figure:
    """Give ``fig`` the sake_lens template (and a title); returns ``fig``."""
    fig.update_layout(template=register_template())
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


def group_color(group: str) -> str:
    """The colour of a group of points (``source``, ``target``, …; others get a neutral grey)."""
    return COLORS.get(group, COLORS["neutral"])


def hover_texts(prompts: Sequence[str] | None, n: int, width: int = 70) -> list[str] | None:
    """Prompts as safe hover text: HTML-escaped, wrapped with ``<br>``, at most 8 lines."""
    if prompts is None:
        return None
    if len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for {n} points; pass one prompt per row.")
    out = []
    for p in prompts:
        lines = textwrap.wrap(p.replace("\n", " ⏎ "), width) or [""]
        if len(lines) > 8:
            lines = [*lines[:7], "…"]
        out.append("<br>".join(html.escape(line) for line in lines))
    return out
