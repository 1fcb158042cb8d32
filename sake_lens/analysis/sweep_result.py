"""The result of a layer sweep: one :class:`LayerResult` per site, the recommended site and the
rule that chose it, saved as strict JSON (``sweep.json``)."""

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

__all__ = ["RECOMMENDATION_RULE", "LayerResult", "SweepResult", "rank_key"]

#: How the recommended site is chosen (also written in the figure and the JSON).
RECOMMENDATION_RULE = (
    "recommended = the site with the highest score = mean(efficacy, generalisation, "
    "specificity); ties (within 1e-9) go to the higher mean P(new object) on the edit and "
    "held-out prompts, then to the smaller map condition number cond_map"
)


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    return float(x) if math.isfinite(x) else str(float(x))  # "inf" / "-inf" / "nan", explicit


def _from_json_float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class LayerResult:
    """What the edit fitted at one site does (rates in [0, 1])."""

    site: str
    layer: int | None
    efficacy: float
    generalisation: float
    specificity: float
    p_new_edit: float
    p_new: float
    prob_efficacy: float
    neighbour_kl: float
    wasserstein2: float
    wasserstein2_relative: float
    cond_map: float
    diagnostics: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``"12"`` for ``blocks.12.*``, ``"final"`` for the final normalised stream."""
        return "final" if self.layer is None else str(self.layer)

    @property
    def score(self) -> float:
        """mean(efficacy, generalisation, specificity)."""
        return (self.efficacy + self.generalisation + self.specificity) / 3

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("wasserstein2", "wasserstein2_relative", "cond_map"):
            data[key] = _json_float(data[key])
        data["diagnostics"] = {k: _json_float(v) for k, v in self.diagnostics.items()}
        data["label"] = self.label
        data["score"] = self.score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerResult:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        for key in ("wasserstein2", "wasserstein2_relative", "cond_map"):
            kw[key] = _from_json_float(kw[key])
        kw["diagnostics"] = {k: _from_json_float(v) for k, v in kw.get("diagnostics", {}).items()}
        return cls(**kw)


def rank_key(r: LayerResult) -> tuple[float, float, float]:
    """Sort key of :data:`RECOMMENDATION_RULE`: the smallest key is recommended."""
    cond = r.cond_map if math.isfinite(r.cond_map) else math.inf
    return (-round(r.score, 9), -r.p_new, cond)


@dataclass
class SweepResult:
    """A layer sweep: one :class:`LayerResult` per site and the recommended site.

    ``edits`` (site -> fitted :class:`~sake_lens.steer.edit.Edit`) is kept in memory only, so
    the recommended edit can be used right away: ``result.edit()``.
    """

    request: EditRequest
    model_id: str
    config: EditConfig
    layers: list[LayerResult]
    recommended: str
    rule: str
    gated: bool
    purity: float
    source_purity: float
    n_source: int
    n_target: int
    prompts: dict[str, list[str]]
    baseline: dict[str, Any]
    timings: dict[str, float]
    evaluation: str = "full"
    versions: dict[str, str] = field(default_factory=library_versions)
    edits: dict[str, Edit] = field(default_factory=dict, repr=False, compare=False)

    @property
    def best(self) -> LayerResult:
        """The recommended site's result."""
        return next(r for r in self.layers if r.site == self.recommended)

    def result(self, site: str) -> LayerResult:
        for r in self.layers:
            if r.site == site:
                return r
        raise SiteError(f"the sweep has no site {site!r}; it has {[r.site for r in self.layers]}.")

    def edit(self, site: str | None = None) -> Edit:
        """The edit fitted at ``site`` (default: the recommended one), when still in memory."""
        site = site or self.recommended
        if site not in self.edits:
            raise SakeLensError(
                f"no fitted edit for {site!r} in this result (edits are not saved to JSON); "
                "run layer_sweep again, or fit_edit(model, request, config=EditConfig(site=…))."
            )
        return self.edits[site]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "sake_lens.sweep/1",
            "request": self.request.to_dict(),
            "model_id": self.model_id,
            "config": self.config.to_dict(),
            "recommended": self.recommended,
            "rule": self.rule,
            "gated": self.gated,
            "purity": self.purity,
            "source_purity": self.source_purity,
            "n_source": self.n_source,
            "n_target": self.n_target,
            "layers": [r.to_dict() for r in self.layers],
            "prompts": self.prompts,
            "baseline": self.baseline,
            "timings": self.timings,
            "evaluation": self.evaluation,
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        if data.get("format") != "sake_lens.sweep/1":
            raise SakeLensError(
                f"not a sake_lens sweep (format {data.get('format')!r}); expected the sweep.json "
                "that `sake-lens sweep` or SweepResult.save writes."
            )
        return cls(
            request=EditRequest.from_dict(data["request"]),
            model_id=data["model_id"],
            config=EditConfig.from_dict(data["config"]),
            layers=[LayerResult.from_dict(r) for r in data["layers"]],
            recommended=data["recommended"],
            rule=data["rule"],
            gated=data["gated"],
            purity=data["purity"],
            source_purity=data["source_purity"],
            n_source=data["n_source"],
            n_target=data["n_target"],
            prompts=data["prompts"],
            baseline=data["baseline"],
            timings=data["timings"],
            evaluation=data.get("evaluation", "full"),
            versions=data.get("versions", {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write ``sweep.json`` into the folder ``path`` (created); returns the file."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "sweep.json"
        out.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> SweepResult:
        """Read a sweep from a folder holding ``sweep.json`` (or the file itself)."""
        path = Path(path)
        file = path / "sweep.json" if path.is_dir() else path
        if not file.is_file():
            raise SakeLensError(f"no sweep at {file}; run `sake-lens sweep --out {path}` first.")
        return cls.from_dict(json.loads(file.read_text()))
