r"""Transport displacement: how far the map moves each group, its spectrum, and which tokens it
promotes.

* :func:`plot_displacement_norms` — $\lVert T(h) - h\rVert$ per prompt group (box plots with
  every prompt as a hoverable point). A scope-blind map moves out-of-scope prompts as far as
  in-scope ones; that is what the gate is for.
* :func:`plot_map_spectrum` — the eigenvalues of $A - I$ (the Gaussian map's symmetric linear
  part minus the identity; the diagonal map's per-dimension scales minus one), sorted by
  magnitude, with the fit diagnostics. A pure mean shift has none.
* :func:`logit_lens` / :func:`plot_logit_lens` — the tokens the mean displacement promotes and
  demotes: $\Delta\ell = W_U\,(T(\mu_s) - \mu_s)$ at the final normalised stream, and
  $\Delta\ell = W_U\,(\mathrm{LN}(T(\mu_s)) - \mathrm{LN}(\mu_s))$ at a residual site (the logit
  lens: later blocks are skipped, so it is indicative, not exact).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..errors import SakeLensError
from ..model.sites import FINAL_SITE
from ..transport import TransportMap
from .projections import as_float64
from .theme import COLORS, GROUP_LABELS, apply_theme, group_color, hover_texts

__all__ = [
    "displacement_norms",
    "map_spectrum",
    "LogitLens",
    "logit_lens",
    "plot_displacement_norms",
    "plot_map_spectrum",
    "plot_logit_lens",
    "plot_displacement",
]

_DIRECT_SITES = (FINAL_SITE, "unembed.hook_in")
_SHOWN_DIAGNOSTICS = ("rank", "cond_map", "mean_shift_norm", "wasserstein2", "reg", "eps")


def displacement_norms(map: TransportMap, acts: Tensor) -> Tensor:
    """``||T(h) - h||`` for each row of ``acts`` (float64, ``(n,)``).

    Returns:
        One norm per row, float64, shape ``(n,)``.
    """
    return as_float64(map.displacement(as_float64(acts))).norm(dim=1)


def map_spectrum(map: TransportMap) -> Tensor:
    r"""Eigenvalues of $A - I$ (float64), sorted by decreasing magnitude; empty for a pure
    mean shift (or when no direction is stored).

    Returns:
        The eigenvalues, float64, largest magnitude first.
    """
    values = getattr(map, "eigenvalues_", None)
    if values is None:
        scale = getattr(map, "scale_", None)
        values = scale.double() - 1.0 if scale is not None else torch.zeros(0)
    values = values.double().cpu()
    return values[values.abs().argsort(descending=True)]


def plot_displacement_norms(
    map: TransportMap,
    groups: Mapping[str, Tensor],
    *,
    prompts: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Box plots of ``||T(h) - h||`` per group (one ``box`` trace per group, every point shown).

    Returns:
        The figure (plotly, not shown).
    """
    fig = go.Figure()
    for name, acts in groups.items():
        norms = displacement_norms(map, acts)
        text = hover_texts(prompts.get(name), len(norms)) if prompts and name in prompts else None
        fig.add_trace(
            go.Box(
                y=norms.tolist(),
                name=GROUP_LABELS.get(name, name),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": group_color(name), "size": 5},
                line={"color": group_color(name)},
                hovertext=text,
                hovertemplate=("%{hovertext}<br>" if text else "")
                + "‖T(h) − h‖ = %{y:.3g}"
                + "<extra></extra>",
            )
        )
    fig.update_yaxes(title_text="‖T(h) − h‖", rangemode="tozero")
    fig.update_xaxes(title_text="prompt group")
    return apply_theme(fig, title=title or "Displacement norm per prompt group")


def _diagnostics_text(map: TransportMap) -> str:
    diag = map.diagnostics()
    parts = []
    for key in _SHOWN_DIAGNOSTICS:
        if key in diag:
            value = diag[key]
            parts.append(f"{key} = {value:.4g}" if math.isfinite(value) else f"{key} = {value}")
    return " · ".join(parts)


