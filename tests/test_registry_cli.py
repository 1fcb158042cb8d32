"""``sake-lens edits list/remove/enable/disable``, ``generate --edits`` and ``edit --save``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sake_lens.cli.main import main
from sake_lens.registry import EditBook

from .test_gate_router import FAKE_GATE, SUBJECTS, FakeFeatures, fake_edit


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures())
    for s in SUBJECTS[:3]:
        book.add(fake_edit(s))
    return book.save(tmp_path / "reg")


def test_edits_list(registry: Path, capsys) -> None:
    assert main(["edits", "list", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "| id |" in out and all(s in out for s in SUBJECTS[:3]) and "hidden/euclidean" in out
    assert main(["edits", "list", str(registry), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["subject"] for r in rows] == list(SUBJECTS[:3])


def test_edits_remove_disable_enable(registry: Path, capsys) -> None:
    ids = [e.id for e in EditBook.load(registry).entries]
    assert main(["edits", "remove", str(registry), ids[1]]) == 0
    assert "removed" in capsys.readouterr().out
    assert [e.id for e in EditBook.load(registry).entries] == [ids[0], ids[2]]
    assert main(["edits", "disable", str(registry), ids[0]]) == 0
    assert not EditBook.load(registry).entries[0].enabled
    assert main(["edits", "enable", str(registry), ids[0]]) == 0
    assert EditBook.load(registry).entries[0].enabled


def test_edits_errors_are_one_clean_line(registry: Path, tmp_path: Path, capsys) -> None:
    assert main(["edits", "remove", str(registry), "no-such-edit"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("sake-lens edits: error: No edit 'no-such-edit'") and "Traceback" not in err
    )
    assert main(["edits", "list", str(tmp_path / "missing")]) == 2
    assert "No edit registry" in capsys.readouterr().err


@pytest.mark.slow
def test_edit_save_and_generate_with_edits(tiny_model, tmp_path: Path, monkeypatch, capsys) -> None:
    from sake_lens.cli import edit as edit_cmd
    from sake_lens.cli import generate as generate_cmd
    from sake_lens.gate import GateConfig
    from sake_lens.prompts.distributions import DistributionConfig
    from sake_lens.prompts.request import EditRequest
    from sake_lens.steer.edit import EditConfig, fit_edit

    config = EditConfig(distributions=DistributionConfig(validate_targets=False))
    request = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    edit = fit_edit(
        tiny_model, request, ["{} grew up speaking", "As a child, {} spoke"], config=config
    )
    monkeypatch.setattr(edit_cmd, "load_from_args", lambda args: tiny_model)
    monkeypatch.setattr(generate_cmd, "load_from_args", lambda args: tiny_model)
    monkeypatch.setattr(edit_cmd, "build_edit", lambda model, args: edit)
    reg = tmp_path / "reg"
    argv = [
        "edit",
        "--prompt",
        request.prompt,
        "--subject",
        request.subject,
        "--old",
        "French",
        "--new",
        "English",
        "--max-new-tokens",
        "2",
        "--save",
        str(reg),
    ]
    assert main(argv) == 0
    assert f"saved to {reg}" in capsys.readouterr().out
    book = EditBook.load(reg, model=tiny_model)
    assert [e.id for e in book.entries] == [edit.id]
    assert book.gate == GateConfig() and book.entries[0].scope is not None
    assert main(argv) == 2  # the same edit again: a clean error, the registry unchanged
    assert "already in this registry" in capsys.readouterr().err

    assert (
        main(
            [
                "generate",
                "--edits",
                str(reg),
                request.text,
                "The weather today is",
                "--max-new-tokens",
                "3",
                "--json",
                "--compare",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["edit"] for r in rows] == [edit.id, None]
    assert rows[1]["before"] == rows[1]["continuation"]
    assert main(["generate", "The weather today is", "--max-new-tokens", "2"]) == 0
    assert "| prompt | continuation |" in capsys.readouterr().out


def test_a_damaged_entry_can_still_be_listed_and_removed(registry: Path, capsys) -> None:
    from sake_lens.errors import EditFileError

    victim = EditBook.load(registry).entries[0]
    obj = registry / "objects" / f"{victim._object[0]}.safetensors"
    obj.write_bytes(obj.read_bytes()[:100])
    with pytest.raises(EditFileError, match="sake-lens edits remove"):
        EditBook.load(registry)
    assert main(["edits", "list", str(registry)]) == 0
    assert victim.id in capsys.readouterr().out
    assert main(["edits", "remove", str(registry), victim.id]) == 0
    assert len(EditBook.load(registry)) == 2 and not obj.exists()


def test_malformed_manifest_entry(registry: Path) -> None:
    from sake_lens.errors import EditFileError

    manifest = registry / "registry.json"
    data = json.loads(manifest.read_text())
    del data["entries"][1]["edit"]["request"]
    manifest.write_text(json.dumps(data))
    with pytest.raises(EditFileError, match="malformed"):
        EditBook.load(registry)
