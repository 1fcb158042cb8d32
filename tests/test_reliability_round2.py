"""Reliability, second round: sites that cannot steer, damaged manifests that are valid JSON,
arguments checked before the model loads, and edits refused for low target purity.

Each test names the failure it guards against: an edit that silently does nothing or crashes
after the fit, a registry that loads hand-edited metadata and routes or answers differently,
a bad argument found only after minutes of fitting, and a borderline purity that fails with
the seed and gives advice the command line cannot follow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sake_lens.cli.main import _COMMAND_MODULES, main
from sake_lens.errors import EditFileError, SiteError
from sake_lens.model.sites import resolve_site, site_problem
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import EditBook, list_saved, remove_saved, set_saved_enabled, storage
from sake_lens.steer.edit import EditConfig, LowPurityError, fit_edit
from sake_lens.steer.generation import generate
from sake_lens.steer.hooks import SiteSteerer, steered
from sake_lens.steer.workflow import STRONGER_TARGET_TEMPLATES, make_edit

from .reliability_helpers import SUBJECTS, fake_book, load_book

REQUEST = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
PARAPHRASES = ["The native language of {} is", "{} grew up speaking"]
EDIT_ARGS = [
    "edit",
    "--prompt",
    REQUEST.prompt,
    "--subject",
    REQUEST.subject,
    "--old",
    REQUEST.old,
    "--new",
    REQUEST.new,
]


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"sake-lens {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command that loads a model fails the test if it gets that far."""

    def refuse(args: argparse.Namespace) -> None:
        raise AssertionError("the model was loaded although an argument is bad")

    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"sake_lens.cli.{name}")
        if hasattr(module, "load_from_args"):
            monkeypatch.setattr(module, "load_from_args", refuse)


@pytest.fixture
def cli_model(model, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``sake-lens edit`` runs on the session's real model (loaded once)."""
    from sake_lens.cli import edit as edit_cmd

    monkeypatch.setattr(edit_cmd, "load_from_args", lambda args: model)
    return model


# ----------------------------------------------------------------------------- 1. sites
def test_an_edit_at_the_normalised_hook_changes_the_output(model) -> None:
    """The bridge ignores in-place writes to ``ln_final.hook_normalized``; an edit there used to
    pass validation and leave every logit unchanged."""
    config = EditConfig(site="ln_final.hook_normalized", generation="prompt")
    edit = fit_edit(model, REQUEST, PARAPHRASES, config=config)
    tokens = torch.tensor([model.tokenizer.encode(REQUEST.text, add_special_tokens=False)])
    with torch.no_grad():
        base = model(tokens)[0, -1]
        with steered(model, [edit]):
            moved = model(tokens)[0, -1]
            after = generate(model, REQUEST.text, max_new_tokens=2)
    assert (moved - base).abs().max() > 1.0
    assert after != generate(model, REQUEST.text, max_new_tokens=2)
    assert REQUEST.new in after[0]


@pytest.mark.parametrize(
    ("hook", "why"),
    [
        ("ln_final.hook_scale", "not (batch, position, d_model=576)"),
        ("hook_embed", "depends only on that token"),
        ("blocks.0.hook_resid_pre", "depends only on that token"),
        ("blocks.0.attn.hook_q", "not (batch, position, d_model=576)"),
        ("hook_pos_embed", "never fires"),
    ],
)
def test_sites_where_an_edit_cannot_work_are_refused(model, hook: str, why: str) -> None:
    """``hook_scale`` used to fit and then crash; ``hook_embed`` fitted a rank-0 map."""
    with pytest.raises(SiteError) as err:
        resolve_site(model, hook)
    msg = str(err.value)
    assert "cannot steer" in msg and why in msg
    assert "'ln_final.hook_out'" in msg and "blocks.{L}.hook_resid_post" in msg


def test_the_site_check_writes_through_the_steering_hook(model, monkeypatch) -> None:
    """Validation and steering share one write path: break the steering write, and the site
    check refuses every site."""
    model.__dict__.pop("_sake_lens_site_problems", None)
    monkeypatch.setattr(SiteSteerer, "_result", lambda self, act: act)  # drops the written copy
    try:
        assert "leaves the logits unchanged" in str(site_problem(model, "ln_final.hook_out"))
    finally:
        model.__dict__.pop("_sake_lens_site_problems", None)


def test_an_unsteered_pass_keeps_the_tensor_it_was_given(model) -> None:
    """No row routed to an edit: the hook returns its input, so the bridge keeps its exact
    forward (a copy would switch ``hook_normalized`` to the reconstructed path)."""

    class Nowhere:
        def route(self, acts: torch.Tensor, site: str) -> torch.Tensor:
            return torch.full((acts.shape[0],), -1, dtype=torch.long)

        def hooks(self) -> list[tuple[str, Any]]:
            return []

    steerer = SiteSteerer("ln_final.hook_out", [], [], Nowhere())
    act = torch.randn(2, 3, 4)
    assert steerer(act, None) is act


def test_cli_refuses_a_site_that_cannot_steer_before_fitting(
    cli_model, monkeypatch, capsys
) -> None:
    from sake_lens.cli import edit as edit_cmd

    def no_fit(model: Any, args: argparse.Namespace) -> None:
        raise AssertionError("the edit was fitted at a site that cannot steer")

    monkeypatch.setattr(edit_cmd, "build_edit", no_fit)
    assert main([*EDIT_ARGS, "--site", "ln_final.hook_scale"]) == 2
    err = one_error_line(capsys, "edit")
    assert "'ln_final.hook_scale' cannot steer" in err and "'ln_final.hook_out'" in err


# ----------------------------------------------------------------------------- 3. manifests
def _registry(tmp_path: Path) -> Path:
    path = tmp_path / "reg"
    fake_book(SUBJECTS[:3]).save(path)
    return path


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / storage.MANIFEST).read_text())


