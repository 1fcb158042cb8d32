"""Faults: exceptions under steering leave no hook; killed and concurrent saves lose nothing.

A save is killed (SIGKILL, no clean-up) just before each of its file switches in turn and at
random moments over many trials; real processes save the same registry concurrently while others
read it. Each time the registry must load with valid checksums and hold either the state before
or the state after a complete save — never a mixture.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from sake_lens.model.tokens import tokenize_batch
from sake_lens.registry import EditBook, storage
from sake_lens.steer.generation import current_step, generate

from .reliability_helpers import (
    FAKE_GATE,
    FORK,
    SUBJECTS,
    FakeFeatures,
    count_save_events,
    fake_book,
    fake_edit,
    load_book,
    object_digests_ok,
    registry_state,
    run_forked,
    save_paused_at,
)


def _no_hooks(model) -> bool:
    return all(not hp._forward_hooks for hp in model.hook_dict.values())


def _leftovers(path: Path) -> list[Path]:
    return list(path.glob(".tmp-*")) + list((path / storage.OBJECTS).glob(".tmp-*"))


# ----------------------------------------------------------------------------- steer() faults
def test_exceptions_under_a_registry_steer_leave_no_hook(tiny_model) -> None:
    d = int(tiny_model.cfg.d_model)
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures(d))
    for s in SUBJECTS[:2]:
        book.add(fake_edit(s, d=d, model_id="tiny-llama"))
    tokens = tokenize_batch(tiny_model, ["Rome is a city", "Hello"]).tokens

    def boom(act: torch.Tensor, hook: object) -> torch.Tensor:
        raise RuntimeError("boom inside the forward")

    assert _no_hooks(tiny_model)
    # 1. The body of the context raises.
    with pytest.raises(KeyError), book.steer(tiny_model):
        raise KeyError("body")
    assert _no_hooks(tiny_model)
    # 2. A hook inside the forward pass raises (after the router's capture hooks ran).
    with pytest.raises(RuntimeError, match="boom"), book.steer(tiny_model):
        with tiny_model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", boom)]):
            tiny_model(tokens)
    assert _no_hooks(tiny_model)
    # 3. Generation raises at its second step.
    with pytest.raises(RuntimeError, match="boom"), book.steer(tiny_model):
        generate(
            tiny_model,
            ["Rome is a city"],
            max_new_tokens=3,
            fwd_hooks=[("blocks.0.hook_resid_post", _raise_at_step(1))],
        )
    assert _no_hooks(tiny_model) and current_step() is None
    # 4. KeyboardInterrupt (a BaseException) inside the forward.
    with pytest.raises(KeyboardInterrupt), book.steer(tiny_model):
        with tiny_model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", _interrupt)]):
            tiny_model(tokens)
    assert _no_hooks(tiny_model)
    # The model still runs exactly as before, steered and not.
    base = tiny_model(tokens)
    with book.steer(tiny_model):
        tiny_model(tokens)
    torch.testing.assert_close(tiny_model(tokens), base, rtol=0, atol=0)


def _raise_at_step(k: int):
    def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
        step = current_step()
        if step is not None and step.step == k:
            raise RuntimeError("boom at a generation step")
        return act

    return hook


def _interrupt(act: torch.Tensor, hook: object) -> torch.Tensor:
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------- killed saves
@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved registry of four fake edits."""
    path = tmp_path_factory.mktemp("base")
    fake_book(SUBJECTS[:4]).save(path)
    return path


