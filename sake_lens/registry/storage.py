"""On-disk format of edits and edit registries: safetensors + JSON, atomic, locked, checked.

A registry directory::

    DIR/
      registry.json                 the manifest: metadata of every entry (JSON)
      objects/<sha256>.safetensors  one file per entry: its map's (map.*), continuation maps' (cont<i>.*) and scope's (scope.*) tensors
      .lock                         fcntl.flock lock file

Tensor files are **content-addressed** (named by the SHA-256 of their bytes) and never
rewritten; each is written to a temporary file, fsynced and renamed. The manifest is replaced
last, atomically (``os.replace``), so a save is one switch: an interrupted save leaves the old
manifest pointing at old, untouched files. Files no manifest references are removed after the
switch. Writers hold an exclusive ``flock`` on ``.lock``, readers a shared one.

On load every tensor file's SHA-256 and size are checked against the manifest
(:class:`~sake_lens.errors.EditFileError` names the file and the fix), a newer format version is
refused, and edits that do not fit the model raise
:class:`~sake_lens.errors.ModelMismatchError`.

Each manifest entry also carries a checksum of its own JSON content (:func:`entry_checksum`),
which includes the name (the SHA-256) and size of its tensor file: hand edits or damage that
leave valid JSON — a threshold changed, another entry's tensor file named, a site or object
renamed — are refused instead of silently changing what the edit does. It catches accidental
damage, not a forger, who can recompute the checksums. Registries saved before entry checksums
(no ``entry_checksums`` in the header) load unverified, with one warning.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from .._umask import chmod_like_new_file
from .._version import library_versions
from ..errors import EditFileError, ModelMismatchError, RegistryError
from ..gate.scope import Scope
from ..model.loading import model_id as get_model_id
from ..model.sites import Site
from ..model.tokens import bos_convention
from ..prompts.distributions import PromptSet
from ..prompts.request import EditRequest
from ..steer.edit import Edit, EditConfig
from ..transport import map_from_config

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "OBJECTS",
    "LOCK",
    "locked",
    "atomic_write",
    "model_info",
    "check_model",
    "entry_meta",
    "ENTRY_CHECKSUMS",
    "entry_checksum",
    "check_entry",
    "warn_unverified",
    "encode_entry",
    "object_path",
    "decode_entry",
    "malformed",
    "read_manifest",
    "read_object",
    "write_registry",
    "rewrite_manifest",
    "summarize",
    "unknown_id",
    "now",
]

FORMAT = "sake_lens.registry"
#: 1: maps and distance gates; 2: fact gates (``GateConfig(kind="fact")``) may appear.
FORMAT_VERSION = 2
MANIFEST = "registry.json"
OBJECTS = "objects"
LOCK = ".lock"
_TMP = ".tmp-"
#: The manifest header key that says every entry carries a checksum, and how it is computed.
ENTRY_CHECKSUMS = "entry_checksums"
_CHECKSUM_SCHEME = "sha256 of the entry's canonical JSON without its checksum"

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ files
@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold an ``flock`` on ``path/.lock`` (exclusive for writers, shared for readers)."""
    if exclusive:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        yield
        return
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if not exclusive and exc.errno in (errno.EACCES, errno.EROFS):
            yield  # a read-only registry: nobody can write it while we read
            return
        raise EditFileError(f"Cannot open the lock file {path / LOCK}: {exc}.") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, ``os.replace``, fsync dir."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP + path.name + ".", dir=path.parent)
    except OSError as exc:
        raise EditFileError(
            f"Cannot write {path}: {exc}. Check that the folder exists and is writable."
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        chmod_like_new_file(tmp)  # mkstemp makes it 0600; a registry may be shared
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, permissions: nothing was replaced
            raise EditFileError(
                f"Cannot write {path}: {exc}. The previous file (if any) is unchanged; free "
                "disk space or fix the permissions and save again."
            ) from exc
        raise
    _fsync_dir(path.parent)


# ------------------------------------------------------------------------------ models
def model_info(model: Any) -> dict[str, Any]:
    """Model id, revision (where known), width, compatibility mode and BOS convention."""
    hf_config = getattr(getattr(model, "original_model", None), "config", None)
    revision = getattr(hf_config, "_commit_hash", None) if hf_config is not None else None
    return {
        "model_id": get_model_id(model),
        "revision": revision,
        "d_model": int(model.cfg.d_model),
        "compatibility_mode": bool(getattr(model, "sake_lens_compatibility_mode", True)),
        "prepend_bos": bos_convention(model),
    }


def check_model(edit_meta: dict[str, Any], model: Any, *, where: str, strict: bool = True) -> None:
    """Raise :class:`ModelMismatchError` when a saved edit does not fit ``model``.

    The width must always match; with ``strict`` also the model id and BOS convention.
    """
    info = model_info(model)
    eid = edit_meta.get("id", "?")
    if int(edit_meta["d_model"]) != info["d_model"]:
        raise ModelMismatchError(
            f"Edit {eid} in {where} was fitted on {edit_meta.get('model_id')!r} with "
            f"d_model={edit_meta['d_model']}; this model ({info['model_id']!r}) has "
            f"d_model={info['d_model']}. Load the registry into the model it was made for, or "
            "fit the edit again on this model."
        )
    if not strict:
        return
    if edit_meta.get("model_id") != info["model_id"]:
        raise ModelMismatchError(
            f"Edit {eid} in {where} was fitted on {edit_meta.get('model_id')!r}, not on "
            f"{info['model_id']!r}. Load it into that model, fit it again, or — if this is the "
            "same model under another name — load with strict=False."
        )
    if bool(edit_meta.get("prepend_bos")) != info["prepend_bos"]:
        raise ModelMismatchError(
            f"Edit {eid} in {where} was fitted with prepend_bos={edit_meta.get('prepend_bos')}, "
            f"but this model's BOS convention is prepend_bos={info['prepend_bos']}. Call "
            "sake_lens.model.tokens.set_bos_convention(model, "
            f"{edit_meta.get('prepend_bos')}) first, or fit the edit again."
        )


# ------------------------------------------------------------------------------ entries
def entry_meta(edit: Edit, scope: Scope | None, state: dict[str, Any]) -> dict[str, Any]:
    """An entry's manifest metadata, without its object's hash and size."""
    meta = edit.metadata()
    if edit.prompts is not None:
        p = edit.prompts
        meta["prompts"] = {
            "paraphrases": list(p.paraphrases),
            "source": list(p.source),
            "target": list(p.target),
            "kept": list(p.kept),
            "target_predictions": list(p.target_predictions),
        }
    entry = {**state, "id": edit.id, "edit": meta}
    entry["scope"] = scope.metadata() if scope is not None else None
    return entry


def entry_checksum(entry: dict[str, Any]) -> str:
    """SHA-256 of a manifest entry's JSON content, all but its ``checksum``.

    Canonical JSON (sorted keys, no spaces) of the entry as it reads back from the manifest, so
    writing and reading give the same digest. The entry names its tensor file by that file's
    SHA-256 (``object``) and size (``bytes``), and loading checks the file against its name, so
    this one digest ties the metadata to the tensors it was saved with.
    """
    body = json.loads(json.dumps({k: v for k, v in entry.items() if k != "checksum"}))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_entry(path: Path, entry: dict[str, Any], *, required: bool) -> bool:
    """Whether ``entry`` could be verified; raise :class:`EditFileError` when it is damaged.

    ``required``: the manifest says every entry has a checksum, so a missing one is damage too.
    An entry without a checksum in an older registry cannot be verified (returns False).
    """
    eid = entry.get("id", "?")
    saved = entry.get("checksum")
    fix = (
        f"Drop it with `sake-lens edits remove {path} {eid}` and save the edit again "
        f"(`sake-lens edit ... --save {path}`), or restore {MANIFEST} from a backup."
    )
    if saved is None and not required:
        return False
    if not isinstance(saved, str):
        raise EditFileError(
            f"Entry {eid} of {path / MANIFEST} has no checksum, but this registry checksums "
            f"every entry: the entry was damaged or edited by hand. {fix}"
        )
    actual = entry_checksum(entry)
    if actual != saved:
        raise EditFileError(
            f"Entry {eid} of {path / MANIFEST} fails its checksum (sha256 {actual[:12]}…, "
            f"expected {saved[:12]}…): its metadata or the tensor file it names changed after "
            f"it was saved (damaged or edited by hand), so it would not do what was fitted. {fix}"
        )
    return True


def checksums_required(manifest: dict[str, Any]) -> bool:
    """Whether the manifest was written with a checksum in every entry."""
    return ENTRY_CHECKSUMS in manifest


def warn_unverified(path: Path, manifest: dict[str, Any]) -> None:
    """One warning when a registry saved before entry checksums is read: it cannot be verified."""
    unverified = [e for e in manifest["entries"] if "checksum" not in e]
    if unverified and not checksums_required(manifest):
        log.warning(
            "%s was saved by an older sake_lens, without entry checksums: damage to its %d "
            "entries that leaves valid JSON cannot be detected. Save the registry again "
            "(EditBook.load(path).save()) to add them.",
            path / MANIFEST,
            len(unverified),
        )


def encode_entry(
    edit: Edit, scope: Scope | None, state: dict[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """An entry's manifest metadata (without its object hash) and its tensor file's bytes."""
    tensors: dict[str, Tensor] = {f"map.{k}": v for k, v in edit.map.state_dict().items()}
    for i, m in enumerate(edit.continuation):
        tensors.update({f"cont{i}.{k}": v for k, v in m.state_dict().items()})
    if scope is not None:
        tensors.update({f"scope.{k}": v for k, v in scope.state_dict().items()})
    data = st_save(
        tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION), "id": edit.id}
    )
    return entry_meta(edit, scope, state), _canonical(data)


def _canonical(data: bytes) -> bytes:
    """The safetensors bytes with the header's metadata keys sorted.

    safetensors writes ``__metadata__`` from a hash map, in an order that changes from call to
    call; sorted, equal edits give byte-identical (hence content-addressed, deduplicated) files.
    """
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > n:  # pragma: no cover - same content, same length
        return data
    return data[:8] + raw + b" " * (n - len(raw)) + data[8 + n :]


def _is_fact(scope: dict[str, Any]) -> bool:
    return bool(scope["config"].get("kind") == "fact")


def _gate_name(scope: dict[str, Any] | None) -> str:
    """``fact`` (with its two thresholds), ``embedding/euclidean``, ..., or ``none``."""
    if not scope:
        return "none"
    if _is_fact(scope):
        return f"fact (margin > {scope['margin']:.3g}, distance < {scope['cap']:.3g})"
    return f"{scope['config']['kind']}/{scope['config']['metric']}"


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """One summary row of a manifest entry (no tensors needed)."""
    meta, scope = entry["edit"], entry.get("scope")
    request = EditRequest.from_dict(meta["request"])
    return {
        "id": entry["id"],
        "enabled": bool(entry.get("enabled", True)),
        "subject": request.subject,
        "prompt": request.text,
        "old": request.old,
        "new": request.new,
        "site": meta["site"]["hook"],
        "gate": _gate_name(scope),
        "threshold": None if not scope or _is_fact(scope) else scope["calibration"]["threshold"],
        "revision": int(entry.get("revision", 0)),
        "added": entry.get("added"),
    }


def unknown_id(edit_id: str, ids: list[str]) -> RegistryError:
    """The error for an id that is not in a registry, with the closest ids."""
    close = difflib.get_close_matches(edit_id, ids, n=3, cutoff=0.4)
    hint = f" Did you mean {close}?" if close else ""
    return RegistryError(
        f"No edit {edit_id!r} in this registry ({len(ids)} edits).{hint} List them with "
        "book.list() or `sake-lens edits list DIR`."
    )


def decode_entry(entry: dict[str, Any], tensors: dict[str, Tensor]) -> tuple[Edit, Scope | None]:
    """Rebuild the :class:`Edit` and its :class:`Scope` from manifest metadata and tensors."""
    meta = entry["edit"]
    map_state = {k[4:]: v for k, v in tensors.items() if k.startswith("map.")}
    scope_state = {k[6:]: v for k, v in tensors.items() if k.startswith("scope.")}
    prompts = meta.get("prompts")
    continuation = tuple(
        map_from_config(
            config, {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"cont{i}.")}
        )
        for i, config in enumerate(meta.get("continuation", []))
    )
    edit = Edit(
        request=EditRequest.from_dict(meta["request"]),
        site=Site.from_dict(meta["site"]),
        map=map_from_config(meta["map"], map_state),
        config=EditConfig.from_dict(meta["config"]),
        model_id=meta["model_id"],
        d_model=int(meta["d_model"]),
        prepend_bos=bool(meta["prepend_bos"]),
        compatibility_mode=bool(meta["compatibility_mode"]),
        purity=float(meta["purity"]),
        n_source=int(meta["n_source"]),
        n_target=int(meta["n_target"]),
        prompts_hash=meta["prompts_hash"],
        id=meta["id"],
        created=meta["created"],
        object_ids=tuple(int(i) for i in meta.get("object_ids", [])),
        continuation=continuation,
        implied_by=str(meta.get("implied_by", "")),
        implication=tuple(meta.get("implication", ())),
        retry=dict(meta["retry"]) if meta.get("retry") else None,
        prompts=PromptSet(**prompts) if prompts is not None else None,
    )
    if any(m.d_model != edit.d_model for m in (edit.map, *edit.continuation)):
        raise ValueError(
            f"the map's tensors have width {edit.map.d_model}, the metadata says d_model="
            f"{edit.d_model}"
        )
    scope = Scope.from_saved(entry["scope"], scope_state) if entry.get("scope") else None
    return edit, scope


