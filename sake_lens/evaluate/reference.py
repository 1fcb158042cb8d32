r"""The SAKE paper's recipe as published, for the ``sake-reference`` baseline.

* **Map** — POT's ``ot.da.LinearTransport(reg=1e-2)`` fitted in float64 (the reference code's
  call), wrapped as :class:`PotLinearMap` (kind ``"pot-linear"``): $T(x) = x A + b$ with POT's
  full $d \times d$ matrix. POT can return NaN or a singular matrix on rank-deficient
  covariances; that is a :class:`~sake_lens.errors.FitError` (the harness records it for the
  record and scores it unedited), never a NaN map.
* **Site** — the final normalised layer, ``ln_final.hook_out``, at the prompt's last token.
* **Distributions** — source: the paraphrases plus each in the forced context; target: the
  paper's template only (``TARGET_TEMPLATES["paper"]``), *without* sake_lens's target
  validation (the paper does not filter target samples; the measured purity is still
  reported).
* **Gate** — Euclidean distance of the prompt's sentence embedding to the mean of the source
  prompts' embeddings, with a *fixed*, hand-set threshold like the paper's (not calibrated):
  :data:`REFERENCE_GATE_THRESHOLD`.

Why 1.0: the paper's 6.5 was set for paraphrase-MiniLM-L6-v2, whose embeddings are not
normalised; the bundled all-MiniLM-L6-v2 returns unit vectors, so distances lie in
$[0, 2]$ and $\lVert a - b\rVert = \sqrt{2 - 2\cos(a, b)}$. A threshold of 1.0 is cosine
similarity 0.5 for unit vectors — the middle of the range and a conventional "same topic" cut,
fixed a priori and not tuned on any record. (For scale: DESIGN.md's measurement on 200 dev
records found median distances 0.60 for rephrase prompts and 1.20 for neighbourhood prompts
from the edit prompt; a mean of source embeddings lies inside the unit ball, so distances to it
are a little smaller.)

Paraphrases: the paper used 100 LLM-written paraphrases per edit; here the same source of
paraphrases as the ``sake`` method (the library's default generator and count) is used, so the
two methods differ only in the recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, final

import numpy as np
import torch
from torch import Tensor

from ..errors import FitError
from ..model.sites import FINAL_SITE
from ..prompts.distributions import DistributionConfig
from ..steer.edit import EditConfig
from ..transport import TransportMap

__all__ = [
    "PotLinearMap",
    "ReferenceEditConfig",
    "REFERENCE_GATE_THRESHOLD",
    "REFERENCE_REG",
    "reference_config",
]

#: POT's regulariser in the reference code.
REFERENCE_REG = 1e-2
#: Fixed Euclidean threshold on unit-normalised MiniLM embeddings (see the module docstring).
REFERENCE_GATE_THRESHOLD = 1.0


@final
class PotLinearMap(TransportMap):
    """POT's ``LinearTransport`` (Gaussian Monge map, full $d\\times d$), fitted in float64.

    $A = \\Sigma_s^{-1/2} (\\Sigma_s^{1/2} \\Sigma_t \\Sigma_s^{1/2})^{1/2} \\Sigma_s^{-1/2}$
    with ``reg`` added to both covariances' diagonals, $b = \\mu_t - A\\mu_s$, applied as POT
    does: ``x @ A_ + B_``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> m = PotLinearMap().fit(torch.randn(30, 3, generator=g), torch.randn(30, 3, generator=g) + 5)
        >>> bool((m.transform(m.mean_source_) - m.mean_target_).abs().max() < 1e-6)
        True
    """

    kind = "pot-linear"
    _state_shapes: ClassVar[dict[str, tuple[str, ...]]] = {
        "A": ("d", "d"),
        "B": ("d",),
        "mean_source": ("d",),
        "mean_target": ("d",),
    }

    def __init__(self, reg: float = REFERENCE_REG) -> None:
        super().__init__()
        if not float(reg) > 0:
            raise ValueError(f"reg must be > 0, got {reg!r}.")
        self.reg = float(reg)
        self.A_: Tensor | None = None
        self.B_: Tensor | None = None
        self.mean_source_: Tensor | None = None
        self.mean_target_: Tensor | None = None

    def _init_args(self) -> dict[str, Any]:
        return {"reg": self.reg}

    def _fit(self, xs: Tensor, xt: Tensor) -> dict[str, float]:
        """``xs``: ``(n_s, d)``, ``xt``: ``(n_t, d)``, validated float64 samples."""
        import ot

        xs_np = xs.cpu().numpy().astype(np.float64)
        xt_np = xt.cpu().numpy().astype(np.float64)
        try:
            with np.errstate(all="ignore"):
                lt = ot.da.LinearTransport(reg=self.reg).fit(Xs=xs_np, Xt=xt_np)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            raise FitError(
                f"POT's LinearTransport(reg={self.reg}) failed ({type(exc).__name__}: {exc}); "
                "the reference recipe has no fallback. Raise reg or use the 'sake' method."
            ) from exc
        a = torch.as_tensor(np.asarray(lt.A_), dtype=torch.float64)  # (d, d)
        b = torch.as_tensor(np.asarray(lt.B_), dtype=torch.float64).reshape(-1)  # (d,)
        if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
            raise FitError(
                f"POT's LinearTransport(reg={self.reg}) returned NaN/inf (rank-deficient "
                f"covariances: {xs.shape[0]} source and {xt.shape[0]} target samples in "
                f"d={xs.shape[1]}). The reference recipe has no fallback; raise reg or use the "
                "'sake' method."
            )
        self.A_, self.B_ = a, b
        self.mean_source_, self.mean_target_ = xs.mean(0).cpu(), xt.mean(0).cpu()
        moved = self.mean_source_ @ a + b
        return {
            "reg": self.reg,
            "mean_error": float((moved - self.mean_target_).norm()),
            "cond_map": float(torch.linalg.cond(a)),
        }

    def _params(self) -> tuple[Tensor, ...]:
        assert self.A_ is not None and self.B_ is not None
        return (self.A_, self.B_)

    def _displacement(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        a, b = params
        return h @ a + b - h  # (..., d) @ (d, d) -> (..., d)

    def _inverse(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        a, b = params
        return torch.linalg.solve(a.T, (h - b).unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class ReferenceEditConfig(EditConfig):
    """:class:`~sake_lens.steer.edit.EditConfig` whose map is :class:`PotLinearMap`.

    ``map_kind`` is ``"pot-linear"``; every other field is validated as in ``EditConfig``.
    """

    map_kind: str = PotLinearMap.kind
    reg: float = REFERENCE_REG
    alpha: float = 1.0  # the paper replaces h by T(h)
    generation: str = "prompt"  # the paper steers the prompt's last token only

    def __post_init__(self) -> None:
        if self.map_kind != PotLinearMap.kind:
            raise ValueError(f"ReferenceEditConfig.map_kind must be {PotLinearMap.kind!r}.")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(EditConfig)}
        EditConfig(**{**fields, "map_kind": "gaussian"})  # validates the other fields

    def make_map(self) -> TransportMap:
        return PotLinearMap(reg=self.reg)


def reference_config() -> ReferenceEditConfig:
    """The paper's recipe (see the module docstring)."""
    return ReferenceEditConfig(
        site=FINAL_SITE,
        distributions=DistributionConfig(
            target_templates=("paper",),
            forced_source=True,
            include_edit_prompt=True,
            min_purity=0.0,
            validate_targets=False,
        ),
    )
