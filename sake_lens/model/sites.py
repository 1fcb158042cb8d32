"""Steering sites: a hook point plus the token position where an edit reads and writes.

A site must exist on the model *and* steer it: its activation at the last token must be a
``d_model``-wide hidden state that depends on the prompt, and a write through the steering hook
(:class:`sake_lens.steer.hooks.SiteSteerer`, the very code that applies edits) must change the
logits. Anything else is refused with a :class:`~sake_lens.errors.SiteError`: an edit there
would do nothing (``hook_pos_embed`` never fires on rotary models), crash after fitting
(``ln_final.hook_scale`` is one number per token), or fit a map to identical samples
(``hook_embed`` at the last token sees only that token).

The bridge's normalisation hooks (``ln_final.hook_normalized``, ``ln_final.hook_scale``) ignore
writes into the tensor they pass: they detect an edit by the hook *returning another tensor*.
The steering hook therefore writes into a copy and returns it, which works on every hook.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any, Literal, cast

import torch

from ..errors import SiteError

__all__ = [
    "Site",
    "POSITIONS",
    "FINAL_SITE",
    "offered_sites",
    "final_site",
    "resolve_site",
    "site_layer",
    "check_site_steers",
    "site_problem",
    "UNEMBED_INPUT",
    "keep_last_positions",
]

#: Where in the sequence an edit applies. ``last``: the prompt's last token (the paper's choice).
POSITIONS = ("last",)
FINAL_SITE = "ln_final.hook_out"

#: The unembedding's input, where a pass that reads only the last positions' logits cuts the
#: stream. Not ``ln_final.hook_out``: GPT-2 reshapes the final norm's output to the input's
#: ``(batch, seq, d_model)`` before the unembedding, so a shorter stream there fails; every
#: architecture feeds the unembedding per position.
UNEMBED_INPUT = "unembed.hook_in"

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_ALIASES = {"final": FINAL_SITE, "ln_final": FINAL_SITE}


@dataclass(frozen=True)
class Site:
    """A hook name and a position, e.g. ``Site("blocks.12.hook_resid_post")``."""

    hook: str
    position: Literal["last"] = "last"

    def __post_init__(self) -> None:
        if not isinstance(self.hook, str) or not self.hook.strip():
            raise SiteError(f"A site needs a hook name such as {FINAL_SITE!r}; got {self.hook!r}.")
        if self.position not in POSITIONS:
            raise SiteError(
                f"Unknown site position {self.position!r}; allowed: {', '.join(POSITIONS)}."
            )

    @property
    def layer(self) -> int | None:
        """The block index of the hook, or ``None`` after the last block (``ln_final``)."""
        return site_layer(self.hook)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Site:
        return cls(data["hook"], data.get("position", "last"))

    def __str__(self) -> str:
        return self.hook if self.position == "last" else f"{self.hook}@{self.position}"


def site_layer(hook: str) -> int | None:
    """Block index of a hook name (``blocks.12.hook_resid_post`` -> 12), else ``None``."""
    m = _BLOCK.match(hook)
    return int(m.group(1)) if m else None


def final_site(model: Any) -> str:
    """The final normalised stream's hook: ``ln_final.hook_out`` on the bridge; a legacy
    ``HookedTransformer`` (TransformerLens 3.x) has ``ln_final.hook_normalized`` instead."""
    if FINAL_SITE in model.hook_dict or "ln_final.hook_normalized" not in model.hook_dict:
        return FINAL_SITE
    return "ln_final.hook_normalized"


def offered_sites(model: Any) -> list[str]:
    """The sites sake_lens offers: the final normalised stream, then every layer's residual.

    Returns:
        Hook names, in that order.
    """
    n_layers = int(model.cfg.n_layers)
    return [final_site(model)] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def keep_last_positions(model: Any, n: int = 1) -> list[tuple[str, Callable[..., Any]]]:
    """A hook that passes only the last ``n`` positions on to the unembedding, or none.

    A pass that reads the next-token logits of the last positions only needs them unembedded:
    cutting the stream before the unembedding shrinks the ``(batch, seq, vocab)`` logits to
    ``(batch, n, vocab)`` (~20% of a small model's cost). Hooks at ``ln_final.hook_out`` still
    see every position. A model without :data:`UNEMBED_INPUT` gets no hook and unembeds every
    position.
    """
    if UNEMBED_INPUT not in getattr(model, "hook_dict", {}):
        return []

    def keep(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return act[:, -n:, :]  # (batch, seq, d) -> (batch, n, d); left padding: the last tokens

    return [(UNEMBED_INPUT, keep)]


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return ", ".join(repr(c) for c in close) if close else "none close"


def resolve_site(model: Any, site: Site | str, *, check_steers: bool = True) -> Site:
    """Validate a site against ``model`` and return it as a :class:`Site`.

    Raises :class:`SiteError` when the hook does not exist (listing the closest names) or
    an edit there cannot steer the model (:func:`site_problem` says why).

    Returns:
        The validated site.
    """
    if isinstance(site, str):
        site = Site(_ALIASES.get(site, site))
    if site.hook == FINAL_SITE and FINAL_SITE not in model.hook_dict:
        site = Site(final_site(model), site.position)
    names = list(model.hook_dict.keys())
    if site.hook not in model.hook_dict:
        layer = site.layer
        if layer is not None and not 0 <= layer < int(model.cfg.n_layers):
            raise SiteError(
                f"Site {site.hook!r} names layer {layer}, but the model has layers "
                f"0..{int(model.cfg.n_layers) - 1}."
            )
        raise SiteError(
            f"Unknown site {site.hook!r}: the model has no such hook point. Closest names: "
            f"{_closest(site.hook, names)}. Offered sites: {FINAL_SITE!r} and "
            "'blocks.{L}.hook_resid_post'."
        )
    problem = site_problem(model, site.hook) if check_steers else None
    if problem is not None:
        raise SiteError(
            f"Site {site.hook!r} cannot steer this model: {problem}. Use {final_site(model)!r} "
            "(the final normalised stream, the default) or 'blocks.{L}.hook_resid_post' with "
            f"0 <= L < {int(model.cfg.n_layers)}; sl.offered_sites(model) lists them."
        )
    return site


_PROBLEM_CACHE_ATTR = "_sake_lens_site_problems"


def _probe_tokens(model: Any) -> torch.Tensor:
    """Two rows that end in the same token after different prefixes (no BOS, no padding)."""
    ids = [[1000, 2000, 3000, 4000], [5000, 6000, 7000, 4000]]
    return torch.tensor(ids, device=model.cfg.device) % int(model.cfg.d_vocab)


class _Noise:
    """A stand-in transport map whose displacement is large, fixed noise (for the write test)."""

    def __init__(self, scale: float):
        self.scale = scale
        self.generator = torch.Generator().manual_seed(0)

    def displacement(self, h: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(h.shape, generator=self.generator, dtype=torch.float32)
        return noise.to(h.device, h.dtype) * self.scale


class _NoiseEdit:
    """Just enough of an :class:`~sake_lens.steer.edit.Edit` for the steering hook to apply."""

    def __init__(self, scale: float):
        self.map = _Noise(scale)
        self.config = SimpleNamespace(alpha=1.0, generation="prompt")


@torch.no_grad()
def site_problem(model: Any, hook: str) -> str | None:
    """Why an edit at ``hook`` could not steer ``model``, or ``None`` when it can.

    Two tiny forward passes (cached per model): one reads the hook, one writes to it through
    the steering hook itself, so the check and the edits share one write path. Refused: a
    hook that never fires, an activation that is not ``(batch, position, d_model)``, one whose
    last token ignores the prompt before it, and one whose writes do not reach the logits.

    Raises:
        SiteError: the model refuses to run with a hook there (a switched-off hook).
    """
    from ..steer.hooks import SingleRouter, SiteSteerer  # the steering write path

    cache: dict[str, str | None] = model.__dict__.setdefault(_PROBLEM_CACHE_ATTR, {})
    if hook in cache:
        return cache[hook]
    tokens = _probe_tokens(model)
    seen: list[torch.Tensor] = []

    def read(act: torch.Tensor, hook: Any) -> None:
        seen.append(act.detach().clone())

    try:
        with model.hooks(fwd_hooks=[(hook, read)]):
            base = model(tokens)[:, -1]
    except ValueError as exc:  # the bridge refuses hooks that are switched off
        raise SiteError(f"Site {hook!r} cannot be hooked on this model: {exc}") from exc
    cache[hook] = _activation_problem(model, seen)
    if cache[hook] is None:
        last = seen[0][:, -1]
        steerer = SiteSteerer(
            hook,
            [cast(Any, _NoiseEdit(10.0 * float(last.abs().mean().clamp_min(1.0))))],
            [0],
            SingleRouter(),
        )
        with model.hooks(fwd_hooks=[(hook, steerer)]):
            moved = model(tokens)[:, -1]
        if not bool((moved - base).abs().max() > 1e-4):
            cache[hook] = (
                "a write there through the steering hook leaves the logits unchanged (the hook "
                "only observes)"
            )
    return cache[hook]


def _activation_problem(model: Any, seen: list[torch.Tensor]) -> str | None:
    """What makes the recorded activations of a hook unusable as an edit's hidden states."""
    if not seen:
        return "the hook never fires in a forward pass"
    act, d = seen[0], int(model.cfg.d_model)
    if act.ndim != 3 or act.shape[-1] != d or not act.is_floating_point():
        return (
            f"its activation has shape {tuple(act.shape)} ({act.dtype}), not "
            f"(batch, position, d_model={d}) hidden states a map could move"
        )
    first, second = act[0, -1], act[1, -1]
    scale = max(1.0, float(first.abs().max()))
    if bool((first - second).abs().max() <= 1e-6 * scale):
        return (
            "its activation at the last token depends only on that token, not on the prompt "
            "before it, so every prompt ending in the same word gives the same sample and no "
            "map can tell the old fact from the new one"
        )
    return None


def check_site_steers(model: Any, hook: str) -> bool:
    """Whether an edit at ``hook`` steers ``model`` (see :func:`site_problem`)."""
    return site_problem(model, hook) is None
