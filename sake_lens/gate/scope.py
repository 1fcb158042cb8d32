"""An edit's scope gate: fitted in-scope statistics plus a calibrated threshold.

:func:`fit_scope` builds one from an edit: the edit's paraphrases are the in-scope samples
(held-out ones report the TPR and AUROC), and out-of-scope prompts (other subjects, other
relations, generic text, other edits) fix the threshold at the configured false-positive rate.
A gate's output is a boolean (``d < threshold``) or a score in ``[0, 1]``
(``2 ** (-d / threshold)``, 0.5 at the threshold); never NaN.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..collect.activations import collect_activations
from ..errors import GateError
from ..prompts.contexts import FORCED_SOURCE_TEMPLATE
from .bank import StackedStats
from .calibrate import Calibration, auroc, calibrate_threshold
from .config import (
    EMBEDDING,
    MAX_QUOTES,
    MAX_SENTENCES,
    TEXT_VIEWS,
    GateConfig,
    is_embedding,
)
from .embedder import SentenceEmbedder, default_embedder
from .out_of_scope import OutOfScope, default_out_of_scope
from .stats import ScopeStats

if TYPE_CHECKING:
    from ..steer.edit import Edit

__all__ = [
    "Scope",
    "FeatureCache",
    "fit_scope",
    "in_scope_prompts",
    "gate_score",
    "last_sentence",
    "sentences",
    "quoted_spans",
    "prompt_views",
    "view_features",
    "min_distance",
]

log = logging.getLogger(__name__)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after ``.!?`` and at line breaks; never empty).

    Example:
        >>> sentences("Is X in Peru?  Really? X is in")
        ['Is X in Peru?', 'Really?', 'X is in']
    """
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    return parts or [text.strip()]


# A quote opens after a non-word character (so the apostrophe of "can't" opens nothing) and
# closes before one; straight or typographic, single or double.
_QUOTED = re.compile(
    r"(?<![\w'\"])(?:'([^'\n]{3,}?)'|\"([^\"\n]{3,}?)\"|‘([^’\n]{3,}?)’|“([^”\n]{3,}?)”)(?!\w)"
)


def quoted_spans(text: str) -> list[str]:
    """The spans of ``text`` inside quotation marks, of two words or more, in order.

    Example:
        >>> quoted_spans("It can't be. The answer to 'The capital of Peru is' is wrong.")
        ['The capital of Peru is']
    """
    spans = ("".join(m.groups(default="")).strip() for m in _QUOTED.finditer(text))
    return [s for s in spans if len(s.split()) >= 2]


def last_sentence(text: str) -> str:
    """The last sentence of ``text`` (the whole text when it is one sentence).

    Returns:
        The sentence, stripped.

    Example:
        >>> last_sentence("It rained all day. The capital of Peru is")
        'The capital of Peru is'
    """
    return sentences(text)[-1]


def prompt_views(prompts: Sequence[str], feature: str) -> list[list[str]]:
    """The texts a feature embeds for ``prompts``: one list per view (see ``GateConfig.text``).

    Views are aligned lists (view ``j`` holds one text per prompt); for the ``sentences`` view a
    prompt with fewer sentences repeats its full text, which leaves the minimum unchanged.
    """
    prompts = list(prompts)
    if feature == TEXT_VIEWS["last-sentence"]:
        return [[last_sentence(p) for p in prompts]]
    if feature == TEXT_VIEWS["both"]:
        return [prompts, [last_sentence(p) for p in prompts]]
    if feature in (TEXT_VIEWS["sentences"], TEXT_VIEWS["quotes"]):
        split = [s if len(s) > 1 else [] for s in (sentences(p)[-MAX_SENTENCES:] for p in prompts)]
        if feature == TEXT_VIEWS["quotes"]:
            split = [s + quoted_spans(p)[-MAX_QUOTES:] for s, p in zip(split, prompts)]
        width = max((len(s) for s in split), default=0)
        return [prompts] + [
            [s[j] if j < len(s) else p for p, s in zip(prompts, split)] for j in range(width)
        ]
    return [prompts]


def view_features(features: Any, prompts: Sequence[str], feature: str) -> list[Tensor]:
    """The feature rows of every view of ``prompts`` (one ``(n, f)`` tensor per view)."""
    base = EMBEDDING if is_embedding(feature) else feature
    return [features(view, base) for view in prompt_views(prompts, feature)]


def min_distance(bank: StackedStats, views: Sequence[Tensor]) -> Float[Tensor, "batch n"]:
    """Distances to the stacked edits, the smallest over the views of each input."""
    dist = bank.distances(views[0])
    for view in views[1:]:
        dist = torch.minimum(dist, bank.distances(view))
    return dist


def gate_score(dist: Tensor, threshold: Tensor | float) -> Tensor:
    """``2 ** (-dist / threshold)`` in ``[0, 1]`` (0.5 at the threshold, 0 for inf or NaN).

    Returns:
        The scores, same shape as ``dist``.
    """
    s = torch.exp2(-dist.double() / torch.as_tensor(threshold, dtype=torch.float64))
    return torch.nan_to_num(s, nan=0.0).clamp(0.0, 1.0)


