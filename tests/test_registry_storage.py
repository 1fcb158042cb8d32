"""Saving and loading edits and registries: round trips, damage, model mismatch, atomicity, locks."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sake_lens.errors import EditFileError, ModelMismatchError, RegistryError
from sake_lens.registry import EditBook, load_edit, save_edit, storage

from .test_gate_router import FAKE_GATE, SITE, SUBJECTS, D, FakeFeatures, fake_edit


def _book(n: int = 3) -> EditBook:
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures())
    for s in SUBJECTS[:n]:
        book.add(fake_edit(s))
    return book


def _load(path: Path, **kw) -> EditBook:
    return EditBook.load(path, features=FakeFeatures(), **kw)


def _fake_model(d: int = D, model_id: str = "fake-model", bos: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        cfg=SimpleNamespace(d_model=d, default_prepend_bos=bos),
        sake_lens_model_id=model_id,
        sake_lens_prepend_bos=bos,
        sake_lens_compatibility_mode=True,
    )


def _objects(path: Path) -> list[Path]:
    return sorted((path / storage.OBJECTS).glob("*.safetensors"))


def test_round_trip_is_exact(tmp_path: Path) -> None:
    book = _book()
    book.disable(book.entries[2].id)
    book.save(tmp_path / "reg")
    back = _load(tmp_path / "reg")
    assert [e.id for e in back.entries] == [e.id for e in book.entries]
    x = torch.randn(5, D, dtype=torch.float64)
    for a, b in zip(book.entries, back.entries):
        assert a.enabled == b.enabled and a.added == b.added and a.revision == b.revision
        assert a.edit.metadata() == b.edit.metadata()
        assert a.edit.prompts == b.edit.prompts
        assert torch.equal(a.edit.map.transform(x), b.edit.map.transform(x))
        assert a.scope is not None and b.scope is not None
        assert a.scope.metadata() == b.scope.metadata()
        assert a.scope.threshold == b.scope.threshold
        assert torch.equal(a.scope.distance(x), b.scope.distance(x))
    r1, r2 = book.router(), back.router()
    assert torch.equal(r1.thresholds, r2.thresholds)
    assert torch.equal(r1.route(x, SITE), r2.route(x, SITE))


def test_manifest_records_what_it_should(tmp_path: Path) -> None:
    _book(2).save(tmp_path)
    manifest = json.loads((tmp_path / storage.MANIFEST).read_text())
    assert (
        manifest["format"] == storage.FORMAT
        and manifest["format_version"] == storage.FORMAT_VERSION
    )
    assert manifest["generation"] == 1 and manifest["gate"] == FAKE_GATE.to_dict()
    assert manifest["model"]["model_id"] == "fake-model" and manifest["model"]["d_model"] == D
    assert {"sake-lens", "torch", "safetensors"} <= set(manifest["library_versions"])
    entry = manifest["entries"][0]
    edit = entry["edit"]
    for key in (
        "model_id",
        "d_model",
        "site",
        "compatibility_mode",
        "prepend_bos",
        "map",
        "config",
        "prompts_hash",
        "created",
        "prompts",
        "request",
    ):
        assert key in edit
    assert (
        entry["scope"]["calibration"]["threshold"] > 0 and len(entry["scope"]["prompts_hash"]) == 64
    )
    assert (
        len(entry["object"]) == 64
        and (tmp_path / "objects" / f"{entry['object']}.safetensors").stat().st_size
        == entry["bytes"]
    )


def test_single_edit_save_and_load(tmp_path: Path) -> None:
    edit = fake_edit("Rome")
    save_edit(edit, tmp_path / "one")
    back = load_edit(tmp_path / "one")
    x = torch.randn(3, D, dtype=torch.float64)
    assert back.id == edit.id and torch.equal(back.map.transform(x), edit.map.transform(x))
    # A registry opened from a single-edit directory fits the missing gate when routing.
    book = _load(tmp_path / "one", gate=FAKE_GATE)
    assert book.entries[0].scope is None and book.router().n == 1
    _book(2).save(tmp_path / "two")
    with pytest.raises(RegistryError, match="holds 2 edits"):
        load_edit(tmp_path / "two")
    with pytest.raises(RegistryError, match="registry of 2 edits"):
        save_edit(edit, tmp_path / "two")


def test_missing_registry(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="No edit registry"):
        EditBook.open(tmp_path / "nothing")
    book = EditBook.open(tmp_path / "new", create=True, gate=FAKE_GATE)
    assert len(book) == 0 and not (tmp_path / "new").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_tensor_files_are_refused_with_the_file_and_the_fix(
    tmp_path: Path, damage: str
) -> None:
    _book(2).save(tmp_path)
    victim = _objects(tmp_path)[0]
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:
        victim.unlink()
    with pytest.raises(EditFileError) as err:
        _load(tmp_path)
    msg = str(err.value)
    assert victim.name in msg and "sake-lens edits remove" in msg
    assert {"truncate": "truncated", "flip": "checksum", "delete": "missing"}[damage] in msg


def test_damaged_manifest_and_newer_format(tmp_path: Path) -> None:
    _book(1).save(tmp_path)
    manifest = tmp_path / storage.MANIFEST
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(EditFileError, match="not valid JSON"):
        _load(tmp_path)
    data = json.loads(good)
    data["format_version"] = storage.FORMAT_VERSION + 1
    manifest.write_text(json.dumps(data))
    with pytest.raises(EditFileError, match="newer than this sake_lens supports"):
        _load(tmp_path)
    manifest.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EditFileError, match="not a sake_lens registry"):
        _load(tmp_path)


def test_loading_into_a_model_it_does_not_fit(tmp_path: Path) -> None:
    _book(2).save(tmp_path)
    _load(tmp_path, model=_fake_model())  # the right model
    with pytest.raises(ModelMismatchError, match="d_model=8"):
        _load(tmp_path, model=_fake_model(d=8))
    with pytest.raises(ModelMismatchError, match="strict=False"):
        _load(tmp_path, model=_fake_model(model_id="gpt2"))
    with pytest.raises(ModelMismatchError, match="prepend_bos"):
        _load(tmp_path, model=_fake_model(bos=True))
    assert len(_load(tmp_path, model=_fake_model(model_id="gpt2"), strict=False)) == 2
    with pytest.raises(ModelMismatchError, match="d_model"):
        load_edit_model = _fake_model(d=8)
        save_edit(fake_edit("Rome"), tmp_path / "one")
        load_edit(tmp_path / "one", model=load_edit_model)


def test_an_interrupted_save_leaves_the_registry_intact(tmp_path: Path, monkeypatch) -> None:
    book = _book(2)
    book.save(tmp_path)
    before = (tmp_path / storage.MANIFEST).read_bytes()
    book.add(fake_edit(SUBJECTS[3]))
    book.remove(book.entries[0].id)
    real_replace = storage.os.replace

    def crash(src, dst):
        if str(dst).endswith(storage.MANIFEST):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", crash)
    with pytest.raises(EditFileError, match=r"power cut.*unchanged"):
        book.save()
    monkeypatch.setattr(storage.os, "replace", real_replace)
    assert (tmp_path / storage.MANIFEST).read_bytes() == before
    old = _load(tmp_path)
    assert [e.edit.request.subject for e in old.entries] == list(SUBJECTS[:2])
    # The next save succeeds and cleans up what the interrupted one left.
    book.save()
    assert [e.edit.request.subject for e in _load(tmp_path).entries] == [SUBJECTS[1], SUBJECTS[3]]
    assert not list(tmp_path.glob(".tmp-*")) and not list((tmp_path / "objects").glob(".tmp-*"))
    assert len(_objects(tmp_path)) == 2  # the removed edit's tensors are gone


def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("a file where the registry folder should be")
    with pytest.raises(EditFileError, match="not-a-folder"):
        storage.atomic_write(target / "manifest.json", b"{}")
    assert target.read_text().startswith("a file")


def test_saves_reuse_unchanged_tensor_files(tmp_path: Path) -> None:
    book = _book(2)
    book.save(tmp_path)
    stats = {p.name: p.stat().st_mtime_ns for p in _objects(tmp_path)}
    book.disable(book.entries[0].id)
    book.save()
    assert {p.name: p.stat().st_mtime_ns for p in _objects(tmp_path)} == stats
    assert not _load(tmp_path).entries[0].enabled


def test_concurrent_changes_are_merged_not_lost(tmp_path: Path) -> None:
    _book(2).save(tmp_path)
    a, b = _load(tmp_path), _load(tmp_path)
    a.add(fake_edit(SUBJECTS[2]))
    b.add(fake_edit(SUBJECTS[3]))
    b.remove(b.entries[0].id)
    a.save()
    b.save()  # b read generation 1, the disk is at 2: b's changes are replayed onto it
    subjects = [e.edit.request.subject for e in _load(tmp_path).entries]
    assert subjects == [SUBJECTS[1], SUBJECTS[2], SUBJECTS[3]]
    assert [e.edit.request.subject for e in b.entries] == subjects
    # A change that conflicts with what the other process saved is refused.
    c, d = _load(tmp_path), _load(tmp_path)
    c.add(fake_edit(SUBJECTS[4]))
    d.add(fake_edit(SUBJECTS[4], "The native language of {} is", new="German"))
    c.save()
    with pytest.raises(RegistryError, match="another process"):
        d.save()


def test_parallel_writers_hold_the_lock(tmp_path: Path) -> None:
    _book(1).save(tmp_path)
    books = [_load(tmp_path) for _ in range(4)]
    for book, subject in zip(books, SUBJECTS[1:5]):
        book.add(fake_edit(subject))
    errors: list[BaseException] = []

    def save(book: EditBook) -> None:
        try:
            book.save()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(b,)) for b in books]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = _load(tmp_path)
    assert sorted(e.edit.request.subject for e in final.entries) == sorted(SUBJECTS[:5])
    manifest = json.loads((tmp_path / storage.MANIFEST).read_text())
    assert manifest["generation"] == 5 and len(_objects(tmp_path)) == 5
