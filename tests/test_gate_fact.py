"""The fact gate: subject match, relation margin, routing many edits of one subject, saving.

Edits are fake (random maps, see ``test_gate_router.fake_edit``) but their paraphrases come
from the real template bank and their gates from the real sentence embedder, so routing is
the library's. The real-model checks (the Japan case through generation) are at the end.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from sake_lens.cli.main import main
from sake_lens.gate import GateConfig, ScopeRouter, fit_scope
from sake_lens.gate.fact import (
    FactScope,
    find_subject,
    fold,
    relation_views,
    template_bank,
)
from sake_lens.prompts.distributions import PromptSet
from sake_lens.prompts.paraphrase import TemplateBankGenerator
from sake_lens.prompts.relations import RELATIONS, independent_relations
from sake_lens.prompts.request import EditRequest
from sake_lens.registry.book import EditBook

from .test_gate_router import fake_edit

JAPAN_LANGUAGE = ("Japan", "The official language of {} is", "Japanese", "French")
JAPAN_CAPITAL = ("Japan", "The capital of {} is", "Tokyo", "Osaka")
EIFFEL = ("Eiffel Tower", "{} is located in the country of", "France", "Italy")


def bank_edit(subject: str, template: str, old: str, new: str, n: int = 20):
    """A fake edit whose paraphrases are the template bank's, as ``make_edit`` builds them."""
    request = EditRequest(subject, template, old, new)
    paras = list(TemplateBankGenerator().generate(request, n, seed=0).prompts)
    edit = fake_edit(subject, template, old=old, new=new)
    return dataclasses.replace(edit, prompts=PromptSet(paras, paras, paras, [True] * len(paras)))


class _Tok:
    """What a text-only router needs of a model: a tokenizer it never calls."""

    tokenizer = object()


@pytest.fixture(scope="module")
def edits():
    return [bank_edit(*JAPAN_LANGUAGE), bank_edit(*JAPAN_CAPITAL), bank_edit(*EIFFEL)]


@pytest.fixture(scope="module")
def scopes(edits):
    return [fit_scope(e, GateConfig()) for e in edits]


@pytest.fixture(scope="module")
def router(edits, scopes):
    return ScopeRouter(edits, scopes, model=_Tok())


def test_fold_and_subject_match() -> None:
    assert fold("  São  TOMÉ’s ") == "sao tome's"
    assert find_subject("the capital of JAPAN is", "Japan")
    assert find_subject("Die Hauptstadt von Japan", "japan")
    assert not find_subject("Japanese food is", "Japan")
    assert not find_subject("anything", "  ")
    assert find_subject("Visit São Paulo today", "Sao Paulo")


def test_relation_views_mask_the_subject_in_the_sentences_that_name_it() -> None:
    views = relation_views(
        "It rained in Paris. Is the capital of Japan Tokyo? The capital of Japan is", "Japan"
    )
    assert views is not None and views[0].startswith("it rained in paris.")
    assert "the capital of X is" in views and all("X" in v for v in views)
    assert not any("rained" in v for v in views[1:])
    assert relation_views("The capital of France is", "Japan") is None
    quoted = relation_views("Reconsider 'The capital of Japan is' please.", "Japan")
    assert quoted is not None and "the capital of X is" in quoted


def test_gate_config_checks_fact_options() -> None:
    assert GateConfig().kind == "fact"
    with pytest.raises(ValueError, match="metric"):
        GateConfig(kind="fact", metric="mahalanobis")
    with pytest.raises(ValueError, match="fixed"):
        GateConfig(kind="fact", threshold=1.0)
    with pytest.raises(ValueError, match="distance_fpr"):
        GateConfig(distance_fpr=1.5)
    assert GateConfig.from_dict(GateConfig().to_dict()) == GateConfig()


def test_negatives_leave_out_the_relation_and_what_it_implies() -> None:
    own = RELATIONS["P17"]
    ids = {r.id for r in independent_relations(own)}
    assert "P17" not in ids and "P30" not in ids and "P37" not in ids  # implied by the country
    assert "P106" in ids  # an occupation is not
    assert all(r.object_kind != own.object_kind for r in independent_relations(own))
    assert len(independent_relations(None)) == len(RELATIONS)


def test_japan_language_edit_leaves_the_capital_alone(router) -> None:
    prompts = [
        "The official language of Japan is",  # 0: the language edit
        "In Japan, people officially speak",  # 0
        "JAPAN's official language is",  # 0
        "The capital of Japan is",  # 1: the capital edit, served beside it
        "Japan's capital city is",  # 1
        "Tell me about Japan.",  # mentions the subject only
        "The official language of France is",  # another subject
        "The Eiffel Tower was built in the year",  # another fact of the Eiffel edit's subject
        "The Eiffel Tower is in the country of",  # 2
        "The capital of the country where the Eiffel Tower is located is",  # 2: an implication
    ]
    assert router.route_texts(prompts).tolist() == [0, 0, 0, 1, 1, -1, -1, -1, 2, 2]


def test_explain_lists_each_candidate_with_scores_and_decision(router, edits) -> None:
    rows = router.explain("The capital of Japan is")
    assert {r["edit"] for r in rows} == {edits[0].id, edits[1].id}  # the Eiffel edit: no subject
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["edit"] == edits[1].id and chosen[0]["accepted"]
    language = next(r for r in rows if r["edit"] == edits[0].id)
    assert not language["accepted"]
    assert language["margin"] <= language["margin_threshold"] or (
        language["distance"] >= language["distance_threshold"]
    )
    assert router.explain("The weather today is") == []