def _spectrum_trace(values: Tensor) -> go.Scatter:
    return go.Scatter(
        x=list(range(1, len(values) + 1)),
        y=values.tolist(),
        mode="markers",
        name="eigenvalues of A − I",
        marker={"size": 4, "color": COLORS["transported"]},
        line={"color": COLORS["transported"]},
        hovertemplate="λ%{x} = %{y:.4g}<extra></extra>",
    )


def plot_map_spectrum(map: TransportMap, *, title: str | None = None) -> go.Figure:
    """The eigen-spectrum of ``A - I`` (one ``scatter`` trace) with the map's diagnostics.

    Returns:
        The figure (plotly, not shown).
    """
    values = map_spectrum(map)
    fig = go.Figure()
    fig.add_trace(_spectrum_trace(values))
    if not len(values):
        fig.add_annotation(
            text=f"{map.kind}: A = I (a pure translation)",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
    fig.add_annotation(
        text=_diagnostics_text(map),
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0,
        y=1.08,
        xanchor="left",
        font={"size": 11},
    )
    fig.update_xaxes(title_text="direction (sorted by |λ|)")
    fig.update_yaxes(title_text="eigenvalue of A − I")
    return apply_theme(fig, title=title or f"Spectrum of the {map.kind} map")


@dataclass(frozen=True)
class LogitLens:
    """Tokens the mean displacement promotes and demotes, with their logit changes."""

    site: str
    method: str
    promoted: list[tuple[str, float]]
    demoted: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unembedding(model: Any) -> Tensor:
    w_u = getattr(model, "W_U", None)
    if w_u is None:
        raise SakeLensError(
            "the model exposes no W_U (unembedding); the logit lens needs a TransformerLens "
            "model (sake_lens.load_model)."
        )
    return w_u.detach().to("cpu", torch.float64)  # (d, vocab)


@torch.no_grad()
def logit_lens(model: Any, map: TransportMap, site: str, *, k: int = 10) -> LogitLens:
    r"""The ``k`` tokens whose logits the mean displacement raises and lowers most.

    The displacement is taken at the source mean, $T(\mu_s) - \mu_s$ (for every sake_lens map
    $T(\mu_s) = \mu_t$). At ``ln_final.hook_out`` it is multiplied by $W_U$ directly; at a
    block's site the final normalisation is applied to $\mu_s$ and $T(\mu_s)$ first.

    Returns:
        The promoted and demoted tokens with their logit changes.
    """
    mu_s = getattr(map, "mean_source_", None)
    if mu_s is None:
        raise SakeLensError(f"the {map.kind} map stores no source mean; fit it first.")
    w_u = _unembedding(model)
    h0 = mu_s.double().reshape(1, -1)
    h1 = h0 + map.displacement(h0)
    if h0.shape[1] != w_u.shape[0]:
        raise SakeLensError(
            f"the map has width {h0.shape[1]} but the model's W_U expects {w_u.shape[0]}; "
            "use the model the edit was fitted on."
        )
    if site in _DIRECT_SITES:
        delta = ((h1 - h0) @ w_u)[0]  # (1, d) @ (d, vocab) -> (vocab,)
        method = "Δlogits = W_U · (T(μs) − μs)"
    elif site.startswith("blocks."):
        ln = model.ln_final
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device

        def norm(h: Tensor) -> Tensor:
            out = ln(h.to(device, dtype).reshape(1, 1, -1))
            return out.reshape(1, -1).to("cpu", torch.float64)

        delta = ((norm(h1) - norm(h0)) @ w_u)[0]
        method = "Δlogits = W_U · (LN(T(μs)) − LN(μs)) (logit lens: later blocks skipped)"
    else:
        raise SakeLensError(
            f"no logit lens for site {site!r}; use {FINAL_SITE!r} or a 'blocks.L.*' site."
        )
    if not bool(torch.isfinite(delta).all()):
        raise SakeLensError(f"the logit lens at {site!r} is not finite; the map may be broken.")
    k = min(k, delta.numel())
    top = delta.topk(k)
    bottom = (-delta).topk(k)
    decode = model.tokenizer.decode
    promoted = [(decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices)]
    demoted = [(decode([int(i)]), -float(v)) for v, i in zip(bottom.values, bottom.indices)]
    return LogitLens(site, method, promoted, demoted)


def _lens_traces(lens: LogitLens) -> list[go.Bar]:
    traces = []
    for name, items in (("promoted", lens.promoted), ("demoted", lens.demoted)):
        labels = [repr(t) for t, _ in items]
        traces.append(
            go.Bar(
                x=[v for _, v in items],
                y=labels,
                orientation="h",
                name=name,
                marker_color=COLORS[name],
                hovertemplate="%{y}: Δlogit %{x:.3g}<extra></extra>",
            )
        )
    return traces


def plot_logit_lens(lens: LogitLens, *, title: str | None = None) -> go.Figure:
    """Horizontal bars: the promoted tokens (green) and the demoted ones (red).

    Returns:
        The figure (plotly, not shown).
    """
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("promoted", "demoted"), horizontal_spacing=0.2
    )
    promoted, demoted = _lens_traces(lens)
    fig.add_trace(promoted, row=1, col=1)
    fig.add_trace(demoted, row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="Δ logit")
    fig.add_annotation(
        text=lens.method,
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0,
        y=-0.18,
        xanchor="left",
        font={"size": 11},
    )
    return apply_theme(fig, title=title or f"Tokens moved by the mean displacement at {lens.site}")


