r"""Evaluation metrics: per record from probe outcomes, then aggregated with bootstrap intervals.

Every metric of a record is a number in a fixed range or ``None`` (not measurable for that
record, e.g. no neighbourhood prompt passed the paper's filter); aggregates average the records
where it is defined, so each record weighs the same whatever its number of probes (as in ROME).

**Greedy first-token metrics (the SAKE paper).** A probe succeeds when the model's greedy next
token *starts* the expected object (:func:`~sake_lens.model.tokens.starts_object`):
``efficacy`` on the edit prompt (new object), ``generalisation`` on paraphrases (new object),
``specificity`` on neighbourhood prompts (their true object) — the paper's version counts only
the neighbourhood prompts the *unedited* model already gets right, ``specificity_unfiltered``
all of them.

**Probability metrics (ROME).** With $\log P(o \mid p)$ the log-probability of the whole object
$o$ after prompt $p$ — the sum of its tokens' log-probabilities under teacher forcing, so
multi-token objects count in full — ``*_prob`` is the fraction of prompts with
$P(\text{new}) > P(\text{old})$ (neighbourhood: $P(\text{true}) > P(\text{new})$), and
``*_margin`` the mean of $P(\text{new}) - P(\text{old})$ (neighbourhood:
$P(\text{true}) - P(\text{new})$).

**Generation.** Greedy continuations (20 tokens) of the edit prompt and the paraphrases:
``generation_new`` — the whole new object appears (as a word, case-insensitive, the subject's
own words masked); ``generation_no_old`` — the old object does not; ``generation`` — both.

**Robustness.** ``doubt_1``/``doubt_2``: greedy success after each doubt follow-up;
``long_context``: after >= 200 unrelated tokens; ``implication``: logical-implication probes
(expected answer of the new fact); each with a ``*_prob`` twin.

**Side effects.** ``ppl_change``: perplexity of a fixed neutral text with the edit over without,
minus one; ``entropy_change``: mean n-gram entropy (bits, ROME's weighted bi-/tri-gram mix) of
generations on unrelated prompts, with minus without; ``gate_fpr``: fraction of out-of-scope
prompts (neighbourhood, unrelated, the neutral text) where the edit was applied;
``gate_fpr_neighbourhood`` the same on neighbourhood prompts only; ``gate_tpr``: fraction of
the edit and paraphrase prompts where the record's own edit was applied; ``edit_applied``: 1 if
the edit could be fitted (records whose edit failed are scored unedited).
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.tokens import starts_object
from ..prompts.text import contains_term, mask_subject

__all__ = [
    "PROBE_KINDS",
    "IN_SCOPE_KINDS",
    "OUT_OF_SCOPE_KINDS",
    "METRICS",
    "ProbeResult",
    "SideEffects",
    "record_metrics",
    "contains_object",
    "ngram_entropy",
    "bootstrap_ci",
    "aggregate",
]

#: Probe kinds, in table order.
PROBE_KINDS = (
    "edit",
    "paraphrase",
    "neighbourhood",
    "doubt",
    "long_context",
    "implication",
    "unrelated",
    "neutral",
)
#: Probes where the edit should apply.
IN_SCOPE_KINDS = ("edit", "paraphrase")
#: Probes where it should not.
OUT_OF_SCOPE_KINDS = ("neighbourhood", "unrelated", "neutral")

#: Every metric :func:`record_metrics` returns, in table order, with a one-line description.
METRICS: dict[str, str] = {
    "efficacy": "edit prompt: greedy token starts the new object",
    "generalisation": "paraphrases: greedy token starts the new object",
    "specificity": "neighbourhood prompts the unedited model gets right: still right",
    "specificity_unfiltered": "all neighbourhood prompts: greedy token starts the true object",
    "efficacy_prob": "edit prompt: P(new) > P(old)",
    "generalisation_prob": "paraphrases: P(new) > P(old)",
    "specificity_prob": "neighbourhood: P(true) > P(new)",
    "efficacy_margin": "edit prompt: P(new) - P(old)",
    "generalisation_margin": "paraphrases: P(new) - P(old)",
    "specificity_margin": "neighbourhood: P(true) - P(new)",
    "generation": "greedy 20 tokens contain the new object and not the old",
    "generation_new": "greedy 20 tokens contain the new object",
    "generation_no_old": "greedy 20 tokens do not contain the old object",
    "doubt_1": "after doubt follow-up 1: greedy token starts the new object",
    "doubt_2": "after doubt follow-up 2: greedy token starts the new object",
    "doubt_prob": "after the doubt follow-ups: P(new) > P(old)",
    "long_context": "after >= 200 unrelated tokens: greedy token starts the new object",
    "long_context_prob": "after >= 200 unrelated tokens: P(new) > P(old)",
    "implication": "implication probes: greedy token starts the implied new answer",
    "implication_prob": "implication probes: P(implied new) > P(implied old)",
    "ppl_change": "perplexity of a neutral text, edited / unedited - 1",
    "entropy_change": "n-gram entropy of generations on unrelated prompts, edited - unedited",
    "gate_fpr": "edit applied on out-of-scope prompts (neighbourhood, unrelated, neutral)",
    "gate_fpr_neighbourhood": "edit applied on neighbourhood prompts",
    "gate_tpr": "the record's own edit applied on the edit prompt and paraphrases",
    "edit_applied": "the edit could be fitted",
}


@dataclass(frozen=True)
class ProbeResult:
    """What the model did on one probe prompt (with the method's treatment active).

    Attributes:
        kind: one of :data:`PROBE_KINDS`.
        prompt: the prompt as given to the model (any in-context prefix included).
        greedy: the decoded greedy next token.
        expected: the object the probe should produce (new; a neighbourhood's true object).
        competitor: the object it should not (old; new for a neighbourhood prompt).
        lp_expected: full-object log-probability of ``expected`` (None: not scored).
        lp_competitor: the same for ``competitor``.
        fired: whether the record's edit (single mode) or any edit (all mode) was applied;
            None when the method has no gate.
        own: whether the record's *own* edit was applied (None without a gate).
        index: the probe's number within its kind (doubt 0 and 1, ...).
    """

    kind: str
    prompt: str
    greedy: str = ""
    expected: str | None = None
    competitor: str | None = None
    lp_expected: float | None = None
    lp_competitor: float | None = None
    fired: bool | None = None
    own: bool | None = None
    index: int = 0

    @property
    def greedy_ok(self) -> bool:
        return self.expected is not None and starts_object(self.greedy, self.expected)

    @property
    def prob_ok(self) -> bool | None:
        if self.lp_expected is None or self.lp_competitor is None:
            return None
        return self.lp_expected > self.lp_competitor

    @property
    def margin(self) -> float | None:
        if self.lp_expected is None or self.lp_competitor is None:
            return None
        return math.exp(self.lp_expected) - math.exp(self.lp_competitor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "index": self.index,
            "prompt": self.prompt,
            "greedy": self.greedy,
            "expected": self.expected,
            "competitor": self.competitor,
            "lp_expected": _round(self.lp_expected),
            "lp_competitor": _round(self.lp_competitor),
            "fired": self.fired,
            "own": self.own,
        }


@dataclass(frozen=True)
class SideEffects:
    """Side-effect measurements of one record (None where not measured)."""

    ppl_edited: float | None = None
    ppl_unedited: float | None = None
    entropy_edited: float | None = None
    entropy_unedited: float | None = None


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _mean(values: Sequence[float | bool | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def contains_object(text: str, obj: str, subject: str = "") -> bool:
    """Whether ``obj`` occurs as whole words in ``text`` (case-insensitive), ignoring the
    subject's own words (a subject such as "Apple A5" must not count as saying "Apple").

    Example:
        >>> contains_object(" French. She is a Canadian artist", "French")
        True
        >>> contains_object(" Apple A5 was made by Google", "Apple", subject="Apple A5")
        False
    """
    if subject:
        text = mask_subject(text, subject)
    return contains_term(text, obj)


_WORDS = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(
    text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)
) -> float:
    r"""ROME's fluency measure: the weighted mean over ``n`` of the entropy (bits) of the
    n-gram frequency distribution of ``text``'s words, $\frac1{|N|}\sum_n w_n H_n$.

    Repetitive text ("the the the ...") scores low; text with no n-gram of a length scores 0
    for that length.

    Example:
        >>> ngram_entropy("a a a a a a")
        0.0
        >>> round(ngram_entropy("one two three four"), 3)  # 3 bigrams, 2 trigrams
        1.195
    """
    words = [w.casefold() for w in _WORDS.findall(text)]
    total = 0.0
    for n, w in zip(ns, weights):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        if not grams:
            continue
        freqs = np.array(list(grams.values()), dtype=np.float64)
        freqs /= freqs.sum()
        total += w * float(-(freqs * np.log2(freqs)).sum())
    return total / len(ns)


def _greedy_rate(probes: Sequence[ProbeResult]) -> float | None:
    return _mean([p.greedy_ok for p in probes])


def record_metrics(
    probes: Sequence[ProbeResult],
    *,
    subject: str,
    new: str,
    old: str,
    generations: Sequence[str] = (),
    unedited_neighbourhood: Sequence[ProbeResult] = (),
    side_effects: SideEffects | None = None,
    edit_applied: bool = True,
) -> dict[str, float | None]:
    """Every metric of :data:`METRICS` for one record.

    Args:
        probes: the record's probe outcomes with the treatment active.
        subject, new, old: the edit (for the generation metrics).
        generations: greedy continuations of the edit prompt and paraphrases.
        unedited_neighbourhood: the neighbourhood probes scored on the unedited model, in the
            same order as the edited ones (for the paper's specificity filter).
        side_effects: perplexity and entropy measurements.
        edit_applied: False when the edit could not be fitted (the record is scored unedited).
    """
    by_kind: dict[str, list[ProbeResult]] = {k: [] for k in PROBE_KINDS}
    for p in probes:
        by_kind.setdefault(p.kind, []).append(p)
    edit, para, neigh = by_kind["edit"], by_kind["paraphrase"], by_kind["neighbourhood"]
    doubts = sorted(by_kind["doubt"], key=lambda p: p.index)
    out: dict[str, float | None] = {}
    out["efficacy"] = _greedy_rate(edit)
    out["generalisation"] = _greedy_rate(para)
    if unedited_neighbourhood and len(unedited_neighbourhood) != len(neigh):
        raise ValueError(
            f"{len(unedited_neighbourhood)} unedited neighbourhood outcomes for {len(neigh)} "
            "edited ones; pass them in the same order."
        )
    kept = [e for e, u in zip(neigh, unedited_neighbourhood) if u.greedy_ok]
    out["specificity"] = _greedy_rate(kept)
    out["specificity_unfiltered"] = _greedy_rate(neigh)
    for name, group in (("efficacy", edit), ("generalisation", para), ("specificity", neigh)):
        out[f"{name}_prob"] = _mean([p.prob_ok for p in group])
        out[f"{name}_margin"] = _mean([p.margin for p in group])
    has_new = [contains_object(g, new, subject) for g in generations]
    no_old = [not contains_object(g, old, subject) for g in generations]
    out["generation"] = _mean([a and b for a, b in zip(has_new, no_old)])
    out["generation_new"] = _mean(has_new)
    out["generation_no_old"] = _mean(no_old)
    out["doubt_1"] = _greedy_rate(doubts[:1])
    out["doubt_2"] = _greedy_rate(doubts[1:2])
    out["doubt_prob"] = _mean([p.prob_ok for p in doubts])
    out["long_context"] = _greedy_rate(by_kind["long_context"])
    out["long_context_prob"] = _mean([p.prob_ok for p in by_kind["long_context"]])
    out["implication"] = _greedy_rate(by_kind["implication"])
    out["implication_prob"] = _mean([p.prob_ok for p in by_kind["implication"]])
    side = side_effects or SideEffects()
    out["ppl_change"] = (
        side.ppl_edited / side.ppl_unedited - 1.0
        if side.ppl_edited is not None and side.ppl_unedited
        else None
    )
    out["entropy_change"] = (
        side.entropy_edited - side.entropy_unedited
        if side.entropy_edited is not None and side.entropy_unedited is not None
        else None
    )
    out_of_scope = [p for k in OUT_OF_SCOPE_KINDS for p in by_kind[k]]
    out["gate_fpr"] = _mean([p.fired for p in out_of_scope])
    out["gate_fpr_neighbourhood"] = _mean([p.fired for p in neigh])
    out["gate_tpr"] = _mean([p.own for k in IN_SCOPE_KINDS for p in by_kind[k]])
    out["edit_applied"] = 1.0 if edit_applied else 0.0
    return {k: _round(out[k]) for k in METRICS}


def _seed_for(seed: int, name: str) -> list[int]:
    # One stream per metric: adding a metric does not change the others' intervals.
    return [int(seed), zlib.crc32(name.encode())]


def bootstrap_ci(
    values: Sequence[float],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    level: float = 0.95,
    name: str = "",
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval at ``level`` (seeded).

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0])
        (1.0, 1.0, 1.0)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci() needs at least one value.")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap_ci() got a non-finite value; drop or fix it first.")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(_seed_for(seed, name))
    idx = rng.integers(0, x.size, size=(n_boot, x.size))  # (n_boot, n) resampled record indices
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def aggregate(
    per_record: Sequence[Mapping[str, float | None]],
    *,
    seed: int = 0,
    n_boot: int = 2000,
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """Per metric: mean over the records where it is defined, 95% bootstrap interval, count."""
    names = list(metrics or METRICS)
    out: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        vals = [float(r[name]) for r in per_record if r.get(name) is not None]  # type: ignore[arg-type]
        if not vals:
            out[name] = {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
            continue
        mean, lo, hi = bootstrap_ci(vals, seed=seed, n_boot=n_boot, name=name)
        out[name] = {
            "mean": _round(mean),
            "ci_low": _round(lo),
            "ci_high": _round(hi),
            "n": len(vals),
        }
    return out
