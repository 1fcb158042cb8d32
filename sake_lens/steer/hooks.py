"""Steering hooks: apply edits' transport maps at their sites, inside any forward pass.

``h <- h + alpha (T(h) - h)`` at the prompt's last token (and, when an edit asks for it, at
generated tokens: its continuation maps while the new object is being spelled, or its map at
every token), for the rows a router assigns to each edit. Hooks are attached through
``model.hooks(...)``, so they are removed when the block exits, also on exceptions.

Outside :func:`sake_lens.steer.generation.generate`, the last position of each row is its
prompt's last token: sake_lens pads on the left.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import SakeLensError
from .continuation import continuation_rows
from .generation import GenerationStep, current_step

if TYPE_CHECKING:
    from .edit import Edit

__all__ = ["Router", "SingleRouter", "NearestSourceRouter", "SiteSteerer", "steered"]


class Router(Protocol):
    """Decides, per row, which edit (index into the edit list) applies, or -1 for none."""

    def route(self, acts: Float[Tensor, "batch d"], site: str) -> Int[Tensor, " batch"]: ...

    def hooks(self) -> list[tuple[str, Any]]:
        """Extra hooks the router needs (e.g. to read tokens or an earlier layer)."""
        ...


class SingleRouter:
    """Every row goes to edit 0 (one edit, no scope gate)."""

    def route(self, acts: Tensor, site: str) -> Tensor:
        return torch.zeros(acts.shape[0], dtype=torch.long, device=acts.device)

    def hooks(self) -> list[tuple[str, Any]]:
        return []


class NearestSourceRouter:
    """Each row goes to the edit whose source mean is nearest (no thresholds: no scope gate)."""

    def __init__(self, edits: Sequence[Edit]):
        self.sites = [e.site.hook for e in edits]
        self.centres = torch.stack([_source_mean(e) for e in edits])  # (n_edits, d)

    def route(self, acts: Tensor, site: str) -> Tensor:
        centres = self.centres.to(acts.device, acts.dtype)
        dist = torch.cdist(acts, centres)  # (batch, n_edits)
        allowed = torch.tensor([s == site for s in self.sites], device=acts.device)
        dist = dist.masked_fill(~allowed, float("inf"))
        return dist.argmin(dim=1)

    def hooks(self) -> list[tuple[str, Any]]:
        return []


def _source_mean(edit: Edit) -> Tensor:
    mean = getattr(edit.map, "mean_source_", None)
    if mean is None:
        raise SakeLensError(f"Edit {edit.id}: its map stores no source mean; cannot route to it.")
    return mean.double()


class SiteSteerer:
    """The hook function for one site: routes rows, then applies each routed edit's map.

    It writes into a copy of the activation and returns the copy, and only when some row is
    steered: the bridge's normalisation hooks (``ln_final.hook_normalized``) ignore in-place
    writes and detect an edit by the returned tensor being another one, while an unsteered
    pass keeps the very tensor it was given (and so the model's exact forward).
    :func:`sake_lens.model.sites.site_problem` validates sites through this class.
    """

    def __init__(self, site: str, edits: Sequence[Edit], indices: Sequence[int], router: Router):
        self.site = site
        self.edits = list(edits)  # all edits (router indices refer to this list)
        self.indices = set(indices)  # edits at this site
        self.router = router
        self.decisions: Tensor | None = None  # per-row edit index from the prompt's last token
        self._out: Tensor | None = None  # the written copy of this call's activation

    def _write(
        self, act: Tensor, sel: Tensor, pos: Tensor | int, alpha: float, transport: Any
    ) -> None:
        """``out[sel, pos] = h + alpha (T(h) - h)`` in this call's copy of ``act``."""
        if self._out is None:
            self._out = act.clone()
        h = self._out[sel, pos]
        self._out[sel, pos] = h + alpha * transport.displacement(h)

    def _apply(self, act: Tensor, pos: Tensor | int, rows: Tensor) -> None:
        """Steer ``act[rows, pos]`` (the prompt's last token) with each row's edit."""
        assert self.decisions is not None
        for k in torch.unique(self.decisions[rows]).tolist():
            if k < 0 or k not in self.indices:
                continue
            edit = self.edits[k]
            sel = rows[self.decisions[rows] == k]
            self._write(act, sel, pos, edit.config.alpha, edit.map)

    def _apply_generated(self, act: Tensor, pos: int, step: GenerationStep) -> None:
        """Steer the generated token at ``pos``: the edit's map (``generation="generated"``)
        or, while the generation spells the new object, its continuation map (``"object"``)."""
        assert self.decisions is not None
        rows = torch.arange(act.shape[0], device=act.device)
        n_generated = step.generated_index(pos) + 1  # tokens generated up to ``pos``
        for k in torch.unique(self.decisions).tolist():
            if k < 0 or k not in self.indices:
                continue
            edit = self.edits[k]
            sel = rows[self.decisions == k]
            if edit.config.generation == "generated":
                transport, alpha = edit.map, edit.config.alpha
            elif edit.config.generation == "object" and step.generated is not None:
                if n_generated > len(edit.continuation):
                    continue
                transport = edit.continuation[n_generated - 1]
                alpha = edit.config.object_alpha
                sel = continuation_rows(step.generated, sel, edit.object_ids, n_generated)
            else:
                continue
            if sel.numel():
                self._write(act, sel, pos, alpha, transport)

    def __call__(self, act: Tensor, hook: Any) -> Tensor:
        self._out = None
        step = current_step()
        all_rows = torch.arange(act.shape[0], device=act.device)
        if step is None:
            self.decisions = self.router.route(act[:, -1, :], self.site)
            self._apply(act, -1, all_rows)
            return self._result(act)
        last = step.positions_of_last_prompt_token
        if last is not None:
            self.decisions = self.router.route(act[:, last[0], :], self.site)
            self._apply(act, last[0], all_rows)
        if self.decisions is not None:
            for pos in step.generated_positions:
                self._apply_generated(act, pos, step)
        return self._result(act)

    def _result(self, act: Tensor) -> Tensor:
        out, self._out = self._out, None
        return act if out is None else out


def steering_hooks(
    edits: Sequence[Edit], router: Router | None = None
) -> list[tuple[str, SiteSteerer]]:
    """The ``(hook name, fn)`` pairs that apply ``edits`` (routed by ``router``)."""
    edits = list(edits)
    if not edits:
        return []
    if router is None:
        router = SingleRouter() if len(edits) == 1 else NearestSourceRouter(edits)
    by_site: dict[str, list[int]] = {}
    for i, e in enumerate(edits):
        by_site.setdefault(e.site.hook, []).append(i)
    return [(site, SiteSteerer(site, edits, idx, router)) for site, idx in by_site.items()]


def check_edits_fit(model: Any, edits: Sequence[Edit]) -> None:
    """Raise when an edit was made for a model of another width."""
    d = int(model.cfg.d_model)
    for e in edits:
        if e.d_model != d:
            from ..errors import ModelMismatchError

            raise ModelMismatchError(
                f"Edit {e.id} was fitted on a model with d_model={e.d_model} ({e.model_id}); "
                f"this model has d_model={d}. Fit the edit again on this model."
            )


@contextmanager
def steered(model: Any, edits: Sequence[Edit], *, router: Router | None = None) -> Iterator[Any]:
    """The model with ``edits`` applied inside the ``with`` block.

    Yields:
        The same model, with the edits' hooks attached until the block exits.

    Example:
        >>> with steered(model, [edit]):  # doctest: +SKIP
        ...     logits = model(tokens)
    """
    check_edits_fit(model, edits)
    hooks: list[tuple[str, Any]] = list(steering_hooks(edits, router))
    if router is not None:
        hooks = list(router.hooks()) + hooks
    with model.hooks(fwd_hooks=hooks):
        yield model
