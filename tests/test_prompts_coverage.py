"""Relation bank: coverage of CounterFact prompts, and the bank's own invariants."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from sake_lens.prompts import relations as rel_mod
from sake_lens.prompts.relations import RELATIONS, match_relation, relation_candidates
from sake_lens.prompts.text import normalize_template, split_noisy_prefix, template_of
from tests.helpers import DEV_DATA

DEV = DEV_DATA  # the CounterFact dev file


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    if not DEV.is_file():
        pytest.skip(f"{DEV} not available")
    return json.loads(DEV.read_text())


def test_prompt_coverage_at_least_95_percent(dev: list[dict]) -> None:
    matched = Counter()
    missing = Counter()
    for r in dev:
        rel = match_relation(r["prompt"], r["subject"], objects=[r["ground_truth"]], cues=False)
        if rel is None:
            missing[template_of(r["prompt"], r["subject"])] += 1
        else:
            matched[rel.id] += 1
    coverage = sum(matched.values()) / len(dev)
    print(f"\nprompt coverage (exact templates): {coverage:.1%} over {len(matched)} relations")
    assert coverage >= 0.95, f"coverage {coverage:.1%}; unmatched: {missing.most_common(10)}"


def test_rephrase_prompts_informational(dev: list[dict]) -> None:
    """Rephrase prompts (noisy prefix stripped): many are CounterFact generation prompts such as
    "X is known for", which belong to no relation, so this is only reported."""
    exact = sum(
        match_relation(r["rephrase_prompt"], r["subject"], objects=[r["ground_truth"]], cues=False)
        is not None
        for r in dev
    )
    with_cues = sum(
        match_relation(r["rephrase_prompt"], r["subject"], objects=[r["ground_truth"]]) is not None
        for r in dev
    )
    print(
        f"\nrephrase prompts matched: {exact}/{len(dev)} by template, "
        f"{with_cues}/{len(dev)} with cues"
    )
    assert exact > 0


def test_cues_generalise_to_unseen_templates(dev: list[dict]) -> None:
    """The keyword cues alone (as for a template missing from the table) find the relation the
    table gives for most dev prompts (shared, ambiguous templates excluded)."""
    agree = total = 0
    for r in dev:
        exact = match_relation(r["prompt"], r["subject"], objects=[r["ground_truth"]], cues=False)
        key = normalize_template(template_of(r["prompt"], r["subject"]))
        if exact is None or key in {normalize_template(t) for t in rel_mod._SHARED}:
            continue
        cued = [rel for rel in rel_mod._RELATIONS if any(re.search(c, key) for c in rel.cues)]
        total += 1
        agree += bool(cued) and cued[0].id == exact.id
    assert agree / total >= 0.85, f"cue accuracy {agree / total:.1%}"


def test_every_dev_relation_is_in_the_bank_with_15_paraphrases(dev: list[dict]) -> None:
    assert len(RELATIONS) >= 30
    seen = {match_relation(r["prompt"], r["subject"], objects=[r["ground_truth"]]).id for r in dev}
    assert seen <= set(RELATIONS)
    for rel in RELATIONS.values():
        assert len(rel.paraphrases) >= 15, rel.id
        assert all(t.count("{}") == 1 for t in rel.paraphrases), rel.id


def test_paraphrases_are_not_counterfact_templates(dev: list[dict]) -> None:
    """Our paraphrases are our own: none is a CounterFact prompt template or the core of a
    rephrase prompt, so generalisation is measured on unseen phrasings."""
    counterfact = set()
    for r in dev:
        counterfact.add(normalize_template(template_of(r["prompt"], r["subject"])))
        _, core = split_noisy_prefix(r["rephrase_prompt"], r["subject"])
        t = template_of(core, r["subject"])
        if t:
            counterfact.add(normalize_template(t))
    for rel in RELATIONS.values():
        clash = [p for p in rel.paraphrases if normalize_template(p) in counterfact]
        assert not clash, (rel.id, clash)


def test_paraphrases_end_where_the_object_comes() -> None:
    for rel in RELATIONS.values():
        for p in rel.paraphrases:
            assert not p.rstrip().endswith((".", "?", "!")), (rel.id, p)


@pytest.mark.parametrize(
    ("template", "objects", "expected"),
    [
        ("The mother tongue of {} is", (), "P103"),
        ("{} is located in", ("Antarctica", "Europe"), "P30"),
        ("{} is located in", ("India", "Norway"), "P17"),
        ("{} is located in", ("Arizona", "England"), "P131"),
        ("{}, the", ("piano", "guitar"), "P1303"),
        ("{}, the", ("soccer", "basketball"), "P641"),
        ("{}, the", ("midfielder", "linebacker"), "P413"),
        ("{}, the", (), "P413"),
        ("{} plays", ("jazz",), "P136"),
        ("{}, from", ("Japan",), "P495"),
        ("{}, from", ("WWE",), "P127"),
    ],
)
def test_shared_templates_are_resolved_by_the_old_object(
    template: str, objects: tuple[str, ...], expected: str
) -> None:
    assert match_relation(template, objects=objects).id == expected


def test_match_accepts_prompts_with_subject_and_noisy_prefix() -> None:
    text = "It rained all day. Danielle Darrieux, speaker of"
    assert match_relation(text, "Danielle Darrieux").id == "P103"
    assert match_relation("The Mother  Tongue of {} is").id == "P103"  # case, spacing
    assert match_relation("Nothing to see here", "Someone") is None
    assert match_relation("{} likes to eat") is None
    assert relation_candidates("{}'s mother tongue is")[0].id == "P103"  # by cue
