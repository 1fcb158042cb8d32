r"""The Gaussian (Bures–Wasserstein) Monge map — the map SAKE steers with.

Fit Gaussians $\mathcal N(\mu_s,\Sigma_s)$, $\mathcal N(\mu_t,\Sigma_t)$ to the source and target
activations and transport with the closed-form optimal map (Knott & Smith 1984)

$$T(x) = \mu_t + A(x - \mu_s),\qquad
A = \Sigma_s^{-1/2}\bigl(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2}\bigr)^{1/2}\Sigma_s^{-1/2}.$$

$\Sigma = C + \varepsilon I$ with $C$ the biased ($1/n$) sample covariance (as POT) and a
regulariser **relative to the data's scale**: $\varepsilon = \mathrm{reg}\cdot
\operatorname{tr}(\bar C)/d$, $\bar C$ the pooled within-group covariance (see
:func:`~sake_lens.transport._checks.relative_eps`); the absolute $\varepsilon$ is in
:meth:`~GaussianMap.diagnostics`. Everything is computed in float64 with ``torch.linalg.eigh``.

**Stored form.** $A - I$ is symmetric, so the map is stored as its eigen-factorisation
$A - I = U\Lambda U^\top$ ($U$: ``basis_``, $d\times r$ orthonormal columns; $\Lambda$:
``eigenvalues_``), and served as

$$T(x) = x + (\mu_t - \mu_s) + U\bigl(\Lambda \odot U^\top(x - \mu_s)\bigr).$$

When $n_s + n_t < d$ the map is computed **exactly** in the span of the centred samples plus the
identity on its complement (see :mod:`sake_lens.transport._bures`), so $r \le n_s + n_t - 2$.
Directions with $|\lambda| \le 10^{-9}\max(1, \max|\lambda|)$ are dropped (they move $T(x)$ by at
most that fraction of $\lVert x - \mu_s\rVert$). ``rank=k`` keeps only the $k$ eigen-directions
of $A - I$ with the largest $|\lambda|$ — the best rank-$k$ approximation of $A - I$ (Eckart–Young);
the mean is still transported exactly, the covariance approximately (``truncation_error`` in the
diagnostics is $\lVert\Lambda_{\text{dropped}}\rVert_2 / \lVert\Lambda\rVert_2$).

``storage_dtype`` (default float32) is the dtype of $U$; means and eigenvalues stay float64.
At $d = 4096$, $n_s = n_t = 300$ a float32 $U$ is 9.8 MB ($4096\times598\times4$ bytes; 9.87 MB
per edit with the means) and changes transformed points by about $2\cdot10^{-8}$ relative to
float64 storage (measured; below the float32 serving path's own $\sim10^{-7}$ rounding);
float64 doubles the size. Against POT, agreement is limited by the data's conditioning, not by
storage: $6\cdot10^{-13}$ relative at $d=576$, $6\cdot10^{-7}$ at $d=4096$ with outlier dimensions
(``benchmarks/results_map_fit.md``), where both solutions have the same residual
$\lVert A\Sigma_s A - \Sigma_t\rVert$.

References:
    Knott, M. & Smith, C. S. (1984). On the optimal mapping of distributions. J. Optim. Theory
    Appl. 43.
    Scialanga, M. et al. (2025). SAKE: Steering Activations for Knowledge Editing.
    arXiv:2503.01751.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, final

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import FitError
from ._bures import bures_factors, span_coordinates
from ._checks import relative_eps, require_finite
from .base import TransportMap

__all__ = ["GaussianMap"]

_METHODS = ("auto", "span", "full")
_STORAGE = {"float32": torch.float32, "float64": torch.float64}
_DROP_TOL = 1e-9


def _check_reg(reg: object) -> float:
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not math.isfinite(reg):
        raise ValueError(f"reg must be a finite float ≥ 0, got {reg!r}; the default is 1e-2.")
    if reg < 0:
        raise ValueError(f"reg must be ≥ 0, got {reg!r}; the default is 1e-2.")
    return float(reg)


@final
class GaussianMap(TransportMap):
    r"""Bures–Wasserstein Monge map between Gaussians fitted to source and target.

    Args:
        reg: regulariser relative to the data's mean variance; $\varepsilon I$ with
            $\varepsilon = \mathrm{reg}\cdot\operatorname{tr}(\bar C)/d$ is added to both
            covariances.
        rank: keep only the ``rank`` eigen-directions of $A - I$ with the largest $|\lambda|$
            (``None``: all non-negligible ones; ``0``: a pure mean shift).
        method: ``"span"`` (exact, in the samples' span: $O(d n^2)$), ``"full"`` ($d\times d$
            covariances: $O(d^3)$) or ``"auto"`` (span when $n_s + n_t < d$).
        storage_dtype: dtype of the stored basis, ``torch.float32`` (default) or
            ``torch.float64``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> source = torch.randn(40, 128, generator=g, dtype=torch.float64)
        >>> target = 2 * torch.randn(40, 128, generator=g, dtype=torch.float64) + 1
        >>> m = GaussianMap(reg=1e-2).fit(source, target)
        >>> bool(torch.allclose(m.transform(source).mean(0), target.mean(0), atol=1e-6))
        True
        >>> int(m.diagnostics()["rank"]), m.basis_.shape
        (78, torch.Size([128, 78]))
    """

    kind = "gaussian"
    _state_shapes: ClassVar[dict[str, tuple[str, ...]]] = {
        "mean_source": ("d",),
        "mean_target": ("d",),
        "basis": ("d", "r"),
        "eigenvalues": ("r",),
    }

    def __init__(
        self,
        reg: float = 1e-2,
        rank: int | None = None,
        method: Literal["auto", "span", "full"] = "auto",
        storage_dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__()
        self.reg = _check_reg(reg)
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
            raise ValueError(f"rank must be None or an int ≥ 0, got {rank!r}.")
        self.rank = rank
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
        self.method = method
        if isinstance(storage_dtype, torch.dtype):
            storage_dtype = str(storage_dtype).removeprefix("torch.")
        if storage_dtype not in _STORAGE:
            raise ValueError(
                f"storage_dtype must be one of {sorted(_STORAGE)} (or the torch dtypes), "
                f"got {storage_dtype!r}."
            )
        self.storage_dtype: torch.dtype = _STORAGE[storage_dtype]
        self.mean_source_: Tensor | None = None
        self.mean_target_: Tensor | None = None
        self.basis_: Tensor | None = None
        self.eigenvalues_: Tensor | None = None

    def _init_args(self) -> dict[str, Any]:
        dtype = str(self.storage_dtype).removeprefix("torch.")
        return {"reg": self.reg, "rank": self.rank, "method": self.method, "storage_dtype": dtype}

    def _fit(self, xs: Float[Tensor, "n_s d"], xt: Float[Tensor, "n_t d"]) -> dict[str, float]:
        mu_s, mu_t = xs.mean(dim=0), xt.mean(dim=0)
        xs_c, xt_c = xs - mu_s, xt - mu_t
        scale, eps = relative_eps(xs_c, xt_c, mu_s, mu_t, self.reg)
        d = xs.shape[1]
        span = self.method == "span" or (self.method == "auto" and xs.shape[0] + xt.shape[0] < d)
        if span:
            q, ps, pt = span_coordinates(xs_c, xt_c)  # q: (d, m)
        else:
            q, ps, pt = None, xs_c, xt_c
        fac = bures_factors(ps, pt, scale, self.reg)
        order = fac.values.abs().argsort(descending=True)
        values, vectors = fac.values[order], fac.vectors[:, order]
        biggest = values.abs().max().item() if values.numel() else 0.0
        keep = int((values.abs() > _DROP_TOL * max(1.0, biggest)).sum())
        if self.rank is not None:
            keep = min(keep, self.rank)
        total = values.norm().item()
        truncation = values[keep:].norm().item() / total if total > 0 else 0.0
        vectors, values = vectors[:, :keep], values[:keep]
        basis = vectors if q is None else q @ vectors  # (d, m) @ (m, r) -> (d, r)
        shift = mu_t - mu_s
        require_finite("Gaussian map", basis, values, shift)
        eig_a = 1.0 + values  # eigenvalues of A on the kept directions; 1 elsewhere
        lo = min(eig_a.min().item() if keep else 1.0, 1.0 if keep < d else math.inf)
        hi = max(eig_a.max().item() if keep else 1.0, 1.0 if keep < d else -math.inf)
        self.mean_source_ = mu_s.cpu()
        self.mean_target_ = mu_t.cpu()
        self.basis_ = basis.to(device="cpu", dtype=self.storage_dtype).contiguous()
        self.eigenvalues_ = values.cpu().contiguous()
        return {
            "reg": self.reg,
            "eps": eps,
            "scale": scale,
            "rank": float(keep),
            "span_dim": float(ps.shape[1]),
            "span_method": 1.0 if span else 0.0,
            "cond_source": fac.cond_source,
            "cond_target": fac.cond_target,
            "cond_map": hi / lo if lo > 0 else math.inf,
            "truncation_error": truncation,
            "mean_shift_norm": shift.norm().item(),
            "wasserstein2": math.sqrt(shift.square().sum().item() + fac.wasserstein2_sq_cov),
        }

    def _params(self) -> tuple[Tensor, ...]:
        assert self.mean_source_ is not None and self.mean_target_ is not None
        assert self.basis_ is not None and self.eigenvalues_ is not None
        lam = self.eigenvalues_.to(torch.float64)
        mu_s = self.mean_source_.to(torch.float64)
        mu_t = self.mean_target_.to(torch.float64)
        return mu_s, mu_t, mu_t - mu_s, self.basis_, lam, lam / (1.0 + lam)

    def _displacement(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        mu_s, _, shift, basis, lam, _ = params
        coeff = (h - mu_s) @ basis  # (..., d) @ (d, r) -> (..., r)
        return shift + (coeff * lam) @ basis.T  # (..., r) @ (r, d) -> (..., d)

    def _inverse(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        # A⁻¹ = I - U diag(λ / (1 + λ)) Uᵀ
        mu_s, mu_t, _, basis, _, lam_inv = params
        z = h - mu_t
        return mu_s + z - ((z @ basis) * lam_inv) @ basis.T  # (..., d)

    def _check_invertible(self) -> None:
        assert self.eigenvalues_ is not None
        if self.eigenvalues_.numel() and (1.0 + self.eigenvalues_).min().item() <= 1e-12:
            raise FitError(
                "this Gaussian map is not invertible: A has eigenvalue "
                f"{(1.0 + self.eigenvalues_).min().item():.3g}; refit with a larger reg."
            )
