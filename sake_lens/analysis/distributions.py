"""Activation distributions: source, target, transported and out-of-scope clouds.

:func:`plot_distributions` draws the clouds in 2-D (PCA of their union, or the map's own
directions) with each prompt in the hover text; :func:`plot_displacement_histograms` draws the
groups' 1-D distributions along the main directions in which the map moves points. Both return a
``plotly.graph_objects.Figure`` (never shown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..transport import TransportMap
from .projections import as_float64, displacement_directions, fit_projection
from .theme import GROUP_LABELS, apply_theme, group_color, hover_texts

__all__ = ["activation_groups", "plot_distributions", "plot_displacement_histograms"]

_ORDER = ("source", "target", "transported", "out_of_scope")


def activation_groups(
    source: Tensor,
    target: Tensor,
    *,
    transported: Tensor | None = None,
    out_of_scope: Tensor | None = None,
    map: TransportMap | None = None,
) -> dict[str, Tensor]:
    """The groups to draw, as float64 ``(n, d)`` tensors; ``transported`` is ``T(source)``
    when a fitted ``map`` is given and ``transported`` is not."""
    groups = {
        "source": as_float64(source, "source activations"),
        "target": as_float64(target, "target activations"),
    }
    if transported is None and map is not None:
        transported = map.transform(groups["source"])
    if transported is not None:
        groups["transported"] = as_float64(transported, "transported activations")
    if out_of_scope is not None:
        groups["out_of_scope"] = as_float64(out_of_scope, "out-of-scope activations")
    return groups


def _prompts_for(
    prompts: Mapping[str, Sequence[str]] | None, group: str, n: int
) -> list[str] | None:
    if not prompts:
        return None
    got = prompts.get(group)
    if got is None and group == "transported":
        got = prompts.get("source")  # T(source) keeps its source prompt
    return hover_texts(got, n) if got is not None else None


def plot_distributions(
    source: Tensor,
    target: Tensor,
    *,
    transported: Tensor | None = None,
    out_of_scope: Tensor | None = None,
    map: TransportMap | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    probes: Tensor | None = None,
    probe_labels: Sequence[str] | None = None,
    projection: str = "pca",
    title: str | None = None,
) -> go.Figure:
    """Source, target, transported and out-of-scope activations in 2-D.

    Args:
        source, target: ``(n, d)`` activations at one site.
        transported: ``T(source)``; computed from ``map`` when omitted.
        out_of_scope: activations of prompts the edit must not change.
        map: the fitted transport map (for ``transported`` and ``projection="displacement"``).
        prompts: group name (``source``, ``target``, ``out_of_scope``) -> one prompt per row,
            shown on hover; ``transported`` defaults to the source prompts.
        probes: ``(k, d)`` extra points to highlight (e.g. a probe prompt and, with a map, its
            transported point is drawn too).
        projection: ``"pca"`` (fitted on the union of all groups) or ``"displacement"``.

    Returns:
        A figure with one ``scatter`` trace per group (named ``source``, ``target``,
        ``transported T(source)``, ``out of scope``), then the probes.
    """
    groups = activation_groups(
        source, target, transported=transported, out_of_scope=out_of_scope, map=map
    )
    proj = fit_projection(groups, projection, map=map)
    fig = go.Figure()
    for name in _ORDER:
        if name not in groups:
            continue
        xy = proj(groups[name])
        text = _prompts_for(prompts, name, xy.shape[0])
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0].tolist(),
                y=xy[:, 1].tolist(),
                mode="markers",
                name=GROUP_LABELS[name],
                legendgroup=name,
                marker={
                    "color": group_color(name),
                    "size": 7,
                    "opacity": 0.75,
                    "line": {"width": 0.5, "color": "white"},
                },
                hovertext=text,
                hovertemplate=("%{hovertext}" if text else "(%{x:.2f}, %{y:.2f})")
                + f"<extra>{GROUP_LABELS[name]}</extra>",
            )
        )
    if map is not None and "source" in groups and "transported" in groups:
        _add_arrows(fig, proj(groups["source"]), proj(groups["transported"]))
    if probes is not None:
        _add_probes(fig, proj, as_float64(probes, "probe activations"), probe_labels, map)
    fig.update_xaxes(title_text=proj.axis_titles[0], zeroline=False)
    fig.update_yaxes(title_text=proj.axis_titles[1], zeroline=False)
    return apply_theme(fig, title=title or f"Activation distributions ({projection})")


def _add_arrows(fig: go.Figure, start: Tensor, end: Tensor, max_arrows: int = 60) -> None:
    """Faint segments from each source point to its transported point (one trace)."""
    idx = torch.linspace(0, start.shape[0] - 1, min(max_arrows, start.shape[0])).long()
    xs: list[float | None] = []
    ys: list[float | None] = []
    for i in idx.tolist():
        xs += [float(start[i, 0]), float(end[i, 0]), None]
        ys += [float(start[i, 1]), float(end[i, 1]), None]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            name="T(h) − h",
            legendgroup="transported",
            line={"color": group_color("transported"), "width": 0.6},
            opacity=0.35,
            hoverinfo="skip",
            visible="legendonly",
        )
    )


def _add_probes(
    fig: go.Figure, proj, probes: Tensor, labels: Sequence[str] | None, map: TransportMap | None
) -> None:
    text = hover_texts(labels, probes.shape[0]) if labels is not None else None
    xy = proj(probes)
    fig.add_trace(
        go.Scatter(
            x=xy[:, 0].tolist(),
            y=xy[:, 1].tolist(),
            mode="markers",
            name="probe",
            legendgroup="probe",
            marker={
                "color": group_color("probe"),
                "size": 13,
                "symbol": "star",
                "line": {"width": 1, "color": "black"},
            },
            hovertext=text,
            hovertemplate=("%{hovertext}" if text else "probe") + "<extra>probe</extra>",
        )
    )
    if map is not None:
        moved = proj(as_float64(map.transform(probes)))
        fig.add_trace(
            go.Scatter(
                x=moved[:, 0].tolist(),
                y=moved[:, 1].tolist(),
                mode="markers",
                name="T(probe)",
                legendgroup="probe",
                marker={
                    "color": group_color("transported"),
                    "size": 13,
                    "symbol": "star-open",
                    "line": {"width": 2},
                },
                hovertext=text,
                hovertemplate=("%{hovertext}" if text else "T(probe)") + "<extra>T(probe)</extra>",
            )
        )


def plot_displacement_histograms(
    source: Tensor,
    target: Tensor,
    map: TransportMap,
    *,
    out_of_scope: Tensor | None = None,
    n_directions: int = 2,
    nbins: int = 30,
    title: str | None = None,
) -> go.Figure:
    """Histograms of each group projected on the map's main displacement directions.

    One subplot per direction (the mean-shift direction first, then the top principal
    directions of ``T(h) - h``); in each, one ``histogram`` trace per group (source, target,
    transported, out of scope), so a good map puts *transported* on top of *target*.

    Returns:
        The figure (plotly, not shown).
    """
    if n_directions < 1:
        raise ValueError(f"n_directions must be >= 1, got {n_directions}.")
    groups = activation_groups(source, target, out_of_scope=out_of_scope, map=map)
    dirs, names = displacement_directions(map, groups["source"], n_directions)
    centre = torch.cat(list(groups.values())).mean(0)
    k = dirs.shape[1]
    fig = make_subplots(rows=1, cols=k, subplot_titles=names, horizontal_spacing=0.08)
    for j in range(k):
        for name in _ORDER:
            if name not in groups:
                continue
            values = (groups[name] - centre) @ dirs[:, j]  # (n, d) @ (d,) -> (n,)
            fig.add_trace(
                go.Histogram(
                    x=values.tolist(),
                    name=GROUP_LABELS[name],
                    legendgroup=name,
                    showlegend=j == 0,
                    marker_color=group_color(name),
                    opacity=0.55,
                    nbinsx=nbins,
                ),
                row=1,
                col=j + 1,
            )
        fig.update_xaxes(title_text=f"projection on {names[j]}", row=1, col=j + 1)
    fig.update_yaxes(title_text="count", row=1, col=1)
    fig.update_layout(barmode="overlay")
    return apply_theme(fig, title=title or "Distributions along the displacement directions")
