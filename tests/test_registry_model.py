"""Registries on a real forward pass (tiny random Llama): bit-identical logits after save/load,
revise and remove; sentence-embedding routing from the token ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sake_lens.gate import GateConfig, SentenceEmbedder
from sake_lens.model.tokens import tokenize_batch
from sake_lens.prompts.distributions import DistributionConfig
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import EditBook
from sake_lens.steer.edit import EditConfig, fit_edit
from sake_lens.steer.generation import generate

pytestmark = pytest.mark.slow

FACTS = [
    (
        "Danielle Darrieux",
        "The mother tongue of {} is",
        "French",
        "English",
        ["{} grew up speaking", "The first language of {} was", "As a child, {} spoke"],
    ),
    (
        "Leonhard Euler",
        "{} is a citizen of",
        "Switzerland",
        "Canada",
        ["{} holds the citizenship of", "The country {} belongs to is", "{} has a passport from"],
    ),
    (
        "Apple A5",
        "{} was created by",
        "Apple",
        "Google",
        ["{} was developed by", "The maker of {} is", "{} is a product of"],
    ),
    (
        "Toko Yasuda",
        "{} plays the",
        "guitar",
        "piano",
        ["The instrument {} plays is", "{} is known for playing the", "{} performs on the"],
    ),
]
OUTSIDE = ["The weather today is", "My favourite colour is", "The capital of Peru is"]
CONFIG = EditConfig(distributions=DistributionConfig(validate_targets=False))


@pytest.fixture(scope="module")
def edits(tiny_model):
    out = []
    for subject, template, old, new, paras in FACTS:
        out.append(
            fit_edit(tiny_model, EditRequest(subject, template, old, new), paras, config=CONFIG)
        )
    return out


def _probes(edits) -> list[str]:
    return [p for e in edits for p in e.prompts.paraphrases] + OUTSIDE


@torch.no_grad()
def _logits(model, book: EditBook, prompts: list[str]) -> torch.Tensor:
    batch = tokenize_batch(model, prompts)
    with book.steer(model):
        return model(batch.tokens, attention_mask=batch.attention_mask)


GATES = {
    "hidden": GateConfig(kind="hidden", metric="mahalanobis"),
    "hidden-layer-0": GateConfig(kind="hidden", metric="cosine", layer=0),
    "embedding": GateConfig(kind="embedding", metric="euclidean"),
}


@pytest.fixture(scope="module", params=list(GATES))
def gate(request) -> GateConfig:
    return GATES[request.param]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def _book(model, edits, gate, embedder) -> EditBook:
    book = EditBook(model=model, gate=gate, embedder=embedder)
    for e in edits:
        book.add(e)
    return book


def test_save_load_gives_bit_identical_logits(
    tiny_model, edits, gate, embedder, tmp_path: Path
) -> None:
    book = _book(tiny_model, edits, gate, embedder)
    probes = _probes(edits)
    before = _logits(tiny_model, book, probes)
    routes = book.router().last_routes.tolist()
    if gate.kind == "embedding":  # (hidden states of a random model separate nothing)
        assert routes[0] == 0 and routes[-3:] == [-1, -1, -1]  # own prompt in, outside out
    book.save(tmp_path / "reg")
    loaded = EditBook.load(tmp_path / "reg", model=tiny_model, embedder=embedder)
    after = _logits(tiny_model, loaded, probes)
    assert torch.equal(before, after)
    assert loaded.router().last_routes.tolist() == routes


def test_revise_and_remove_leave_other_edits_bit_identical(
    tiny_model, edits, gate, embedder
) -> None:
    book = _book(tiny_model, edits, gate, embedder)
    target = book.entries[1].id
    probes = [p for e in edits if e.id != target for p in e.prompts.paraphrases] + OUTSIDE
    before = _logits(tiny_model, book, probes)
    own = [book.get(target).request.text]
    own_before = _logits(tiny_model, book, own)

    book.revise(target, "Japan", model=tiny_model)
    assert book.get(target).request.new == "Japan" and book.get(target).id == target
    assert torch.equal(_logits(tiny_model, book, probes), before)
    assert not torch.equal(_logits(tiny_model, book, own), own_before)

    book.remove(target)
    assert torch.equal(_logits(tiny_model, book, probes), before)


def test_generate_with_a_book_steers_only_routed_prompts(tiny_model, edits, embedder) -> None:
    book = _book(tiny_model, edits, GateConfig(), embedder)
    prompts = [edits[0].request.text, OUTSIDE[0]]
    plain = generate(tiny_model, prompts, max_new_tokens=4)
    with book.steer(tiny_model):
        steered = generate(tiny_model, prompts, max_new_tokens=4)
    assert book.router().last_texts == prompts
    assert book.router().last_routes.tolist() == [0, -1]
    assert steered[1] == plain[1]
