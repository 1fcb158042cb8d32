"""The layer-sweep figure: edit quality, source-target distance and map conditioning per layer,
with the recommended site marked and the rule that chose it written under the plot."""

from __future__ import annotations

import math
import textwrap

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .sweep_result import LayerResult, SweepResult
from .theme import COLORS, apply_theme

__all__ = ["plot_sweep", "RECOMMENDED_PREFIX"]

#: Text at the start of the annotation that marks the recommended site (tests look for it).
RECOMMENDED_PREFIX = "recommended: "

_METRICS = (
    ("efficacy", "efficacy (edit prompt)"),
    ("generalisation", "generalisation (held-out)"),
    ("specificity", "specificity (neighbours kept)"),
)


def _x(result: SweepResult, r: LayerResult) -> int:
    layers = [x.layer for x in result.layers if x.layer is not None]
    return r.layer if r.layer is not None else (max(layers) + 1 if layers else 0)


def _wrap(text: str, width: int = 110) -> str:
    return "<br>".join(textwrap.wrap(text, width))


def _finite(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def plot_sweep(result: SweepResult, *, title: str | None = None) -> go.Figure:
    """Draw a :class:`SweepResult`.

    Three rows sharing the layer axis (the final site is the last tick, ``final``):

    1. efficacy, generalisation, specificity (``scatter`` traces with those names) and their
       mean, the ``score`` (dashed);
    2. the Wasserstein distance between source and target relative to the mean activation norm
       (absolute value on hover);
    3. the map's condition number (log scale).

    The recommended site is marked by a vertical band and an annotation starting with
    ``"recommended: "``; the rule is written under the plot and stored in
    ``fig.layout.meta`` (``{"recommended": site, "rule": rule}``).
    """
    rows = sorted(result.layers, key=lambda r: _x(result, r))
    xs = [_x(result, r) for r in rows]
    labels = [r.label for r in rows]
    sites = [r.site for r in rows]
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.55, 0.22, 0.23],
    )
    for key, name in _METRICS:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[getattr(r, key) for r in rows],
                mode="lines+markers",
                name=name,
                line={"color": COLORS[key]},
                customdata=sites,
                hovertemplate="%{customdata}<br>" + name + " %{y:.2f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[r.score for r in rows],
            mode="lines",
            name="score (mean of the 3)",
            line={"color": COLORS["score"], "dash": "dash"},
            customdata=sites,
            hovertemplate="%{customdata}<br>score %{y:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([r.wasserstein2_relative for r in rows]),
            mode="lines+markers",
            name="W2(source, target) / mean ‖h‖",
            line={"color": COLORS["distance"]},
            customdata=[[s, r.wasserstein2] for s, r in zip(sites, rows)],
            hovertemplate="%{customdata[0]}<br>W2 = %{customdata[1]:.4g} "
            "(%{y:.3f} of mean ‖h‖)<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([r.cond_map for r in rows]),
            mode="lines+markers",
            name="map condition number",
            line={"color": COLORS["neutral"]},
            customdata=sites,
            hovertemplate="%{customdata}<br>cond_map %{y:.4g}<extra></extra>",
        ),
        row=3,
        col=1,
    )
    best = result.best
    bx = _x(result, best)
    for row in (1, 2, 3):
        fig.add_vrect(
            x0=bx - 0.45,
            x1=bx + 0.45,
            fillcolor=COLORS["recommended"],
            opacity=0.15,
            line_width=0,
            row=row,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=[bx],
            y=[best.score],
            mode="markers",
            name="recommended",
            marker={"symbol": "star", "size": 16, "color": COLORS["recommended"]},
            hovertemplate=f"recommended: {best.site}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_annotation(
        text=f"{RECOMMENDED_PREFIX}{best.site} (score {best.score:.2f})",
        x=bx,
        y=1.0,
        xref="x",
        yref="y domain",
        showarrow=False,
        yanchor="top",
        xanchor="right" if bx > (max(xs) + min(xs)) / 2 else "left",
        font={"color": COLORS["recommended"], "size": 12},
    )
    gate = "gated" if result.gated else "ungated (every prompt steered)"
    fig.add_annotation(
        text=f"Rule: {_wrap(result.rule)}.<br>Specificity is {gate}; target purity "
        f"{result.purity:.0%}, {result.n_source} source / {result.n_target} target samples.",
        xref="paper",
        yref="paper",
        x=0,
        y=-0.13,
        xanchor="left",
        yanchor="top",
        showarrow=False,
        align="left",
        font={"size": 11},
    )
    fig.update_yaxes(title_text="rate", range=[-0.05, 1.3], row=1, col=1)
    fig.update_yaxes(title_text="W2 / mean ‖h‖", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="cond(A)", type="log", row=3, col=1)
    fig.update_xaxes(
        tickmode="array",
        tickvals=xs,
        ticktext=labels,
        tickangle=-90 if len(xs) > 16 else 0,
        tickfont={"size": 10},
        row=3,
        col=1,
    )
    fig.update_xaxes(title_text="layer (site)", row=3, col=1)
    fig.update_layout(
        height=720,
        hovermode="x unified",
        meta={"recommended": result.recommended, "rule": result.rule},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        margin={"t": 130, "b": 150},
    )
    return apply_theme(
        fig,
        title=title
        or f"Layer sweep: {result.request.text} {result.request.old} → {result.request.new}",
    )
