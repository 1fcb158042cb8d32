"""The ripple suite (templates, builder, scoring) and implied edits, on the real default model
where a model is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sake_lens.errors import DataError
from sake_lens.evaluate.data import RIPPLE_FAMILIES, RippleProbe, load_records
from sake_lens.evaluate.metrics import ProbeResult, record_metrics
from sake_lens.evaluate.ripple import (
    FAMILIES,
    Subject,
    build_ripple_suite,
    check_ripple_model,
    fill,
    ripple_subjects,
    ripple_templates,
)
from sake_lens.prompts.implications import (
    IMPLICATION_TEMPLATES,
    IMPLIED_EDIT_TEMPLATES,
    implied_facts,
)
from sake_lens.prompts.relations import RELATIONS, match_relation
from sake_lens.prompts.request import EditRequest
from sake_lens.prompts.text import normalize_template


def _norm(template: str) -> str:
    return normalize_template(template).rstrip(" .")


def _suite_templates() -> list[str]:
    t = ripple_templates()
    out = [x for attrs in t.compositionality_1.values() for ts in attrs.values() for x in ts]
    out += [x for ts in t.subject_aliasing.values() for x in ts]
    return out + [x for ts in t.compositionality_2.values() for x in ts]


def test_suite_templates_are_held_out() -> None:
    """No probe template of the suite is one an implied edit is fitted with, one the harness
    probes implications with, or a paraphrase of the relation bank."""
    fitted = {_norm(t) for ts in IMPLIED_EDIT_TEMPLATES.values() for t in ts}
    harness = {_norm(t) for tpl in IMPLICATION_TEMPLATES for t in tpl.templates}
    bank = {
        _norm(t) for r in RELATIONS.values() for t in (*r.paraphrases, *r.counterfact_templates)
    }
    suite = {_norm(t) for t in _suite_templates()}
    assert not suite & fitted
    assert not suite & harness
    assert not suite & bank
    assert not fitted & harness  # an implied edit is never scored on its own prompts


def test_edit_prompts_ask_their_declared_relation() -> None:
    t = ripple_templates()
    for kind, prompts in t.edit_prompts.items():
        for prompt in prompts:
            rel = match_relation(prompt, objects=["France"])
            assert rel is not None and rel.id == t.relations[kind], (kind, prompt)


def test_candidate_subjects() -> None:
    subjects = ripple_subjects()
    kinds = {s.kind for s in subjects}
    assert kinds == {"landmark", "company", "person"}
    assert len(subjects) >= 300
    assert len({s.name.casefold() for s in subjects}) == len(subjects)
    for s in subjects:
        for prompt, answer in s.facts:
            assert prompt.count("{}") == 1 and answer


def test_fill_puts_the_article_where_it_belongs() -> None:
    assert fill("{} is in", "Eiffel Tower") == "Eiffel Tower is in"
    assert fill("{} is in", "Eiffel Tower", True) == "The Eiffel Tower is in"
    assert fill("Visitors to {} pay", "Eiffel Tower", True) == "Visitors to the Eiffel Tower pay"


def test_implied_facts_follow_the_new_object() -> None:
    req = EditRequest("Eiffel Tower", "{} is located in the country of", "France", "Italy")
    facts = {f.chain[1]: f for f in implied_facts(req)}
    assert set(facts) == {"capital", "language"}  # continent and currency do not change
    capital = facts["capital"]
    assert (capital.request.old, capital.request.new) == ("Paris", "Rome")
    assert capital.request.subject == "Eiffel Tower"
    assert all(
        "{prompt}" in c and c.rstrip().endswith("{prompt}") for c in capital.target_templates
    )
    assert "Italy" in capital.target_templates[0] and "Rome" in capital.target_templates[0]
    unknown = EditRequest("Eiffel Tower", "{} is located in the country of", "France", "Atlantis")
    assert implied_facts(unknown) == []


def test_ripple_probe_parsing_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown ripple family"):
        RippleProbe.from_dict({"family": "telepathy", "prompt": "p", "answer": "a"})
    records = [
        {
            "case_id": f"c{i}",
            "subject": "Eiffel Tower",
            "prompt": "The Eiffel Tower is located in the country of",
            "ground_truth": "France",
            "target_new": "Italy",
            "split": split,
            "ripple": [
                {"family": "compositionality_1", "prompt": "Its capital is", "answer": "Rome"}
            ],
        }
        for i, split in enumerate(["dev", "test", "test"])
    ]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"records": records}))
    test = load_records(path, split="test")
    assert [r.case_id for r in test.records] == ["c1", "c2"]
    assert test.records[0].ripple[0].answer == "Rome"
    with pytest.raises(DataError, match="its splits"):
        load_records(path, split="holdout")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{k: v for k, v in records[0].items() if k != "split"}]))
    with pytest.raises(DataError, match="marks no splits"):
        load_records(plain, split="test")


def test_ripple_metrics_per_family() -> None:
    def probe(family: str, greedy: str, expected: str, aliases=()) -> ProbeResult:
        return ProbeResult("ripple", "p", greedy, expected, relation=family, aliases=tuple(aliases))

    probes = [
        probe("compositionality_1", " Rome", "Rome"),
        probe("compositionality_1", " Italy", "Rome"),
        probe("subject_aliasing", " Dimashq", "Damascus", aliases=["Dimashq"]),
        probe("object_locality", " Paris", "Paris"),
    ]
    m = record_metrics(probes, subject="s", new="Italy", old="France")
    assert m["ripple_compositionality_1"] == 0.5
    assert m["ripple_subject_aliasing"] == 1.0
    assert m["ripple_object_locality"] == 1.0
    assert m["ripple_relation_specificity"] is None  # no probe of that family
    assert set(FAMILIES) <= set(RIPPLE_FAMILIES)


def test_check_ripple_model(model) -> None:
    assert check_ripple_model([{"case_id": 1}], model) is None
    other = {"format": "sake-lens-ripple", "format_version": 1, "manifest": {"model_id": "x"}}
    with pytest.raises(DataError, match="built for model 'x'"):
        check_ripple_model(other, model)


def test_build_suite_on_the_model(model) -> None:
    subjects = [
        Subject(
            "landmark",
            "Eiffel Tower",
            "France",
            "La Tour Eiffel",
            "the tower designed by Gustave Eiffel",
            (("{} was designed by", "Gustave Eiffel"),),
        ),
        Subject("company", "Samsung", "South Korea"),
        Subject("person", "Pablo Picasso", "Spain"),
        Subject("person", "Nobody Atall", "Spain"),  # not known: dropped
    ]
    suite = build_ripple_suite(model, subjects=subjects, progress=False)
    assert check_ripple_model(suite, model) is not None
    records = {r["subject"]: r for r in suite["records"]}
    assert "Nobody Atall" not in records
    assert suite["manifest"]["counts"]["dropped"]["subject not known"] >= 1
    from sake_lens.prompts.world import DEFAULT_TABLE

    for r in records.values():
        assert r["target_new"] != r["ground_truth"] and r["split"] in ("dev", "test")
        for p in r["ripple"]:
            assert p["family"] in FAMILIES
            if p["family"] == "compositionality_1":
                attrs = {row.value for row in DEFAULT_TABLE.rows if row.entity == r["target_new"]}
                assert p["answer"] in attrs and p["answer"] != p["old_answer"]
            if p["family"] == "object_locality":
                assert r["target_new"] in p["prompt"] or r["ground_truth"] in p["prompt"]
        assert any(p["family"] == "compositionality_1" for p in r["ripple"])
    loaded = load_records_from(suite)
    assert all(rec.ripple for rec in loaded)


def load_records_from(suite: dict) -> list:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.json"
        path.write_text(json.dumps(suite))
        result = load_records(path)
    assert not result.errors
    return result.records


def test_implied_edits_move_two_hop_prompts_to_the_implied_answer(model, tmp_path) -> None:
    """Eiffel Tower -> Italy with its implied edits: a held-out capital prompt says Rome, the
    edit prompt Italy, the old country's own facts stay; the registry keeps the implied edits
    as entries of their own and removes them with the edit."""
    from sake_lens.registry.book import EditBook
    from sake_lens.steer.generation import generate
    from sake_lens.steer.workflow import make_edit

    req = EditRequest("Eiffel Tower", "{} is located in the country of", "France", "Italy")
    edit = make_edit(model, req, implications=True)
    chains = {x.implication for x in edit.implied}
    assert ("P17", "capital") in chains
    assert all(x.implied_by == edit.id for x in edit.implied)
    book = EditBook(model=model)
    eid = book.add(edit)
    assert len(book) == 1 + len(edit.implied)
    prompts = [
        "The Eiffel Tower is located in the country of",
        "The capital city of the country that the Eiffel Tower is in is",
        "The capital of France is",
    ]
    with book.steer(model):
        out = generate(model, prompts, max_new_tokens=2)
    assert out[0].strip().startswith("Italy")
    assert out[1].strip().startswith("Rome")
    assert out[2].strip().startswith("Paris")
    book.save(tmp_path / "book")
    again = EditBook.load(tmp_path / "book", model=model)
    assert sorted(e.implied_by for e in again) == sorted(["", *[eid] * len(edit.implied)])
    again.remove(eid)
    assert len(again) == 0


def test_an_implied_edit_takes_a_row_from_its_edit() -> None:
    """Two-hop prompts also name the edit's relation, so both gates may accept them: the
    implied edit takes the row when it accepts it and its paraphrases are nearer, whatever the
    ratios; an edit's own prompt, nearer the edit's paraphrases, stays with the edit."""
    from types import SimpleNamespace

    import torch

    from sake_lens.gate import Calibration, GateConfig, Scope, ScopeStats
    from sake_lens.gate.router import ScopeRouter

    site = "ln_final.hook_out"
    cfg = GateConfig(kind="hidden")
    scopes = [
        Scope(
            cfg, site, ScopeStats.fit(torch.zeros(3, 4), "euclidean"), Calibration(1.0, 0.05, 0.0)
        )
        for _ in range(3)
    ]
    edits = [
        SimpleNamespace(id="edit", implied_by="", site=SimpleNamespace(hook=site)),
        SimpleNamespace(id="capital", implied_by="edit", site=SimpleNamespace(hook=site)),
        SimpleNamespace(id="other", implied_by="elsewhere", site=SimpleNamespace(hook=site)),
    ]
    router = ScopeRouter(edits, scopes)
    inf = float("inf")
    # ratios (threshold 1): row 0 and 1 accepted by both the edit (better) and the capital edit
    dist = torch.tensor([[0.2, 0.9, inf], [0.2, 0.9, inf], [0.5, inf, inf], [inf, 0.5, 0.3]])
    near = torch.tensor([[0.6, 0.3, inf], [0.1, 0.3, inf], [0.2, 0.9, inf], [inf, 0.2, 0.1]])
    assert router.decide(dist).tolist() == [0, 0, 0, 2]  # no distances: the smallest ratio
    router.last_paraphrase_distance = near.double()
    assert router.decide(dist.double()).tolist() == [1, 0, 0, 2]
    alone = ScopeRouter([edits[0], edits[2]], [scopes[0], scopes[2]])
    alone.last_paraphrase_distance = near[:, [0, 2]].double()
    assert alone.decide(dist[:, [0, 2]].double()).tolist() == [0, 0, 0, 1]


def test_an_implied_gate_leaves_the_edit_prompts_to_the_edit(model) -> None:
    """The implied edit's fact gate calibrates against its edit's relation too."""
    from sake_lens.gate import GateConfig
    from sake_lens.gate.fact import fit_fact_scope
    from sake_lens.steer.implied import fit_implied_edits
    from sake_lens.steer.workflow import make_edit

    req = EditRequest("Eiffel Tower", "{} is located in the country of", "France", "Italy")
    edit = make_edit(model, req, n_paraphrases=6)
    implied = fit_implied_edits(model, edit)
    assert implied
    for x in implied:
        assert x.implied_by == edit.id and x.config.alpha == edit.config.implied_alpha
        assert "P17" in fit_fact_scope(x, GateConfig()).negatives


def test_eval_prints_the_ripple_families(model, tmp_path, monkeypatch, capsys) -> None:
    """``sake-lens eval --split test`` on a ripple suite and on a RippleEdits file as
    published: the families, with records and probes."""
    from sake_lens.cli import eval as eval_cli
    from sake_lens.cli.main import main

    suite = {
        "format": "sake-lens-ripple",
        "format_version": 1,
        "manifest": {"model_id": "SmolLM2-135M-Instruct"},
        "records": [
            {
                "case_id": "eiffel",
                "split": "test",
                "subject": "Eiffel Tower",
                "prompt": "The Eiffel Tower is located in the country of",
                "ground_truth": "France",
                "target_new": "Italy",
                "ripple": [
                    {
                        "family": "compositionality_1",
                        "prompt": "The capital city of the country that the Eiffel Tower is in is",
                        "answer": "Rome",
                        "old_answer": "Paris",
                    },
                    {
                        "family": "object_locality",
                        "prompt": "The capital of France is",
                        "answer": "Paris",
                    },
                    {
                        "family": "compositionality_1",
                        "prompt": "Mexico's capital is",
                        "answer": "Mexico City",
                        "ambiguous": True,
                    },
                ],
            }
        ],
    }
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    monkeypatch.setattr(eval_cli, "load_from_args", lambda args: model)
    out = tmp_path / "none.json"
    argv = ["eval", "--data", str(path), "--split", "test", "--method", "none", "--mode", "all"]
    assert main([*argv, "--no-generation", "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| ripple_compositionality_1 | 0.0 |" in text  # unedited: still Paris
    assert "| ripple_object_locality | 100.0 |" in text
    counts = json.loads(out.read_text())["breakdowns"]["ripple_probes"]
    assert counts["compositionality_1"]["probes"] == 1  # the ambiguous probe is not scored
    assert main([*argv[:-4], "--split", "dev", "--method", "none"]) == 2
    assert "split 'dev'" in capsys.readouterr().err
    data = Path(__file__).parent / "data" / "rippleedits_sample.json"
    argv = ["eval", "--data", str(data), "--method", "none", "--mode", "all", "--no-generation"]
    assert main([*argv, "--no-progress"]) == 0
    assert "ripple_relation_specificity" in capsys.readouterr().out


def test_ripple_suite_cli_checks_the_output_before_loading_the_model(tmp_path, capsys) -> None:
    from sake_lens.cli.main import main

    assert main(["ripple-suite", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["ripple-suite", "--out", str(tmp_path / "missing" / "suite.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["ripple-suite", "--out", str(tmp_path / "suite.yaml")]) == 2
    assert "one JSON object" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_with_implied_edits_single_and_all_mode(model, tmp_path, monkeypatch) -> None:
    """``--implications``: each record's implied edits are fitted, served beside its edit in
    both modes, saved with the run's fits and read back on resume."""
    from sake_lens.evaluate import methods as methods_mod
    from sake_lens.evaluate.methods import MethodOverrides
    from sake_lens.evaluate.runner import EvalConfig, run_evaluation
    from sake_lens.evaluate.suite import SuiteConfig

    monkeypatch.setattr(methods_mod, "_default_n_paraphrases", lambda: 8)
    record = {
        "case_id": "eiffel",
        "split": "test",
        "subject": "Eiffel Tower",
        "prompt": "The Eiffel Tower is located in the country of",
        "ground_truth": "France",
        "target_new": "Italy",
        "ripple": [
            {
                "family": "compositionality_1",
                "prompt": "The capital city of the country that the Eiffel Tower is in is",
                "answer": "Rome",
                "old_answer": "Paris",
            }
        ],
    }
    path = tmp_path / "suite.json"
    path.write_text(json.dumps([record]))
    suite = SuiteConfig(
        doubts=(), long_contexts=0, implications=0, relations=1, texts=1, passages=0
    )
    outcomes = {}
    for mode in ("single", "all"):
        config = EvalConfig(
            data=str(path),
            method="sake",
            mode=mode,
            generation=False,
            suite=suite,
            n_boot=50,
            overrides=MethodOverrides(implications=True),
        )
        out = tmp_path / f"{mode}.json"
        result = run_evaluation(model, config, out=out, progress=False)
        rec = result["records"][0]
        assert rec["status"] == "ok"
        assert {tuple(x["implication"]) for x in rec["edit"]["implied"]} >= {("P17", "capital")}
        probe = next(p for p in rec["probes"] if p["kind"] == "ripple")
        assert probe["fired"] and not probe["own"]  # an implied edit, not the edit itself
        outcomes[mode] = rec["probes"]
        if mode == "all":
            out.unlink()  # rescore from the saved fits, implied edits included
            again = run_evaluation(model, config, out=out, progress=False)
            assert again["records"][0]["probes"] == rec["probes"]
            assert again["records"][0]["edit"]["implied"] == rec["edit"]["implied"]
    assert result["config"]["overrides"]["implications"] is True
