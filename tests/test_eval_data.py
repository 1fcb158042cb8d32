"""Evaluation data loaders: EasyEdit flat, ROME, simple JSON/YAML lists, bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sake_lens.errors import DataError
from sake_lens.evaluate.data import EvalRecord, load_records, parse_record
from tests.helpers import DEV_DATA

DEV = DEV_DATA  # the CounterFact dev file

FLAT = {
    "case_id": 1,
    "prompt": "The official religion of Edwin of Northumbria is",
    "target_new": "Islam",
    "subject": "Edwin of Northumbria",
    "ground_truth": "Christianity",
    "rephrase_prompt": "It rained. Edwin of Northumbria is affiliated with the religion",
    "locality_prompt": "The official religion of Paul is",
    "locality_ground_truth": "Christianity",
}

ROME = {
    "case_id": 0,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": [
        "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
        "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
    ],
    "neighborhood_prompts": [
        "The mother tongue of L\u00e9on Blum is",
        "The native language of Montesquieu is",
    ],
    "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
    "generation_prompts": ["Danielle Darrieux's mother tongue is"],
}


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_flat_record() -> None:
    r = parse_record(FLAT)
    assert r.case_id == "1" and r.source_format == "easyedit"
    assert r.request.template == "The official religion of {} is"
    assert (r.request.old, r.request.new) == ("Christianity", "Islam")
    assert r.paraphrase_prompts == (FLAT["rephrase_prompt"],)
    assert r.neighborhood_prompts == ("The official religion of Paul is",)
    assert r.neighborhood_answers == ("Christianity",)


def test_flat_record_with_lists() -> None:
    raw = {**FLAT, "rephrase_prompt": ["a Edwin of Northumbria b", "Edwin of Northumbria c"]}
    raw["locality_prompt"] = ["x is", "y is"]
    raw["locality_ground_truth"] = "Christianity"  # one answer for every locality prompt
    r = parse_record(raw)
    assert len(r.paraphrase_prompts) == 2 and r.neighborhood_answers == ("Christianity",) * 2


def test_rome_record() -> None:
    r = parse_record(ROME)
    assert r.case_id == "0" and r.source_format == "rome"
    assert r.request.text == "The mother tongue of Danielle Darrieux is"
    assert (r.request.old, r.request.new) == ("French", "English")
    assert len(r.paraphrase_prompts) == 2
    assert r.neighborhood_answers == ("French", "French")


def test_rome_neighbourhood_dicts() -> None:
    raw = json.loads(json.dumps(ROME))
    raw["neighborhood_prompts"] = [{"prompt": "Montesquieu speaks", "target": " French"}]
    r = parse_record(raw)
    assert r.neighborhood_prompts == ("Montesquieu speaks",) and r.neighborhood_answers == (
        "French",
    )


def test_simple_yaml_list(tmp_path: Path) -> None:
    path = tmp_path / "edits.yaml"
    path.write_text(
        "- subject: Danielle Darrieux\n"
        "  prompt: The mother tongue of {} is\n"
        "  old: French\n"
        "  new: English\n"
        "  paraphrases: ['{} spoke the language', 'Danielle Darrieux was a native speaker of']\n"
        "  neighbourhood:\n"
        "    - The mother tongue of Jean Gabin is\n"
        "    - {prompt: Angela Merkel speaks, answer: German}\n"
        "- {id: eiffel, subject: Eiffel Tower, prompt: The Eiffel Tower is in, old: Paris, new: Rome}\n",
        encoding="utf-8",
    )
    res = load_records(path)
    assert res.errors == []
    a, b = res.records
    assert a.case_id == "#0" and b.case_id == "eiffel"
    assert a.paraphrase_prompts[0] == "Danielle Darrieux spoke the language"
    assert a.neighborhood_answers == ("French", "German")
    assert b.paraphrase_prompts == () and b.neighborhood_prompts == ()


def test_bad_records_are_reported_and_the_rest_run(tmp_path: Path) -> None:
    same = {**FLAT, "case_id": 2, "target_new": "christianity"}  # old == new
    missing = {k: v for k, v in FLAT.items() if k != "subject"}
    missing["case_id"] = 3
    path = _write(tmp_path, "d.json", [FLAT, same, missing, "not a record", {"x": 1}, FLAT])
    res = load_records(path)
    assert [r.case_id for r in res.records] == ["1"]
    assert len(res.errors) == 5
    assert "record 1 (case_id 2)" in res.errors[0] and "same" in res.errors[0]
    assert "record 2 (case_id 3)" in res.errors[1] and "subject" in res.errors[1]
    assert "record 3" in res.errors[2] and "object" in res.errors[2]
    assert "unknown record format" in res.errors[3]
    assert "duplicate case_id" in res.errors[4]


def test_first_n_valid_in_file_order(tmp_path: Path) -> None:
    rows = [{**FLAT, "case_id": i} for i in range(5)]
    rows.insert(1, {**FLAT, "case_id": 99, "subject": "Nobody"})  # subject not in the prompt
    res = load_records(_write(tmp_path, "d.json", rows), n=3)
    assert [r.case_id for r in res.records] == ["0", "1", "2"]
    assert len(res.errors) == 1 and len(res.sha256) == 64


def test_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "a.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_records(broken)
    with pytest.raises(DataError, match="list of records"):
        load_records(_write(tmp_path, "b.json", {"hello": 1}))
    with pytest.raises(DataError, match="Cannot read"):
        load_records(tmp_path / "missing.json")
    with pytest.raises(DataError, match="n must be"):
        load_records(_write(tmp_path, "c.json", [FLAT]), n=0)


def test_jsonl_and_records_key(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(FLAT) + "\n\n" + json.dumps(ROME) + "\n", encoding="utf-8")
    assert [r.source_format for r in load_records(path).records] == ["easyedit", "rome"]
    wrapped = load_records(_write(tmp_path, "w.json", {"records": [ROME]}))
    assert wrapped.records[0].case_id == "0"


def test_record_round_trip() -> None:
    r = parse_record(ROME)
    assert EvalRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r


@pytest.mark.skipif(not DEV.exists(), reason="dev data not available")
def test_dev_file_loads() -> None:
    res = load_records(DEV, n=50)
    assert len(res.records) == 50 and res.errors == []
    assert all(r.neighborhood_prompts and r.paraphrase_prompts for r in res.records)
