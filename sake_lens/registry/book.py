"""The edit registry: many edits served together, each behind its own scope gate.

An :class:`EditBook` holds edits with their fitted :class:`~sake_lens.gate.Scope` gates. All
enabled edits steer together: each input goes to the nearest edit whose gate accepts it, or to
none (:class:`~sake_lens.gate.ScopeRouter`, one vectorised operation over all edits).

**Isolation.** An edit's gate (statistics and threshold) is fitted once, when the edit is
added, and never recalibrated when other edits come and go; revising an edit keeps its gate (the
same paraphrases give the same scope). So adding, revising or removing one edit leaves every
input that is not routed to it exactly as it was.

**Conflicts.** Two edits conflict when they are about the same subject (case and spacing
ignored) and the same relation: the same prompt template, or two CounterFact templates of the
same Wikidata relation (``sake_lens.prompts.relations``). Adding a conflicting edit raises
:class:`~sake_lens.errors.RegistryError` unless ``replace=True``, which *revises* the existing
entry: the new edit takes its place and its id.

**Saving.** :meth:`EditBook.save` writes the format of :mod:`sake_lens.registry.storage`
atomically under a lock. If another process saved the same registry since this book was opened,
this book's changes (adds, revisions, removals, enable/disable) are replayed onto the newer
registry instead of overwriting it.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EditFileError, ModelMismatchError, RegistryError, SakeLensError
from ..gate.config import GateConfig
from ..gate.embedder import SentenceEmbedder
from ..gate.router import ScopeRouter
from ..gate.scope import FeatureCache, Scope, fit_scope, in_scope_prompts
from ..prompts.relations import match_relation
from ..prompts.request import EditRequest
from ..prompts.text import normalize, normalize_template
from ..steer.edit import Edit, fit_edit
from ..steer.hooks import steered
from .storage import (
    MANIFEST,
    check_entry,
    check_model,
    checksums_required,
    decode_entry,
    encode_entry,
    entry_meta,
    locked,
    malformed,
    model_info,
    now,
    object_path,
    read_manifest,
    read_object,
    rewrite_manifest,
    summarize,
    unknown_id,
    warn_unverified,
    write_registry,
)

__all__ = [
    "EditBook",
    "BookEntry",
    "conflict_key",
    "save_edit",
    "load_edit",
    "list_saved",
    "remove_saved",
    "set_saved_enabled",
]

log = logging.getLogger(__name__)


def conflict_key(request: EditRequest) -> tuple[str, str]:
    """(subject, relation) of a request: equal keys conflict in a registry.

    Returns:
        ``(subject, relation)``.
    """
    rel = match_relation(request.prompt, objects=[request.old], cues=False)
    return normalize(request.subject), (
        rel.id if rel is not None else normalize_template(request.prompt)
    )


@dataclass
class BookEntry:
    """One edit in a registry, with its gate and state."""

    edit: Edit
    scope: Scope | None
    enabled: bool = True
    added: str = field(default_factory=now)
    revised: str | None = None
    revision: int = 0
    _object: tuple[str, int] | None = field(default=None, repr=False)  # (sha256, size) on disk
    _key: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.edit.id

    @property
    def key(self) -> tuple[str, str]:
        """The (subject, relation) :func:`conflict_key` of the edit (cached)."""
        if self._key is None:
            self._key = conflict_key(self.edit.request)
        return self._key

    def on_disk(self, path: Path) -> bool:
        """Whether this entry's tensor file is saved, unchanged, in the registry at ``path``."""
        if self._object is None:
            return False
        file = object_path(path, self._object[0])
        return file.is_file() and file.stat().st_size == self._object[1]

    def state(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "added": self.added,
            "revised": self.revised,
            "revision": self.revision,
        }

    def summary(self) -> dict[str, Any]:
        """One row of ``sake-lens edits list`` (see :func:`list_saved`)."""
        return summarize(entry_meta(self.edit, self.scope, self.state()))


