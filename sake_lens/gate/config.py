"""How a scope gate measures distance and where its threshold comes from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "GateConfig",
    "GATE_KINDS",
    "GATE_METRICS",
    "EMBEDDING",
    "TEXT_VIEWS",
    "MAX_SENTENCES",
    "is_embedding",
]

#: ``fact``: the edit's subject named in the prompt *and* the prompt, subject masked, nearer
#: the edit's relation than any other (:mod:`sake_lens.gate.fact`; the default);
#: ``embedding``: the prompt's sentence embedding (the paper); ``hidden``: the model's hidden
#: state at the prompt's last token (at the edit's site or at ``layer``).
GATE_KINDS = ("fact", "embedding", "hidden")
#: ``euclidean``: distance to the mean of the edit's source samples (the paper); ``nearest``:
#: distance to the nearest source sample; ``cosine``: 1 - cosine to the mean; ``mahalanobis``:
#: Mahalanobis distance under a shrinkage covariance (low-rank + isotropic).
GATE_METRICS = ("euclidean", "nearest", "cosine", "mahalanobis")
#: Feature key of the sentence-embedding gate (hidden gates use their hook name).
EMBEDDING = "embedding"
#: What the sentence-embedding gate embeds: the ``full`` prompt, its ``last-sentence`` (the
#: question, without an unrelated lead-in), ``both`` (the smaller of the two distances), or
#: ``sentences`` (the smallest over the full prompt and each of its last
#: :data:`MAX_SENTENCES` sentences: a follow-up that quotes the fact, such as "X is Y? Really?
#: ... Reconsider", stays in scope), or ``quotes`` (``sentences`` plus every quoted span, so
#: "Reconsider the answer to 'The capital of X is'" is measured on the quoted statement).
TEXT_VIEWS = {
    "full": EMBEDDING,
    "last-sentence": "embedding@last",
    "both": "embedding+last",
    "sentences": "embedding@sentences",
    "quotes": "embedding@quotes",
}
#: Sentences per prompt the ``sentences`` view embeds (the last ones).
MAX_SENTENCES = 6
#: Quoted spans per prompt the ``quotes`` view embeds (the last ones).
MAX_QUOTES = 3


def is_embedding(feature: str) -> bool:
    """Whether a feature key names a sentence-embedding view (else it is a hook name)."""
    return feature in TEXT_VIEWS.values()


@dataclass(frozen=True)
class GateConfig:
    """A scope gate: which features, which distance, and how the threshold is chosen.

    The default is the fact gate (``kind="fact"``, :mod:`sake_lens.gate.fact`): the subject
    named in the prompt, and the prompt with the subject masked nearer the edit's relation
    than any relation it must leave alone (margin threshold at ``fpr=0.1`` of the other
    relations' templates, nearest-paraphrase distance at ``distance_fpr=0.05``). Chosen on
    CounterFact dev records 0-399 with ``benchmarks/gate_kinds.py`` (every edit in one router):
    prompts about the edited subject through another relation reached an edit 1.4 % of the
    time (n=1745) against 63.4 % for the sentence-embedding gate, with 90 % of paraphrases
    (n=51) and 99 % of two-hop implications (n=181) kept in scope; the gates page of the
    documentation has the held-out figures.

    The sentence-embedding gate (``kind="embedding"``, the paper's) embeds the prompt, each of
    its last sentences and what it quotes (``text="quotes"``: 99.5 % of doubt follow-ups kept
    in scope on dev records 0-199, against 90 % for ``sentences``), with the Euclidean distance
    to the mean of the paraphrases and a threshold at 10 % false positives; hidden-state
    gates separate relations better but subjects worse (``benchmarks/routing_50.py``). The
    embedding gate accepts most prompts about the *same subject* with *another relation* (63 %
    on dev records 0-399): a sentence embedding is dominated by the subject's name.

    Attributes:
        kind: one of :data:`GATE_KINDS`.
        metric: one of :data:`GATE_METRICS` (embedding and hidden gates; a fact gate compares
            nearest neighbours and keeps ``euclidean``).
        text: embedding gates only: one of :data:`TEXT_VIEWS` (default ``quotes``: a prompt
            after an unrelated lead-in, or a follow-up quoting the fact, is judged by its
            sentences and its quoted spans too).
        layer: hidden gates only: the hook whose last-prompt-token state is compared (an int
            ``L`` means ``blocks.L.hook_resid_post``); ``None`` uses the edit's own site.
        fpr: target false-positive rate on out-of-scope prompts; the threshold is the
            conformal ``fpr``-quantile of the out-of-scope distances (see
            :func:`~sake_lens.gate.calibrate.calibrate_threshold`); for a fact gate, of the
            other relations' templates' margins (:mod:`sake_lens.gate.fact`).
        distance_fpr: fact gates only: the distance to the nearest paraphrase must also lie
            below this quantile of the negative templates' (a prompt far from every relation,
            such as one that only mentions the subject, stays out of scope).
        threshold: a fixed threshold instead of a calibrated one (then ``fpr`` is ignored).
        shrinkage: Mahalanobis only: ``None`` estimates the Ledoit–Wolf shrinkage towards
            ``mu * I``; a number in ``[0, 1]`` fixes it.
        max_rank: Mahalanobis only: covariance directions kept (the rest is isotropic).
        include_forced: hidden gates: also use the forced source prompts as in-scope samples.
        holdout: fraction of the paraphrases held out to report TPR and AUROC at calibration.
        n_subjects, n_relations, n_generic, n_neighbours: out-of-scope prompts per edit built
            by :func:`~sake_lens.gate.out_of_scope.default_out_of_scope` (same template with
            other subjects, same subject with other relations, generic text, other edits).
        seed: seed of the out-of-scope sampling and of the hold-out split.
    """

    kind: str = "fact"
    metric: str = "euclidean"
    text: str = "quotes"
    layer: str | int | None = None
    fpr: float = 0.1
    distance_fpr: float = 0.05
    threshold: float | None = None
    shrinkage: float | None = None
    max_rank: int = 32
    include_forced: bool = False
    holdout: float = 0.25
    n_subjects: int = 24
    n_relations: int = 12
    n_generic: int = 24
    n_neighbours: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in GATE_KINDS:
            raise ValueError(f"Unknown gate kind {self.kind!r}; allowed: {GATE_KINDS}.")
        if self.metric not in GATE_METRICS:
            raise ValueError(f"Unknown gate metric {self.metric!r}; allowed: {GATE_METRICS}.")
        if self.text not in TEXT_VIEWS:
            raise ValueError(f"Unknown gate text view {self.text!r}; allowed: {list(TEXT_VIEWS)}.")
        if isinstance(self.layer, bool) or not isinstance(self.layer, (str, int, type(None))):
            raise ValueError(
                f"layer must be None, a hook name or a block index; got {self.layer!r}."
            )
        if isinstance(self.layer, int):
            if self.layer < 0:
                raise ValueError(f"layer must be >= 0, got {self.layer}.")
            object.__setattr__(self, "layer", f"blocks.{self.layer}.hook_resid_post")
        if self.layer is not None and self.kind != "hidden":
            raise ValueError(f"layer={self.layer!r} only applies to kind='hidden' gates.")
        if not 0.0 < float(self.fpr) < 1.0:
            raise ValueError(f"fpr must lie in (0, 1), got {self.fpr!r}; e.g. fpr=0.05.")
        if not 0.0 < float(self.distance_fpr) < 1.0:
            raise ValueError(
                f"distance_fpr must lie in (0, 1), got {self.distance_fpr!r}; e.g. 0.1."
            )
        if self.kind == "fact" and self.metric != "euclidean":
            raise ValueError(
                f"metric={self.metric!r} applies to embedding and hidden gates; a fact gate "
                "compares nearest neighbours (leave metric='euclidean')."
            )
        if self.kind == "fact" and self.threshold is not None:
            raise ValueError(
                "A fact gate calibrates two thresholds (margin and distance) and takes no fixed "
                "threshold; set fpr and distance_fpr, or use kind='embedding'."
            )
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and self.threshold > 0
        ):
            raise ValueError(
                f"threshold must be a finite number > 0 or None, got {self.threshold!r}."
            )
        if self.shrinkage is not None and not 0.0 <= float(self.shrinkage) <= 1.0:
            raise ValueError(
                f"shrinkage must be None (Ledoit–Wolf) or in [0, 1], got {self.shrinkage!r}."
            )
        if self.max_rank < 0:
            raise ValueError(f"max_rank must be >= 0, got {self.max_rank}.")
        if not 0.0 <= float(self.holdout) < 1.0:
            raise ValueError(f"holdout must lie in [0, 1), got {self.holdout!r}.")
        for name in ("n_subjects", "n_relations", "n_generic", "n_neighbours"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")

    def feature(self, site: str) -> str:
        """The feature key this gate reads for an edit at ``site``."""
        if self.kind == "fact":
            return "fact"
        if self.kind == "embedding":
            return TEXT_VIEWS[self.text]
        return str(self.layer) if self.layer is not None else site

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"Unknown GateConfig fields {sorted(unknown)}; known: {sorted(known)}."
            )
        return cls(**data)
