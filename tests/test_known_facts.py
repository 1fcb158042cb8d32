"""Known-fact sets: the whole-word criterion, filtering, the manifest, the round trip through
``load_records``, the model check and the command line (with a fake generator), and one run on
the real default model."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sake_lens.cli import known_facts as cli_mod
from sake_lens.cli.main import main
from sake_lens.errors import DataError, SakeLensError
from sake_lens.evaluate import check_known_facts_model, load_records
from sake_lens.evaluate import known_facts as kf
from sake_lens.evaluate.known_facts import (
    FORMAT,
    KnownFactsConfig,
    build_known_facts,
    parse_records_range,
    produces_object,
    select_records,
    write_known_facts,
)


# ------------------------------------------------------------------------------ a fake model
class FakeTokenizer:
    """One token per whitespace-separated word."""

    bos_token = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [len(w) for w in text.split()]


def fake_model(name: str = "fake/model") -> Any:
    cfg = SimpleNamespace(model_name=name, default_prepend_bos=False)
    return SimpleNamespace(cfg=cfg, tokenizer=FakeTokenizer())


# What the fake model says after each prompt (anything else: " the").
CONTINUATIONS = {
    "The mother tongue of Danielle Darrieux is": " French. She was",
    "The mother tongue of Jean Gabin is": " French and",
    "The mother tongue of Léon Blum is": " Frenchman",  # not the whole word
    "The Eiffel Tower is located in the city of": " Parisian",  # not the whole word
    "The Louvre is located in the city of": " the",
    "Toko Yasuda, the": " guitar player",
    "Autonomous University of Madrid, which is located in": "\n Spain, the",
    "The capital of Lower Saxony is": " hanover",  # wrong case
    "What is the twin city of Lyon? It is": " Beirut",
}

RECORDS: list[Any] = [
    {  # 0: edit prompt known, 1 of 2 neighbours known
        "case_id": 0,
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of Danielle Darrieux is",
        "ground_truth": "French",
        "target_new": "English",
        "rephrase_prompt": "Danielle Darrieux grew up speaking",
        "locality_prompt": [
            "The mother tongue of Jean Gabin is",
            "The mother tongue of Léon Blum is",
        ],
        "locality_ground_truth": ["French", "French"],
    },
    {  # 1: nothing known: dropped
        "case_id": 1,
        "subject": "Eiffel Tower",
        "prompt": "The Eiffel Tower is located in the city of",
        "ground_truth": "Paris",
        "target_new": "Rome",
        "rephrase_prompt": "Where is the Eiffel Tower? It is in the city of",
        "locality_prompt": "The Louvre is located in the city of",
        "locality_ground_truth": "Paris",
    },
    "not a record",  # 2: bad
    {  # 3: ROME format, edit prompt unknown, its neighbour known
        "case_id": 3,
        "requested_rewrite": {
            "prompt": "{}, which is located in",
            "subject": "Complutense University of Madrid",
            "target_new": {"str": "Italy"},
            "target_true": {"str": "Spain"},
        },
        "paraphrase_prompts": ["It is sunny. Complutense University of Madrid is in"],
        "neighborhood_prompts": [
            {"prompt": "Autonomous University of Madrid, which is located in", "target": "Spain"}
        ],
    },
    {  # 4: edit prompt known, no neighbourhood prompt at all
        "case_id": 4,
        "subject": "Toko Yasuda",
        "prompt": "Toko Yasuda, the",
        "ground_truth": "guitar",
        "target_new": "piano",
        "rephrase_prompt": [],
        "locality_prompt": [],
        "locality_ground_truth": [],
    },
    {  # 5: wrong case
        "case_id": 5,
        "subject": "Lower Saxony",
        "prompt": "The capital of Lower Saxony is",
        "ground_truth": "Hanover",
        "target_new": "Munich",
        "locality_prompt": [],
        "locality_ground_truth": [],
    },
]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "source.json"
    path.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], int]]:
    """Replace the generator by :data:`CONTINUATIONS`; record every call."""
    seen: list[tuple[list[str], int]] = []

    def fake_generate(model: Any, prompts: list[str], *, max_new_tokens: int) -> list[str]:
        seen.append((list(prompts), max_new_tokens))
        return [CONTINUATIONS.get(p, " the") for p in prompts]

    monkeypatch.setattr(kf, "generate", fake_generate)
    return seen


# ------------------------------------------------------------------------------ the criterion
@pytest.mark.parametrize(
    ("continuation", "obj", "expected"),
    [
        (" Paris", "Paris", True),
        ("Paris", "Paris", True),
        (" Paris, the capital", "Paris", True),
        (" Paris.", "Paris", True),
        ("\n\n Paris is", "Paris", True),
        (" Paris-based", "Paris", True),
        (" Parisian", "Paris", False),
        (" Paris2", "Paris", False),
        (" paris", "Paris", False),
        (" PARIS", "Paris", False),
        (" Par", "Paris", False),
        (" the Paris", "Paris", False),
        ("", "Paris", False),
        (" New York City", "New York", True),
        (" New Yorker", "New York", False),
        (" Cafe\u0301 au lait", "Caf\u00e9", True),  # NFD continuation, NFC object
        (" Caf\u00e9s", "Cafe\u0301", False),
        (" Léon", "Léon", True),
        (" U.S. Army", "U.S.", True),
    ],
)
def test_produces_object_whole_word(continuation: str, obj: str, expected: bool) -> None:
    assert produces_object(continuation, obj) is expected


# ------------------------------------------------------------------------ filtering, manifest
def test_build_filters_and_writes_a_manifest(data_file: Path, calls, tmp_path: Path) -> None:
    config = KnownFactsConfig(data=str(data_file), batch_size=2)
    result = build_known_facts(fake_model(), config, progress=False)
    assert result["format"] == FORMAT and result["format_version"] == 1
    kept = {r["case_id"]: r for r in result["records"]}
    assert list(kept) == [0, 3, 4]

    darrieux = kept[0]
    assert darrieux["known_edit"] is True and darrieux["source_position"] == 0
    assert darrieux["prompt"] == "The mother tongue of Danielle Darrieux is"
    assert darrieux["rephrase_prompt"] == ["Danielle Darrieux grew up speaking"]
    assert darrieux["locality_prompt"] == ["The mother tongue of Jean Gabin is"]
    assert darrieux["locality_ground_truth"] == ["French"]
    madrid = kept[3]
    assert madrid["known_edit"] is False and madrid["source_position"] == 3
    assert madrid["prompt"] == "Complutense University of Madrid, which is located in"
    assert (madrid["ground_truth"], madrid["target_new"]) == ("Spain", "Italy")
    assert madrid["locality_prompt"] == ["Autonomous University of Madrid, which is located in"]
    assert madrid["locality_ground_truth"] == ["Spain"]
    assert kept[4]["known_edit"] is True and kept[4]["locality_prompt"] == []

    manifest = result["manifest"]
    assert manifest["model_id"] == "fake/model"
    assert manifest["prepend_bos"] is False
    assert manifest["sake_lens_version"]
    assert "whole object" in manifest["criteria"]
    assert manifest["source"] == {
        "file": "source.json",
        "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
    }
    assert manifest["selection"] == {"all": True}
    assert manifest["counts"] == {
        "records_read": 5,
        "records_skipped": 1,
        "records_kept": 3,
        "known_edit_prompts": 2,
        "neighbourhood_prompts_read": 4,
        "neighbourhood_prompts_kept": 2,
    }
    assert manifest["created_at"].endswith("+00:00")
    assert str(tmp_path) not in json.dumps(manifest)

    # batches: at most batch_size prompts, one token budget each (object tokens + 2)
    assert all(len(prompts) <= 2 for prompts, _ in calls)
    budgets = {p: k for prompts, k in calls for p in prompts}
    assert budgets["The mother tongue of Danielle Darrieux is"] == 1 + 2
    assert budgets["Autonomous University of Madrid, which is located in"] == 1 + 2
    # every distinct prompt once
    generated = [p for prompts, _ in calls for p in prompts]
    assert len(generated) == len(set(generated)) == 9


def test_multi_token_objects_get_their_own_budget(tmp_path: Path, calls) -> None:
    record = {
        "case_id": "ny",
        "subject": "Broadway",
        "prompt": "Broadway is in",
        "ground_truth": "New York City",
        "target_new": "Rome",
        "locality_prompt": ["The Bronx is in", "Broadway is in"],
        "locality_ground_truth": ["New York", "New York City"],
    }
    path = tmp_path / "ny.json"
    path.write_text(json.dumps([record]), encoding="utf-8")
    build_known_facts(fake_model(), KnownFactsConfig(data=str(path)), progress=False)
    # "New York" is 2 fake tokens, "New York City" 3; the same prompt with the same budget is
    # generated once
    assert calls == [(["The Bronx is in"], 4), (["Broadway is in"], 5)]


def test_round_trip_through_load_records(data_file: Path, calls, tmp_path: Path) -> None:
    result = build_known_facts(fake_model(), KnownFactsConfig(data=str(data_file)))
    out = write_known_facts(result, tmp_path / "known.json")
    assert {p.name for p in tmp_path.iterdir()} == {"source.json", "known.json"}  # no temp file
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    loaded = load_records(out)
    assert loaded.errors == []
    source = {r.case_id: r for r in load_records(data_file).records}
    assert [r.case_id for r in loaded.records] == ["0", "3", "4"]
    for record, written in zip(loaded.records, result["records"]):
        original = source[record.case_id]
        assert record.request == original.request
        assert record.paraphrase_prompts == original.paraphrase_prompts
        assert list(record.neighborhood_prompts) == written["locality_prompt"]
        assert list(record.neighborhood_answers) == written["locality_ground_truth"]
    # a known-fact set is itself a valid source
    again = build_known_facts(fake_model(), KnownFactsConfig(data=str(out)), progress=False)
    assert again["records"] == [
        {**r, "source_position": i} for i, r in enumerate(result["records"])
    ]


def test_selection_by_records_and_n(data_file: Path, calls) -> None:
    model = fake_model()
    by_range = build_known_facts(model, KnownFactsConfig(data=str(data_file), records=(1, 4)))
    assert by_range["manifest"]["selection"] == {"records": "1:4"}
    counts = by_range["manifest"]["counts"]
    assert (counts["records_read"], counts["records_skipped"]) == (2, 1)  # positions 1, 3
    assert [r["source_position"] for r in by_range["records"]] == [3]

    first = build_known_facts(model, KnownFactsConfig(data=str(data_file), n=2))
    assert first["manifest"]["selection"] == {"n": 2}
    assert first["manifest"]["counts"]["records_read"] == 2
    assert [r["case_id"] for r in first["records"]] == [0]


def test_selection_matches_load_records(tmp_path: Path) -> None:
    duplicated = [*RECORDS, {**RECORDS[0], "prompt": "Danielle Darrieux spoke"}]
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(duplicated, ensure_ascii=False), encoding="utf-8")
    for n in (None, 1, 3, 10):
        sel = select_records(KnownFactsConfig(data=str(path), n=n))
        loaded = load_records(path, n=n)
        assert sel.records == loaded.records
        assert len(sel.errors) == len(loaded.errors)
    sel = select_records(KnownFactsConfig(data=str(path)))
    assert sel.positions == [0, 1, 3, 4, 5] and sel.n_file == 7
    assert sel.raw == [duplicated[i] for i in sel.positions]
    assert any("duplicate case_id" in e for e in sel.errors)


def test_selection_errors(data_file: Path) -> None:
    with pytest.raises(DataError, match="past the end"):
        select_records(KnownFactsConfig(data=str(data_file), records=(2, 7)))
    with pytest.raises(DataError, match="No valid record"):
        select_records(KnownFactsConfig(data=str(data_file), records=(2, 3)))
    with pytest.raises(DataError, match="not both"):
        KnownFactsConfig(data=str(data_file), records=(0, 1), n=1)
    with pytest.raises(DataError, match=">= 1"):
        KnownFactsConfig(data=str(data_file), n=0)
    assert parse_records_range("2000:3000") == (2000, 3000)
    for bad in ("5:2", "3:3", "x:y", "1:2:3", "7", "", "-1:4"):
        with pytest.raises(DataError, match="--records"):
            parse_records_range(bad)


# ------------------------------------------------------------------------------ model check
def test_check_known_facts_model(data_file: Path, calls, tmp_path: Path) -> None:
    result = build_known_facts(fake_model("fake/model"), KnownFactsConfig(data=str(data_file)))
    out = write_known_facts(result, tmp_path / "known.json")
    assert check_known_facts_model(out, fake_model("fake/model")) == result["manifest"]
    assert check_known_facts_model(result, fake_model("fake/model")) == result["manifest"]
    for data in (out, str(out), result):
        with pytest.raises(DataError) as info:
            check_known_facts_model(data, fake_model("other/model"))
        message = str(info.value)
        assert "\n" not in message
        assert "'fake/model'" in message and "'other/model'" in message
        assert "sake-lens known-facts --data source.json --out" in message
    # anything else is not a known-fact set
    assert check_known_facts_model(data_file, fake_model("other/model")) is None
    assert check_known_facts_model(RECORDS, fake_model("other/model")) is None
    assert check_known_facts_model({"records": []}, fake_model("other/model")) is None
    assert check_known_facts_model(tmp_path / "missing.json", fake_model()) is None
    newer = {**result, "format_version": 2}
    with pytest.raises(DataError, match="format version 2"):
        check_known_facts_model(newer, fake_model("fake/model"))
    with pytest.raises(DataError, match="without a manifest"):
        check_known_facts_model({"format": FORMAT, "records": []}, fake_model())


# ------------------------------------------------------------------------------ command line
@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(args: Any) -> Any:
        raise AssertionError("the model must not be loaded when the arguments are bad")

    monkeypatch.setattr(cli_mod, "load_from_args", refuse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--records", "5:2"], "START < STOP"),
        (["--records", "x:y"], "START:STOP"),
        (["--records", "4:9"], "past the end"),
        (["--records", "0:2", "--n", "3"], "not both"),
        (["--n", "0"], ">= 1"),
        (["--out", "{tmp}/missing/known.json"], "does not exist"),
        (["--out", "{tmp}"], "is a directory"),
        (["--out", "{tmp}/"], "is a directory"),
        (["--out", "{data}"], "is the --data file"),
        (["--out", "{tmp}/known.jsonl"], ".json file"),
        (["--data", "{tmp}/missing.json"], "Cannot read"),
    ],
)
def test_cli_argument_errors(
    extra: list[str], message: str, data_file: Path, tmp_path: Path, no_model, capsys
) -> None:
    args = ["known-facts", "--data", str(data_file), "--out", str(tmp_path / "known.json")]
    args += [a.format(tmp=tmp_path, data=data_file) for a in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("sake-lens known-facts: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "known.json").exists()


def test_cli_writes_the_set(
    data_file: Path, tmp_path: Path, calls, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(cli_mod, "load_from_args", lambda args: fake_model())
    out = tmp_path / "known.json"
    argv = ["known-facts", "--data", str(data_file), "--out", str(out), "--records", "0:5"]
    assert main([*argv, "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "kept 3 / 4 records (2 known edit prompts), 2 / 4 neighbourhood prompts, "
        f"1 bad records skipped; written to {out}"
    ]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["manifest"]["selection"] == {"records": "0:5"}
    assert [r.case_id for r in load_records(out).records] == ["0", "3", "4"]


def test_errors_are_sake_lens_errors() -> None:
    assert issubclass(DataError, SakeLensError)


# ------------------------------------------------------------------------------ real model
REAL_RECORDS = [
    {
        "case_id": "darrieux",
        "subject": "Danielle Darrieux",
        "prompt": "The mother tongue of Danielle Darrieux is",
        "ground_truth": "French",
        "target_new": "English",
        "rephrase_prompt": ["Danielle Darrieux grew up speaking"],
        "locality_prompt": ["The mother tongue of Jean Gabin is"],
        "locality_ground_truth": ["French"],
    },
    {
        "case_id": "obscure",
        "subject": "Zorvath Quellin",
        "prompt": "Zorvath Quellin plays the position of",
        "ground_truth": "goaltender",
        "target_new": "quarterback",
        "rephrase_prompt": ["Zorvath Quellin is a"],
        "locality_prompt": ["Brannic Holloway plays the position of"],
        "locality_ground_truth": ["goaltender"],
    },
]


def test_known_facts_on_the_default_model(model, tmp_path: Path) -> None:
    from sake_lens import generate

    path = tmp_path / "real.json"
    path.write_text(json.dumps(REAL_RECORDS), encoding="utf-8")
    result = build_known_facts(model, KnownFactsConfig(data=str(path)), progress=False)
    kept = {r["case_id"]: r for r in result["records"]}
    assert "darrieux" in kept and kept["darrieux"]["known_edit"] is True
    assert "obscure" not in kept
    # the criterion agrees with a plain greedy generation of each prompt
    for record in result["records"]:
        text = generate(model, record["prompt"], max_new_tokens=6)[0]
        assert produces_object(text, record["ground_truth"]) is record["known_edit"]
        for prompt, answer in zip(record["locality_prompt"], record["locality_ground_truth"]):
            assert produces_object(generate(model, prompt, max_new_tokens=6)[0], answer)
    out = write_known_facts(result, tmp_path / "known.json")
    assert [r.case_id for r in load_records(out).records] == list(kept)
    assert check_known_facts_model(out, model)["model_id"] == result["manifest"]["model_id"]