def plot_displacement(
    map: TransportMap,
    *,
    groups: Mapping[str, Tensor] | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    model: Any = None,
    site: str | None = None,
    k: int = 8,
    title: str | None = None,
) -> go.Figure:
    """One figure of an edit's displacement: norms per group (when ``groups`` are given), the
    spectrum of ``A - I``, and the promoted / demoted tokens (when ``model`` and ``site`` are).

    Returns:
        The figure (plotly, not shown).
    """
    panels = []
    if groups:
        panels.append("‖T(h) − h‖ per group")
    panels.append("eigenvalues of A − I")
    lens = logit_lens(model, map, site, k=k) if model is not None and site else None
    if lens is not None:
        panels += ["promoted tokens", "demoted tokens"]
    cols = 2 if len(panels) >= 3 else len(panels)  # a 2 x 2 grid fits a docs column
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=panels,
        horizontal_spacing=0.16,
        vertical_spacing=0.2 if rows > 1 else 0.1,
    )
    cells = iter([(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)])
    if groups:
        r, c = next(cells)
        for trace in plot_displacement_norms(map, groups, prompts=prompts).data:
            fig.add_trace(trace, row=r, col=c)
        fig.update_yaxes(title_text="‖T(h) − h‖", rangemode="tozero", row=r, col=c)
    r, c = next(cells)
    fig.add_trace(_spectrum_trace(map_spectrum(map)), row=r, col=c)
    fig.update_xaxes(title_text="direction (sorted by |λ|)", row=r, col=c)
    fig.update_yaxes(title_text="eigenvalue of A − I", row=r, col=c)
    if lens is not None:
        for trace in _lens_traces(lens):
            r, c = next(cells)
            fig.add_trace(trace, row=r, col=c)
            fig.update_yaxes(autorange="reversed", row=r, col=c)
            fig.update_xaxes(title_text="Δ logit", row=r, col=c)
    fig.add_annotation(
        text=_diagnostics_text(map),
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0,
        y=-0.22 / rows,
        xanchor="left",
        yanchor="top",
        font={"size": 11},
    )
    fig.update_layout(showlegend=False, height=380 * rows + 60, margin={"b": 90})
    return apply_theme(fig, title=title or "Transport displacement")
