"""Scope-gate calibration: distance histograms with the threshold, and the ROC curve.

The functions take plain arrays (distances, labels, a threshold) so they work with any gate: a
prompt is *in scope* when its distance is at most the threshold. ``labels`` are ``True`` (or 1)
for in-scope prompts and ``False`` (0) for out-of-scope ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import GateError
from .theme import COLORS, GROUP_LABELS, apply_theme, hover_texts

__all__ = ["RocCurve", "roc_curve", "best_threshold", "plot_gate_calibration"]


@dataclass(frozen=True)
class RocCurve:
    """ROC of the rule ``in scope iff distance <= threshold``.

    ``fpr[i]``, ``tpr[i]`` are the rates at ``thresholds[i]`` (increasing; the first is
    ``-inf``: nothing in scope). ``auc`` is the area under the curve (ties count one half).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float

    def rates_at(self, threshold: float) -> tuple[float, float]:
        """``(fpr, tpr)`` of the rule at ``threshold``."""
        i = int(np.searchsorted(self.thresholds, threshold, side="right")) - 1
        return float(self.fpr[i]), float(self.tpr[i])

    def to_dict(self) -> dict[str, Any]:
        return {
            "fpr": self.fpr.tolist(),
            "tpr": self.tpr.tolist(),
            "thresholds": [None if not np.isfinite(t) else float(t) for t in self.thresholds],
            "auc": self.auc,
        }


def _arrays(distances: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(getattr(distances, "detach", lambda: distances)(), dtype=np.float64).ravel()
    y = np.asarray(getattr(labels, "detach", lambda: labels)()).ravel().astype(bool)
    if d.shape != y.shape:
        raise GateError(f"got {d.size} distances but {y.size} labels; pass one label per distance.")
    if not np.isfinite(d).all():
        raise GateError("some distances are NaN or inf; the gate produced invalid distances.")
    if y.all() or not y.any():
        raise GateError(
            "calibration needs both in-scope (label True) and out-of-scope (label False) "
            f"prompts; got {int(y.sum())} in scope and {int((~y).sum())} out of scope."
        )
    return d, y


def roc_curve(distances: Any, labels: Any) -> RocCurve:
    """The ROC curve of ``distance <= threshold`` as an in-scope detector.

    Returns:
        The curve's false- and true-positive rates, thresholds and AUROC.
    """
    d, y = _arrays(distances, labels)
    thresholds = np.concatenate([[-np.inf], np.unique(d)])
    pos, neg = y.sum(), (~y).sum()
    order = np.sort(d[y]), np.sort(d[~y])
    tpr = np.searchsorted(order[0], thresholds, side="right") / pos
    fpr = np.searchsorted(order[1], thresholds, side="right") / neg
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count 1/2
    return RocCurve(fpr, tpr, thresholds, auc)


def best_threshold(distances: Any, labels: Any) -> float:
    """The threshold maximising Youden's J = TPR − FPR, placed midway between the two distances
    it separates (so it is not fitted to one sample's exact distance).

    Returns:
        The threshold: a distance at or below it counts as in scope.
    """
    d, y = _arrays(distances, labels)
    curve = roc_curve(d, y)
    j = int(np.argmax(curve.tpr - curve.fpr))
    t = curve.thresholds[j]
    above = np.unique(d[d > t])
    return float((t + above[0]) / 2) if above.size and np.isfinite(t) else float(t)


def plot_gate_calibration(
    distances: Any,
    labels: Any,
    threshold: float | None = None,
    *,
    prompts: Sequence[str] | None = None,
    nbins: int = 30,
    distance_name: str = "distance",
    title: str | None = None,
) -> go.Figure:
    """In-scope and out-of-scope distance histograms with the threshold, and the ROC curve.

    Args:
        distances: one distance per prompt (array, list or tensor).
        labels: ``True`` for in-scope prompts, ``False`` for out-of-scope ones.
        threshold: the gate's threshold (drawn as a vertical line and as the operating point on
            the ROC curve); ``None`` draws :func:`best_threshold` and says so.
        prompts: one prompt per distance, shown on hover (as a rug of points).

    Returns:
        A figure with two subplots: ``histogram`` traces "in scope" and "out of scope" (plus
        rug ``scatter`` traces when prompts are given) and the ``ROC`` scatter trace with the
        ``threshold`` operating point.
    """
    d, y = _arrays(distances, labels)
    curve = roc_curve(d, y)
    chosen = threshold is not None
    t = float(threshold) if threshold is not None else best_threshold(d, y)
    fpr_t, tpr_t = curve.rates_at(t)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.1,
        subplot_titles=("distance to the edit's scope", f"ROC (AUC {curve.auc:.3f})"),
    )
    for key, mask in (("in_scope", y), ("out_of_scope", ~y)):
        fig.add_trace(
            go.Histogram(
                x=d[mask].tolist(),
                name=GROUP_LABELS[key],
                legendgroup=key,
                marker_color=COLORS[key],
                opacity=0.6,
                nbinsx=nbins,
            ),
            row=1,
            col=1,
        )
        if prompts is not None:
            text = hover_texts([p for p, m in zip(prompts, mask) if m], int(mask.sum()))
            fig.add_trace(
                go.Scatter(
                    x=d[mask].tolist(),
                    y=[0] * int(mask.sum()),
                    mode="markers",
                    name=f"{GROUP_LABELS[key]} prompts",
                    legendgroup=key,
                    showlegend=False,
                    marker={"symbol": "line-ns-open", "size": 12, "color": COLORS[key]},
                    hovertext=text,
                    hovertemplate="%{hovertext}<br>distance %{x:.3g}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    label = f"threshold {t:.3g}" if chosen else f"best threshold {t:.3g} (Youden J)"
    fig.add_vline(x=t, line={"color": "black", "dash": "dash"}, row=1, col=1)
    fig.add_annotation(
        text=label,
        x=t,
        y=1.0,
        xref="x",
        yref="y domain",
        showarrow=False,
        xanchor="left",
        yanchor="top",
        font={"size": 11},
    )
    fig.add_trace(
        go.Scatter(
            x=curve.fpr.tolist(),
            y=curve.tpr.tolist(),
            mode="lines",
            name="ROC",
            line={"color": COLORS["in_scope"], "shape": "hv"},
            hovertemplate="FPR %{x:.2f}, TPR %{y:.2f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="chance",
            showlegend=False,
            line={"color": COLORS["out_of_scope"], "dash": "dot"},
            hoverinfo="skip",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=[fpr_t],
            y=[tpr_t],
            mode="markers",
            name="threshold",
            marker={"color": "black", "size": 10, "symbol": "x"},
            hovertemplate=f"{label}<br>FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text=distance_name, row=1, col=1)
    fig.update_yaxes(title_text="prompts", row=1, col=1)
    fig.update_xaxes(
        title_text="false positive rate (out of scope let in)", range=[-0.02, 1.02], row=1, col=2
    )
    fig.update_yaxes(
        title_text="true positive rate (in scope caught)", range=[-0.02, 1.02], row=1, col=2
    )
    fig.update_layout(barmode="overlay")
    return apply_theme(fig, title=title or "Scope-gate calibration")
