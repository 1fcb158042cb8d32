"""Damaged, hand-edited and random registry files raise EditFileError — never crash or hang.

tests/test_registry_storage.py covers one truncation, bit flip and deletion of a tensor file, a
half manifest, a newer format version and a foreign manifest. Here: every cut point, hand edits of
each manifest field, random bytes (hypothesis, in process) and hostile files loaded in a separate
process under a timeout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sake_lens.errors import EditFileError
from sake_lens.registry import list_saved, load_edit, save_edit, storage

from .reliability_helpers import SUBJECTS, fake_book, fake_edit, load_book

SETTINGS = settings(
    max_examples=int(os.environ.get("SAKE_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of two fake edits (one disabled), saved once for the module."""
    path = tmp_path_factory.mktemp("good")
    book = fake_book(SUBJECTS[:2])
    book.disable(book.entries[1].id)
    book.save(path)
    return path


def _copy(saved: Path, tmp: Path) -> Path:
    dst = tmp / "reg"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(saved, dst)
    return dst


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / storage.MANIFEST).read_text())


def _write_manifest(path: Path, manifest: Any) -> None:
    (path / storage.MANIFEST).write_text(json.dumps(manifest))


def _loads_or_edit_file_error(path: Path) -> None:
    """Load every way a user can; each either works or raises EditFileError."""
    for load in (lambda: load_book(path), lambda: list_saved(path)):
        try:
            load()
        except EditFileError as err:
            msg = str(err)
            assert str(path) in msg or "registry.json" in msg or "Entry" in msg, msg


def _set_object(path: Path, entry: int, data: bytes) -> None:
    """Replace an entry's tensor file and fix its checksum in the manifest (a careful hand edit)."""
    manifest = _manifest(path)
    sha = hashlib.sha256(data).hexdigest()
    storage.object_path(path, sha).write_bytes(data)
    manifest["entries"][entry]["object"], manifest["entries"][entry]["bytes"] = sha, len(data)
    _write_manifest(path, manifest)