class EditBook:
    """A registry of edits: add, revise, remove, enable/disable, route, steer, save, load.

    Args:
        model: the model the edits belong to (for hidden-state gates, revising, and checking
            that added or loaded edits fit it).
        gate: the gate fitted for edits added without a scope (default :class:`GateConfig`).
        embedder: sentence embedder for embedding gates (default: the bundled MiniLM).
        path: the registry directory :meth:`save` writes to.
        strict: loaded and added edits must match the model's id and BOS convention (the
            width always must).
        features: a feature cache to share between books (default: a new one).

    Example:
        >>> book = EditBook.open("my-edits", model=model, create=True)  # doctest: +SKIP
        >>> book.add(edit)  # doctest: +SKIP
        >>> with book.steer(model):  # doctest: +SKIP
        ...     sl.generate(model, ["The mother tongue of Danielle Darrieux is"])
        >>> book.save()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        model: Any = None,
        gate: GateConfig | None = None,
        embedder: SentenceEmbedder | None = None,
        path: str | Path | None = None,
        strict: bool = True,
        features: FeatureCache | None = None,
    ):
        self.model = model
        self.gate = gate or GateConfig()
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self.features = features or FeatureCache(model, embedder)
        self.created = now()
        self._entries: dict[str, BookEntry] = {}
        self._generation = 0
        self._ops: builtins.list[tuple[str, str]] = []
        self._router: ScopeRouter | None = None

    # ------------------------------------------------------------------ opening and saving
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        model: Any = None,
        create: bool = False,
        gate: GateConfig | None = None,
        embedder: SentenceEmbedder | None = None,
        strict: bool = True,
        features: FeatureCache | None = None,
    ) -> EditBook:
        """Open the registry at ``path`` (an empty one when ``create`` and none exists).

        Raises:
            RegistryError: no registry at ``path`` and ``create`` is False.
            EditFileError: the registry is damaged (checksum, truncation) or too new.
            ModelMismatchError: an edit does not fit ``model`` (width; with ``strict`` also the
                model id and BOS convention).
        """
        path = Path(path)
        book = cls(
            model=model, gate=gate, embedder=embedder, path=path, strict=strict, features=features
        )
        with locked(path, exclusive=False):
            manifest = read_manifest(path)
            if manifest is None:
                if not create:
                    raise RegistryError(
                        f"No edit registry at {path} (no registry.json). Create one with "
                        "EditBook.open(path, create=True) or `sake-lens edit ... --save DIR`."
                    )
                return book
            book._read(path, manifest, gate)
        return book

    @classmethod
    def load(cls, path: str | Path, *, model: Any = None, **kwargs: Any) -> EditBook:
        """Open an existing registry (see :meth:`open`)."""
        return cls.open(path, model=model, create=False, **kwargs)

    def _read(self, path: Path, manifest: dict[str, Any], gate: GateConfig | None) -> None:
        entries: dict[str, BookEntry] = {}
        required = checksums_required(manifest)
        for raw in manifest["entries"]:
            entries[raw["id"]] = self._read_entry(path, raw)
            check_entry(path, raw, required=required)
        warn_unverified(path, manifest)
        try:
            generation = int(manifest.get("generation", 0))
            saved_gate = GateConfig.from_dict(manifest["gate"]) if manifest.get("gate") else None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise EditFileError(
                f"The header of {path / 'registry.json'} is malformed ({type(exc).__name__}: "
                f"{exc}); it was damaged or edited by hand. Restore it from a backup."
            ) from exc
        self._entries = entries
        self._generation = generation
        self.created = manifest.get("created", self.created)
        if gate is None and saved_gate is not None:
            self.gate = saved_gate
        self._ops = []
        self._router = None

    def _read_entry(self, path: Path, raw: dict[str, Any]) -> BookEntry:
        try:
            edit, scope = _decode(path, raw, self.model, self.strict)
            return BookEntry(
                edit,
                scope,
                enabled=bool(raw.get("enabled", True)),
                added=raw.get("added") or now(),
                revised=raw.get("revised"),
                revision=int(raw.get("revision", 0)),
                _object=(raw["object"], int(raw["bytes"])),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise malformed(path, raw, exc) from exc

    def save(self, path: str | Path | None = None) -> Path:
        """Save atomically to ``path`` (default: where the book was opened); return the path.

        If the registry on disk changed since this book was read (another process saved), this
        book's changes are replayed onto it; a change that now conflicts raises
        :class:`RegistryError` and nothing is written.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise RegistryError("This EditBook has no path; call book.save('some/dir').")
        same = self.path is not None and target.resolve() == self.path.resolve()
        with locked(target, exclusive=True):
            disk = read_manifest(target)
            if disk is None:
                order: builtins.list[str | dict[str, Any]] = list(self._entries)
            elif same and int(disk.get("generation", 0)) == self._generation:
                order = list(self._entries)
            else:
                ops = self._ops if same else [("put", i) for i in self._entries]
                order = self._replay(disk, ops, target)
            items: builtins.list[tuple[dict[str, Any], bytes | None]] = []
            for item in order:
                if isinstance(item, dict):  # carried over from the disk registry: verified,
                    # since it is written back with a fresh checksum
                    assert disk is not None
                    check_entry(target, item, required=checksums_required(disk))
                    items.append((item, None))
                    continue
                entry = self._entries[item]
                if same and entry.on_disk(target):  # tensors unchanged: only the metadata
                    meta = entry_meta(entry.edit, entry.scope, entry.state())
                    meta["object"], meta["bytes"] = entry._object or ("", 0)
                    items.append((meta, None))
                else:
                    items.append(encode_entry(entry.edit, entry.scope, entry.state()))
            header = {
                "generation": (int(disk.get("generation", 0)) if disk else 0) + 1,
                "model": self._model_meta(),
                "gate": self.gate.to_dict(),
                "created": (disk or {}).get("created", self.created),
            }
            manifest = write_registry(target, header, items)
            carried = {e["id"]: e for e in manifest["entries"]}
            merged: dict[str, BookEntry] = {}
            for item in order:
                if isinstance(item, dict):
                    merged[item["id"]] = self._read_entry(target, item)
                else:
                    entry = self._entries[item]
                    e = carried[item]
                    entry._object = (e["object"], int(e["bytes"]))
                    merged[item] = entry
        self._entries = merged
        self._generation = header["generation"]
        self._ops = []
        self._router = None
        self.path = target
        log.info("Saved %d edits to %s", len(merged), target)
        return target

    def _replay(
        self, disk: dict[str, Any], ops: Sequence[tuple[str, str]], target: Path
    ) -> builtins.list[str | dict[str, Any]]:
        """Apply this book's pending operations onto the newer registry on disk."""
        order: dict[str, str | dict[str, Any]] = {e["id"]: e for e in disk["entries"]}
        for op, eid in ops:
            if op == "remove":
                order.pop(eid, None)
            elif eid in self._entries:
                order[eid] = eid
        mine = {eid for eid, v in order.items() if isinstance(v, str)}
        keys: dict[tuple[str, str], str] = {}
        for eid, v in order.items():
            request = (
                self._entries[eid].edit.request
                if isinstance(v, str)
                else EditRequest.from_dict(v["edit"]["request"])
            )
            key = conflict_key(request)
            if key in keys and (eid in mine or keys[key] in mine):
                raise RegistryError(
                    f"Cannot save: edit {eid} conflicts with edit {keys[key]}, which another "
                    f"process saved to {target} meanwhile (same subject and relation). Reopen "
                    "the registry and add the edit with replace=True to revise that entry."
                )
            keys[key] = eid
        return list(order.values())

    def _model_meta(self) -> dict[str, Any] | None:
        if self.model is not None:
            return model_info(self.model)
        for entry in self._entries.values():
            e = entry.edit
            return {
                "model_id": e.model_id,
                "revision": None,
                "d_model": e.d_model,
                "compatibility_mode": e.compatibility_mode,
                "prepend_bos": e.prepend_bos,
            }
        return None

    # ------------------------------------------------------------------ editing
    def _get(self, edit_id: str) -> BookEntry:
        try:
            return self._entries[edit_id]
        except KeyError:
            raise unknown_id(edit_id, list(self._entries)) from None

    def _changed(self, edit_id: str, op: str = "put") -> None:
        self._ops.append((op, edit_id))
        self._router = None

    def _check_fits(self, edit: Edit) -> None:
        meta = {
            "id": edit.id,
            "d_model": edit.d_model,
            "model_id": edit.model_id,
            "prepend_bos": edit.prepend_bos,
        }
        if self.model is not None:
            check_model(meta, self.model, where="this registry's model", strict=self.strict)
            return
        for other in self._entries.values():
            o = other.edit
            if o.d_model != edit.d_model or (self.strict and o.model_id != edit.model_id):
                raise ModelMismatchError(
                    f"Edit {edit.id} was fitted on {edit.model_id!r} (d_model={edit.d_model}); "
                    f"this registry holds edits for {o.model_id!r} (d_model={o.d_model}). Keep "
                    "one registry per model."
                )
            return

    def _fit_scope(self, edit: Edit, exclude: set[str]) -> Scope:
        neighbours = [
            p
            for eid, entry in self._entries.items()
            if eid not in exclude
            for p in in_scope_prompts(entry.edit, self.gate)
        ]
        return fit_scope(edit, self.gate, features=self.features, neighbours=neighbours)

    def add(
        self,
        edit: Edit,
        *,
        replace: bool = False,
        scope: Scope | None = None,
        enabled: bool = True,
    ) -> str:
        """Add an edit and fit its gate (unless ``scope`` is given); return its registry id.

        The edit's implied edits (:attr:`Edit.implied`, :mod:`sake_lens.steer.implied`) are
        added with it, each as an entry of its own with its own gate; removing the edit removes
        them.

        Raises:
            RegistryError: the same edit or a conflicting one (same subject and relation) is
                already there and ``replace`` is False.
            ModelMismatchError: the edit was fitted on another model.
        """
        self._check_fits(edit)
        key = conflict_key(edit.request)
        clash = next(
            (e for e in self._entries.values() if e.id == edit.id or e.key == key),
            None,
        )
        if clash is not None and not replace:
            same = clash.id == edit.id
            raise RegistryError(
                f"Edit {edit.id} ({edit.request.text!r} -> {edit.request.new!r}) "
                + (
                    "is already in this registry. "
                    if same
                    else f"conflicts with edit {clash.id} ({clash.edit.request.text!r} -> "
                    f"{clash.edit.request.new!r}): same subject and relation. "
                )
                + "Pass replace=True to revise that entry, or remove it first."
            )
        eid = clash.id if clash is not None else edit.id
        if edit.id != eid:
            edit = dataclasses.replace(edit, id=eid)
        if scope is None:
            scope = self._fit_scope(edit, exclude={eid})
        entry = BookEntry(edit, scope, enabled=enabled)
        if clash is not None:
            entry.added, entry.revised, entry.revision = clash.added, now(), clash.revision + 1
        for stale in [e.id for e in self._entries.values() if e.edit.implied_by == eid]:
            del self._entries[stale]  # a replaced edit's implications go with it
            self._changed(stale, "remove")
        self._entries[eid] = entry
        self._changed(eid)
        if edit.implied:
            entry.edit = dataclasses.replace(edit, implied=())
            for implied in edit.implied:
                self.add(dataclasses.replace(implied, implied_by=eid), enabled=enabled)
        return eid

    def revise(self, edit_id: str, new: str | Edit, *, model: Any = None) -> Edit:
        """Change the new object of an edit: refit its map with the same paraphrases and config.

        The gate is kept (same paraphrases, same scope), so no other edit changes behaviour.
        ``new`` may also be an already-fitted :class:`Edit` for the same fact.
        """
        entry = self._get(edit_id)
        old = entry.edit
        if isinstance(new, Edit):
            edit = new
            if conflict_key(edit.request) != entry.key:
                raise RegistryError(
                    f"revise({edit_id!r}, edit): the edit is about {edit.request.text!r}, not "
                    f"{old.request.text!r}; add it as a new edit instead."
                )
        else:
            model = model if model is not None else self.model
            if model is None:
                raise RegistryError(
                    "revise() refits the edit's map and needs the model: pass model=... or open "
                    "the registry with EditBook.open(path, model=model)."
                )
            request = dataclasses.replace(old.request, new=new)
            paraphrases = list(old.prompts.paraphrases) if old.prompts is not None else []
            edit = fit_edit(model, request, paraphrases, config=old.config)
        self._check_fits(edit)
        edit = dataclasses.replace(edit, id=edit_id)
        scope = entry.scope if entry.scope is not None else self._fit_scope(edit, {edit_id})
        self._entries[edit_id] = BookEntry(
            edit, scope, entry.enabled, entry.added, now(), entry.revision + 1
        )
        self._changed(edit_id)
        return edit

    def remove(self, edit_id: str) -> Edit:
        """Remove an edit; return it."""
        entry = self._get(edit_id)
        del self._entries[edit_id]
        self._changed(edit_id, "remove")
        for implied in [e.id for e in self._entries.values() if e.edit.implied_by == edit_id]:
            del self._entries[implied]
            self._changed(implied, "remove")
        return entry.edit

    def enable(self, edit_id: str) -> None:
        self._set_enabled(edit_id, True)

    def disable(self, edit_id: str) -> None:
        """Keep the edit in the registry without applying it."""
        self._set_enabled(edit_id, False)

    def _set_enabled(self, edit_id: str, value: bool) -> None:
        entry = self._get(edit_id)
        if entry.enabled != value:
            entry.enabled = value
            self._changed(edit_id)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, edit_id: object) -> bool:
        return edit_id in self._entries

    def __iter__(self) -> Iterator[Edit]:
        return (e.edit for e in self._entries.values())

    @property
    def entries(self) -> builtins.list[BookEntry]:
        return list(self._entries.values())

    def get(self, edit_id: str) -> Edit:
        return self._get(edit_id).edit

    def scope(self, edit_id: str) -> Scope | None:
        return self._get(edit_id).scope

    def list(self) -> builtins.list[dict[str, Any]]:
        """A summary row per edit (id, enabled, subject, prompt, old, new, site, gate, ...)."""
        return [e.summary() for e in self._entries.values()]

    def _active(self) -> builtins.list[BookEntry]:
        active = [e for e in self._entries.values() if e.enabled]
        for entry in active:
            if entry.scope is None:  # saved without a gate (save_edit): fit one now
                entry.scope = self._fit_scope(entry.edit, exclude={entry.id})
        return active

    def active_edits(self) -> builtins.list[Edit]:
        """The enabled edits, in the order :meth:`router` indexes them."""
        return [e.edit for e in self._active()]

    def router(self, model: Any = None) -> ScopeRouter:
        """The router of the enabled edits (cached until the book changes)."""
        model = model if model is not None else self.model
        if self._router is None or (model is not None and self._router.tokenizer is None):
            active = self._active()
            if not active:
                raise RegistryError("No enabled edits to route to; add or enable an edit.")
            self._router = ScopeRouter(
                [e.edit for e in active],
                [e.scope for e in active if e.scope is not None],
                model=model,
                embedder=getattr(self.features, "embedder", None),
            )
        return self._router

    def explain(self, prompt: str, model: Any = None) -> builtins.list[dict[str, Any]]:
        """How ``prompt`` is routed: each candidate edit's gate scores, thresholds and decision
        (see :meth:`~sake_lens.gate.ScopeRouter.explain`; fact and sentence-embedding gates)."""
        return self.router(model).explain(prompt)

    @contextmanager
    def steer(self, model: Any = None) -> Iterator[Any]:
        """Context manager: ``model`` with every enabled edit applied behind its gate."""
        model = model if model is not None else self.model
        if model is None:
            raise RegistryError("steer() needs the model: book.steer(model).")
        edits = self.active_edits()
        if not edits:
            with steered(model, []):
                yield model
            return
        with steered(model, edits, router=self.router(model)):
            yield model


