r"""2-D projections of activation clouds: PCA of their union, or the map's own directions.

``pca``: the top two principal directions of the union of the groups shown (centred by its
mean, computed with a thin SVD in float64). ``displacement``: the first axis is the mean-shift
direction $(\mu_t - \mu_s)/\lVert\mu_t - \mu_s\rVert$, the second the direction in which the
map's displacements $T(h) - h$ of the source points vary most, orthogonal to the first — the two
directions in which the edit moves points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import SakeLensError
from ..transport import TransportMap

__all__ = ["Projection", "PROJECTIONS", "fit_projection", "as_float64", "displacement_directions"]

PROJECTIONS = ("pca", "displacement")


@dataclass(frozen=True)
class Projection:
    """An affine projection ``x -> (x - centre) @ basis`` to a few named axes."""

    centre: Float[Tensor, " d"]
    basis: Float[Tensor, "d k"]
    axis_titles: tuple[str, ...]

    def __call__(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n k"]:
        return (as_float64(x) - self.centre) @ self.basis  # (n, d) @ (d, k) -> (n, k)


def as_float64(x: Tensor | object, name: str = "activations") -> Tensor:
    """A 2-D float64 CPU tensor, with a clear error for anything else."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SakeLensError(f"{name} must be an (n, d) tensor or array: {exc}") from None
    x = x.detach().to("cpu", torch.float64)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise SakeLensError(f"{name} must be an (n, d) matrix; got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        raise SakeLensError(f"{name} contain NaN or inf; collect them again (or drop those rows).")
    return x


def _unit(v: Tensor) -> Tensor | None:
    norm = v.norm()
    return v / norm if norm > 1e-12 * max(1.0, float(v.abs().max())) else None


def _top_directions(x: Tensor, k: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top ``k`` principal directions of ``x`` (rows), orthogonal to ``exclude``'s columns."""
    xc = x - x.mean(0)
    if exclude is not None:
        xc = xc - (xc @ exclude) @ exclude.T  # remove the excluded span
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)  # vh: (min(n, d), d)
    var = s.square()
    total = float(var.sum())
    ratio = var / total if total > 0 else torch.zeros_like(var)
    return vh[:k].T, ratio[:k]  # (d, k), (k,)


def displacement_directions(
    map: TransportMap, source: Float[Tensor, "n d"], k: int = 2
) -> tuple[Float[Tensor, "d k"], list[str]]:
    """The ``k`` main directions in which ``map`` moves ``source``, with names.

    The first is the mean-shift direction; the others are the top principal directions of the
    displacements ``T(h) - h`` orthogonal to the ones before.
    """
    src = as_float64(source, "source activations")
    disp = as_float64(map.displacement(src), "displacements")
    first = _unit(disp.mean(0))
    dirs: list[Tensor] = []
    names: list[str] = []
    if first is not None:
        dirs.append(first)
        names.append("mean-shift direction")
    if len(dirs) < k:
        exclude = torch.stack(dirs, 1) if dirs else None
        more, _ = _top_directions(disp, k - len(dirs), exclude)
        for j in range(more.shape[1]):
            v = _unit(more[:, j])
            if v is not None:
                dirs.append(v)
                names.append(f"displacement direction {len(dirs)}")
    if not dirs:
        raise SakeLensError(
            "the map does not move the source points (zero displacement); nothing to project on."
        )
    return torch.stack(dirs, 1), names


def fit_projection(
    groups: Mapping[str, Tensor],
    method: str = "pca",
    *,
    map: TransportMap | None = None,
    source_key: str = "source",
) -> Projection:
    """Fit a 2-D projection to the union of ``groups`` (name -> ``(n, d)`` activations).

    Args:
        groups: the clouds to show; PCA is fitted on all of them together.
        method: ``"pca"`` or ``"displacement"`` (needs ``map`` and a ``source`` group).
        map: the fitted transport map (for ``"displacement"``).

    Returns:
        The fitted projection; apply it to ``(n, d)`` activations.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"Unknown projection {method!r}; allowed: {PROJECTIONS}.")
    clouds = [as_float64(x, f"{name} activations") for name, x in groups.items()]
    if not clouds:
        raise SakeLensError("no activations to project; pass at least one group.")
    widths = {c.shape[1] for c in clouds}
    if len(widths) != 1:
        raise SakeLensError(
            f"the groups have different widths {sorted(widths)}; project activations of one site."
        )
    union = torch.cat(clouds)  # (N, d)
    centre = union.mean(0)
    if method == "pca":
        if union.shape[0] < 2:
            raise SakeLensError("PCA needs at least two points; pass more activations.")
        basis, ratio = _top_directions(union, 2)
        titles = tuple(f"PC{j + 1} ({100 * float(r):.1f}% var.)" for j, r in enumerate(ratio))
        if basis.shape[1] < 2:  # a single point direction: pad with a zero axis
            basis = torch.cat([basis, torch.zeros_like(basis)], 1)
            titles = (titles[0], "PC2 (0% var.)")
        return Projection(centre, basis, titles)
    if map is None or source_key not in groups:
        raise SakeLensError(
            "projection='displacement' needs the fitted map and a 'source' group; pass map=… "
            "or use projection='pca'."
        )
    basis, names = displacement_directions(map, groups[source_key], 2)
    if basis.shape[1] < 2:
        rest, _ = _top_directions(union, 1, basis)
        basis = torch.cat([basis, rest], 1)
        names = [*names, "top variance direction ⟂"]
    return Projection(centre, basis, tuple(names))