class FeatureCache:
    """Features of prompts (sentence embeddings or last-token hidden states), cached per prompt.

    Args:
        model: the TransformerLens model (needed for hidden-state features).
        embedder: the sentence embedder (default: :func:`default_embedder`).
        batch_size: prompts per forward pass for hidden states.
    """

    def __init__(
        self, model: Any = None, embedder: SentenceEmbedder | None = None, batch_size: int = 32
    ):
        self.model = model
        self.embedder = embedder
        self.batch_size = batch_size
        self._hidden: dict[tuple[str, str], Tensor] = {}

    def __call__(self, prompts: Sequence[str], feature: str) -> Float[Tensor, "n f"]:
        prompts = list(prompts)
        if is_embedding(feature):
            self.embedder = self.embedder or default_embedder()
            return self.embedder.embed(prompts)
        if self.model is None:
            raise GateError(
                f"A hidden-state gate at {feature!r} needs the model to compute features; pass "
                "model=... (e.g. EditBook.open(path, model=model))."
            )
        missing = list(dict.fromkeys(p for p in prompts if (feature, p) not in self._hidden))
        if missing:
            acts = collect_activations(self.model, missing, [feature], batch_size=self.batch_size)
            for p, row in zip(missing, acts[feature]):
                self._hidden[(feature, p)] = row
        if not prompts:
            return torch.empty(0, int(self.model.cfg.d_model), dtype=torch.float64)
        return torch.stack([self._hidden[(feature, p)] for p in prompts])


@dataclass
class Scope:
    """The fitted scope gate of one edit.

    Attributes:
        config: the gate's configuration.
        feature: ``"embedding"`` or the hook name whose hidden state is compared.
        stats: the in-scope statistics.
        calibration: the threshold and the calibration report.
        prompts_hash: SHA-256 of the in-scope and out-of-scope prompts used.
    """

    config: GateConfig
    feature: str
    stats: ScopeStats
    calibration: Calibration
    prompts_hash: str = ""

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def distance(self, x: Float[Tensor, "batch f"]) -> Float[Tensor, " batch"]:
        """Distances of feature rows to this edit's in-scope samples (inf for bad rows)."""
        return StackedStats([self.stats]).distances(x)[:, 0]

    def accepts(self, x: Float[Tensor, "batch f"]) -> Bool[Tensor, " batch"]:
        return self.distance(x) < self.threshold

    def score(self, x: Float[Tensor, "batch f"]) -> Float[Tensor, " batch"]:
        """In-scope score in ``[0, 1]``; above 0.5 exactly when the gate accepts."""
        return gate_score(self.distance(x), self.threshold)

    def metadata(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "feature": self.feature,
            "metric": self.stats.metric,
            "tau": self.stats.tau,
            "shrinkage": self.stats.shrinkage,
            "calibration": self.calibration.to_dict(),
            "prompts_hash": self.prompts_hash,
        }

    def state_dict(self) -> dict[str, Tensor]:
        return self.stats.state_dict()

    @classmethod
    def from_saved(cls, meta: dict[str, Any], state: dict[str, Tensor]) -> Any:
        """A saved gate: a :class:`Scope`, or a :class:`~sake_lens.gate.fact.FactScope`."""
        if meta["config"].get("kind") == "fact":
            from .fact import FactScope

            return FactScope.from_saved(meta, state)
        stats = ScopeStats.from_state(meta["metric"], state, meta["tau"], meta["shrinkage"])
        return cls(
            GateConfig.from_dict(meta["config"]),
            meta["feature"],
            stats,
            Calibration.from_dict(meta["calibration"]),
            meta.get("prompts_hash", ""),
        )


def in_scope_prompts(edit: Edit, config: GateConfig) -> list[str]:
    """The prompts whose features define the edit's scope: its paraphrases (filled in).

    Returns:
        The prompts.
    """
    paras = list(edit.prompts.paraphrases) if edit.prompts is not None else [edit.request.text]
    if config.kind == "hidden" and config.include_forced:
        r = edit.request
        paras += [FORCED_SOURCE_TEMPLATE.format(prompt=p, old=r.old, new=r.new) for p in paras]
    return list(dict.fromkeys(paras))


