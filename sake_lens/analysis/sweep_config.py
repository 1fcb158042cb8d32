"""The settings of a layer sweep, in one place for the Python API and ``sake-lens sweep``.

A sweep has two kinds of settings. *How each edit is fitted and applied* is an
:class:`~sake_lens.steer.edit.EditConfig` (its defaults are the library's defaults: the sweep
never keeps its own regulariser or strength). *What the sweep visits and how much evidence it
gathers* is a :class:`SweepConfig`: the sites, the alphas and regularisers to try, how many
edits, and how many prompts of each kind per edit. ``SweepConfig.fast()`` is the small variant
that ``SAKE_LENS_FAST=1`` or ``--fast`` selects.

Several edits are swept, not one: the relation template bank has about 16 templates per
relation, so one edit gives a handful of held-out prompts, and a difference of one prompt
would decide. The default edits (``resources/sweep_edits.yaml``) are facts the default model
knows; the edit asked for comes first.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import SakeLensError
from ..prompts.request import EditRequest
from ..steer.edit import EditConfig
from ..steer.workflow import DEFAULT_N_PARAPHRASES

__all__ = [
    "SweepConfig",
    "SweepConfigError",
    "default_edits",
    "sweep_requests",
    "fast_mode",
    "FAST_ENV",
]

#: The environment variable that selects :meth:`SweepConfig.fast` (notebooks, quick checks).
FAST_ENV = "SAKE_LENS_FAST"

_DEFAULT = EditConfig()


class SweepConfigError(SakeLensError, ValueError):
    """A sweep setting is out of range (the message names it and the fix)."""


def fast_mode() -> bool:
    """Whether ``SAKE_LENS_FAST`` asks for the small sweep (set and not ``0``)."""
    return os.environ.get(FAST_ENV, "") not in ("", "0")


def _default_alphas() -> tuple[float, ...]:
    """0.4, 1 and 1.6 times the default strength (1, 2.5, 4): below, at and above it."""
    a = _DEFAULT.alpha
    return tuple(sorted({round(a * 0.4, 3), a, min(4.0, round(a * 1.6, 3))}))


@dataclass(frozen=True)
class SweepConfig:
    """What a layer sweep visits and how much evidence it gathers.

    Attributes:
        layers: block indices to sweep (``None``: every block).
        site_kinds: hook kinds per block (``resid_post``, ``attn_out``, ``mlp_out``).
        include_final: also sweep the final normalised stream (the paper's site).
        alphas: steering strengths to try; the map is fitted once per site and regulariser,
            and each alpha only scales its displacement (no refit).
        regs: regularisers to try (one fit per site and value).
        n_edits: edits swept: the requested one(s) first, then the default companions.
        n_paraphrases: fitting paraphrases per edit (as :func:`~sake_lens.steer.workflow.make_edit`).
        n_held_out: held-out paraphrases per edit (whole templates, never fitted on).
        n_relation: locality probes per edit: the same subject through other relations
            (:func:`~sake_lens.evaluate.locality.relation_probes`).
        n_neighbours: locality probes per edit: other subjects, same relation.
        n_bootstrap: bootstrap resamples (by edit) behind every interval.
        confidence: the intervals' coverage.
        seed: draws the prompts and the bootstrap.
    """

    layers: tuple[int, ...] | None = None
    site_kinds: tuple[str, ...] = ("resid_post",)
    include_final: bool = True
    alphas: tuple[float, ...] = field(default_factory=_default_alphas)
    regs: tuple[float, ...] = (_DEFAULT.reg,)
    n_edits: int = 10
    n_paraphrases: int = DEFAULT_N_PARAPHRASES
    n_held_out: int = 6
    n_relation: int = 5
    n_neighbours: int = 5
    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(sorted({int(x) for x in self.layers})))
        object.__setattr__(self, "site_kinds", tuple(self.site_kinds))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "regs", tuple(float(r) for r in self.regs))
        if not self.alphas or not self.regs:
            raise SweepConfigError("a sweep needs at least one alpha and one reg; pass some.")
        for a in self.alphas:
            if not 0.0 < a <= 4.0:
                raise SweepConfigError(f"alpha {a:g} is out of range; use values in (0, 4].")
        for r in self.regs:
            if not r > 0:
                raise SweepConfigError(f"reg {r:g} is out of range; use values > 0.")
        counts = {
            "n_edits": (self.n_edits, 1),
            "n_paraphrases": (self.n_paraphrases, 2),
            "n_held_out": (self.n_held_out, 1),
            "n_relation": (self.n_relation, 0),
            "n_neighbours": (self.n_neighbours, 0),
            "n_bootstrap": (self.n_bootstrap, 100),
        }
        for name, (value, lo) in counts.items():
            if not isinstance(value, int) or value < lo:
                raise SweepConfigError(f"{name} must be a whole number >= {lo}, got {value!r}.")
        if self.n_relation + self.n_neighbours < 1:
            raise SweepConfigError("a sweep needs locality probes: n_relation + n_neighbours >= 1.")
        if not 0.5 <= self.confidence < 1.0:
            raise SweepConfigError(f"confidence must be in [0.5, 1), got {self.confidence!r}.")

    @classmethod
    def fast(cls, **changes: Any) -> SweepConfig:
        """The small sweep (``SAKE_LENS_FAST=1``, ``--fast``): 3 edits, 4 late sites, 2
        alphas, fewer prompts — minutes instead of tens of minutes, wider intervals."""
        base = cls(
            layers=(18, 24, 27, 29),
            alphas=(1.0, _DEFAULT.alpha),
            n_edits=3,
            n_paraphrases=8,
            n_held_out=4,
            n_relation=3,
            n_neighbours=3,
            n_bootstrap=1000,
        )
        return dataclasses.replace(base, **changes)

    @classmethod
    def default(cls, *, fast: bool | None = None, **changes: Any) -> SweepConfig:
        """``SweepConfig(**changes)``, or the fast one when ``fast`` (default: ``SAKE_LENS_FAST``)."""
        use_fast = fast_mode() if fast is None else fast
        return cls.fast(**changes) if use_fast else cls(**changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("layers", "site_kinds", "alphas", "regs"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        for key in ("site_kinds", "alphas", "regs"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if kw.get("layers") is not None:
            kw["layers"] = tuple(kw["layers"])
        return cls(**kw)

    def summary(self) -> str:
        """The key settings in a few words (figure titles, page headers)."""
        alphas = ", ".join(f"{a:g}" for a in self.alphas)
        regs = ", ".join(f"{r:g}" for r in self.regs)
        return f"alpha {alphas}; reg {regs}; {self.n_edits} edits"


@lru_cache(maxsize=1)
def _bundled_edits() -> tuple[EditRequest, ...]:
    import yaml

    text = resources.files(__package__).joinpath("resources/sweep_edits.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return tuple(EditRequest.from_dict(e) for e in raw["edits"])


def default_edits() -> list[EditRequest]:
    """The bundled companion edits (``resources/sweep_edits.yaml``), in order."""
    return list(_bundled_edits())


def _key(request: EditRequest) -> tuple[str, str]:
    return request.subject.casefold(), request.prompt.casefold()


def sweep_requests(
    requests: EditRequest | Sequence[EditRequest] | None, n_edits: int
) -> list[EditRequest]:
    """The edits a sweep fits: ``requests`` first, then default companions up to ``n_edits``.

    A companion with the same subject and prompt as a requested edit is skipped. More
    ``requests`` than ``n_edits`` are all kept (the count is a floor for the companions).
    """
    given = [requests] if isinstance(requests, EditRequest) else list(requests or [])
    seen = {_key(r) for r in given}
    out = list(given)
    for r in default_edits():
        if len(out) >= n_edits:
            break
        if _key(r) not in seen:
            out.append(r)
            seen.add(_key(r))
    if len(out) < n_edits:
        raise SweepConfigError(
            f"n_edits {n_edits} exceeds the {len(out)} edits available (given and bundled "
            f"companions); pass more edits or n_edits {len(out)} or less."
        )
    return out
