r"""Evaluation metrics: per record from probe outcomes, then aggregated with bootstrap intervals.

Every metric of a record is a number in a fixed range or ``None`` (not measurable for that
record, e.g. no rephrase prompt of the record is a real paraphrase); aggregates average the
records where it is defined, so each record weighs the same whatever its number of probes (as
in ROME), and intervals are bootstrapped by record.

**Greedy first-token metrics (the SAKE paper).** A probe succeeds when the model's greedy next
token *starts* the expected object, covering a whole word of it or being exactly its first
token (:func:`~sake_lens.model.tokens.starts_object`): ``efficacy`` on the edit prompt,
``paraphrase`` on the rephrase prompts that are real paraphrases of the edited relation (the
headline generalisation), ``generation_prompt`` on CounterFact's generation prompts (auxiliary:
the new object is often not a correct continuation there, so a high value may only mean the
edit blurts its object).

**Probability metrics (ROME).** With $\log P(o \mid p)$ the log-probability of the whole object
$o$ after prompt $p$ (teacher forcing, all its tokens), ``*_prob`` is the fraction of prompts
with $P(\text{new}) > P(\text{old})$ (neighbourhood: $P(\text{true}) > P(\text{new})$) and
``efficacy_margin`` the mean of $P(\text{new}) - P(\text{old})$.

**Generation.** Greedy continuations (20 tokens) of the edit prompt and the rephrase prompts:
``generation_new`` — the whole new object appears (as a word, case-insensitive, the subject's
own words masked); ``generation_no_old`` — the old object does not; ``generation`` — both.

**Locality against the unedited model** (:mod:`.locality`). For the same subject through other
relations (``locality_relation``), CounterFact's neighbourhood prompts (``locality_neighbour``)
and unrelated prompts (``locality_text``): the next token unchanged, the 8-token greedy
continuation unchanged (``*_gen``), and the mean $\mathrm{KL}(p_\text{unedited} \| p_\text{edited})$
of the next-token distribution (``*_kl``, nats). ``specificity`` is the paper's: neighbourhood
prompts the unedited model gets right, still right (on a known-fact set, most of them).

**Fluency.** ``fluency_entropy_change``: ROME's n-gram entropy (bits) of the 20-token
generations from the in-scope prompts, edited minus unedited; ``fluency_ppl_change``: their
perplexity under the unedited model (after the first generated token, which the edit is meant
to change), edited over unedited, minus one; ``passage_ppl_change``: the edited model's
perplexity on passages that name the subject (where gates fire), over the unedited model's,
minus one.

**Robustness.** ``doubt_1``/``doubt_2``: greedy success after each doubt follow-up;
``long_context``: after >= 200 unrelated tokens; each with a ``*_prob`` twin.

**Implications.** ``implication`` / ``implication_prob``: two-hop probes, expected answer of the
new fact; ``implication_new_object``: how often the greedy token is the new object itself where
the implied answer is wanted (probes whose implied answer starts with the new object are left
out).

**Ripple effects** (:mod:`.ripple`, :mod:`.standard_sets`). ``ripple_<family>``: the record's
ripple probes of that family, greedy token starts the expected answer (or one of its aliases);
ambiguous probes are not scored. Families whose answer moves with the edit
(``compositionality_1``/``_2``, ``subject_aliasing``, ``logical_generalization``, ``multi_hop``)
measure implications; the others (``relation_specificity``, ``object_locality``,
``forgetfulness``, ``preservation``) what must stay.

**Gates**, by kind of prompt: ``gate_tpr`` — the record's own edit applied on the edit prompt
and its real paraphrases; ``gate_fpr_relation`` / ``_neighbour`` / ``_text`` / ``_passage`` —
an edit applied on the locality probes of each kind; ``gate_fpr_other_edits`` — another
record's edit applied on this record's in-scope prompts (``all`` mode only). ``edit_applied``:
1 if the edit could be fitted (records whose edit failed are scored unedited).
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
from .data import RIPPLE_FAMILIES

__all__ = [
    "PROBE_KINDS",
    "IN_SCOPE_KINDS",
    "OUT_OF_SCOPE_KINDS",
    "LOCALITY_KINDS",
    "METRICS",
    "METRIC_GROUPS",
    "UNSCALED_METRICS",
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
    "generation_prompt",
    "neighbourhood",
    "relation",
    "text",
    "passage",
    "doubt",
    "long_context",
    "implication",
    "ripple",
)
#: Probes where the edit should apply.
IN_SCOPE_KINDS = ("edit", "paraphrase")
#: Probes where it should not (compared with the unedited model).
OUT_OF_SCOPE_KINDS = ("relation", "neighbourhood", "text", "passage")
#: The locality probe kinds and their metric names.
LOCALITY_KINDS = {"relation": "relation", "neighbourhood": "neighbour", "text": "text"}

#: Every metric :func:`record_metrics` returns, in table order, with a one-line description.
METRICS: dict[str, str] = {
    "efficacy": "edit prompt: greedy token starts the new object",
    "efficacy_prob": "edit prompt: P(new) > P(old)",
    "efficacy_margin": "edit prompt: P(new) - P(old)",
    "paraphrase": "real paraphrases of the edited relation: greedy token starts the new object",
    "paraphrase_prob": "real paraphrases: P(new) > P(old)",
    "generation_prompt": "(auxiliary) CounterFact generation prompts: greedy token starts new",
    "generation_prompt_prob": "(auxiliary) CounterFact generation prompts: P(new) > P(old)",
    "generation": "edit prompt and paraphrases: greedy 20 tokens have the new object, not the old",
    "generation_new": "edit prompt and paraphrases: greedy 20 tokens contain the new object",
    "generation_no_old": "edit prompt and paraphrases: greedy 20 tokens lack the old object",
    "locality_relation": "same subject, other relations: next token unchanged",
    "locality_relation_gen": "same subject, other relations: 8-token continuation unchanged",
    "locality_relation_kl": "same subject, other relations: KL(unedited || edited), nats",
    "locality_neighbour": "neighbourhood prompts: next token unchanged",
    "locality_neighbour_gen": "neighbourhood prompts: 8-token continuation unchanged",
    "locality_neighbour_kl": "neighbourhood prompts: KL(unedited || edited), nats",
    "locality_text": "unrelated prompts: next token unchanged",
    "locality_text_gen": "unrelated prompts: 8-token continuation unchanged",
    "locality_text_kl": "unrelated prompts: KL(unedited || edited), nats",
    "specificity": "neighbourhood prompts the unedited model gets right: still right",
    "specificity_prob": "neighbourhood: P(true) > P(new)",
    "fluency_entropy_change": "n-gram entropy of those 20-token generations, edited - unedited",
    "fluency_ppl_change": "perplexity (unedited judge) of those generations, edited/unedited - 1",
    "passage_ppl_change": "perplexity of passages naming the subject, edited/unedited - 1",
    "doubt_1": "after doubt follow-up 1: greedy token starts the new object",
    "doubt_2": "after doubt follow-up 2: greedy token starts the new object",
    "doubt_prob": "after the doubt follow-ups: P(new) > P(old)",
    "long_context": "after >= 200 unrelated tokens: greedy token starts the new object",
    "long_context_prob": "after >= 200 unrelated tokens: P(new) > P(old)",
    "implication": "implication probes: greedy token starts the implied new answer",
    "implication_prob": "implication probes: P(implied new) > P(implied old)",
    "implication_new_object": "implication probes: greedy token starts the new object itself",
    "gate_tpr": "the record's own edit applied on the edit prompt and paraphrases",
    "gate_fpr_relation": "an edit applied on same-subject/other-relation prompts",
    "gate_fpr_neighbour": "an edit applied on neighbourhood prompts",
    "gate_fpr_other_edits": "another record's edit applied on this record's in-scope prompts",
    "gate_fpr_text": "an edit applied on unrelated prompts",
    "gate_fpr_passage": "an edit applied on passages naming the subject",
    "edit_applied": "the edit could be fitted",
    **{
        f"ripple_{family}": f"ripple probes, {family.replace('_', ' ')}: greedy token starts "
        "the expected answer"
        for family in RIPPLE_FAMILIES
    },
}

#: Metric families, in report order (``sake-lens compare`` groups its tables by them).
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "efficacy": ("efficacy", "efficacy_prob", "efficacy_margin"),
    "generalisation": (
        "paraphrase",
        "paraphrase_prob",
        "generation_prompt",
        "generation_prompt_prob",
        "generation",
        "generation_new",
        "generation_no_old",
    ),
    "locality": (
        "locality_relation",
        "locality_relation_gen",
        "locality_relation_kl",
        "locality_neighbour",
        "locality_neighbour_gen",
        "locality_neighbour_kl",
        "locality_text",
        "locality_text_gen",
        "locality_text_kl",
        "specificity",
        "specificity_prob",
    ),
    "fluency": ("fluency_entropy_change", "fluency_ppl_change", "passage_ppl_change"),
    "robustness": ("doubt_1", "doubt_2", "doubt_prob", "long_context", "long_context_prob"),
    "implications": ("implication", "implication_prob", "implication_new_object"),
    "gates": (
        "gate_tpr",
        "gate_fpr_relation",
        "gate_fpr_neighbour",
        "gate_fpr_other_edits",
        "gate_fpr_text",
        "gate_fpr_passage",
    ),
    "cost": ("edit_applied",),
    "ripple": tuple(f"ripple_{family}" for family in RIPPLE_FAMILIES),
}

#: Metrics that are not rates in [0, 1] (shown as numbers, not percentages).
UNSCALED_METRICS = frozenset(m for m in METRICS if m.endswith(("_kl", "_change", "_margin")))


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
        expected_first: ``expected``'s first token as it follows the prompt (decoded).
        relation: the probed relation (``relation`` rows).
        unchanged: locality rows: the next token equals the unedited model's.
        gen_unchanged: locality rows: the greedy continuation equals the unedited model's.
        kl: locality rows: KL(unedited || edited) of the next-token distribution (nats).
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
    expected_first: str | None = None
    relation: str | None = None
    unchanged: bool | None = None
    gen_unchanged: bool | None = None
    kl: float | None = None
    aliases: tuple[str, ...] = ()

    @property
    def greedy_ok(self) -> bool:
        if self.expected is None:
            return False
        if starts_object(self.greedy, self.expected, first_token=self.expected_first):
            return True
        return any(starts_object(self.greedy, a) for a in self.aliases)

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
            **({"relation": self.relation} if self.relation is not None else {}),
            **({"ok": self.greedy_ok} if self.kind == "ripple" else {}),
            **({"aliases": list(self.aliases)} if self.aliases else {}),
            **(
                {
                    "unchanged": self.unchanged,
                    "gen_unchanged": self.gen_unchanged,
                    "kl": _round(self.kl, 8),
                }
                if self.unchanged is not None
                else {}
            ),
        }


@dataclass(frozen=True)
class SideEffects:
    """Fluency measurements of one record (None where not measured): means over the in-scope
    generations (n-gram entropy, perplexity under the unedited model) and over the passages
    (perplexity), with and without the edit."""

    entropy_edited: float | None = None
    entropy_unedited: float | None = None
    gen_ppl_edited: float | None = None
    gen_ppl_unedited: float | None = None
    passage_ppl_edited: float | None = None
    passage_ppl_unedited: float | None = None


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

    Returns:
        The weighted entropy in bits (0 for an empty text).

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


def _change(edited: float | None, unedited: float | None, ratio: bool) -> float | None:
    if edited is None or unedited is None:
        return None
    if ratio:
        return edited / unedited - 1.0 if unedited else None
    return edited - unedited


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
    new_first: str | None = None,
    other_edits_active: bool = False,
) -> dict[str, float | None]:
    """Every metric of :data:`METRICS` for one record.

    Args:
        probes: the record's probe outcomes with the treatment active (locality rows with
            ``unchanged`` / ``gen_unchanged`` / ``kl`` filled in).
        subject, new, old: the edit (for the generation metrics).
        generations: greedy continuations of the edit prompt and the rephrase prompts.
        unedited_neighbourhood: the neighbourhood probes scored on the unedited model, in the
            same order as the edited ones (for the paper's specificity filter).
        side_effects: fluency measurements.
        edit_applied: False when the edit could not be fitted (the record is scored unedited).
        new_first: the new object's first token (for ``implication_new_object``).
        other_edits_active: other records' edits were active (``all`` mode): measure
            ``gate_fpr_other_edits``.

    Returns:
        Metric -> value, None where the record has no probe for it.
    """
    by_kind: dict[str, list[ProbeResult]] = {k: [] for k in PROBE_KINDS}
    for p in probes:
        by_kind.setdefault(p.kind, []).append(p)
    edit, para, neigh = by_kind["edit"], by_kind["paraphrase"], by_kind["neighbourhood"]
    gen_prompts = by_kind["generation_prompt"]
    doubts = sorted(by_kind["doubt"], key=lambda p: p.index)
    out: dict[str, float | None] = {}
    out["efficacy"] = _greedy_rate(edit)
    out["efficacy_prob"] = _mean([p.prob_ok for p in edit])
    out["efficacy_margin"] = _mean([p.margin for p in edit])
    out["paraphrase"] = _greedy_rate(para)
    out["paraphrase_prob"] = _mean([p.prob_ok for p in para])
    out["generation_prompt"] = _greedy_rate(gen_prompts)
    out["generation_prompt_prob"] = _mean([p.prob_ok for p in gen_prompts])
    has_new = [contains_object(g, new, subject) for g in generations]
    no_old = [not contains_object(g, old, subject) for g in generations]
    out["generation"] = _mean([a and b for a, b in zip(has_new, no_old)])
    out["generation_new"] = _mean(has_new)
    out["generation_no_old"] = _mean(no_old)
    for kind, name in LOCALITY_KINDS.items():
        rows = by_kind[kind]
        out[f"locality_{name}"] = _mean([p.unchanged for p in rows])
        out[f"locality_{name}_gen"] = _mean([p.gen_unchanged for p in rows])
        out[f"locality_{name}_kl"] = _mean([p.kl for p in rows])
    if unedited_neighbourhood and len(unedited_neighbourhood) != len(neigh):
        raise ValueError(
            f"{len(unedited_neighbourhood)} unedited neighbourhood outcomes for {len(neigh)} "
            "edited ones; pass them in the same order."
        )
    kept = [e for e, u in zip(neigh, unedited_neighbourhood) if u.greedy_ok]
    out["specificity"] = _greedy_rate(kept)
    out["specificity_prob"] = _mean([p.prob_ok for p in neigh])
    side = side_effects or SideEffects()
    out["fluency_entropy_change"] = _change(side.entropy_edited, side.entropy_unedited, False)
    out["fluency_ppl_change"] = _change(side.gen_ppl_edited, side.gen_ppl_unedited, True)
    out["passage_ppl_change"] = _change(side.passage_ppl_edited, side.passage_ppl_unedited, True)
    out["doubt_1"] = _greedy_rate(doubts[:1])
    out["doubt_2"] = _greedy_rate(doubts[1:2])
    out["doubt_prob"] = _mean([p.prob_ok for p in doubts])
    out["long_context"] = _greedy_rate(by_kind["long_context"])
    out["long_context_prob"] = _mean([p.prob_ok for p in by_kind["long_context"]])
    implied = by_kind["implication"]
    out["implication"] = _greedy_rate(implied)
    out["implication_prob"] = _mean([p.prob_ok for p in implied])
    out["implication_new_object"] = _mean(
        [
            starts_object(p.greedy, new, first_token=new_first)
            for p in implied
            if p.expected is not None
            and not p.expected.strip().casefold().startswith(new.strip().casefold())
        ]
    )
    out["gate_tpr"] = _mean([p.own for k in IN_SCOPE_KINDS for p in by_kind[k]])
    out["gate_fpr_relation"] = _mean([p.fired for p in by_kind["relation"]])
    out["gate_fpr_neighbour"] = _mean([p.fired for p in neigh])
    out["gate_fpr_text"] = _mean([p.fired for p in by_kind["text"]])
    out["gate_fpr_passage"] = _mean([p.fired for p in by_kind["passage"]])
    out["gate_fpr_other_edits"] = (
        _mean(
            [
                None if p.fired is None else bool(p.fired and not p.own)
                for p in (*edit, *para, *gen_prompts)
            ]
        )
        if other_edits_active
        else None
    )
    for family in RIPPLE_FAMILIES:
        out[f"ripple_{family}"] = _greedy_rate(
            [p for p in by_kind["ripple"] if p.relation == family]
        )
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

    Returns:
        ``(mean, low, high)``.

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
    """Per metric: mean over the records where it is defined, 95% bootstrap interval, count.

    Returns:
        Metric -> ``{"mean", "lo", "hi", "n"}`` (None where no record defines it).
    """
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