def test_calibration_reports_rates_and_a_held_out_tpr(scopes) -> None:
    for scope in scopes:
        assert isinstance(scope, FactScope)
        cal = scope.calibration
        assert cal.threshold == 1.0 and cal.n_out > 100 and cal.guaranteed
        assert cal.fpr <= scope.config.fpr + 1e-9
        assert set(cal.fpr_by_kind) == {"relation", "mention"}
        assert cal.tpr is not None and cal.n_in >= 3


def test_a_gate_does_not_depend_on_the_other_edits(edits, scopes) -> None:
    again = fit_scope(edits[0], GateConfig(), neighbours=["The capital of Japan is"] * 5)
    assert torch.equal(again.positives, scopes[0].positives)
    assert (again.margin, again.cap) == (scopes[0].margin, scopes[0].cap)
    alone = ScopeRouter(edits[:1], scopes[:1], model=_Tok())
    assert alone.route_texts(
        ["The capital of Japan is", "In Japan, people officially speak"]
    ).tolist() == [-1, 0]


def test_a_subject_missing_from_every_prompt_falls_back_with_a_warning(caplog) -> None:
    from sake_lens.gate import Scope

    edit = bank_edit(*JAPAN_LANGUAGE)
    prompts = ["Hello there", "Good morning to you", "See you later"]
    edit = dataclasses.replace(edit, prompts=PromptSet(prompts, prompts, prompts, [True] * 3))
    with caplog.at_level(logging.WARNING):
        scope = fit_scope(edit, GateConfig())
    assert isinstance(scope, Scope) and scope.config.kind == "embedding"
    assert "'Japan' occurs in none of its prompts" in caplog.text


def test_fact_gates_save_and_load(tmp_path: Path, edits) -> None:
    book = EditBook()
    for e in edits:
        book.add(e)
    book.save(tmp_path / "book")
    loaded = EditBook.load(tmp_path / "book")
    probes = ["The capital of Japan is", "People in Japan officially speak", "Tell me about Japan."]
    r1 = book.router(_Tok()).route_texts(probes).tolist()
    r2 = loaded.router(_Tok()).route_texts(probes).tolist()
    assert r1 == r2 == [1, 0, -1]
    row = loaded.list()[0]
    assert row["gate"].startswith("fact (margin >") and row["threshold"] is None
    assert loaded.explain("The capital of Japan is", _Tok()) == book.explain(
        "The capital of Japan is", _Tok()
    )


def test_a_gate_calibrated_on_another_bank_warns(scopes, caplog) -> None:
    meta = scopes[0].metadata() | {"bank_hash": "0" * 64}
    with caplog.at_level(logging.WARNING):
        again = FactScope.from_saved(meta, scopes[0].state_dict())
    assert "another version of the relation" in caplog.text
    assert again.margin == scopes[0].margin
    assert template_bank().hash != "0" * 64


def test_embedding_gates_still_load_and_route(tmp_path: Path) -> None:
    book = EditBook(gate=GateConfig(kind="embedding"))
    book.add(bank_edit(*JAPAN_LANGUAGE))
    book.save(tmp_path / "old")
    loaded = EditBook.load(tmp_path / "old")
    assert loaded.gate.kind == "embedding"
    assert loaded.router(_Tok()).route_texts(["People in Japan officially speak"]).tolist() == [0]


def test_explain_needs_a_registry(capsys) -> None:
    assert main(["generate", "The capital of Japan is", "--explain"]) == 2
    assert "--edits" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def japan_book(model):
    from sake_lens.steer.workflow import make_edit

    book = EditBook(model=model)
    book.add(make_edit(model, EditRequest(*JAPAN_LANGUAGE)))
    book.add(make_edit(model, EditRequest(*JAPAN_CAPITAL)))
    return book


@pytest.mark.slow
def test_japan_language_edit_keeps_the_capital_through_generation(model, japan_book) -> None:
    from sake_lens.steer.generation import generate

    language = japan_book.active_edits()[0]
    book = EditBook(model=model)
    book.add(language)
    prompts = ["The official language of Japan is", "The capital of Japan is"]
    before = generate(model, prompts, max_new_tokens=8)
    with book.steer(model):
        after = generate(model, prompts, max_new_tokens=8)
    assert after[0].strip().startswith("French")
    assert after[1] == before[1]  # every generated token as the unedited model's


@pytest.mark.slow
def test_two_edits_of_one_subject_each_on_its_own_relation(model, japan_book) -> None:
    from sake_lens.prompts.contexts import chat_prompt
    from sake_lens.steer.generation import generate

    lead = "The weather was mild all week, and the markets were quiet. " * 6
    prompts = [
        "The official language of Japan is",
        "The capital of Japan is",
        lead + "The official language of Japan is",
        chat_prompt(model.tokenizer, "The capital of Japan is"),
        "The currency of the United States is",
    ]
    before = generate(model, prompts, max_new_tokens=6)
    with japan_book.steer(model):
        after = generate(model, prompts, max_new_tokens=6)
    routes = japan_book.router(model).last_routes.tolist()
    assert routes[:4] == [0, 1, 0, 1] and routes[4] == -1
    assert after[0].strip().startswith("French") and "Osaka" in after[1]
    assert after[2].strip().startswith("French")
    assert after[4] == before[4]