def malformed(path: Path, raw: Any, exc: BaseException) -> EditFileError:
    """The error for a manifest entry that cannot be decoded (damaged or edited by hand)."""
    eid = raw.get("id", "?") if isinstance(raw, dict) else "?"
    return EditFileError(
        f"Entry {eid} of {path / MANIFEST} is malformed ({type(exc).__name__}: {exc}); it was "
        f"damaged or edited by hand. Restore the file from a backup, or drop the entry with "
        f"`sake-lens edits remove {path} {eid}`."
    )


# ------------------------------------------------------------------------------ registry
def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the registry at ``path`` (None when there is none yet)."""
    file = path / MANIFEST
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EditFileError(f"Cannot read {file}: {exc}.") from exc
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EditFileError(
            f"{file} is not valid JSON ({exc}); it was damaged or edited by hand. Restore it "
            "from a backup (the tensor files in objects/ are intact and content-addressed)."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EditFileError(f"{file} is not a sake_lens registry manifest (format {FORMAT!r}).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EditFileError(
            f"{file} has format version {version!r}, newer than this sake_lens supports "
            f"({FORMAT_VERSION}). Upgrade sake-lens (pip install -U sake-lens) to load it."
        )
    if not isinstance(manifest.get("entries"), list):
        raise EditFileError(f"{file} lacks its list of entries; restore it from a backup.")
    ids = [e.get("id") if isinstance(e, dict) else None for e in manifest["entries"]]
    for i, eid in enumerate(ids):
        if not isinstance(eid, str) or not eid:
            raise EditFileError(
                f"Entry {i} of {file} is not an edit entry with an id; it was damaged or edited "
                "by hand. Restore the file from a backup, or delete that entry from the list."
            )
        if eid in ids[:i]:
            raise EditFileError(
                f"{file} lists edit {eid} twice; it was damaged or edited by hand. Restore it "
                "from a backup, or delete one of the two entries."
            )
    return manifest


def object_path(path: Path, sha: str) -> Path:
    return path / OBJECTS / f"{sha}.safetensors"


def read_object(path: Path, entry: dict[str, Any]) -> dict[str, Tensor]:
    """The tensors of one entry, after checking the file's size and SHA-256."""
    sha, size, eid = entry.get("object", ""), entry.get("bytes"), entry.get("id", "?")
    file = object_path(path, sha)
    fix = (
        f"Restore {file.name} from a backup, or drop the entry with `sake-lens edits remove "
        f"{path} {eid}` and add the edit again."
    )
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise EditFileError(f"Edit {eid}: its tensor file {file} is missing. {fix}") from None
    except OSError as exc:
        raise EditFileError(f"Edit {eid}: cannot read {file}: {exc}. {fix}") from exc
    if size is not None and len(data) != size:
        raise EditFileError(
            f"Edit {eid}: {file} has {len(data)} bytes, the manifest says {size}: the file is "
            f"truncated or was overwritten. {fix}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise EditFileError(
            f"Edit {eid}: {file} fails its checksum (sha256 {digest[:12]}…, expected "
            f"{sha[:12]}…): the file is corrupted. {fix}"
        )
    try:
        return st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise EditFileError(
            f"Edit {eid}: {file} is not a valid safetensors file ({exc}). {fix}"
        ) from exc


