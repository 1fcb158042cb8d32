"""Builders for the reliability tests: fake registries, forked writers killed mid-save.

Registries here hold fake edits (``tests.test_gate_router.fake_edit``: Gaussian maps fitted on
random activations, gates fitted on fake features), so saving, loading and crashing are tested
without a model. Child processes are *forked* (the parent has already imported torch and
sake_lens, so a child starts in milliseconds) and report over a pipe where they are.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from sake_lens.registry import EditBook, storage

from .test_gate_router import FAKE_GATE, SUBJECTS, FakeFeatures, fake_edit

__all__ = [
    "FAKE_GATE",
    "SUBJECTS",
    "FakeFeatures",
    "fake_edit",
    "fake_book",
    "load_book",
    "registry_state",
    "object_digests_ok",
    "run_forked",
    "save_paused_at",
    "count_save_events",
]

FORK = mp.get_context("fork")


def fake_book(subjects: Sequence[str], *, d: int = 16, seed: int = 0) -> EditBook:
    """A book of fake edits (one per subject) with gates fitted on fake features."""
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures())
    for s in subjects:
        book.add(fake_edit(s, d=d, seed=seed))
    return book


def load_book(path: Path, **kw: Any) -> EditBook:
    return EditBook.load(path, features=FakeFeatures(), **kw)


def registry_state(path: Path) -> tuple[tuple[str, bool, str], ...]:
    """(subject, enabled, new object) of each entry, after a full load (checksums verified)."""
    book = load_book(path)
    return tuple((e.edit.request.subject, e.enabled, e.edit.request.new) for e in book.entries)


def object_digests_ok(path: Path) -> bool:
    """Every tensor file the manifest names exists and has the SHA-256 it is named by."""
    manifest = json.loads((path / storage.MANIFEST).read_text())
    for entry in manifest["entries"]:
        data = storage.object_path(path, entry["object"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["object"] or len(data) != entry["bytes"]:
            return False
    return True


def _child(target: Callable[..., None], args: tuple[Any, ...], conn: Any) -> None:
    torch.set_num_threads(1)
    try:
        target(conn, *args)
        conn.send(("done", None))
    except BaseException as exc:  # reported to the parent, which fails the test
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        os._exit(0)  # skip pytest's atexit handlers in the forked child


def run_forked(target: Callable[..., None], *args: Any) -> tuple[Any, Any]:
    """Start ``target(conn, *args)`` in a forked child; return (process, parent end of the pipe)."""
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_child, args=(target, args, child), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _instrument(conn: Any, pause_at: int | None) -> None:
    """Make every file switch of a save an event: report it, and pause before event ``pause_at``.

    Events: each ``os.replace`` (a tensor file or the manifest moving into place) and the
    garbage collection after the manifest switch.
    """
    counter = [0]
    real_replace = os.replace
    real_gc = storage._collect_garbage

    def event(name: str) -> None:
        k = counter[0]
        counter[0] += 1
        conn.send(("event", (k, name)))
        if k == pause_at:
            conn.send(("paused", (k, name)))
            time.sleep(600)  # the parent SIGKILLs us here

    def replace(src: Any, dst: Any) -> None:
        event("replace " + Path(dst).name)
        real_replace(src, dst)

    def gc(path: Path, keep: set[str]) -> None:
        event("gc")
        real_gc(path, keep)

    storage.os.replace = replace  # type: ignore[assignment]  (child process only)
    storage._collect_garbage = gc  # type: ignore[assignment]


def _save_changed(conn: Any, path: str, pause_at: int | None) -> None:
    """Open the registry, change it (add two, remove one, disable one), save with pauses."""
    book = load_book(Path(path))
    book.add(fake_edit(SUBJECTS[4]))
    book.add(fake_edit(SUBJECTS[5]))
    book.remove(book.entries[0].id)
    book.disable(book.entries[0].id)
    _instrument(conn, pause_at)
    book.save()


def count_save_events(path: Path) -> list[tuple[int, str]]:
    """The events of one full save of :func:`_save_changed` (run on a copy of the registry)."""
    proc, conn = run_forked(_save_changed, str(path), None)
    events = []
    while True:
        kind, payload = conn.recv()
        if kind == "event":
            events.append(payload)
        elif kind == "done":
            break
        else:
            raise AssertionError(payload)
    proc.join(30)
    return events


def save_paused_at(path: Path, k: int, *, timeout: float = 60.0) -> tuple[int, str]:
    """Run the changing save in a child, SIGKILL it when it pauses before event ``k``."""
    proc, conn = run_forked(_save_changed, str(path), k)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"the child never reached event {k}")
            kind, payload = conn.recv()
            if kind == "paused":
                os.kill(proc.pid, signal.SIGKILL)
                return payload
            if kind in ("done", "error"):
                raise AssertionError(f"child finished before event {k}: {kind} {payload}")
    finally:
        proc.join(10)
        if proc.is_alive():  # pragma: no cover
            os.kill(proc.pid, signal.SIGKILL)
