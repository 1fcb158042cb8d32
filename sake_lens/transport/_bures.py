r"""Float64 linear algebra of the Bures–Wasserstein (Gaussian) Monge map.

For $\Sigma_s, \Sigma_t \succ 0$ the optimal transport map between $\mathcal N(\mu_s,\Sigma_s)$ and
$\mathcal N(\mu_t,\Sigma_t)$ is $T(x) = \mu_t + A(x-\mu_s)$ with (Knott & Smith 1984)

$$A = \Sigma_s^{-1/2}\bigl(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2}\bigr)^{1/2}\Sigma_s^{-1/2},$$

symmetric positive definite. Every square root here is of a symmetric PSD matrix, taken through
``torch.linalg.eigh`` (never ``sqrtm`` of a non-symmetric matrix).

**Span reduction.** With $\Sigma = C + \varepsilon I$ and $C_s, C_t$ supported on the span of the
centred samples, let $Q\in\mathbb R^{d\times m}$ be an orthonormal basis of that span. Both
covariances are block diagonal in $[Q, Q_\perp]$, equal to $\varepsilon I$ on $Q_\perp$, so
$A = Q A_Q Q^\top + (I - QQ^\top)$ exactly, where $A_Q$ is the same formula applied to the
$m\times m$ matrices $Q^\top\Sigma Q$. Hence $A - I = Q(A_Q - I)Q^\top$: $O(d\,n^2)$ time and
$O(d\,n)$ memory instead of $O(d^3)$ / $O(d^2)$.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import FitError
from ._checks import MAX_CONDITION

__all__ = ["BuresFactors", "bures_factors", "span_coordinates"]


@dataclass(frozen=True)
class BuresFactors:
    """$A - I = W \\operatorname{diag}(\\lambda) W^\\top$ in the reduced coordinates."""

    vectors: Float[Tensor, "m m"]
    values: Float[Tensor, " m"]
    cond_source: float
    cond_target: float
    wasserstein2_sq_cov: float  # covariance part of W2², summed over the reduced coordinates


def span_coordinates(
    xs_c: Float[Tensor, "n_s d"], xt_c: Float[Tensor, "n_t d"]
) -> tuple[Float[Tensor, "d m"], Float[Tensor, "n_s m"], Float[Tensor, "n_t m"]]:
    """Orthonormal basis $Q$ of the centred samples' span and their coordinates in it.

    Householder QR of $Z^\\top$ with $Z = [X_s^c; X_t^c]$: $Z^\\top = QR$, so the coordinates
    $ZQ = R^\\top$ come for free. Columns of $Q$ outside the true span (centring removes one
    direction per group) are harmless: both covariances are $\\varepsilon I$ there, so the map is
    the identity on them and their eigenvalues of $A - I$ vanish.
    """
    n_s = xs_c.shape[0]
    z = torch.cat([xs_c, xt_c], dim=0)  # (n_s + n_t, d)
    q, r = torch.linalg.qr(z.T)  # (d, m), (m, n_s + n_t) with m = min(d, n_s + n_t)
    coords = r.T  # (n_s + n_t, m)
    return q, coords[:n_s], coords[n_s:]


def _sym(a: Tensor) -> Tensor:
    return (a + a.T) / 2


def _condition(eigenvalues: Tensor) -> float:
    lo, hi = eigenvalues.min().item(), eigenvalues.max().item()
    return hi / lo if lo > 0 else math.inf


def bures_factors(
    ps: Float[Tensor, "n_s m"], pt: Float[Tensor, "n_t m"], scale: float, reg: float
) -> BuresFactors:
    """Eigen-factors of $A - I$ for the Gaussians with covariances $P^\\top P / n + \\varepsilon I$.

    ``ps``/``pt`` are centred samples in some orthonormal coordinates (the data's span, or the
    standard basis). Covariances are the biased ($1/n$) estimates, as in POT, and
    $\\varepsilon = \\mathrm{reg}\\cdot\\mathrm{scale}$. $A$ is invariant to a common rescaling of
    both covariances, so the work is done on covariances divided by ``scale`` (no underflow or
    overflow whatever the activations' magnitude).

    Raises:
        FitError: a regularised covariance is singular or its condition number exceeds
            ``MAX_CONDITION`` (message names ``reg`` and ``eps``), or a result is not finite.
    """
    m = ps.shape[1]
    eye = torch.eye(m, dtype=ps.dtype, device=ps.device)
    ps, pt = ps / math.sqrt(scale), pt / math.sqrt(scale)
    cs = _sym(ps.T @ ps) / ps.shape[0] + reg * eye  # Σs / scale, (m, m)
    ct = _sym(pt.T @ pt) / pt.shape[0] + reg * eye  # Σt / scale, (m, m)
    s, e = torch.linalg.eigh(cs)
    cond_s, cond_t = _condition(s), _condition(torch.linalg.eigvalsh(ct))
    for name, cond in (("source", cond_s), ("target", cond_t)):
        if not cond <= MAX_CONDITION:
            raise FitError(
                f"{name} covariance condition number {cond:.3g} after reg={reg:g} "
                f"(absolute eps={reg * scale:.3g}) exceeds {MAX_CONDITION:.0e}; raise reg "
                "(e.g. reg=1e-2) or add samples."
            )
    root_s = s.sqrt()
    cs_half = (e * root_s) @ e.T  # Σs^½
    cs_ihalf = (e / root_s) @ e.T  # Σs^-½
    mu, f = torch.linalg.eigh(_sym(cs_half @ ct @ cs_half))  # Σs^½ Σt Σs^½ = F diag(μ) Fᵀ
    mu = mu.clamp_min(0.0)
    middle = (f * mu.sqrt()) @ f.T  # (Σs^½ Σt Σs^½)^½
    a = _sym(cs_ihalf @ middle @ cs_ihalf)  # A_Q, (m, m)
    values, vectors = torch.linalg.eigh(a - eye)
    w2_cov = scale * (cs.trace() + ct.trace() - 2 * mu.sqrt().sum()).item()
    if not (bool(torch.isfinite(vectors).all()) and bool(torch.isfinite(values).all())):
        raise FitError(
            f"the Gaussian map is not finite after reg={reg:g} (eps={reg * scale:.3g}); raise reg."
        )
    return BuresFactors(vectors, values, cond_s, cond_t, max(w2_cov, 0.0))
