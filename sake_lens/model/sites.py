"""Steering sites: a hook point plus the token position where an edit reads and writes.

A site must exist on the model *and* steer it: writing to it must change the output. On the
TransformerLens 4.x bridge, ``ln_final.hook_normalized`` is observation-only (writes to it are
ignored downstream), so sake_lens refuses it and offers ``ln_final.hook_out`` instead.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

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
]

#: Where in the sequence an edit applies. ``last``: the prompt's last token (the paper's choice).
POSITIONS = ("last",)
FINAL_SITE = "ln_final.hook_out"

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
    """The sites sake_lens offers: the final normalised stream, then every layer's residual."""
    n_layers = int(model.cfg.n_layers)
    return [final_site(model)] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    return ", ".join(repr(c) for c in close) if close else "none close"


def resolve_site(model: Any, site: Site | str, *, check_steers: bool = True) -> Site:
    """Validate a site against ``model`` and return it as a :class:`Site`.

    Raises :class:`SiteError` when the hook does not exist (listing the closest names) or
    cannot steer the model (observation-only hooks).
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
    if check_steers and not check_site_steers(model, site.hook):
        raise SiteError(
            f"Site {site.hook!r} cannot steer this model: writing to it leaves the output "
            "unchanged (it is observation-only on the TransformerLens bridge). Use "
            f"{FINAL_SITE!r} for the final normalised stream, or 'blocks.{{L}}.hook_resid_post'."
        )
    return site


_STEER_CACHE_ATTR = "_sake_lens_steering_sites"


@torch.no_grad()
def check_site_steers(model: Any, hook: str) -> bool:
    """Whether writing to ``hook`` changes the logits (one tiny forward pass, cached per model)."""
    cache: dict[str, bool] = model.__dict__.setdefault(_STEER_CACHE_ATTR, {})
    if hook in cache:
        return cache[hook]
    tokens = torch.tensor([[1, 2, 3, 4]], device=model.cfg.device) % int(model.cfg.d_vocab)

    gen = torch.Generator().manual_seed(0)

    def perturb(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if not act.is_floating_point():
            return act
        noise = torch.randn(act.shape, generator=gen).to(act.device, act.dtype)
        return act + noise * 10.0 * act.detach().abs().mean().clamp_min(1.0)

    base = model(tokens)
    try:
        with model.hooks(fwd_hooks=[(hook, perturb)]):
            moved = model(tokens)
    except ValueError as exc:  # the bridge refuses hooks that are switched off
        raise SiteError(f"Site {hook!r} cannot be hooked on this model: {exc}") from exc
    cache[hook] = bool((moved - base).abs().max() > 1e-4)
    return cache[hook]