# ----------------------------------------------------------------------------- cut points
def test_every_truncation_of_the_manifest(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path)
    good = (path / storage.MANIFEST).read_bytes()
    step = max(1, len(good) // 60)
    for cut in [*range(0, len(good) - 1, step), len(good) - 2]:
        (path / storage.MANIFEST).write_bytes(good[:cut])
        with pytest.raises(EditFileError, match=r"not valid JSON|Restore"):
            load_book(path)


def test_every_truncation_of_a_tensor_file(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path)
    entry = _manifest(path)["entries"][0]
    file = storage.object_path(path, entry["object"])
    good = file.read_bytes()
    for cut in [0, 1, 7, 8, 9, 64, len(good) // 2, len(good) - 1]:
        file.write_bytes(good[:cut])
        with pytest.raises(EditFileError, match="truncated") as err:
            load_book(path)
        assert file.name in str(err.value) and "sake-lens edits remove" in str(err.value)
    # Truncated and re-checksummed by hand: the safetensors parser refuses it, named as such.
    for cut in [0, 7, 9, len(good) // 2, len(good) - 1]:
        _set_object(path, 0, good[:cut])
        with pytest.raises(EditFileError, match="not a valid safetensors file"):
            load_book(path)


# ----------------------------------------------------------------------------- hand edits
HAND_EDITS = {
    "entries is a dict": lambda m: m.update(entries={}),
    "entries holds a number": lambda m: m.update(entries=[1]),
    "entries holds null": lambda m: m["entries"].__setitem__(0, None),
    "entry without id": lambda m: m["entries"][0].pop("id"),
    "entry without edit": lambda m: m["entries"][0].pop("edit"),
    "entry without object": lambda m: m["entries"][0].pop("object"),
    "bytes is text": lambda m: m["entries"][0].update(bytes="many"),
    "object is a number": lambda m: m["entries"][0].update(object=12),
    "object escapes the folder": lambda m: m["entries"][0].update(object="../../etc/passwd"),
    "request lacks old": lambda m: m["entries"][0]["edit"]["request"].pop("old"),
    "old equals new": lambda m: m["entries"][0]["edit"]["request"].update(new="French"),
    "unknown map kind": lambda m: m["entries"][0]["edit"]["map"].update(kind="magic"),
    "d_model is text": lambda m: m["entries"][0]["edit"].update(d_model="wide"),
    "site is a number": lambda m: m["entries"][0]["edit"].update(site=3),
    "purity is a list": lambda m: m["entries"][0]["edit"].update(purity=[1]),
    "scope config is broken": lambda m: m["entries"][0]["scope"].update(config={"kind": 1}),
    "scope lacks calibration": lambda m: m["entries"][0]["scope"].pop("calibration"),
    "gate is a string": lambda m: m.update(gate="hidden"),
    "version is text": lambda m: m.update(format_version="1"),
    "version is newer": lambda m: m.update(format_version=storage.FORMAT_VERSION + 7),
    "duplicate entry": lambda m: m["entries"].append(copy.deepcopy(m["entries"][0])),
    "generation is text": lambda m: m.update(generation="two"),
}


@pytest.mark.parametrize("name", list(HAND_EDITS))
def test_hand_edited_manifests_raise_edit_file_error(
    saved: Path, tmp_path: Path, name: str
) -> None:
    path = _copy(saved, tmp_path)
    manifest = _manifest(path)
    HAND_EDITS[name](manifest)
    _write_manifest(path, manifest)
    with pytest.raises(EditFileError) as err:
        load_book(path)
    msg = str(err.value)
    assert "registry.json" in msg or "Restore" in msg or "sake-lens edits remove" in msg, msg


def test_a_hand_edited_single_edit_raises_edit_file_error(tmp_path: Path) -> None:
    save_edit(fake_edit("Rome"), tmp_path)
    manifest = _manifest(tmp_path)
    manifest["entries"][0]["edit"]["map"]["kind"] = "magic"
    _write_manifest(tmp_path, manifest)
    with pytest.raises(EditFileError, match="malformed"):
        load_edit(tmp_path)


def test_tensor_file_with_wrong_tensors_raises_edit_file_error(saved: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save as st_save

    path = _copy(saved, tmp_path)
    _set_object(path, 0, st_save({"map.nothing": torch.zeros(3)}))
    with pytest.raises(EditFileError):
        load_book(path)
    # The tensors of another edit, with the right names but the wrong width.
    other = fake_edit("Rome", d=8)
    _set_object(path, 0, st_save({f"map.{k}": v for k, v in other.map.state_dict().items()}))
    with pytest.raises(EditFileError):
        load_book(path)


# ----------------------------------------------------------------------------- hypothesis
@SETTINGS
@given(st.binary(max_size=400))
def test_random_manifest_bytes(saved: Path, tmp_path: Path, data: bytes) -> None:
    path = _copy(saved, tmp_path)
    (path / storage.MANIFEST).write_bytes(data)
    with pytest.raises(EditFileError):
        load_book(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@SETTINGS
@given(data=st.data())
def test_random_hand_edits_of_the_manifest(
    saved: Path, tmp_path: Path, data: st.DataObject
) -> None:
    """Replace or delete any field of a valid manifest: it loads, or raises EditFileError."""
    path = _copy(saved, tmp_path)
    manifest = _manifest(path)
    where = data.draw(st.sampled_from(_paths(manifest)[1:]))
    parent = manifest
    for key in where[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()):
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(JSON)
    (path / storage.MANIFEST).write_text(json.dumps(manifest, allow_nan=True))
    _loads_or_edit_file_error(path)


@SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_random_tensor_file_bytes(saved: Path, tmp_path: Path, data: bytes, header: bool) -> None:
    """Random bytes (or a random JSON header of a plausible length) as a tensor file."""
    path = _copy(saved, tmp_path)
    if header:
        data = struct.pack("<Q", len(data)) + data
    _set_object(path, 0, data)
    with pytest.raises(EditFileError):
        load_book(path)


# ----------------------------------------------------------------------------- in a subprocess
_LOADER = """
import sys
from pathlib import Path
from sake_lens.errors import SakeLensError
from sake_lens.registry import EditBook
for p in sys.argv[1:]:
    try:
        EditBook.load(Path(p))
        print(p, "LOADED", flush=True)
    except SakeLensError as exc:
        print(p, type(exc).__name__, flush=True)
"""


def test_hostile_files_in_a_subprocess_fail_cleanly_within_a_timeout(
    saved: Path, tmp_path: Path
) -> None:
    """Huge declared header lengths, deep JSON, zero bytes: no crash, no hang, no memory blow-up.

    A separate interpreter, so a segfault or runaway allocation in a parser fails this test
    instead of killing the test session.
    """
    cases: dict[str, Path] = {}

    def case(name: str) -> Path:
        cases[name] = _copy(saved, tmp_path / name)
        return cases[name]

    _set_object(case("header 2^63"), 0, struct.pack("<Q", 2**63) + b"{}")
    _set_object(case("header 100 GB"), 0, struct.pack("<Q", 10**11) + b"{" * 64)
    big = json.dumps({"map.a": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}})
    _set_object(case("huge shape"), 0, struct.pack("<Q", len(big)) + big.encode() + bytes(8))
    (case("deep json") / storage.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    (case("zeros") / storage.MANIFEST).write_bytes(bytes(10_000))
    (case("utf-16") / storage.MANIFEST).write_bytes(
        (saved / storage.MANIFEST).read_text().encode("utf-16")
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, *map(str, cases.values())],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    expected = {str(p): "EditFileError" for p in cases.values()}
    expected[str(cases["utf-16"])] = "LOADED"  # JSON in UTF-16 is still JSON (RFC 8259 readers)
    assert results == expected, proc.stdout
