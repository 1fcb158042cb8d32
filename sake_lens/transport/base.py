r"""The interface every transport map implements.

A transport map $T:\mathbb{R}^d\to\mathbb{R}^d$ is fitted to *source* activations (the model
states that lead to the old fact) and *target* activations (those that lead to the new one), and
then steers a hidden state $h$ to $T(h)$. Fitting is sklearn-like: :meth:`TransportMap.fit`
returns ``self`` and stores fitted tensors in attributes ending in ``_``.

Every map is affine here, $T(h) = h + \delta(h)$, fitted in float64 and checked for finite,
well-conditioned values after every fit (a :class:`~sake_lens.errors.FitError` names the cause
and the fix — never a silent NaN). The serving path (:meth:`~TransportMap.transform`) computes in
the input's dtype (float32/float64; half precision computes in float32), with the fitted tensors
cast once and cached per ``(dtype, device)``.

Saving: :meth:`~TransportMap.state_dict` (contiguous CPU tensors, safetensors-ready) plus
:meth:`~TransportMap.config` (JSON); :meth:`~TransportMap.from_state` restores a map whose
``transform`` is bit-for-bit identical. Fit-time diagnostics travel in the state as 0-d float64
tensors named ``"diagnostics.<name>"``.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, TypeVar

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import FitError
from ._checks import check_pair, check_serving_input, compute_dtype

__all__ = ["TransportMap"]

_M = TypeVar("_M", bound="TransportMap")  # `Self`, in a form runtime type checkers accept

_DIAG_PREFIX = "diagnostics."


class TransportMap(abc.ABC):
    """Abstract base class of the transport maps (Gaussian, diagonal, mean shift).

    Subclasses set ``kind``, ``min_samples`` and ``_state_shapes`` (state tensor name →
    symbolic shape; the fitted attribute is the name plus ``_``), and implement ``_fit``,
    ``_params``, ``_displacement``, ``_inverse`` and ``_init_args``.
    """

    kind: ClassVar[str]
    min_samples: ClassVar[int] = 2
    _state_shapes: ClassVar[dict[str, tuple[str, ...]]]

    def __init__(self) -> None:
        self.diagnostics_: dict[str, float] | None = None
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, ...]] = {}

    # ----------------------------------------------------------------------------- subclass API
    @abc.abstractmethod
    def _init_args(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""

    @abc.abstractmethod
    def _fit(self, xs: Float[Tensor, "n_s d"], xt: Float[Tensor, "n_t d"]) -> dict[str, float]:
        """Fit on validated float64 samples; set the fitted attributes; return diagnostics."""

    @abc.abstractmethod
    def _params(self) -> tuple[Tensor, ...]:
        """The serving parameters in float64 on CPU (cast and cached by the base class)."""

    @abc.abstractmethod
    def _displacement(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        """$T(h) - h$ with parameters already in ``h``'s dtype and device."""

    @abc.abstractmethod
    def _inverse(self, h: Tensor, params: tuple[Tensor, ...]) -> Tensor:
        """$T^{-1}(h)$ with parameters already in ``h``'s dtype and device."""

    def _check_invertible(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`FitError` if the fitted map is not invertible."""

    # ----------------------------------------------------------------------------- fitting
    def fit(self: _M, source: Float[Tensor, "n_s d"], target: Float[Tensor, "n_t d"]) -> _M:
        """Fit the map from ``source`` samples to ``target`` samples (rows are samples).

        Inputs may be float16/bfloat16/float32/float64 on any device; fitting runs in float64
        on that device and the fitted state is kept on CPU.

        Raises:
            FitError: bad shapes or dtypes, too few samples, non-finite inputs, or an
                ill-conditioned fit; the message names the cause and the fix.
        """
        xs, xt = check_pair(source, target, min_samples=self.min_samples, kind=self.kind)
        self._cache = {}
        for name in self._state_shapes:
            setattr(self, name + "_", None)
        self.diagnostics_ = None
        diagnostics = self._fit(xs, xt)
        diagnostics.update(n_source=float(xs.shape[0]), n_target=float(xt.shape[0]))
        diagnostics["d_model"] = float(xs.shape[1])
        self.diagnostics_ = diagnostics
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether the map holds fitted (or restored) state."""
        return all(getattr(self, n + "_", None) is not None for n in self._state_shapes)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise FitError(
                f"this {type(self).__name__} is not fitted; call .fit(source, target) or "
                "restore it with from_state(config, state) first."
            )

    @property
    def d_model(self) -> int:
        """Width of the activations the map was fitted on."""
        self._require_fitted()
        return int(getattr(self, "mean_source_").shape[0])  # noqa: B009 - set by subclasses

    # ----------------------------------------------------------------------------- serving
    def _cached(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        key = (dtype, device)
        if key not in self._cache:
            self._cache[key] = tuple(
                p.to(device=device, dtype=dtype).contiguous() for p in self._params()
            )
        return self._cache[key]

    def _serve(self, h: Tensor, method: str, inverse: bool = False) -> tuple[Tensor, Tensor]:
        self._require_fitted()
        h = check_serving_input(h, self.d_model, method)
        x = h.to(compute_dtype(h.dtype))
        params = self._cached(x.dtype, x.device)
        out = self._inverse(x, params) if inverse else self._displacement(x, params)
        return x, out

    def transform(self, h: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
        """Return $T(h)$, same shape, dtype and device as ``h``."""
        x, disp = self._serve(h, "transform")
        return (x + disp).to(h.dtype)

    def displacement(self, h: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
        """Return $T(h) - h$ (computed directly, without cancellation)."""
        _, disp = self._serve(h, "displacement")
        return disp.to(h.dtype)

    def inverse(self, h: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
        """Return $T^{-1}(h)$; raise :class:`FitError` if the map is not invertible."""
        self._require_fitted()
        self._check_invertible()
        _, out = self._serve(h, "inverse", inverse=True)
        return out.to(h.dtype)

    # ----------------------------------------------------------------------------- saving
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments plus ``"kind"``."""
        return {"kind": self.kind, **self._init_args()}

    def state_dict(self) -> dict[str, Tensor]:
        """Fitted tensors (contiguous, CPU, copies) plus diagnostics as 0-d float64 tensors."""
        self._require_fitted()
        state = {
            n: getattr(self, n + "_").detach().cpu().contiguous().clone()
            for n in self._state_shapes
        }
        for key, value in (self.diagnostics_ or {}).items():
            state[_DIAG_PREFIX + key] = torch.tensor(value, dtype=torch.float64)
        return state

    def nbytes(self) -> int:
        """Bytes of stored state (the fitted tensors, diagnostics excluded)."""
        self._require_fitted()
        tensors = (getattr(self, n + "_") for n in self._state_shapes)
        return sum(t.numel() * t.element_size() for t in tensors)

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Tensor]) -> TransportMap:
        """Rebuild a fitted map from :meth:`config` and :meth:`state_dict` (exact round trip)."""
        args = dict(config)
        kind = args.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"config has kind={kind!r}; {cls.__name__} needs kind={cls.kind!r}.")
        try:
            obj = cls(**args)
        except TypeError as err:
            raise ValueError(f"bad config for {cls.__name__}: {err}") from None
        sizes: dict[str, int] = {}
        for name, dims in cls._state_shapes.items():
            if name not in state:
                raise FitError(
                    f"cannot restore {cls.__name__}: state lacks {name!r} "
                    f"(has {sorted(k for k in state if not k.startswith(_DIAG_PREFIX))})."
                )
            t = state[name]
            if not isinstance(t, Tensor) or not t.is_floating_point() or t.ndim != len(dims):
                raise FitError(
                    f"cannot restore {cls.__name__}: state[{name!r}] must be a float tensor "
                    f"of shape {dims}, got {getattr(t, 'shape', type(t).__name__)}."
                )
            for dim, size in zip(dims, t.shape):
                if sizes.setdefault(dim, size) != size:
                    raise FitError(
                        f"cannot restore {cls.__name__}: state[{name!r}] has shape "
                        f"{tuple(t.shape)}, inconsistent with {dim}={sizes[dim]}."
                    )
            if not bool(torch.isfinite(t).all()):
                raise FitError(f"cannot restore {cls.__name__}: state[{name!r}] is not finite.")
            setattr(obj, name + "_", t.detach().cpu().contiguous())
        obj.diagnostics_ = {
            k[len(_DIAG_PREFIX) :]: float(v) for k, v in state.items() if k.startswith(_DIAG_PREFIX)
        }
        return obj

    def diagnostics(self) -> dict[str, float]:
        """Fit diagnostics: sample counts, regulariser, condition numbers, rank, W2, …"""
        self._require_fitted()
        return dict(self.diagnostics_ or {})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._init_args().items())
        fitted = f"[fitted, d_model={self.d_model}]" if self.is_fitted else "[unfitted]"
        return f"{type(self).__name__}({args}) {fitted}"
