"""The result of a layer sweep: per-edit outcomes at every (site, alpha, reg), their summaries
with bootstrap intervals by edit, the recommendation with its reason, and the sweep's full
configuration and library versions, saved as strict JSON (``sweep.json``)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import library_versions
from ..errors import SakeLensError, SiteError
from ..prompts.request import EditRequest
from ..steer.edit import Edit, EditConfig
from .sweep_config import SweepConfig

__all__ = [
    "FORMAT",
    "SiteRecord",
    "Stat",
    "SiteSummary",
    "Recommendation",
    "SweepResult",
    "Candidate",
    "site_label",
]

FORMAT = "sake_lens.sweep/2"

#: A swept setting: (site, alpha, reg).
Candidate = tuple[str, float, float]


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    return float(x) if math.isfinite(x) else str(float(x))  # "inf" / "nan", explicit


def _from_json_float(x: Any) -> float | None:
    return None if x is None else float(x)


def site_label(site: str, layer: int | None) -> str:
    """``"12"`` for ``blocks.12.hook_resid_post``, ``"12 mlp_out"`` for other kinds at block 12,
    ``"final"`` for the final normalised stream."""
    if layer is None:
        return "final"
    kind = site.rsplit(".hook_", 1)[-1]
    return str(layer) if kind == "resid_post" else f"{layer} {kind}"


@dataclass(frozen=True)
class SiteRecord:
    """What one edit fitted at one (site, alpha, reg) does: counts with the default fact gate on
    (``*_on``: a prompt the gate rejects keeps the unedited model's output) and off (``*_off``:
    every prompt steered).

    ``efficacy_*`` is 0 or 1 (the edit prompt); ``held_*`` counts held-out paraphrases that say
    the new object; ``relation_*`` and ``neighbour_*`` count locality probes whose next token is
    the unedited model's.
    """

    edit: int
    site: str
    layer: int | None
    alpha: float
    reg: float
    n_held: int
    n_relation: int
    n_neighbour: int
    efficacy_on: float
    efficacy_off: float
    held_on: int
    held_off: int
    relation_on: int
    relation_off: int
    neighbour_on: int
    neighbour_off: int
    p_new: float
    fit_s: float
    w2: float
    w2_relative: float
    cond_map: float

    @property
    def candidate(self) -> Candidate:
        return (self.site, self.alpha, self.reg)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("w2", "w2_relative", "cond_map", "p_new"):
            data[key] = _json_float(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteRecord:
        kw = dict(data)
        for key in ("w2", "w2_relative", "cond_map", "p_new"):
            kw[key] = _from_json_float(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class Stat:
    """A summary over edits: the estimate, its bootstrap interval (resampling edits), the
    smallest and largest per-edit value (the spread), and the prompts behind it."""

    value: float
    lo: float
    hi: float
    edit_min: float
    edit_max: float
    n: int

    def overlaps(self, bound: float) -> bool:
        """Whether the interval reaches ``bound`` from below (``hi >= bound``)."""
        return self.hi >= bound - 1e-12

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stat:
        def num(key: str) -> float:
            return float(data[key])  # "nan" and "inf" are written as strings

        return cls(
            num("value"), num("lo"), num("hi"), num("edit_min"), num("edit_max"), int(data["n"])
        )


@dataclass(frozen=True)
class SiteSummary:
    """Every edit's outcome at one (site, alpha, reg), summarised.

    ``stats`` maps ``"<metric>_<on|off>"`` to a :class:`Stat`, for the metrics ``efficacy``,
    ``generalisation``, ``relation``, ``neighbour``, ``locality`` (relation and neighbour probes
    together) and ``score`` (the mean of efficacy, generalisation and locality per edit).
    ``p_new``, ``fit_s``, ``w2_relative`` and ``cond_map`` are means over edits.
    """

    site: str
    layer: int | None
    alpha: float
    reg: float
    n_edits: int
    stats: dict[str, Stat]
    p_new: float
    fit_s: float
    w2_relative: float
    cond_map: float

    @property
    def candidate(self) -> Candidate:
        return (self.site, self.alpha, self.reg)

    @property
    def label(self) -> str:
        return site_label(self.site, self.layer)

    def __getitem__(self, key: str) -> Stat:
        return self.stats[key]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["stats"] = {k: s.to_dict() for k, s in self.stats.items()}
        for key in ("p_new", "fit_s", "w2_relative", "cond_map"):
            data[key] = _json_float(data[key])
        data["label"] = self.label
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["stats"] = {k: Stat.from_dict(v) for k, v in kw["stats"].items()}
        for key in ("p_new", "fit_s", "w2_relative", "cond_map"):
            kw[key] = _from_json_float(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class Recommendation:
    """The chosen (site, alpha, reg), the step of the rule that decided, and why, in words.

    ``tied`` lists the settings whose score interval reached the best lower bound;
    ``tied_secondary`` those of them still tied after the secondary criterion.
    """

    site: str
    alpha: float
    reg: float
    decided_by: str
    reason: str
    rule: str
    tied: list[Candidate] = field(default_factory=list)
    tied_secondary: list[Candidate] = field(default_factory=list)

    @property
    def candidate(self) -> Candidate:
        return (self.site, self.alpha, self.reg)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tied"] = [list(c) for c in self.tied]
        data["tied_secondary"] = [list(c) for c in self.tied_secondary]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        kw = dict(data)
        kw["tied"] = [tuple(c) for c in kw.get("tied", [])]
        kw["tied_secondary"] = [tuple(c) for c in kw.get("tied_secondary", [])]
        return cls(**kw)


@dataclass
class SweepResult:
    """A layer sweep over several edits, sites, alphas and regularisers.

    ``edits`` (site -> fitted :class:`~sake_lens.steer.edit.Edit` of the *first* request, at
    the recommended reg and alpha) is kept in memory only, so the recommended edit can be used
    right away: ``result.edit()``.
    """

    requests: list[EditRequest]
    model_id: str
    config: SweepConfig
    edit_config: EditConfig
    records: list[SiteRecord]
    summaries: list[SiteSummary]
    recommendation: Recommendation
    per_edit: list[dict[str, Any]]
    timings: dict[str, float]
    evaluation: str = "kv-cache"
    versions: dict[str, str] = field(default_factory=library_versions)
    edits: dict[str, Edit] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ reading
    @property
    def request(self) -> EditRequest:
        """The edit the sweep was run for (the first; the others are companions)."""
        return self.requests[0]

    @property
    def recommended(self) -> str:
        """The recommended site's hook name."""
        return self.recommendation.site

    @property
    def rule(self) -> str:
        return self.recommendation.rule

    @property
    def best(self) -> SiteSummary:
        """The recommended setting's summary."""
        return self.summary(*self.recommendation.candidate)

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(s.site for s in self.summaries))

    def summary(
        self, site: str, alpha: float | None = None, reg: float | None = None
    ) -> SiteSummary:
        """The summary at ``site`` (default alpha and reg: the recommended ones)."""
        alpha = self.recommendation.alpha if alpha is None else alpha
        reg = self.recommendation.reg if reg is None else reg
        for s in self.summaries:
            if s.site == site and math.isclose(s.alpha, alpha) and math.isclose(s.reg, reg):
                return s
        raise SiteError(
            f"the sweep has no setting {site!r} at alpha {alpha:g}, reg {reg:g}; it has the "
            f"sites {self.sites}, alphas {list(self.config.alphas)} and regs "
            f"{list(self.config.regs)}."
        )

    def at(self, alpha: float | None = None, reg: float | None = None) -> list[SiteSummary]:
        """Every site's summary at one alpha and reg (default: the recommended ones)."""
        return [self.summary(site, alpha, reg) for site in self.sites]

    def edit(self, site: str | None = None) -> Edit:
        """The first edit fitted at ``site`` (default: the recommended one) with the
        recommended alpha and reg, while the result is still in memory."""
        site = site or self.recommended
        if site not in self.edits:
            raise SakeLensError(
                f"no fitted edit for {site!r} in this result (edits are not saved to JSON); "
                "run layer_sweep again, or fit_edit(model, request, config=EditConfig(site=…))."
            )
        return self.edits[site]

    def title(self) -> str:
        """What was swept, with its key settings, for figure and page titles."""
        r = self.request
        return (
            f"Layer sweep: {r.subject}, {r.old} → {r.new} (+{len(self.requests) - 1} edits; "
            f"{self.config.summary().rsplit(';', 1)[0]})"
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "requests": [r.to_dict() for r in self.requests],
            "model_id": self.model_id,
            "config": self.config.to_dict(),
            "edit_config": self.edit_config.to_dict(),
            "recommendation": self.recommendation.to_dict(),
            "summaries": [s.to_dict() for s in self.summaries],
            "records": [r.to_dict() for r in self.records],
            "per_edit": self.per_edit,
            "timings": self.timings,
            "evaluation": self.evaluation,
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        if data.get("format") != FORMAT:
            raise SakeLensError(
                f"not a sake_lens sweep of this version (format {data.get('format')!r}, "
                f"expected {FORMAT!r}); run `sake-lens sweep` again to write one."
            )
        return cls(
            requests=[EditRequest.from_dict(r) for r in data["requests"]],
            model_id=data["model_id"],
            config=SweepConfig.from_dict(data["config"]),
            edit_config=EditConfig.from_dict(data["edit_config"]),
            records=[SiteRecord.from_dict(r) for r in data["records"]],
            summaries=[SiteSummary.from_dict(s) for s in data["summaries"]],
            recommendation=Recommendation.from_dict(data["recommendation"]),
            per_edit=data["per_edit"],
            timings=data["timings"],
            evaluation=data.get("evaluation", "full"),
            versions=data.get("versions", {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``sweep.json`` into the folder ``path`` (created); returns the file."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "sweep.json"
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        out.write_text(text + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> SweepResult:
        """Read a sweep from a folder holding ``sweep.json`` (or the file itself)."""
        path = Path(path)
        file = path / "sweep.json" if path.is_dir() else path
        if not file.is_file():
            raise SakeLensError(f"no sweep at {file}; run `sake-lens sweep --out {path}` first.")
        return cls.from_dict(json.loads(file.read_text()))