def _write(path: Path, manifest: dict[str, Any]) -> None:
    (path / storage.MANIFEST).write_text(json.dumps(manifest, indent=1))


def _threshold_x10(m: dict[str, Any]) -> None:
    m["entries"][1]["scope"]["calibration"]["threshold"] *= 10


def _other_tensor_file(m: dict[str, Any]) -> None:
    for key in ("object", "bytes"):
        m["entries"][1][key] = m["entries"][0][key]


def _site_changed(m: dict[str, Any]) -> None:
    m["entries"][1]["edit"]["site"]["hook"] = "blocks.3.hook_resid_post"


def _new_renamed(m: dict[str, Any]) -> None:
    m["entries"][1]["edit"]["request"]["new"] = "Klingon"


def _checksum_dropped(m: dict[str, Any]) -> None:
    del m["entries"][1]["checksum"]


DAMAGE: dict[str, Callable[[dict[str, Any]], None]] = {
    "threshold x10": _threshold_x10,
    "another entry's tensor file": _other_tensor_file,
    "site changed": _site_changed,
    "new object renamed": _new_renamed,
    "checksum dropped": _checksum_dropped,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_valid_json_damage_to_an_entry_is_refused(tmp_path: Path, damage: str) -> None:
    path = _registry(tmp_path)
    manifest = _manifest(path)
    eid = manifest["entries"][1]["id"]
    DAMAGE[damage](manifest)
    _write(path, manifest)
    for read in (lambda: load_book(path), lambda: list_saved(path)):
        with pytest.raises(EditFileError) as err:
            read()
        msg = str(err.value)
        assert f"Entry {eid} of {path / storage.MANIFEST}" in msg
        assert f"sake-lens edits remove {path} {eid}" in msg and "save the edit again" in msg


def test_a_damaged_entry_can_be_removed_but_not_carried_over(tmp_path: Path) -> None:
    path = _registry(tmp_path)
    manifest = _manifest(path)
    first, second = (e["id"] for e in manifest["entries"][:2])
    _new_renamed(manifest)
    _write(path, manifest)
    with pytest.raises(EditFileError, match="fails its checksum"):
        set_saved_enabled(path, first, False)  # would re-checksum the damaged entry
    assert remove_saved(path, second)["id"] == second
    assert [e.id for e in load_book(path).entries] == [first, manifest["entries"][2]["id"]]


def test_saving_over_a_damaged_registry_is_refused(tmp_path: Path) -> None:
    path = _registry(tmp_path)
    book = load_book(path)
    other = fake_book(SUBJECTS[:3])
    other.save(path)  # a newer generation on disk: the next save replays onto it
    manifest = _manifest(path)
    _threshold_x10(manifest)
    _write(path, manifest)
    book.remove(book.entries[0].id)
    with pytest.raises(EditFileError, match="fails its checksum"):
        book.save()


def test_a_registry_saved_before_entry_checksums_loads_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _registry(tmp_path)
    manifest = _manifest(path)
    del manifest[storage.ENTRY_CHECKSUMS]
    for entry in manifest["entries"]:
        del entry["checksum"]
    _write(path, manifest)
    with caplog.at_level(logging.WARNING, logger="sake_lens.registry.storage"):
        book = load_book(path)
    assert len(book) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "without entry checksums" in warnings[0]
    assert "cannot be detected" in warnings[0]
    book.save()  # saved again: every entry checksummed, damage found from now on
    manifest = _manifest(path)
    assert all("checksum" in e for e in manifest["entries"])
    _site_changed(manifest)
    _write(path, manifest)
    with pytest.raises(EditFileError, match="fails its checksum"):
        load_book(path)


def test_the_saved_checksum_is_the_entry_content(tmp_path: Path) -> None:
    path = _registry(tmp_path)
    for entry in _manifest(path)["entries"]:
        assert entry["checksum"] == storage.entry_checksum(entry)
        assert storage.check_entry(path, entry, required=True)


# ----------------------------------------------------------------------------- 7. arguments
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-new-tokens", "-1"], "--max-new-tokens -1 is out of range"),
        (["--probe", ""], "--probe '' is empty"),
        (["--probe", "  "], "give the text to continue"),
        (["--edit-config", "{not json"], "--edit-config is not valid JSON"),
        (["--edit-config", '{"alhpa": 1}'], "Unknown EditConfig fields"),
        (["--edit-config", '{"distributions": {"min_purity": 3}}'], "min_purity must lie in"),
    ],
)
def test_edit_arguments_are_checked_before_the_model_loads(
    extra: list[str], message: str, no_model, capsys
) -> None:
    assert main([*EDIT_ARGS, *extra]) == 2
    assert message in one_error_line(capsys, "edit")


