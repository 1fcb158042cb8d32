"""EditBook: add, revise, remove, list, enable/disable, conflicts, isolation (no model)."""

from __future__ import annotations

import pytest
import torch

from sake_lens.errors import ModelMismatchError, RegistryError
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import EditBook, conflict_key
from sake_lens.steer.edit import Edit

from .test_gate_router import FAKE_GATE, FAR, SITE, SUBJECTS, FakeFeatures, fake_edit, steer_acts


def _book(n: int = 4) -> EditBook:
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures())
    for s in SUBJECTS[:n]:
        book.add(fake_edit(s))
    return book


def _probes(book: EditBook) -> list[str]:
    return [p for e in book.active_edits() for p in e.prompts.paraphrases[:3]] + [FAR + " x"]


def _outputs(book: EditBook, probes: list[str]) -> tuple[torch.Tensor, list[str | None]]:
    """Steered activations of the probes and the id each probe routes to."""
    edits = book.active_edits()
    router = book.router()
    acts = FakeFeatures()(probes, SITE)
    out = steer_acts(edits, router, acts)
    routes = router.route(acts, SITE).tolist()
    return out, [edits[k].id if k >= 0 else None for k in routes]


def test_add_list_get_and_route() -> None:
    book = _book()
    assert len(book) == 4
    rows = book.list()
    assert [r["subject"] for r in rows] == list(SUBJECTS[:4])
    assert rows[0]["gate"] == "hidden/euclidean" and rows[0]["threshold"] > 0 and rows[0]["enabled"]
    eid = rows[2]["id"]
    assert eid in book and book.get(eid).request.subject == SUBJECTS[2]
    assert book.scope(eid) is not None
    _, ids = _outputs(book, [book.get(eid).request.text, FAR + " y"])
    assert ids == [eid, None]


def test_same_edit_or_same_subject_and_relation_conflicts() -> None:
    book = _book(2)
    with pytest.raises(RegistryError, match="already in this registry"):
        book.add(fake_edit(SUBJECTS[0]))
    # Same subject, another CounterFact template of the same relation (P103): a conflict.
    other = fake_edit(SUBJECTS[0], "The native language of {} is", new="German")
    with pytest.raises(RegistryError, match="conflicts with edit"):
        book.add(other)
    # Same subject, other relation: no conflict.
    book.add(fake_edit(SUBJECTS[0], "{} is a citizen of", old="France", new="Spain"))
    assert len(book) == 3


def test_replace_revises_the_entry_and_keeps_its_id() -> None:
    book = _book(2)
    first = book.entries[0]
    new = fake_edit(SUBJECTS[0], "The native language of {} is", new="German")
    eid = book.add(new, replace=True)
    assert eid == first.id and len(book) == 2
    entry = book.entries[0]
    assert entry.edit.request.new == "German" and entry.revision == 1 and entry.added == first.added
    assert entry.revised is not None


def test_conflict_key() -> None:
    a = EditRequest("Danielle  Darrieux", "The mother tongue of {} is", "French", "English")
    b = EditRequest("danielle darrieux", "{} is a native speaker of", "French", "German")
    c = EditRequest("Danielle Darrieux", "{} writes her letters in", "French", "German")
    assert conflict_key(a) == conflict_key(b) == ("danielle darrieux", "P103")
    assert conflict_key(c) == ("danielle darrieux", "{} writes her letters in")


def test_remove_and_unknown_ids() -> None:
    book = _book(3)
    eid = book.entries[1].id
    removed = book.remove(eid)
    assert isinstance(removed, Edit) and eid not in book and len(book) == 2
    with pytest.raises(RegistryError, match="Did you mean"):
        book.remove(book.entries[0].id[:-1])
    with pytest.raises(KeyError):  # RegistryError is a KeyError
        book.get("nope")


def test_enable_disable() -> None:
    book = _book(3)
    eid = book.entries[0].id
    probe = book.get(eid).request.text
    book.disable(eid)
    assert [e.id for e in book.active_edits()] == [e.id for e in book.entries[1:]]
    assert _outputs(book, [probe])[1] == [None]
    book.enable(eid)
    assert _outputs(book, [probe])[1] == [eid]


def test_remove_revise_disable_leave_other_edits_bit_identical() -> None:
    book = _book(4)
    target = book.entries[1].id
    others = [p for e in book.entries if e.id != target for p in e.edit.prompts.paraphrases]
    probes = [*others, FAR + " z"]
    before, ids_before = _outputs(book, probes)
    assert target not in ids_before and ids_before.count(None) == 1

    book.revise(target, fake_edit(SUBJECTS[1], new="Klingon"))
    revised, ids = _outputs(book, probes)
    assert book.get(target).request.new == "Klingon" and book.entries[1].revision == 1
    assert ids == ids_before and torch.equal(revised, before)

    book.disable(target)
    disabled, ids = _outputs(book, probes)
    assert ids == ids_before and torch.equal(disabled, before)

    book.enable(target)
    book.remove(target)
    removed, ids = _outputs(book, probes)
    assert ids == ids_before and torch.equal(removed, before)


def test_revise_changes_the_revised_edit_only() -> None:
    book = _book(3)
    target = book.entries[0].id
    probe = [book.get(target).request.text]
    before, _ = _outputs(book, probe)
    book.revise(target, fake_edit(SUBJECTS[0], new="Klingon"))
    after, ids = _outputs(book, probe)
    assert ids == [target] and not torch.equal(before, after)


def test_revise_checks_its_arguments() -> None:
    book = _book(2)
    eid = book.entries[0].id
    with pytest.raises(RegistryError, match="needs the model"):
        book.revise(eid, "Klingon")
    with pytest.raises(RegistryError, match="add it as a new edit"):
        book.revise(eid, fake_edit(SUBJECTS[3]))


def test_models_must_match_inside_a_book() -> None:
    book = _book(1)
    with pytest.raises(ModelMismatchError, match="one registry per model"):
        book.add(fake_edit(SUBJECTS[2], d=8))
    with pytest.raises(ModelMismatchError):
        book.add(fake_edit(SUBJECTS[2], model_id="other-model"))
    lax = EditBook(gate=FAKE_GATE, features=FakeFeatures(), strict=False)
    lax.add(fake_edit(SUBJECTS[0]))
    lax.add(fake_edit(SUBJECTS[2], model_id="same-model-other-name"))


def test_empty_book() -> None:
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures())
    with pytest.raises(RegistryError, match="No enabled edits"):
        book.router()
    with pytest.raises(RegistryError, match="needs the model"):
        with book.steer():
            pass
    with pytest.raises(RegistryError, match="no path"):
        book.save()