def test_a_save_killed_before_any_file_switch_keeps_the_old_or_the_new_registry(
    base: Path, tmp_path: Path
) -> None:
    before = registry_state(base)
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    events = count_save_events(probe)
    after = registry_state(probe)
    assert after != before
    names = [name for _, name in events]
    switch = names.index("replace " + storage.MANIFEST)
    assert switch >= 2 and names[-1] == "gc"  # two new tensor files, then the manifest, then gc
    for k, name in events:
        path = tmp_path / f"kill-{k}"
        shutil.copytree(base, path)
        assert save_paused_at(path, k) == (k, name)
        assert object_digests_ok(path)
        assert registry_state(path) == (before if k <= switch else after), (k, name)
        # The next save cleans the leftovers of the killed one and changes nothing else.
        state = registry_state(path)
        book = load_book(path)
        book.save()
        assert not _leftovers(path) and registry_state(path) == state
        on_disk = {p.stem for p in (path / storage.OBJECTS).glob("*.safetensors")}
        assert on_disk == {e._object[0] for e in book.entries if e._object}


def _flip_flop(conn, path: str) -> None:
    """Save forever, alternating the new object of one edit and the enabled flag of another."""
    book = load_book(Path(path))
    first, second = book.entries[0], book.entries[1]
    conn.send(("started", None))
    i = 0
    while True:
        i += 1
        new = ("German", "English")[i % 2]
        book.add(fake_edit(first.edit.request.subject, new=new), replace=True, scope=first.scope)
        if i % 2:
            book.disable(second.id)
        else:
            book.enable(second.id)
        book.save()


def test_saves_killed_at_random_moments_never_leave_a_broken_registry(
    base: Path, tmp_path: Path
) -> None:
    path = tmp_path / "reg"
    shutil.copytree(base, path)
    rng = random.Random(0)
    first, second = registry_state(path)[:2]
    allowed = {
        (first[0], True, "English", second[0], True),  # the untouched initial state
        (first[0], True, "English", second[0], False),  # odd saves
        (first[0], True, "German", second[0], True),  # even saves
    }
    seen = set()
    for _ in range(int(os.environ.get("SAKE_KILL_TRIALS", "12"))):
        proc, conn = run_forked(_flip_flop, str(path))
        assert conn.poll(30) and conn.recv()[0] == "started"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert object_digests_ok(path)
        state = registry_state(path)
        key = (state[0][0], state[0][1], state[0][2], state[1][0], state[1][1])
        assert key in allowed, state
        assert state[2:] == registry_state(base)[2:]
        seen.add(key)
    assert len(seen) >= 2, seen  # the kills landed at different moments
    book = load_book(path)
    book.save()
    assert not _leftovers(path)


# ----------------------------------------------------------------------------- concurrency
def _add_and_save(conn, path: str, subject: str, barrier) -> None:
    book = load_book(Path(path))
    book.add(fake_edit(subject))
    if subject == SUBJECTS[4]:
        book.disable(book.entries[0].id)
    barrier.wait(30)
    book.save()


def _read_repeatedly(conn, path: str, barrier) -> None:
    barrier.wait(30)
    n = 0
    for _ in range(40):
        book = load_book(Path(path))  # checksums verified on every load
        n = max(n, len(book))
    conn.send(("read", n))


def test_processes_saving_the_same_registry_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "reg"
    fake_book(SUBJECTS[:2]).save(path)
    writers = SUBJECTS[2:]
    barrier = FORK.Barrier(len(writers) + 2)
    procs = [run_forked(_add_and_save, str(path), s, barrier) for s in writers]
    procs += [run_forked(_read_repeatedly, str(path), barrier) for _ in range(2)]
    for proc, conn in procs:
        assert conn.poll(120), "a process hung"
        messages = []
        while True:
            kind, payload = conn.recv()
            messages.append((kind, payload))
            if kind in ("done", "error"):
                break
        assert kind == "done", messages
        proc.join(10)
        assert proc.exitcode == 0
    final = load_book(path)
    assert sorted(e.edit.request.subject for e in final.entries) == sorted(SUBJECTS)
    assert not final.entries[0].enabled  # one writer's disable survived the others' saves
    assert all(e.enabled for e in final.entries[1:])
    assert object_digests_ok(path) and not _leftovers(path)
    assert final._generation == 1 + len(writers)
    objects = {p.stem for p in (path / storage.OBJECTS).glob("*.safetensors")}
    assert objects == {e._object[0] for e in final.entries if e._object}
