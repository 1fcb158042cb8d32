"""Evaluation metrics on hand-made cases whose answers are known (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from sake_lens.evaluate.metrics import (
    METRICS,
    ProbeResult,
    SideEffects,
    aggregate,
    bootstrap_ci,
    contains_object,
    ngram_entropy,
    record_metrics,
)
from sake_lens.evaluate.scoring import continuation_logprob

NEW, OLD = "English", "French"


def probe(
    kind: str, greedy: str, *, lp=(None, None), fired=None, own=None, index=0, exp=NEW, comp=OLD
):
    return ProbeResult(kind, f"{kind} prompt", greedy, exp, comp, lp[0], lp[1], fired, own, index)


def metrics(probes, **kw):
    kw.setdefault("subject", "Danielle Darrieux")
    return record_metrics(probes, new=NEW, old=OLD, **kw)


def test_greedy_first_token_metrics() -> None:
    probes = [
        probe("edit", " English"),
        probe("paraphrase", " English", index=0),
        probe("paraphrase", " E", index=1),  # a bare prefix of a word does not count
        probe("paraphrase", " the", index=2),
        probe("paraphrase", "English", index=3),
        probe("generation_prompt", " English", index=4),  # auxiliary, reported apart
        probe("generation_prompt", " a", index=5),
    ]
    m = metrics(probes)
    assert m["efficacy"] == 1.0
    assert m["paraphrase"] == 0.5
    assert m["generation_prompt"] == 0.5
    assert metrics([probe("edit", " French")])["efficacy"] == 0.0
    # the object's own first token counts when the tokenizer splits the word
    first = ProbeResult("edit", "p", " H", "HBO", "CBS", expected_first=" H")
    assert metrics([first])["efficacy"] == 1.0
    assert metrics([probe("edit", " a", exp="actor")])["efficacy"] == 0.0


def _local(kind: str, unchanged: bool, gen: bool, kl: float, fired: bool, relation=None):
    return ProbeResult(
        kind,
        f"{kind} prompt",
        " x",
        fired=fired,
        own=False,
        relation=relation,
        unchanged=unchanged,
        gen_unchanged=gen,
        kl=kl,
    )


def test_locality_scores_a_leaking_edit_low_and_a_clean_one_high() -> None:
    leaking = [
        _local("relation", False, False, 2.0, True, "P19"),
        _local("relation", False, False, 3.0, True, "P106"),
        _local("relation", True, False, 0.5, True, "P140"),
        _local("relation", False, False, 1.5, True, "P27"),
        _local("text", True, True, 0.0, False),
        probe("neighbourhood", " x", exp=OLD, comp=NEW, fired=True, own=False),
    ]
    # the neighbourhood row also carries locality outcomes
    leaking[-1] = ProbeResult(
        "neighbourhood",
        "n",
        " English",
        OLD,
        NEW,
        fired=True,
        own=False,
        unchanged=False,
        gen_unchanged=False,
        kl=4.0,
    )
    m = metrics(leaking)
    assert m["locality_relation"] == 0.25 and m["locality_relation_gen"] == 0.0
    assert m["locality_relation_kl"] == pytest.approx(1.75)
    assert m["locality_neighbour"] == 0.0 and m["locality_neighbour_kl"] == 4.0
    assert m["locality_text"] == 1.0 and m["locality_text_kl"] == 0.0
    assert m["gate_fpr_relation"] == 1.0 and m["gate_fpr_neighbour"] == 1.0
    assert m["gate_fpr_text"] == 0.0
    clean = [_local("relation", True, True, 0.0, False, r) for r in ("P19", "P106", "P140")]
    c = metrics(clean)
    assert c["locality_relation"] == 1.0 and c["locality_relation_gen"] == 1.0
    assert c["locality_relation_kl"] == 0.0 and c["gate_fpr_relation"] == 0.0
    assert c["locality_neighbour"] is None  # no neighbourhood rows: not measured


def test_specificity_with_and_without_the_paper_filter() -> None:
    # neighbourhood: expected = the true object (French), competitor = new (English)
    edited = [
        probe("neighbourhood", " French", exp=OLD, comp=NEW, index=0),
        probe("neighbourhood", " English", exp=OLD, comp=NEW, index=1),
        probe("neighbourhood", " French", exp=OLD, comp=NEW, index=2),
        probe("neighbourhood", " the", exp=OLD, comp=NEW, index=3),
    ]
    unedited = [
        probe("neighbourhood", " French", exp=OLD, comp=NEW),  # right before: kept
        probe("neighbourhood", " French", exp=OLD, comp=NEW),  # right before: kept
        probe("neighbourhood", " a", exp=OLD, comp=NEW),  # wrong before: filtered out
        probe("neighbourhood", " the", exp=OLD, comp=NEW),  # wrong before: filtered out
    ]
    m = metrics(edited, unedited_neighbourhood=unedited)
    assert m["specificity"] == 0.5  # 1 of the 2 kept
    none_kept = metrics(edited, unedited_neighbourhood=[unedited[3]] * 4)
    assert none_kept["specificity"] is None  # not measurable, excluded from the mean
    with pytest.raises(ValueError, match="same order"):
        metrics(edited, unedited_neighbourhood=unedited[:2])


def test_probability_metrics_and_margins() -> None:
    lp = math.log
    probes = [
        probe("edit", "x", lp=(lp(0.6), lp(0.1))),
        probe("paraphrase", "x", lp=(lp(0.2), lp(0.3)), index=0),
        probe("paraphrase", "x", lp=(lp(0.5), lp(0.1)), index=1),
        probe("neighbourhood", "x", lp=(lp(0.4), lp(0.1)), exp=OLD, comp=NEW),
    ]
    m = metrics(probes)
    assert m["efficacy_prob"] == 1.0 and m["paraphrase_prob"] == 0.5
    assert m["specificity_prob"] == 1.0
    assert m["efficacy_margin"] == pytest.approx(0.5)


def test_multi_token_log_probability_is_the_sum_over_tokens() -> None:
    # P(tok0) = 0.5 at step 0, P(tok1 | tok0) = 0.75 at step 1 -> P(object) = 0.375
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125]]))
    assert continuation_logprob(logits, [0, 1]) == pytest.approx(math.log(0.375))
    with pytest.raises(ValueError):
        continuation_logprob(logits, [0])


def test_generation_metrics() -> None:
    gens = [
        " English. She was born in Paris.",  # new, no old
        " French and English.",  # both
        " a famous actress.",  # neither
        " Englishman",  # the whole word only
    ]
    m = metrics([probe("edit", " English")], generations=gens)
    assert m["generation_new"] == 0.5
    assert m["generation_no_old"] == 0.75
    assert m["generation"] == 0.25
    assert contains_object(" She speaks New  York English", "new york english")
    # the subject's own words are not the object
    assert not contains_object(" Apple A5 was made by Google", "Apple", subject="Apple A5")
    assert contains_object(" Apple A5 was made by Apple", "Apple", subject="Apple A5")


def test_robustness_metrics() -> None:
    probes = [
        probe("doubt", " English", index=1, lp=(-1.0, -2.0)),
        probe("doubt", " French", index=0, lp=(-3.0, -2.0)),
        probe("long_context", " English", lp=(-1.0, -2.0)),
        probe("implication", " London", exp="London", comp="Paris", lp=(-1.0, -3.0)),
        probe("implication", " English", exp="London", comp="Paris", lp=(-3.0, -1.0), index=1),
        # an implied answer that starts with the new object is left out of the new-object rate
        probe("implication", " English", exp="English Channel", comp="Paris", index=2),
    ]
    m = metrics(probes)
    assert (m["doubt_1"], m["doubt_2"]) == (0.0, 1.0)  # sorted by index
    assert m["doubt_prob"] == 0.5
    assert m["long_context"] == 1.0 and m["long_context_prob"] == 1.0
    assert m["implication"] == pytest.approx(2 / 3) and m["implication_prob"] == 0.5
    assert m["implication_new_object"] == 0.5  # 1 of the 2 scored probes says " English"
    assert metrics([probe("edit", "x")])["implication"] is None  # no implication probes


def test_fluency_and_gate_rates() -> None:
    probes = [
        probe("edit", "x", fired=True, own=True),
        probe("paraphrase", "x", fired=True, own=False),  # another edit fired (all mode)
        probe("neighbourhood", "x", fired=True, own=False, exp=OLD, comp=NEW),
        probe("neighbourhood", "x", fired=False, own=False, exp=OLD, comp=NEW, index=1),
        probe("text", "x", fired=False, own=False, exp=None, comp=None),
        probe("passage", "x", fired=True, own=True, exp=None, comp=None),
    ]
    side = SideEffects(
        entropy_edited=3.0,
        entropy_unedited=3.5,
        gen_ppl_edited=12.0,
        gen_ppl_unedited=10.0,
        passage_ppl_edited=30.0,
        passage_ppl_unedited=20.0,
    )
    m = metrics(probes, side_effects=side, other_edits_active=True)
    assert m["fluency_entropy_change"] == pytest.approx(-0.5)
    assert m["fluency_ppl_change"] == pytest.approx(0.2)
    assert m["passage_ppl_change"] == pytest.approx(0.5)
    assert m["gate_fpr_neighbour"] == 0.5 and m["gate_fpr_text"] == 0.0
    assert m["gate_fpr_passage"] == 1.0
    assert m["gate_fpr_other_edits"] == 0.5  # the paraphrase went to another edit
    assert m["gate_tpr"] == 0.5
    assert m["edit_applied"] == 1.0
    assert metrics(probes)["gate_fpr_other_edits"] is None  # single mode: not measurable
    ungated = metrics([probe("edit", "x")], edit_applied=False)
    assert ungated["gate_fpr_relation"] is None and ungated["edit_applied"] == 0.0
    assert list(m) == list(METRICS)


def test_ngram_entropy() -> None:
    assert ngram_entropy("") == 0.0
    assert ngram_entropy("a a a a a a a a") == 0.0
    # 3 distinct bigrams (log2 3) and 2 distinct trigrams (1 bit), weights 2/3 and 4/3
    expected = (2 / 3 * math.log2(3) + 4 / 3 * 1.0) / 2
    assert ngram_entropy("one two three four") == pytest.approx(expected)
    assert ngram_entropy("The cat sat on the mat.") > ngram_entropy("the the the the the the")


def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    values = [0.0, 1.0] * 50
    a = bootstrap_ci(values, seed=3, name="efficacy")
    assert a == bootstrap_ci(values, seed=3, name="efficacy")
    assert a != bootstrap_ci(values, seed=4, name="efficacy")
    mean, lo, hi = a
    assert mean == 0.5 and lo < 0.5 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * 0.05, rel=0.2)  # ~ normal approximation
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([float("nan"), 1.0])


def test_aggregate_skips_undefined_values() -> None:
    rows = [{"efficacy": 1.0, "specificity": None}, {"efficacy": 0.0, "specificity": None}]
    agg = aggregate(rows, metrics=["efficacy", "specificity"])
    assert agg["efficacy"]["mean"] == 0.5 and agg["efficacy"]["n"] == 2
    assert agg["specificity"] == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


@pytest.mark.parametrize(
    ("subject", "prompt", "old", "new"),
    [
        ("Danielle Darrieux", "The mother tongue of {} is", "French", "English"),
        ("iPhone 5", "{} is produced by", "Apple", "Nokia"),  # a product: two fitting relations
        ("Eiffel Tower", "{} is located in the country of", "France", "Italy"),
        ("Sahara", "{} is located in the continent of", "Africa", "Asia"),
    ],
)
def test_relation_probes_give_five_distinct_prompts_off_the_edited_relation(
    subject: str, prompt: str, old: str, new: str
) -> None:
    from sake_lens.evaluate.locality import relation_probes
    from sake_lens.prompts.relations import independent_relations, match_relation
    from sake_lens.prompts.request import EditRequest

    request = EditRequest(subject, prompt, old, new)
    own = match_relation(prompt, objects=[old])
    assert own is not None
    probes = relation_probes(request, n=5, seed=3)
    assert len(probes) == 5 and len(set(probes)) == 5
    allowed = {r.id for r in independent_relations(own)}
    assert all(rid in allowed and rid != own.id and subject in p for rid, p in probes)
    # every fitting relation is asked before any is asked twice
    rids = [rid for rid, _ in probes]
    assert len(set(rids)) == min(5, len({rid for rid, _ in relation_probes(request, n=50)}))
    assert relation_probes(request, n=5, seed=3) == probes
