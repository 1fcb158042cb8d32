"""Standard sets: RippleEdits and MQuAKE files converted into ripple-suite records."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sake_lens._version import __version__
from sake_lens.errors import DataError
from sake_lens.evaluate.standard_sets import (
    RIPPLEEDITS_FAMILIES,
    convert_standard_set,
    detect_standard_set,
    load_mquake,
    load_rippleedits,
)
from sake_lens.prompts.request import EditRequest

DATA = Path(__file__).parent / "data"
RIPPLE = DATA / "rippleedits_sample.json"
MQUAKE = DATA / "mquake_sample.json"

RECORD_KEYS = {
    "case_id",
    "split",
    "kind",
    "subject",
    "prompt",
    "ground_truth",
    "target_new",
    "rephrase_prompt",
    "locality_prompt",
    "locality_ground_truth",
    "ripple",
}
PROBE_KEYS = {"family", "prompt", "answer", "aliases", "old_answer", "ambiguous"}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def ripple_entries() -> list[dict[str, Any]]:
    return json.loads(RIPPLE.read_text(encoding="utf-8"))


def mquake_cases() -> list[dict[str, Any]]:
    return json.loads(MQUAKE.read_text(encoding="utf-8"))


def check_shape(result: dict[str, Any], source: str, source_file: str) -> None:
    assert result["format"] == "sake-lens-ripple"
    assert result["format_version"] == 1
    manifest = result["manifest"]
    assert manifest["source"] == source
    assert manifest["source_file"] == source_file
    assert manifest["built_with"] == f"sake-lens {__version__}"
    assert manifest["n_skipped"] == len(manifest["skipped"])
    for record in result["records"]:
        assert set(record) == RECORD_KEYS
        assert record["split"] == "test"
        assert record["prompt"].count("{}") == 1
        assert not record["prompt"].endswith(record["target_new"])
        EditRequest(
            record["subject"], record["prompt"], record["ground_truth"], record["target_new"]
        )
        for probe in record["ripple"]:
            assert set(probe) == PROBE_KEYS
            assert probe["answer"] not in probe["aliases"]


# ------------------------------------------------------------------------------ RippleEdits
def test_rippleedits_sample_records() -> None:
    result = load_rippleedits(RIPPLE)
    check_shape(result, "RippleEdits", "rippleedits_sample.json")
    manifest = result["manifest"]
    assert manifest["n_source_entries"] == 3
    assert manifest["n_skipped"] == 1
    assert manifest["skipped"][0].startswith("entry 2: no original_fact")
    assert manifest["n_queries_without_answers"] == 1

    first, second = result["records"]
    assert first["case_id"] == "rippleedits-0"
    assert first["kind"] == "popular"
    assert first["subject"] == "Leonardo DiCaprio"
    assert first["prompt"] == "The name of the country of citizenship of {} is"
    assert first["ground_truth"] == "United States of America"
    assert first["target_new"] == "Syria"
    assert second["case_id"] == "rippleedits-1"
    assert second["kind"] == "random"
    assert (second["subject"], second["ground_truth"], second["target_new"]) == (
        "Keanu Reeves",
        "Canada",
        "Mexico",
    )


def test_rippleedits_probe_families_and_counts() -> None:
    first, second = load_rippleedits(RIPPLE)["records"]
    families = [p["family"] for p in first["ripple"]]
    assert families == [
        "relation_specificity",
        "compositionality_1",
        "compositionality_1",
        "compositionality_2",
        "forgetfulness",
        "subject_aliasing",
    ]
    assert {p["family"] for p in second["ripple"]} == {
        "relation_specificity",
        "compositionality_1",
        "forgetfulness",
        "subject_aliasing",
    }
    assert len(second["ripple"]) == 4
    assert set(RIPPLEEDITS_FAMILIES.values()) == {
        "relation_specificity",
        "logical_generalization",
        "compositionality_1",
        "compositionality_2",
        "forgetfulness",
        "subject_aliasing",
        "preservation",
    }
    # condition queries are not probes
    prompts = [p["prompt"] for p in first["ripple"]]
    assert "The name of the capital city of Syria is" not in prompts
    assert all(p["old_answer"] is None for p in first["ripple"] + second["ripple"])


def test_rippleedits_answers_and_aliases() -> None:
    first, second = load_rippleedits(RIPPLE)["records"]
    mother = first["ripple"][0]
    assert mother["prompt"] == "The name of the mother of Leonardo DiCaprio is"
    assert mother["answer"] == "Irmelin DiCaprio"
    assert mother["aliases"] == ["Irmelin Indenbirken", "Irmelin Indenbirken-DiCaprio"]
    occupation = next(p for p in second["ripple"] if p["family"] == "relation_specificity")
    assert occupation["answer"] == "actor"
    assert occupation["aliases"] == [
        "actress",
        "actors",
        "film producer",
        "movie producer",
        "producer",
        "musician",
    ]


def test_rippleedits_ambiguous_flag() -> None:
    first, second = load_rippleedits(RIPPLE)["records"]
    by_prompt = {p["prompt"]: p for p in second["ripple"]}
    capital = by_prompt[
        "The name of the capital city of the country of citizenship of Keanu Reeves is"
    ]
    assert capital["answer"] == "Mexico City" and capital["ambiguous"] is True
    alias = by_prompt["The name of the country of citizenship of Keanu Charles Reeves is"]
    assert alias["answer"] == "Mexico" and alias["ambiguous"] is False
    assert not any(p["ambiguous"] for p in first["ripple"])


def test_rippleedits_constructed_ambiguity_is_case_insensitive(tmp_path: Path) -> None:
    entry = copy.deepcopy(ripple_entries()[1])
    query = entry["Compositionality_I"][0]["test_queries"][0]
    query["answers"] = [{"value": "mexico city", "aliases": []}]
    entry["Logical_Generalization"] = [
        {
            "test_queries": [
                {**query, "answers": [{"value": "Mexicali", "aliases": []}]},
            ],
            "test_condition": "OR",
            "condition_queries": [],
        }
    ]
    result = load_rippleedits(write(tmp_path / "one.json", [entry]))
    probes = {p["answer"]: p for p in result["records"][0]["ripple"]}
    assert probes["mexico city"]["ambiguous"] is True
    assert probes["Mexicali"]["ambiguous"] is False  # "Mexicali" does not start with "Mexico"


def test_rippleedits_unconvertible_entries_are_skipped_or_raised(tmp_path: Path) -> None:
    entries = ripple_entries()
    mismatched = copy.deepcopy(entries[0])
    mismatched["edit"]["prompt"] = "Leonardo DiCaprio holds the citizenship of Syria."
    unknown = copy.deepcopy(entries[1])
    unknown["edit"]["relation"] = "INVENTED_RELATION"
    same = copy.deepcopy(entries[1])
    same["edit"]["prompt"] = same["edit"]["original_fact"]["prompt"]
    path = write(tmp_path / "mixed.json", [entries[0], mismatched, unknown, same])
    manifest = load_rippleedits(path)["manifest"]
    assert manifest["n_source_entries"] == 4
    assert manifest["n_skipped"] == 3
    reasons = " | ".join(manifest["skipped"])
    assert "entry 1:" in reasons and "do not both read" in reasons
    assert "entry 2: unknown relation 'INVENTED_RELATION'" in reasons
    assert "entry 3: the old and new objects are the same" in reasons
    with pytest.raises(DataError, match=r"mixed\.json.*entry 1 cannot be converted"):
        load_rippleedits(path, strict=True)


def test_rippleedits_skipped_reasons_are_capped(tmp_path: Path) -> None:
    recent = ripple_entries()[2]
    result = load_rippleedits(write(tmp_path / "recent.json", [recent] * 25))
    assert result["records"] == []
    assert result["manifest"]["n_skipped"] == 25
    assert len(result["manifest"]["skipped"]) == 20


def test_rippleedits_preservation_and_readme_spelling(tmp_path: Path) -> None:
    entry = copy.deepcopy(ripple_entries()[0])
    entry["Relation_Specifity"] = entry.pop("Relation_Specificity")
    entry["Preservation"] = entry.pop("Forgetfulness")
    families = [
        p["family"]
        for p in load_rippleedits(write(tmp_path / "e.json", [entry]))["records"][0]["ripple"]
    ]
    assert "relation_specificity" in families and "preservation" in families
    assert "forgetfulness" not in families


# ----------------------------------------------------------------------------------- MQuAKE
def test_mquake_sample_records() -> None:
    result = load_mquake(MQUAKE)
    check_shape(result, "MQuAKE", "mquake_sample.json")
    manifest = result["manifest"]
    assert manifest["n_source_entries"] == 2
    assert manifest["n_skipped"] == 0
    assert manifest["n_queries_without_answers"] == 0
    records = result["records"]
    assert [r["case_id"] for r in records] == [
        "mquake-1561-0",
        "mquake-1561-1",
        "mquake-1561-2",
        "mquake-27-0",
    ]
    assert all(r["kind"] == "multi-hop" for r in records)
    first = records[0]
    assert first["subject"] == "Dudley Town F.C."
    assert first["prompt"] == "{} is associated with the sport of"
    assert (first["ground_truth"], first["target_new"]) == ("association football", "cricket")


def test_mquake_probes_on_last_rewrite() -> None:
    records = load_mquake(MQUAKE)["records"]
    assert records[0]["ripple"] == [] and records[1]["ripple"] == []
    last = records[2]
    multi = [p for p in last["ripple"] if p["family"] == "multi_hop"]
    single = [p for p in last["ripple"] if p["family"] == "single_hop"]
    assert len(multi) == 3 and len(single) == 3
    assert multi[0]["prompt"].startswith("What is the capital of the country where Dudley")
    assert all(p["answer"] == "Oderzo" and p["old_answer"] == "London" for p in multi)
    assert all(p["aliases"] == [] for p in multi)
    assert single[1]["prompt"] == "cricket was created in the country of"  # the cloze
    assert single[1]["answer"] == "Australia"
    assert single[1]["aliases"] == ["Commonwealth of Australia", "AU", "AUS"]
    assert all(p["old_answer"] is None for p in single)

    one = records[3]
    assert len(one["ripple"]) == 3 + 4
    assert one["ripple"][0]["answer"] == "Tripoli"
    assert one["ripple"][0]["aliases"] == ["Tripoli, Libya", "Ṭarābulus"]
    assert not any(p["ambiguous"] for p in one["ripple"])


def test_mquake_hop_without_cloze_uses_question(tmp_path: Path) -> None:
    case = mquake_cases()[1]
    for hop in case["new_single_hops"]:
        del hop["cloze"]
    case["new_single_hops"][0]["answer"] = ""
    result = load_mquake(write(tmp_path / "MQuAKE-T.json", [case]))
    single = [p for p in result["records"][0]["ripple"] if p["family"] == "single_hop"]
    assert [p["prompt"] for p in single] == [
        "Who is the chief executive officer of WWE?",
        "What is the country of citizenship of Vince McMahon?",
        "What is the capital of Libya?",
    ]
    assert result["manifest"]["n_queries_without_answers"] == 1


def test_mquake_unconvertible_case_is_skipped(tmp_path: Path) -> None:
    good, other = mquake_cases()
    bad = copy.deepcopy(other)
    bad["case_id"] = 99
    bad["requested_rewrite"][0]["prompt"] = "Vince McMahon is a citizen of"
    path = write(tmp_path / "cases.json", [good, bad])
    result = load_mquake(path)
    assert len(result["records"]) == 3
    assert result["manifest"]["n_skipped"] == 1
    assert result["manifest"]["skipped"][0].startswith("case 99: the prompt")
    with pytest.raises(DataError, match=r"case 99 cannot be converted"):
        load_mquake(path, strict=True)


# ---------------------------------------------------------------------- detection, errors
def test_detection() -> None:
    assert detect_standard_set(ripple_entries()) == "rippleedits"
    assert detect_standard_set(mquake_cases()) == "mquake"
    rome = [{"case_id": 0, "requested_rewrite": {"prompt": "{} is", "subject": "x"}}]
    assert detect_standard_set(rome) is None  # CounterFact, not MQuAKE
    assert detect_standard_set([]) is None
    assert detect_standard_set({"records": []}) is None
    assert detect_standard_set([1, 2]) is None


def test_convert_standard_set_dispatches(tmp_path: Path) -> None:
    assert convert_standard_set(RIPPLE)["manifest"]["source"] == "RippleEdits"
    assert convert_standard_set(MQUAKE)["manifest"]["source"] == "MQuAKE"
    other = write(tmp_path / "counterfact.json", [{"case_id": 0, "prompt": "p"}])
    with pytest.raises(DataError, match=r"counterfact\.json.*neither a RippleEdits nor an MQuAKE"):
        convert_standard_set(other)


def test_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json.*not valid JSON"):
        load_rippleedits(broken)
    with pytest.raises(DataError, match=r"Cannot read .*missing\.json"):
        load_mquake(tmp_path / "missing.json")
    with pytest.raises(DataError, match=r"obj\.json.*expected a JSON list of entries"):
        load_rippleedits(write(tmp_path / "obj.json", {"data": []}))
    with pytest.raises(DataError, match=r"empty\.json.*holds no entries"):
        load_mquake(write(tmp_path / "empty.json", []))

    no_edit = ripple_entries()
    del no_edit[1]["edit"]
    with pytest.raises(DataError, match=r"no_edit\.json.*entry 1 lacks the key 'edit'") as info:
        load_rippleedits(write(tmp_path / "no_edit.json", no_edit))
    assert "\n" not in str(info.value) and "popular.json" in str(info.value)

    no_prompt = ripple_entries()
    del no_prompt[0]["Compositionality_I"][1]["test_queries"][0]["prompt"]
    with pytest.raises(DataError, match=r"Compositionality_I\[1\]\.test_queries\[0\] lacks"):
        load_rippleedits(write(tmp_path / "no_prompt.json", no_prompt))

    no_answer = mquake_cases()
    del no_answer[1]["new_answer"]
    with pytest.raises(DataError, match=r"case_id 27\) lacks the key 'new_answer'.*MQuAKE"):
        load_mquake(write(tmp_path / "no_answer.json", no_answer))


def test_wrong_loader_names_the_right_one() -> None:
    with pytest.raises(DataError, match=r"is an MQuAKE file.*load_mquake"):
        load_rippleedits(MQUAKE)
    with pytest.raises(DataError, match=r"is a RippleEdits file.*load_rippleedits"):
        load_mquake(RIPPLE)


def test_wrong_type_names_the_expected_one(tmp_path: Path) -> None:
    cases = mquake_cases()
    cases[0]["questions"] = "What is the capital?"
    with pytest.raises(DataError, match=r"'questions' is a str, not a list"):
        load_mquake(write(tmp_path / "q.json", cases))
