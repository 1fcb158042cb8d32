"""Layer-sweep figures: the deciding quantities per site with shaded bootstrap intervals, the
choice marked and the rule written under the plot; and the site x alpha heatmap of the score."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .sweep_result import SiteSummary, SweepResult
from .theme import COLORS, apply_theme

__all__ = ["plot_sweep", "plot_sweep_heatmap", "RECOMMENDED_PREFIX", "BANDS"]

#: Text at the start of the annotation that marks the recommended site (tests look for it).
RECOMMENDED_PREFIX = "recommended: "

#: (row, stat key, legend name, colour) of every line drawn with its interval.
BANDS = (
    (1, "score_on", "score, gate on (decides)", COLORS["score"]),
    (2, "efficacy_on", "efficacy, gate on", COLORS["efficacy"]),
    (2, "generalisation_on", "held-out generalisation, gate on", COLORS["generalisation"]),
    (3, "locality_off", "locality, gate off (breaks ties)", COLORS["specificity"]),
    (3, "locality_on", "locality, gate on", COLORS["out_of_scope"]),
)


def _wrap(text: str, width: int = 135) -> str:
    return "<br>".join(textwrap.wrap(text, width))


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _finite(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def _x(rows: list[SiteSummary]) -> list[int]:
    return list(range(len(rows)))


def _band(
    fig: go.Figure, rows: list[SiteSummary], key: str, name: str, colour: str, row: int
) -> None:
    xs = _x(rows)
    stats = [s[key] for s in rows]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([s.hi for s in stats]),
            mode="lines",
            line={"width": 0},
            legendgroup=key,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([s.lo for s in stats]),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=_rgba(colour, 0.18),
            legendgroup=key,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([s.value for s in stats]),
            mode="lines+markers",
            name=name,
            legendgroup=key,
            line={"color": colour},
            marker={"size": 6},
            customdata=[
                [r.site, s.lo, s.hi, s.edit_min, s.edit_max, s.n] for r, s in zip(rows, stats)
            ],
            hovertemplate="%{customdata[0]}<br>" + name + " %{y:.3f} "
            "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]<br>per edit %{customdata[3]:.2f}"
            "–%{customdata[4]:.2f}, n = %{customdata[5]}<extra></extra>",
        ),
        row=row,
        col=1,
    )


def plot_sweep(
    result: SweepResult,
    *,
    alpha: float | None = None,
    reg: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Draw a sweep at one alpha and reg (default: the recommended ones).

    Five rows sharing the site axis (the final site is the last tick, ``final``):

    1. the gated score with its 95 % bootstrap interval (by edit), the best lower bound (a
       dotted line: every site whose interval reaches it is tied, ringed) and the choice;
    2. efficacy and held-out generalisation with the gate on;
    3. locality with the gate off (the tie-break) and on;
    4. the Wasserstein distance between source and target relative to the mean activation norm;
    5. the map's condition number (log scale; the fit time on hover).

    Returns:
        The figure; ``fig.layout.meta`` holds ``{"recommended": site, "alpha": …, "reg": …,
        "rule": rule}``.
    """
    rec = result.recommendation
    alpha = rec.alpha if alpha is None else alpha
    reg = rec.reg if reg is None else reg
    rows = result.at(alpha, reg)
    xs = _x(rows)
    fig = make_subplots(
        rows=5,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.035,
        row_heights=[0.3, 0.22, 0.22, 0.13, 0.13],
    )
    for row, key, name, colour in BANDS:
        _band(fig, rows, key, name, colour, row)
    bound = max(s["score_on"].lo for s in result.summaries if math.isfinite(s["score_on"].lo))
    fig.add_hline(
        y=bound, line={"dash": "dot", "color": COLORS["recommended"], "width": 1}, row=1, col=1
    )
    tied = [i for i, s in enumerate(rows) if s.candidate in set(rec.tied)]
    fig.add_trace(
        go.Scatter(
            x=tied,
            y=[rows[i]["score_on"].value for i in tied],
            mode="markers",
            name="tied with the best (interval reaches the dotted bound)",
            marker={
                "symbol": "circle-open",
                "size": 14,
                "color": COLORS["recommended"],
                "line": {"width": 2},
            },
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([s.w2_relative for s in rows]),
            mode="lines+markers",
            name="W2(source, target) / mean ‖h‖",
            line={"color": COLORS["distance"]},
            customdata=[s.site for s in rows],
            hovertemplate="%{customdata}<br>W2 / mean ‖h‖ %{y:.3f}<extra></extra>",
        ),
        row=4,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=_finite([s.cond_map for s in rows]),
            mode="lines+markers",
            name="cond(A)",
            line={"color": COLORS["neutral"]},
            customdata=[[s.site, 1000 * s.fit_s] for s in rows],
            hovertemplate="%{customdata[0]}<br>cond(A) %{y:.4g}<br>fit "
            "%{customdata[1]:.1f} ms<extra></extra>",
        ),
        row=5,
        col=1,
    )
    chosen = [i for i, s in enumerate(rows) if s.candidate == rec.candidate]
    for i in chosen:
        for row in range(1, 6):
            fig.add_vrect(
                x0=i - 0.4,
                x1=i + 0.4,
                fillcolor=COLORS["recommended"],
                opacity=0.12,
                line_width=0,
                row=row,
                col=1,
            )
        best = rows[i]
        fig.add_trace(
            go.Scatter(
                x=[i],
                y=[best["score_on"].value],
                mode="markers",
                name="recommended",
                marker={"symbol": "star", "size": 16, "color": COLORS["recommended"]},
                hovertemplate=f"recommended: {best.site}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_annotation(
            text=f"{RECOMMENDED_PREFIX}{best.label} (score {best['score_on'].text(2)})",
            x=i,
            y=0.02,
            xref="x",
            yref="y domain",
            showarrow=False,
            yanchor="bottom",
            xanchor="right" if i > len(xs) / 2 else "left",
            font={"color": COLORS["recommended"], "size": 12},
            bgcolor="rgba(255,255,255,0.8)",
        )
    if not chosen:
        fig.add_annotation(
            text=f"the recommendation is at alpha {rec.alpha:g}, reg {rec.reg:g}: {rec.site}",
            x=0,
            y=0.02,
            xref="x domain",
            yref="y domain",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"color": COLORS["recommended"], "size": 12},
        )
    n_held = rows[0]["generalisation_on"].n
    n_loc = rows[0]["locality_on"].n
    fig.add_annotation(
        text=f"Rule: {_wrap(rec.rule)}<br>Shaded: {result.config.confidence:.0%} bootstrap "
        f"intervals by edit ({rows[0].n_edits} edits, {n_held} held-out and {n_loc} locality "
        "prompts per site).",
        xref="paper",
        yref="paper",
        x=0,
        y=-0.07,
        xanchor="left",
        yanchor="top",
        showarrow=False,
        align="left",
        font={"size": 11},
    )
    fig.update_yaxes(title_text="score", range=[-0.03, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="edit rate", range=[-0.03, 1.05], row=2, col=1)
    fig.update_yaxes(title_text="unchanged", range=[-0.03, 1.05], row=3, col=1)
    fig.update_yaxes(title_text="W2 / ‖h‖", rangemode="tozero", row=4, col=1)
    fig.update_yaxes(title_text="cond(A)", type="log", row=5, col=1)
    fig.update_xaxes(
        tickmode="array",
        tickvals=xs,
        ticktext=[s.label for s in rows],
        tickangle=-90 if len(xs) > 20 else 0,
        tickfont={"size": 10},
        range=[-0.5, len(xs) - 0.5],
        row=5,
        col=1,
    )
    fig.update_xaxes(title_text="site (block, or the final normalised stream)", row=5, col=1)
    fig.update_layout(
        height=1100,
        hovermode="closest",
        meta={"recommended": rec.site, "alpha": alpha, "reg": reg, "rule": rec.rule},
        legend={"orientation": "h", "x": 0, "y": 1.01, "yanchor": "bottom", "font": {"size": 11}},
        margin={"t": 150, "b": 200},
    )
    return apply_theme(fig, title=title or f"{result.title()}<br>at alpha {alpha:g}, reg {reg:g}")


def plot_sweep_heatmap(
    result: SweepResult, *, key: str = "score_on", title: str | None = None
) -> go.Figure:
    """The site x alpha heatmap of ``key`` (default the gated score), one panel per reg.

    Each cell shows the estimate; hover adds its interval. The recommended cell is outlined
    (a ``rect`` shape).

    Returns:
        The figure; ``fig.layout.meta`` holds the recommendation.
    """
    rec = result.recommendation
    sites = result.sites
    regs = list(result.config.regs)
    alphas = list(result.config.alphas)
    labels = [result.summary(s, alphas[0], regs[0]).label for s in sites]
    fig = make_subplots(
        rows=len(regs),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[f"reg {r:g}" for r in regs] if len(regs) > 1 else None,
    )
    for j, reg in enumerate(regs, start=1):
        cells = [[result.summary(s, a, reg)[key] for s in sites] for a in alphas]
        fig.add_trace(
            go.Heatmap(
                z=[[c.value for c in row] for row in cells],
                x=labels,
                y=[f"{a:g}" for a in alphas],
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                text=[[f"{c.value:.2f}" for c in row] for row in cells],
                texttemplate="%{text}",
                textfont={"size": 9 if len(sites) > 16 else 11},
                customdata=[[[c.lo, c.hi] for c in row] for row in cells],
                hovertemplate="site %{x}, alpha %{y}<br>%{z:.3f} "
                "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>",
                colorbar={"title": {"text": key.replace("_", " ")}, "len": 0.9},
                showscale=j == 1,
            ),
            row=j,
            col=1,
        )
        if math.isclose(reg, rec.reg):  # outline the recommended cell (text stays readable)
            i, k = sites.index(rec.site), alphas.index(rec.alpha)
            fig.add_shape(
                type="rect",
                x0=i - 0.5,
                x1=i + 0.5,
                y0=k - 0.5,
                y1=k + 0.5,
                line={"color": COLORS["recommended"], "width": 4},
                row=j,
                col=1,
            )
        fig.update_yaxes(title_text="alpha", type="category", row=j, col=1)
    fig.update_xaxes(
        type="category",
        tickangle=-90 if len(sites) > 20 else 0,
        tickfont={"size": 10},
        row=len(regs),
        col=1,
    )
    fig.update_xaxes(title_text="site", row=len(regs), col=1)
    fig.update_layout(
        height=170 + 60 * len(alphas) * len(regs) + 40 * len(regs),
        showlegend=False,
        meta={"recommended": rec.site, "alpha": rec.alpha, "reg": rec.reg, "key": key},
        margin={"t": 110, "b": 70},
    )
    what = "score with the gate on" if key == "score_on" else key.replace("_", " ")
    return apply_theme(
        fig,
        title=title
        or f"{what.capitalize()} by site and alpha (outlined: recommended)<br>{result.title()}",
    )
