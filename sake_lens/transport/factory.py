"""Build transport maps by kind, and restore them from a saved config and state."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import TransportMap
from .diagonal import DiagonalMap
from .gaussian import GaussianMap
from .mean_shift import MeanShiftMap

__all__ = ["MAP_KINDS", "make_map", "map_from_config"]

#: The map classes by ``kind``, in ablation order (simplest first).
MAP_KINDS: dict[str, type[TransportMap]] = {
    cls.kind: cls for cls in (MeanShiftMap, DiagonalMap, GaussianMap)
}


def _lookup(kind: object) -> type[TransportMap]:
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown transport map kind {kind!r}; allowed kinds: {list(MAP_KINDS)}.")
    return MAP_KINDS[kind]  # type: ignore[index]


def make_map(kind: str, **kwargs: Any) -> TransportMap:
    """Build an unfitted map of ``kind`` ("gaussian", "diagonal" or "mean-shift").

    Returns:
        The unfitted map.

    Example:
        >>> make_map("gaussian", reg=0.1)
        GaussianMap(reg=0.1, rank=None, method='auto', storage_dtype='float32') [unfitted]
    """
    cls = _lookup(kind)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for make_map({kind!r}, ...): {err}") from None


def map_from_config(config: dict[str, Any], state: dict[str, Tensor]) -> TransportMap:
    """Restore a fitted map from ``map.config()`` and ``map.state_dict()`` (dispatch on kind).

    Returns:
        The fitted map.

    Example:
        >>> import torch
        >>> m = make_map("mean-shift").fit(torch.zeros(2, 3), torch.ones(2, 3))
        >>> map_from_config(m.config(), m.state_dict()).transform(torch.zeros(3))
        tensor([1., 1., 1.])
    """
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"config must be a dict with a 'kind' key, got {config!r}.")
    return _lookup(config["kind"]).from_state(config, state)
