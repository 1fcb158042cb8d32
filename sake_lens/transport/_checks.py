"""Input checks and the relative regulariser shared by every transport map.

Low-level helpers raise one short, complete message each: what is wrong (with shapes or rows),
and the fix. Fitting always happens in float64.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import FitError

__all__ = [
    "MAX_CONDITION",
    "as_samples",
    "check_pair",
    "check_serving_input",
    "compute_dtype",
    "relative_eps",
    "require_finite",
]

#: Largest condition number of a regularised covariance (or of the map) a fit accepts.
MAX_CONDITION = 1e12

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _rows(mask: Tensor) -> str:
    bad = torch.nonzero(mask).flatten().tolist()
    shown = ", ".join(str(i) for i in bad[:10])
    more = f", … ({len(bad)} rows in all)" if len(bad) > 10 else f" ({len(bad)} of {mask.numel()})"
    return f"[{shown}]{more}"


def as_samples(x: object, name: str) -> Float[Tensor, "n d"]:
    """Check that ``x`` is a finite 2-D float tensor of samples; return it in float64."""
    if not isinstance(x, Tensor):
        raise FitError(
            f"{name} must be a torch.Tensor of shape (n_samples, d_model), got "
            f"{type(x).__name__}; convert it with torch.as_tensor(...)."
        )
    if x.dtype not in _FLOATS:
        raise FitError(
            f"{name} has dtype {x.dtype}; pass floating-point activations "
            "(float16, bfloat16, float32 or float64), e.g. x.float()."
        )
    if x.ndim != 2:
        raise FitError(
            f"{name} must be 2-D (n_samples, d_model), got shape {tuple(x.shape)}; "
            "select one token position and stack samples along dim 0."
        )
    if x.shape[1] == 0:
        raise FitError(f"{name} has shape {tuple(x.shape)}: d_model is 0.")
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        raise FitError(
            f"non-finite values (NaN or inf) in {name} activations at rows {_rows(~finite)}; "
            "drop those prompts, or collect in float32 if float16 overflowed."
        )
    return x.detach().to(torch.float64)


def check_pair(
    source: object, target: object, *, min_samples: int, kind: str
) -> tuple[Float[Tensor, "n_s d"], Float[Tensor, "n_t d"]]:
    """Validate a (source, target) pair of sample matrices; return both in float64."""
    xs = as_samples(source, "source")
    xt = as_samples(target, "target")
    if xs.shape[1] != xt.shape[1]:
        raise FitError(
            f"source has shape {tuple(xs.shape)} and target {tuple(xt.shape)}: d_model differs "
            f"({xs.shape[1]} vs {xt.shape[1]}); collect both at the same site."
        )
    if xs.device != xt.device:
        raise FitError(
            f"source is on {xs.device} and target on {xt.device}; move both to one device."
        )
    for name, x in (("source", xs), ("target", xt)):
        n = x.shape[0]
        if n < min_samples:
            noun = "sample" if n == 1 else "samples"
            raise FitError(
                f"{name} has {n} {noun}; need ≥ {min_samples} for a {kind} map — "
                "add paraphrases (SAKE uses ~100 prompts per edit)."
            )
    return xs, xt


def relative_eps(
    xs_c: Float[Tensor, "n_s d"],
    xt_c: Float[Tensor, "n_t d"],
    mean_s: Float[Tensor, " d"],
    mean_t: Float[Tensor, " d"],
    reg: float,
) -> tuple[float, float]:
    r"""Return ``(scale, eps)`` with $\varepsilon = \mathrm{reg}\cdot\mathrm{scale}$.

    ``scale`` is the mean variance of the pooled within-group covariance,
    $\operatorname{tr}(n_s C_s + n_t C_t) / ((n_s + n_t)\,d)$, from the centred samples. It is
    floored at $10^{-20}$ times the data's mean square, so numerically constant samples (whose
    centred values are rounding noise) still get a regulariser that dominates the noise, and it
    is 1 for all-zero data. Then the map between constant samples is a translation.

    Raises:
        FitError: activations beyond $10^{\pm 130}$ in magnitude (rescale them).
    """
    n_s, n_t, d = xs_c.shape[0], xt_c.shape[0], xs_c.shape[1]
    peak = torch.stack([t.abs().max() for t in (xs_c, xt_c, mean_s, mean_t)]).max().item()
    if peak == 0.0:  # all-zero samples
        return 1.0, reg
    if not 1e-130 < peak < 1e130:
        raise FitError(
            f"activations of magnitude {peak:.3g} cannot be fitted accurately in float64; "
            "rescale them (e.g. divide by their RMS) before fitting."
        )
    # mean squares of the data divided by `peak` (no under/overflow), then scaled back
    within = (xs_c.div(peak).square().sum() + xt_c.div(peak).square().sum()).item()
    means = (n_s * mean_s.div(peak).square().sum() + n_t * mean_t.div(peak).square().sum()).item()
    scale = peak**2 * max(within, 1e-20 * (within + means)) / ((n_s + n_t) * d)
    return scale, reg * scale


def require_finite(what: str, *values: Tensor | float) -> None:
    """Raise :class:`FitError` if any value is NaN or infinite."""
    for v in values:
        ok = bool(torch.isfinite(v).all()) if isinstance(v, Tensor) else math.isfinite(v)
        if not ok:
            raise FitError(
                f"the fitted {what} is not finite (NaN or inf) — the covariances are too "
                "ill-conditioned; raise reg (e.g. reg=1e-1), or use the 'diagonal' or "
                "'mean-shift' map."
            )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a map computes in: the input's if float32/float64, else float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def check_serving_input(h: object, d_model: int, method: str) -> Tensor:
    """Check the input of ``transform``/``inverse``/``displacement``: float, last dim d_model."""
    if not isinstance(h, Tensor):
        raise TypeError(f"{method}() expects a torch.Tensor, got {type(h).__name__}.")
    if h.dtype not in _FLOATS:
        raise TypeError(f"{method}() expects floating-point activations, got dtype {h.dtype}.")
    if h.ndim == 0 or h.shape[-1] != d_model:
        raise ValueError(
            f"{method}() got activations of shape {tuple(h.shape)}, but the map was fitted at "
            f"d_model={d_model}; pass (..., {d_model}) activations from the fitted site."
        )
    return h