def test_a_bad_save_path_is_found_before_the_model_loads(tmp_path: Path, no_model, capsys) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a registry")
    for save, message in [
        (file, "is a file, not a registry directory"),
        (file / "edits", "is a file, so no directory can be created under it"),
        (file / "a" / "b", "is a file, so no directory can be created under it"),
    ]:
        assert main([*EDIT_ARGS, "--save", str(save)]) == 2
        assert message in one_error_line(capsys, "edit")
    damaged = _registry(tmp_path)
    manifest = _manifest(damaged)
    _threshold_x10(manifest)
    _write(damaged, manifest)
    assert main([*EDIT_ARGS, "--save", str(damaged)]) == 2
    assert "fails its checksum" in one_error_line(capsys, "edit")


def test_eval_out_paths_are_checked_before_the_model_loads(
    tmp_path: Path, no_model, capsys
) -> None:
    data = tmp_path / "data.json"
    rows = [
        {
            "case_id": 0,
            "prompt": "The capital of France is",
            "subject": "France",
            "target_new": "Rome",
            "ground_truth": "Paris",
            "rephrase_prompt": "France's capital is",
            "locality_prompt": "The capital of Spain is",
            "locality_ground_truth": "Madrid",
        }
    ]
    data.write_text(json.dumps(rows))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for out in [tmp_path, notes / "eval.json", notes, data]:
        assert main(["eval", "--data", str(data), "--out", str(out)]) == 2
        one_error_line(capsys, "eval")
    assert notes.read_text() == "my notes"


# ----------------------------------------------------------------------------- 9. purity
BARE = {"generation": "prompt", "distributions": {"target_templates": ["{prompt}"]}}


def test_low_purity_is_retried_with_stronger_contexts_and_recorded(
    cli_model, tmp_path: Path, capsys
) -> None:
    """A bare context never makes the model say the new object (purity 0 < 30 %): the command
    retries with stronger contexts, fits, and the saved edit says so."""
    save = tmp_path / "edits"
    argv = [*EDIT_ARGS, "--n-paraphrases", "3", "--max-new-tokens", "2", "--json"]
    assert main([*argv, "--edit-config", json.dumps(BARE), "--save", str(save)]) == 0
    out = capsys.readouterr().out
    assert "English" in json.loads(out)[0]["after"]
    (entry,) = _manifest(save)["entries"]
    retry = entry["edit"]["retry"]
    assert retry["refused_purity"] == 0.0 and retry["min_purity"] == 0.3
    assert retry["target_templates"] == ["{prompt}", *STRONGER_TARGET_TEMPLATES]
    assert retry["n_paraphrases"] == 6
    templates = entry["edit"]["config"]["distributions"]["target_templates"]
    assert templates == retry["target_templates"]
    assert entry["edit"]["config"]["generation"] == "prompt"  # --edit-config reached the fit
    assert EditBook.load(save, model=cli_model).entries[0].edit.retry == retry


def test_a_purity_still_too_low_after_the_retry_names_the_options(cli_model, capsys) -> None:
    config = {**BARE, "distributions": {"target_templates": ["{prompt}"], "min_purity": 0.9}}
    argv = [*EDIT_ARGS, "--n-paraphrases", "3", "--edit-config", json.dumps(config)]
    assert main(argv) == 2
    err = one_error_line(capsys, "edit")
    assert "min_purity 90%" in err and "also after a retry with target templates" in err
    assert "--edit-config '" in err and "--n-paraphrases 12" in err and "--new 'English'" in err


def test_the_library_does_not_retry_unless_asked(model) -> None:
    """Evaluations call make_edit without retry: they fit exactly the configuration they
    report."""
    config = EditConfig.from_dict({**EditConfig().to_dict(), **BARE})
    with pytest.raises(LowPurityError) as err:
        make_edit(model, REQUEST, paraphrases=PARAPHRASES, config=config)
    assert err.value.purity == 0.0 and not err.value.retried


def test_copying_a_saved_registry_keeps_it_valid(tmp_path: Path) -> None:
    """Entry checksums do not depend on where the registry lies."""
    path = _registry(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    assert len(load_book(copy)) == 3
