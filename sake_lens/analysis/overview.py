"""Many edits at a glance: an edits × probes outcome heatmap.

:func:`plot_edit_overview` draws any outcome matrix (rates in [0, 1], booleans, or scores);
:func:`probe_outcomes` computes one for a set of edits served together (a registry's router, or
nearest-source routing), so interference between edits shows up off the diagonal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from ..errors import SakeLensError
from ..model.tokens import starts_object
from ..steer.edit import Edit
from ..steer.hooks import Router, steered
from .theme import apply_theme

__all__ = ["plot_edit_overview", "probe_outcomes"]

_SCALE = [[0.0, "#c0392b"], [0.5, "#f4e4c1"], [1.0, "#2e9e6a"]]


def plot_edit_overview(
    edit_ids: Sequence[str],
    probes: Sequence[str],
    outcomes: Any,
    *,
    text: Sequence[Sequence[str]] | None = None,
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorbar_title: str = "success",
    title: str | None = None,
) -> go.Figure:
    """A heatmap of ``outcomes[i, j]``: how edit ``i`` does on probe ``j``.

    Args:
        edit_ids: row labels (one per edit).
        probes: column labels (probe kinds or prompts).
        outcomes: ``(n_edits, n_probes)`` numbers or booleans; ``NaN``/``None`` marks a probe
            that was not run for that edit (drawn blank, "not run" on hover).
        text: optional per-cell hover text (e.g. the model's continuation).

    Returns:
        A figure with one ``heatmap`` trace named "outcomes".
    """
    values = (
        np.array(
            [
                [np.nan if v is None else float(v) for v in row]
                for row in np.asarray(outcomes, dtype=object)
            ],
            dtype=np.float64,
        ).reshape(len(edit_ids), -1)
        if len(edit_ids)
        else np.zeros((0, len(probes)))
    )
    if values.shape != (len(edit_ids), len(probes)):
        raise SakeLensError(
            f"outcomes has shape {values.shape}, expected ({len(edit_ids)} edits, "
            f"{len(probes)} probes); pass one row per edit and one column per probe."
        )
    hover = [[("not run" if np.isnan(v) else f"{v:.3g}") for v in row] for row in values]
    if text is not None:
        hover = [[f"{h}<br>{t}" for h, t in zip(hr, tr)] for hr, tr in zip(hover, text)]
    fig = go.Figure(
        go.Heatmap(
            z=values.tolist(),
            x=list(probes),
            y=list(edit_ids),
            zmin=zmin,
            zmax=zmax,
            colorscale=_SCALE,
            name="outcomes",
            customdata=hover,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": colorbar_title}},
            hovertemplate="%{y}<br>%{x}<br>%{customdata}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="probe", side="bottom", tickangle=-30)
    fig.update_yaxes(title_text="edit", autorange="reversed")
    fig.update_layout(height=max(320, 60 + 28 * len(edit_ids)))
    return apply_theme(fig, title=title or f"{len(edit_ids)} edits × {len(probes)} probes")


@torch.no_grad()
def probe_outcomes(
    model: Any,
    edits: Sequence[Edit] | Any,
    probes: Mapping[str, Sequence[str]] | None = None,
    *,
    router: Router | None = None,
) -> tuple[list[str], list[str], np.ndarray]:
    """Serve ``edits`` together and score every edit on every edit's own prompt.

    Cell ``(i, j)`` of the first ``len(edits)`` columns is 1 when, on edit ``j``'s prompt, the
    steered model's greedy next token starts edit ``i``'s new object: a registry without
    interference is the identity matrix. Each extra column of ``probes`` (name -> one prompt
    per edit, in the edits' order, e.g. a held-out paraphrase) scores each edit on its own
    prompt of that column.

    ``edits`` may be an ``EditBook``: its enabled edits are served behind their scope gates
    (``book.router(model)``), as in production.

    Returns:
        ``(edit_ids, probe_names, outcomes)`` for :func:`plot_edit_overview`.
    """
    if hasattr(edits, "active_edits") and hasattr(edits, "router"):
        book = edits
        edits = book.active_edits()
        if router is None and edits:
            router = book.router(model)
    from ..steer.generation import generate

    if not edits:
        raise SakeLensError("no edits to score; pass at least one edit.")
    prompts = [e.request.text for e in edits]
    columns = [f"{e.request.subject}: {e.request.new}" for e in edits]
    extra = dict(probes or {})
    for name, ps in extra.items():
        if len(ps) != len(edits):
            raise SakeLensError(
                f"probe column {name!r} has {len(ps)} prompts for {len(edits)} edits; give one "
                "prompt per edit (in the edits' order)."
            )
    all_prompts = prompts + [p for ps in extra.values() for p in ps]
    with steered(model, list(edits), router=router):
        said = generate(model, all_prompts, max_new_tokens=1)
    first = said[: len(edits)]
    out = np.array([[float(starts_object(s, e.request.new)) for s in first] for e in edits])
    for k, name in enumerate(extra):
        chunk = said[len(edits) * (k + 1) : len(edits) * (k + 2)]
        col = np.array([[float(starts_object(s, e.request.new))] for s, e in zip(chunk, edits)])
        out = np.concatenate([out, col], axis=1)
        columns.append(name)
    return [e.id for e in edits], columns, out
