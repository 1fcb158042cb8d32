"""Transport maps: fit source → target activation distributions and steer with $T(h)$.

The ablation ladder, simplest first: :class:`MeanShiftMap` (ActAdd-like translation),
:class:`DiagonalMap` (per-dimension Gaussian map, Linear-AcT-like), :class:`GaussianMap` with
``rank=k`` (low-rank) and :class:`GaussianMap` (the full Bures–Wasserstein Monge map of SAKE).
"""

from .base import TransportMap as TransportMap
from .diagonal import DiagonalMap as DiagonalMap
from .factory import MAP_KINDS as MAP_KINDS
from .factory import make_map as make_map
from .factory import map_from_config as map_from_config
from .gaussian import GaussianMap as GaussianMap
from .mean_shift import MeanShiftMap as MeanShiftMap

__all__ = [
    "TransportMap",
    "GaussianMap",
    "DiagonalMap",
    "MeanShiftMap",
    "MAP_KINDS",
    "make_map",
    "map_from_config",
]
