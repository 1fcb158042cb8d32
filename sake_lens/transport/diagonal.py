r"""The diagonal Gaussian map — per-dimension transport (Linear-AcT-like ablation).

Each dimension is transported independently between 1-D Gaussians:

$$T(x)_i = \mu_{t,i} + \frac{\sigma_{t,i}}{\sigma_{s,i}}\,(x_i - \mu_{s,i}),\qquad
\sigma_{\cdot,i}^2 = v_{\cdot,i} + \varepsilon,$$

with $v$ the biased ($1/n$) per-dimension variances and the same relative regulariser as
:class:`~sake_lens.transport.GaussianMap` ($\varepsilon = \mathrm{reg}\cdot$ the pooled mean
variance), which acts as a soft floor on $\sigma$: a dimension with zero variance on both sides
is translated, never divided by zero. It equals the Gaussian map between the
diagonal-covariance Gaussians $\mathcal N(\mu, \operatorname{diag}(v) + \varepsilon I)$.

References:
    Rodriguez, P. et al. (2024). Controlling Language and Diffusion Models by Transporting
    Activations (Linear-AcT). arXiv:2410.23054.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, final

from jaxtyping import Float
from torch import Tensor

from ..errors import FitError
from ._checks import MAX_CONDITION, relative_eps, require_finite
from .base import TransportMap
from .gaussian import _check_reg

__all__ = ["DiagonalMap"]


@final
class DiagonalMap(TransportMap):
    r"""Per-dimension Gaussian map $T(x) = \mu_t + (\sigma_t / \sigma_s) \odot (x - \mu_s)$.

    Args:
        reg: regulariser relative to the data's mean variance, added to every variance.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> source = torch.randn(50, 8, generator=g, dtype=torch.float64)
        >>> target = 3 * torch.randn(50, 8, generator=g, dtype=torch.float64) - 1
        >>> m = DiagonalMap(reg=0.0).fit(source, target)
        >>> bool(torch.allclose(m.transform(source).var(0), target.var(0)))
        True
    """

    kind = "diagonal"
    _state_shapes: ClassVar[dict[str, tuple[str, ...]]] = {
        "mean_source": ("d",),
        "mean_target": ("d",),
        "scale": ("d",),
    }

    def __init__(self, reg: float = 1e-2) -> None:
        super().__init__()
        self.reg = _check_reg(reg)
        self.mean_source_: Tensor | None = None
        self.mean_target_: Tensor | None = None
        self.scale_: Tensor | None = None

    def _init_args(self) -> dict[str, Any]:
        return {"reg": self.reg}

    def _fit(self, xs: Float[Tensor, "n_s d"], xt: Float[Tensor, "n_t d"]) -> dict[str, float]:
        mu_s, mu_t = xs.mean(dim=0), xt.mean(dim=0)
        xs_c, xt_c = xs - mu_s, xt - mu_t
        scale, eps = relative_eps(xs_c, xt_c, mu_s, mu_t, self.reg)
        # variances divided by `scale` (the ratio is invariant), so nothing under/overflows
        var_s = (xs_c / math.sqrt(scale)).square().mean(dim=0) + self.reg  # (d,)
        var_t = (xt_c / math.sqrt(scale)).square().mean(dim=0) + self.reg  # (d,)
        conds = {}
        for name, var in (("source", var_s), ("target", var_t)):
            lo, hi = var.min().item(), var.max().item()
            conds[name] = hi / lo if lo > 0 else math.inf
            if not conds[name] <= MAX_CONDITION:
                raise FitError(
                    f"{name} variances span a ratio of {conds[name]:.3g} after reg={self.reg:g} "
                    f"(absolute eps={eps:.3g}), above {MAX_CONDITION:.0e}; raise reg "
                    "(e.g. reg=1e-2)."
                )
        ratio = (var_t / var_s).sqrt()  # σt / σs, (d,)
        shift = mu_t - mu_s
        require_finite("diagonal map", ratio, shift)
        self.mean_source_, self.mean_target_, self.scale_ = mu_s.cpu(), mu_t.cpu(), ratio.cpu()
        w2 = shift.square().sum() + scale * (var_s.sqrt() - var_t.sqrt()).square().sum()
        return {
            "reg": self.reg,
            "eps": eps,
            "scale": scale,
            "cond_source": conds["source"],
            "cond_target": conds["target"],
            "cond_map": (ratio.max() / ratio.min()).item(),
            "mean_shift_norm": shift.norm().item(),
            "wasserstein2": w2.sqrt().item(),
        }

    def _params(self) -> tuple[Tensor, ...]:
        assert self.mean_source_ is not None and self.mean_target_ is not None
        assert self.scale_ is not None
        return self.mean_source_, self.mean_target_, self.scale_

    def _displacement(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        mu_s, mu_t, ratio = params
        return mu_t - mu_s + (ratio - 1.0) * (h - mu_s)  # (..., d)

    def _inverse(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        mu_s, mu_t, ratio = params
        return mu_s + (h - mu_t) / ratio  # (..., d)