def write_registry(
    path: Path, header: dict[str, Any], entries: list[tuple[dict[str, Any], bytes | None]]
) -> dict[str, Any]:
    """Write a registry (call with the exclusive lock held); return the manifest written.

    ``entries``: manifest entries with their tensor bytes, or ``None`` for an entry whose
    ``object`` is already on disk (carried over from the manifest being replaced).
    """
    objects = path / OBJECTS
    objects.mkdir(parents=True, exist_ok=True)
    out = []
    for entry, data in entries:
        entry = dict(entry)
        if data is not None:
            sha = hashlib.sha256(data).hexdigest()
            file = object_path(path, sha)
            if not (file.is_file() and hashlib.sha256(file.read_bytes()).hexdigest() == sha):
                atomic_write(file, data)
            entry["object"], entry["bytes"] = sha, len(data)
        entry["checksum"] = entry_checksum(entry)
        out.append(entry)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **header,
        ENTRY_CHECKSUMS: _CHECKSUM_SCHEME,
        "library_versions": library_versions(),
        "saved": now(),
        "entries": out,
    }
    atomic_write(path / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False).encode())
    _collect_garbage(path, {e["object"] for e in out})
    return manifest


def rewrite_manifest(
    path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Change a registry's entries at the manifest level (no tensor is read or written).

    Under the exclusive lock: read the current manifest, apply ``change`` to its entries (it may
    drop entries or change their state), write the new manifest; tensor files no entry uses any
    more are removed. Works on a registry whose tensor files are damaged, and removes an entry
    that fails its checksum; any other entry that fails it is refused (it is carried over and
    would get a fresh checksum).
    """
    with locked(path, exclusive=True):
        manifest = read_manifest(path)
        if manifest is None:
            raise RegistryError(f"No edit registry at {path} (no registry.json).")
        entries = change([dict(e) for e in manifest["entries"]])
        kept = {e["id"] for e in entries}
        for entry in manifest["entries"]:  # a damaged entry may be removed, not carried over
            if entry["id"] in kept:
                check_entry(path, entry, required=checksums_required(manifest))
        header: dict[str, Any] = {
            k: manifest[k] for k in ("model", "gate", "created") if k in manifest
        }
        header["generation"] = int(manifest.get("generation", 0)) + 1
        return write_registry(path, header, [(e, None) for e in entries])["entries"]


def _collect_garbage(path: Path, keep: set[str]) -> None:
    """Remove tensor files no manifest references and leftovers of interrupted saves."""
    for directory, is_objects in ((path, False), (path / OBJECTS, True)):
        for f in directory.iterdir():
            stale_tmp = f.name.startswith(_TMP)
            orphan = is_objects and f.suffix == ".safetensors" and f.stem not in keep
            if f.is_file() and (stale_tmp or orphan):
                with contextlib.suppress(OSError):
                    f.unlink()
