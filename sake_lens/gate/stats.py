r"""Per-edit scope statistics: the centre (and spread) of an edit's in-scope features.

For Mahalanobis gates the covariance is shrunk towards an isotropic target (Ledoit & Wolf 2004)
and kept in **low-rank + isotropic** form, never as a $d\times d$ matrix:

$$\Sigma = (1-\gamma) S + \gamma\mu I = V\,\mathrm{diag}(a)\,V^\top + \tau I,\qquad
a = (1-\gamma) e,\ \tau = \gamma\mu,\ \mu = \operatorname{tr}(S)/d,$$

with $S = V\,\mathrm{diag}(e)\,V^\top$ the sample covariance ($V$: its top ``max_rank``
eigenvectors, from an SVD of the $n\times d$ centred samples). By Woodbury,

$$\lVert x-m\rVert^2_{\Sigma^{-1}} = \frac{1}{\tau}\Bigl(\lVert x-m\rVert^2 - \sum_k
\frac{a_k}{a_k+\tau}\bigl(v_k^\top(x-m)\bigr)^2\Bigr),$$

so a gate stores $m$, $V$ ($d\times r$), the weights $w_k = a_k/(a_k+\tau)$ and $\tau$:
$O(dr)$ per edit. The Ledoit–Wolf $\gamma$ is computed from the $n\times n$ Gram matrix.

References:
    Ledoit, O. & Wolf, M. (2004). A well-conditioned estimator for large-dimensional covariance
    matrices. J. Multivariate Analysis 88.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import GateError
from .config import GATE_METRICS

__all__ = ["ScopeStats", "ledoit_wolf_shrinkage"]

# Floor of the isotropic variance, relative to the data's scale (keeps 1/tau finite when all
# samples coincide, e.g. an edit fitted on its own prompt only).
_TAU_FLOOR = 1e-6


def ledoit_wolf_shrinkage(xc: Float[Tensor, "n d"]) -> float:
    r"""Ledoit–Wolf shrinkage $\gamma\in[0,1]$ of the covariance of centred samples ``xc``.

    $\gamma = \min(\bar b^2, \delta^2)/\delta^2$ with $\delta^2 = \lVert S-\mu I\rVert_F^2$ and
    $\bar b^2 = \frac{1}{n^2}\sum_i\lVert x_ix_i^\top - S\rVert_F^2$, computed from the Gram
    matrix ($O(n^2 d)$), as scikit-learn's ``ledoit_wolf_shrinkage`` (no $1/d$ scaling).

    Returns:
        The shrinkage in ``[0, 1]``.
    """
    n, d = xc.shape
    gram = xc @ xc.T  # (n, d) @ (d, n) -> (n, n)
    s_fro2 = float((gram**2).sum()) / n**2  # ||S||_F^2
    mu = float(gram.diagonal().sum()) / (n * d)  # tr(S) / d
    delta2 = s_fro2 - mu**2 * d  # ||S - mu I||_F^2
    if delta2 <= 0.0:
        return 1.0
    b2 = (float((gram.diagonal() ** 2).sum()) - n * s_fro2) / n**2
    return float(min(max(b2, 0.0), delta2) / delta2)


@dataclass
class ScopeStats:
    """The fitted in-scope statistics of one edit, for one metric (float64, CPU).

    Attributes:
        metric: one of :data:`~sake_lens.gate.config.GATE_METRICS`.
        mean: ``(f,)`` mean feature of the in-scope samples.
        anchors: ``(p, f)`` the samples themselves (``nearest`` only; else ``(0, f)``).
        basis: ``(f, r)`` covariance directions (``mahalanobis`` only; else ``(f, 0)``).
        weights: ``(r,)`` Woodbury weights $a_k/(a_k+\\tau)$ in ``[0, 1)``.
        tau: isotropic variance $\\tau$ (``mahalanobis``; 1 otherwise).
        shrinkage: the shrinkage $\\gamma$ used (``mahalanobis``; 0 otherwise).
    """

    metric: str
    mean: Float[Tensor, " f"]
    anchors: Float[Tensor, "p f"]
    basis: Float[Tensor, "f r"]
    weights: Float[Tensor, " r"]
    tau: float = 1.0
    shrinkage: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(
        cls,
        samples: Float[Tensor, "n f"],
        metric: str,
        *,
        shrinkage: float | None = None,
        max_rank: int = 32,
    ) -> ScopeStats:
        """Fit the statistics of ``metric`` to in-scope ``samples`` (rows)."""
        if metric not in GATE_METRICS:
            raise GateError(f"Unknown gate metric {metric!r}; allowed: {GATE_METRICS}.")
        if samples.ndim != 2 or samples.shape[0] < 1 or samples.shape[1] < 1:
            raise GateError(
                f"A scope needs at least one in-scope sample of shape (n, f); got "
                f"{tuple(samples.shape)}. Give the edit at least one prompt."
            )
        x = samples.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise GateError("In-scope features contain NaN or inf; check the prompts and model.")
        n, f = x.shape
        mean = x.mean(0)
        anchors = x.clone() if metric == "nearest" else x.new_zeros(0, f)
        basis, weights, tau, gamma = x.new_zeros(f, 0), x.new_zeros(0), 1.0, 0.0
        if metric == "mahalanobis":
            xc = x - mean  # (n, f)
            scale = float((x**2).sum(1).mean()) / f  # mean squared coordinate
            gamma = ledoit_wolf_shrinkage(xc) if shrinkage is None else float(shrinkage)
            mu = float((xc**2).sum()) / (n * f)
            tau = max(gamma * mu, _TAU_FLOOR * max(scale, 1e-300))
            if n > 1 and max_rank > 0 and gamma < 1.0:
                _, sing, vh = torch.linalg.svd(xc / n**0.5, full_matrices=False)
                eig = sing**2  # eigenvalues of S, descending
                keep = int(min(max_rank, int((eig > 1e-12 * max(float(eig[0]), 1e-300)).sum())))
                a = (1.0 - gamma) * eig[:keep]
                basis = vh[:keep].T.contiguous()  # (f, r)
                weights = a / (a + tau)
        stats = cls(metric, mean, anchors, basis, weights, float(tau), float(gamma))
        stats.check()
        return stats

    def check(self) -> None:
        """Raise :class:`GateError` unless every tensor is finite and shapes agree."""
        f = self.dim
        ok = (
            self.mean.ndim == 1
            and self.anchors.ndim == 2
            and self.anchors.shape[1] == f
            and self.basis.shape[0] == f
            and self.basis.shape[1] == self.weights.shape[0]
        )
        if not ok:
            raise GateError(
                f"Inconsistent scope statistics: mean {tuple(self.mean.shape)}, anchors "
                f"{tuple(self.anchors.shape)}, basis {tuple(self.basis.shape)}, weights "
                f"{tuple(self.weights.shape)}."
            )
        if self.metric == "nearest" and self.anchors.shape[0] == 0:
            raise GateError("A 'nearest' scope needs at least one anchor sample.")
        tensors = (self.mean, self.anchors, self.basis, self.weights)
        if not all(bool(torch.isfinite(t).all()) for t in tensors) or not self.tau > 0:
            raise GateError(f"Scope statistics are not finite (tau={self.tau}); refit the scope.")

    def state_dict(self) -> dict[str, Tensor]:
        """The tensors (contiguous CPU float64), safetensors-ready."""
        return {
            "mean": self.mean.contiguous(),
            "anchors": self.anchors.contiguous(),
            "basis": self.basis.contiguous(),
            "weights": self.weights.contiguous(),
        }

    @classmethod
    def from_state(
        cls, metric: str, state: dict[str, Tensor], tau: float, shrinkage: float
    ) -> ScopeStats:
        try:
            stats = cls(
                metric,
                state["mean"].to(torch.float64),
                state["anchors"].to(torch.float64),
                state["basis"].to(torch.float64),
                state["weights"].to(torch.float64),
                float(tau),
                float(shrinkage),
            )
        except KeyError as exc:
            raise GateError(
                f"Scope state lacks the tensor {exc}; the saved scope is damaged."
            ) from None
        stats.check()
        return stats
