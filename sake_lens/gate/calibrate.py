r"""Calibrated gate thresholds and the AUROC of a gate.

The paper sets the gate's threshold by hand (6.5 on CounterFact). Here it is chosen from
out-of-scope prompts at a target false-positive rate, with the conformal rule: with $m$
out-of-scope distances $o_{(1)}\le\dots\le o_{(m)}$ and $k = \lfloor \alpha (m+1)\rfloor$,
accept $d < o_{(k)}$. For a new out-of-scope prompt exchangeable with the calibration ones,
$P(d_{\text{new}} < o_{(k)}) \le k/(m+1) \le \alpha$ (Vovk et al. 2005; Angelopoulos & Bates
2021). When $m + 1 < 1/\alpha$ there are too few out-of-scope prompts for that guarantee; the
threshold is then $o_{(1)}$ and :attr:`Calibration.guaranteed` is False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import GateError

__all__ = ["Calibration", "auroc", "calibrate_threshold"]


def _as_1d(values: Sequence[float] | Tensor, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).flatten().contiguous()
    if bool(torch.isnan(t).any()):
        raise GateError(f"{name} distances contain NaN; the gate's features are not finite.")
    return t


def auroc(in_scope: Sequence[float] | Tensor, out_scope: Sequence[float] | Tensor) -> float | None:
    """P(an in-scope distance < an out-of-scope distance), ties counting 1/2; None if empty.

    Returns:
        The AUROC in ``[0, 1]``, or None when either side is empty.

    Example:
        >>> auroc([0.1, 0.2], [0.3, 0.15])
        0.75
    """
    pos, neg = _as_1d(in_scope, "in-scope"), _as_1d(out_scope, "out-of-scope")
    if pos.numel() == 0 or neg.numel() == 0:
        return None
    neg_sorted = neg.sort().values
    below = torch.searchsorted(neg_sorted, pos, right=False)  # negatives < each positive
    upto = torch.searchsorted(neg_sorted, pos, right=True)  # negatives <= each positive
    wins = (neg.numel() - upto).double() + 0.5 * (upto - below).double()
    return float(wins.sum() / (pos.numel() * neg.numel()))


@dataclass(frozen=True)
class Calibration:
    """How a threshold was chosen, and how well the gate separates in from out of scope.

    Attributes:
        threshold: accept a distance ``d < threshold``.
        fpr_target: the asked false-positive rate.
        fpr: accepted fraction of the calibration out-of-scope prompts.
        tpr: accepted fraction of the held-out in-scope prompts (None without any).
        auroc: AUROC in-scope vs out-of-scope (None without in-scope prompts).
        n_in, n_out: held-out in-scope and out-of-scope prompts used.
        guaranteed: whether there were enough out-of-scope prompts for the conformal bound.
        fpr_by_kind: accepted fraction per out-of-scope kind (``subject``, ``relation``, ...).
    """

    threshold: float
    fpr_target: float
    fpr: float
    tpr: float | None = None
    auroc: float | None = None
    n_in: int = 0
    n_out: int = 0
    guaranteed: bool = True
    fpr_by_kind: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)


def calibrate_threshold(
    out_scope: Sequence[float] | Tensor,
    fpr: float = 0.05,
    *,
    in_scope: Sequence[float] | Tensor = (),
    kinds: Sequence[str] = (),
    threshold: float | None = None,
) -> Calibration:
    """Choose the threshold at false-positive rate ``fpr`` (see the module docstring).

    Args:
        out_scope: distances of out-of-scope prompts to the edit.
        fpr: target false-positive rate in (0, 1).
        in_scope: distances of held-out in-scope prompts (only for the TPR/AUROC report).
        kinds: the kind of each out-of-scope prompt, to report the FPR per kind.
        threshold: use this threshold instead of calibrating (still reports the rates).

    Returns:
        The threshold with its measured rates.

    Raises:
        GateError: no out-of-scope distances (and no fixed threshold), or NaN distances.
    """
    if not 0.0 < fpr < 1.0:
        raise GateError(f"fpr must lie in (0, 1), got {fpr}.")
    neg = _as_1d(out_scope, "out-of-scope")
    pos = _as_1d(in_scope, "in-scope")
    m = neg.numel()
    guaranteed = True
    if threshold is None:
        finite = neg[torch.isfinite(neg)].sort().values
        if finite.numel() == 0:
            raise GateError(
                "Cannot calibrate a gate threshold without finite out-of-scope distances; pass "
                "out-of-scope prompts (see sake_lens.gate.default_out_of_scope) or a fixed "
                "GateConfig(threshold=...)."
            )
        k = math.floor(fpr * (m + 1))
        guaranteed = k >= 1
        k = min(max(k, 1), finite.numel())
        threshold = float(finite[k - 1])
        if threshold <= 0.0:
            # Out-of-scope prompts at distance 0 (identical to the centre): the smallest
            # positive threshold accepts nothing else, but no threshold > 0 rejects them, so
            # the bound does not hold (the reported fpr says how many get through).
            threshold = float(torch.finfo(torch.float64).tiny)
            guaranteed = False
    if not (math.isfinite(threshold) and threshold > 0):
        raise GateError(f"The gate threshold must be finite and > 0, got {threshold}.")
    by_kind: dict[str, float] = {}
    if kinds:
        if len(kinds) != m:
            raise GateError(f"{len(kinds)} kinds for {m} out-of-scope distances.")
        for kind in dict.fromkeys(kinds):
            sel = torch.tensor([k == kind for k in kinds])
            by_kind[kind] = float((neg[sel] < threshold).double().mean())
    return Calibration(
        threshold=float(threshold),
        fpr_target=float(fpr),
        fpr=float((neg < threshold).double().mean()) if m else 0.0,
        tpr=float((pos < threshold).double().mean()) if pos.numel() else None,
        auroc=auroc(pos, neg),
        n_in=int(pos.numel()),
        n_out=int(m),
        guaranteed=guaranteed,
        fpr_by_kind=by_kind,
    )
