"""Stacked scope statistics: the distances of a batch to N edits in one vectorised operation.

Routing over many edits never loops over edits in Python: the centres, anchors and covariance
factors of all edits that share a feature and a metric are stacked once, and a batch of
features gets its ``(batch, N)`` distance matrix from a few batched matrix products
(``torch.cdist`` and one ``(batch, f) @ (f, N*r)`` product for Mahalanobis).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import GateError
from .stats import ScopeStats

__all__ = ["StackedStats"]

_EXACT = "donot_use_mm_for_euclid_dist"  # per-pair sums: independent of the other edits


class StackedStats:
    """The statistics of N edits with the same metric and feature width, stacked.

    Example:
        >>> import torch
        >>> a = ScopeStats.fit(torch.zeros(3, 4), "euclidean")
        >>> b = ScopeStats.fit(torch.ones(3, 4), "euclidean")
        >>> StackedStats([a, b]).distances(torch.zeros(1, 4))
        tensor([[0., 2.]], dtype=torch.float64)
    """

    def __init__(self, stats: Sequence[ScopeStats]):
        if not stats:
            raise GateError("StackedStats needs at least one scope.")
        metrics = {s.metric for s in stats}
        dims = {s.dim for s in stats}
        if len(metrics) != 1 or len(dims) != 1:
            raise GateError(
                f"Cannot stack scopes with different metrics {sorted(metrics)} or feature widths "
                f"{sorted(dims)}; group them first."
            )
        self.metric = stats[0].metric
        self.n = len(stats)
        f = stats[0].dim
        self.mean = torch.stack([s.mean for s in stats])  # (N, f)
        if self.metric == "cosine":
            self.unit = self.mean / self.mean.norm(dim=1, keepdim=True).clamp_min(1e-300)
        if self.metric == "nearest":
            p = max(s.anchors.shape[0] for s in stats)
            self.anchors = self.mean.new_zeros(self.n, p, f)  # (N, P, f), zero-padded
            self.anchor_mask = torch.zeros(self.n, p, dtype=torch.bool)
            for i, s in enumerate(stats):
                self.anchors[i, : s.anchors.shape[0]] = s.anchors
                self.anchor_mask[i, : s.anchors.shape[0]] = True
        if self.metric == "mahalanobis":
            r = max(1, max(s.basis.shape[1] for s in stats))
            basis = self.mean.new_zeros(self.n, f, r)  # (N, f, r), zero-padded
            self.weights = self.mean.new_zeros(self.n, r)  # padded weights are 0
            for i, s in enumerate(stats):
                basis[i, :, : s.basis.shape[1]] = s.basis
                self.weights[i, : s.weights.shape[0]] = s.weights
            self.basis = basis.permute(1, 0, 2).reshape(f, self.n * r)  # (f, N*r)
            self.mean_proj = torch.einsum("nf,nfr->nr", self.mean, basis)  # (N, r)
            self.tau = torch.tensor([s.tau for s in stats], dtype=torch.float64)  # (N,)
            self.rank = r

    def distances(self, x: Float[Tensor, "batch f"]) -> Float[Tensor, "batch n"]:
        """Distances of each row of ``x`` to each edit (float64; inf for non-finite rows)."""
        x = x.detach().to("cpu", torch.float64)
        finite = torch.isfinite(x).all(dim=1)  # (B,)
        x = torch.where(finite[:, None], x, torch.zeros_like(x))
        if self.metric == "euclidean":
            dist = torch.cdist(x, self.mean, compute_mode=_EXACT)  # (B, N)
        elif self.metric == "cosine":
            xu = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
            dist = (1.0 - xu @ self.unit.T).clamp(0.0, 2.0)  # (B, f) @ (f, N) -> (B, N)
        elif self.metric == "nearest":
            b, (n, p, f) = x.shape[0], self.anchors.shape
            d = torch.cdist(x, self.anchors.reshape(n * p, f), compute_mode=_EXACT)
            d = d.view(b, n, p).masked_fill(~self.anchor_mask, float("inf"))
            dist = d.amin(dim=2)  # (B, N)
        else:
            d2 = torch.cdist(x, self.mean, compute_mode=_EXACT) ** 2  # (B, N)
            proj = (x @ self.basis).view(x.shape[0], self.n, self.rank)  # (B, N, r)
            proj = proj - self.mean_proj  # v_k . (x - m)
            m2 = (d2 - (self.weights * proj**2).sum(-1)).clamp_min(0.0) / self.tau
            dist = m2.sqrt()
        dist = torch.nan_to_num(dist, nan=float("inf"))
        return dist.masked_fill(~finite[:, None], float("inf"))