def _hash(*parts: Sequence[str]) -> str:
    blob = json.dumps([list(p) for p in parts], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def fit_scope(
    edit: Edit,
    config: GateConfig | None = None,
    *,
    model: Any = None,
    embedder: SentenceEmbedder | None = None,
    features: FeatureCache | None = None,
    out_of_scope: OutOfScope | Sequence[str] | None = None,
    in_scope: Sequence[str] | None = None,
    neighbours: Sequence[str] = (),
) -> Any:
    """Fit an edit's scope gate and calibrate its threshold.

    A ``kind="fact"`` config (the default) returns a :class:`~sake_lens.gate.fact.FactScope`
    (see :func:`~sake_lens.gate.fact.fit_fact_scope`; ``out_of_scope`` and ``neighbours`` do
    not apply to it: it calibrates against the relation template bank), the other kinds a
    :class:`Scope`. When the edit's subject occurs in none of its prompts, a fact gate cannot
    key on it: the sentence-embedding gate is fitted instead, with a warning.

    Args:
        edit: the fitted edit (its paraphrases are the in-scope samples).
        config: the gate (default :class:`GateConfig`: sentence embedding, Euclidean to mean).
        model: the model (hidden-state gates only).
        embedder: the sentence embedder (embedding gates; default: the bundled MiniLM).
        features: a shared :class:`FeatureCache` (overrides ``model``/``embedder``).
        out_of_scope: out-of-scope prompts (default: :func:`default_out_of_scope`).
        in_scope: held-out in-scope prompts for the report (default: hold out
            ``config.holdout`` of the paraphrases, refitting on all of them afterwards).
        neighbours: other edits' prompts, added to the default out-of-scope prompts.

    Returns:
        The edit's fitted scope gate, with its calibration.

    Raises:
        GateError: no features (missing model for a hidden gate), non-finite features, or no
            out-of-scope prompts to calibrate against.
    """
    config = config or GateConfig()
    features = features or FeatureCache(model, embedder)
    if config.kind == "fact":
        from .fact import fit_fact_scope, relation_views

        subject = edit.request.subject
        if any(relation_views(p, subject) for p in in_scope_prompts(edit, config)):
            return fit_fact_scope(edit, config, embedder=features.embedder, in_scope=in_scope)
        log.warning(
            "Edit %s: its subject %r occurs in none of its prompts, so a fact gate cannot key "
            "on it; fitted the sentence-embedding gate instead (GateConfig(kind='embedding')).",
            edit.id,
            subject,
        )
        config = dataclasses.replace(config, kind="embedding")
    feature = config.feature(edit.site.hook)
    paras = in_scope_prompts(edit, config)
    rng = random.Random(f"{config.seed}|{edit.id}")
    if out_of_scope is None:
        neigh = list(dict.fromkeys(neighbours))
        if len(neigh) > config.n_neighbours:
            neigh = rng.sample(neigh, config.n_neighbours)
        oos = default_out_of_scope(
            edit.request,
            n_subjects=config.n_subjects,
            n_relations=config.n_relations,
            n_generic=config.n_generic,
            neighbours=neigh,
            seed=config.seed,
        )
    elif isinstance(out_of_scope, OutOfScope):
        oos = out_of_scope
    else:
        oos = OutOfScope.of(list(out_of_scope), "given")
    in_set = set(paras)
    keep = [i for i, p in enumerate(oos.prompts) if p not in in_set]
    oos = OutOfScope(tuple(oos.prompts[i] for i in keep), tuple(oos.kinds[i] for i in keep))

    def fit(prompts: Sequence[str]) -> ScopeStats:  # in-scope samples: the first view
        x = view_features(features, prompts, feature)[0]
        return ScopeStats.fit(
            x, config.metric, shrinkage=config.shrinkage, max_rank=config.max_rank
        )

    def distances(stats: ScopeStats, views: Sequence[Tensor]) -> Tensor:
        return min_distance(StackedStats([stats]), views)[:, 0]

    stats = fit(paras)
    x_out = view_features(features, oos.prompts, feature)
    out_d = distances(stats, x_out)
    cal = calibrate_threshold(out_d, config.fpr, kinds=oos.kinds, threshold=config.threshold)

    # The report: held-out in-scope prompts against the out-of-scope ones.
    held: list[str] = list(in_scope or [])
    report_stats = stats
    if not held:
        own = edit.request.text
        candidates = [p for p in paras if p != own]
        n_held = round(config.holdout * len(paras))
        if n_held >= 1 and len(paras) - n_held >= 2:
            held = rng.sample(candidates, min(n_held, len(candidates)))
            report_stats = fit([p for p in paras if p not in set(held)])
    if held:
        held_d = distances(report_stats, view_features(features, held, feature))
        out_r = distances(report_stats, x_out)
        thr_r = calibrate_threshold(out_r, config.fpr, threshold=config.threshold).threshold
        cal = dataclasses.replace(
            cal,
            tpr=float((held_d < thr_r).double().mean()),
            auroc=auroc(held_d, out_r),
            n_in=len(held),
        )
    if not cal.guaranteed:
        log.warning(
            "Edit %s: only %d out-of-scope prompts; the gate's false-positive rate %.2g is not "
            "guaranteed (need at least %d).",
            edit.id,
            len(oos),
            config.fpr,
            math.ceil(1 / config.fpr) - 1,
        )
    return Scope(config, feature, stats, cal, _hash(paras, oos.prompts, oos.kinds, held))