def _decode(path: Path, raw: dict[str, Any], model: Any, strict: bool) -> tuple[Edit, Scope | None]:
    """Check an entry against ``model`` and decode it; a malformed entry is an EditFileError."""
    size = raw.get("bytes")
    if size is not None and (type(size) is not int or size < 0):
        eid = raw.get("id", "?")
        raise EditFileError(
            f'Entry {eid} of {path / MANIFEST} has "bytes": {json.dumps(size)}, not the size of '
            f"its tensor file (a whole number); it was damaged or edited by hand. Restore the "
            f"file from a backup, or drop the entry with `sake-lens edits remove {path} {eid}`."
        )
    try:
        if model is not None:
            check_model(raw["edit"], model, where=str(path), strict=strict)
        return decode_entry(raw, read_object(path, raw))
    except (EditFileError, ModelMismatchError):
        raise
    except (SakeLensError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise malformed(path, raw, exc) from exc


def save_edit(edit: Edit, path: str | Path, *, scope: Scope | None = None) -> Path:
    """Save one edit (and optionally its gate) to a directory, in the registry format.

    Refuses to overwrite a directory that holds a registry of other edits.

    Returns:
        The directory written.
    """
    path = Path(path)
    with locked(path, exclusive=True):
        disk = read_manifest(path)
        if disk is not None and any(e["id"] != edit.id for e in disk["entries"]):
            raise RegistryError(
                f"{path} holds a registry of {len(disk['entries'])} edits; save one edit to an "
                "empty directory, or add it with EditBook.open(path).add(edit)."
            )
        meta, data = encode_entry(edit, scope, BookEntry(edit, scope).state())
        header = {
            "generation": (int(disk.get("generation", 0)) if disk else 0) + 1,
            "model": {
                "model_id": edit.model_id,
                "revision": None,
                "d_model": edit.d_model,
                "compatibility_mode": edit.compatibility_mode,
                "prepend_bos": edit.prepend_bos,
            },
            "gate": (scope.config if scope is not None else GateConfig()).to_dict(),
            "created": now(),
        }
        write_registry(path, header, [(meta, data)])
    return path


def load_edit(path: str | Path, *, model: Any = None, strict: bool = True) -> Edit:
    """Load the one edit saved at ``path`` (see :func:`save_edit`).

    Returns:
        The edit.
    """
    path = Path(path)
    with locked(path, exclusive=False):
        manifest = read_manifest(path)
        if manifest is None:
            raise RegistryError(f"No saved edit at {path} (no registry.json).")
        if len(manifest["entries"]) != 1:
            raise RegistryError(
                f"{path} holds {len(manifest['entries'])} edits; load it with EditBook.load(path)."
            )
        edit, _ = _decode(path, manifest["entries"][0], model, strict)
        check_entry(path, manifest["entries"][0], required=checksums_required(manifest))
        warn_unverified(path, manifest)
    return edit


def list_saved(path: str | Path) -> list[dict[str, Any]]:
    """Summary rows of the edits saved at ``path``, read from the manifest alone.

    Returns:
        One summary row per edit, in registry order.
    """
    path = Path(path)
    with locked(path, exclusive=False):
        manifest = read_manifest(path)
    if manifest is None:
        raise RegistryError(
            f"No edit registry at {path} (no registry.json); check the path: a registry is a "
            "folder written by `sake-lens edit ... --save DIR` or EditBook.save()."
        )
    rows = []
    for e in manifest["entries"]:
        try:
            rows.append(summarize(e))
        except (SakeLensError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise malformed(path, e, exc) from exc
        check_entry(path, e, required=checksums_required(manifest))
    warn_unverified(path, manifest)
    return rows


def remove_saved(path: str | Path, edit_id: str) -> dict[str, Any]:
    """Remove an edit from the registry at ``path`` without loading it (works when its tensor
    file is damaged); return its summary row.

    Returns:
        The removed edit's summary row.
    """
    removed: list[dict[str, Any]] = []

    def drop(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [e["id"] for e in entries]
        if edit_id not in ids:
            raise unknown_id(edit_id, ids)
        removed.extend(e for e in entries if e["id"] == edit_id)
        return [e for e in entries if e["id"] != edit_id]

    rewrite_manifest(Path(path), drop)
    return summarize(removed[0])


def set_saved_enabled(path: str | Path, edit_id: str, enabled: bool) -> None:
    """Enable or disable an edit in the registry at ``path`` without loading it."""

    def toggle(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [e["id"] for e in entries]
        if edit_id not in ids:
            raise unknown_id(edit_id, ids)
        for e in entries:
            if e["id"] == edit_id:
                e["enabled"] = enabled
        return entries

    rewrite_manifest(Path(path), toggle)
