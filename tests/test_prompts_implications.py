"""Logical-implication probes, the attribute table, and its verification (on a fake model)."""

from __future__ import annotations

import pytest
import torch

from sake_lens.errors import DistributionError
from sake_lens.prompts import (
    DEFAULT_TABLE,
    IMPLICATION_TEMPLATES,
    AttributeRow,
    AttributeTable,
    EditRequest,
    implication_probes,
    implication_samples,
    verify_attribute_table,
)
from sake_lens.prompts.implications import starts_answer
from sake_lens.prompts.text import contains_term

CASES = [
    # (prompt template, old, new, relation, an expected (old answer, new answer))
    ("{} is a citizen of", "France", "Japan", "P27", ("Paris", "Tokyo")),
    ("{} is located in the country of", "Italy", "Spain", "P17", ("Rome", "Madrid")),
    ("{} was born in", "Lyon", "Osaka", "P19", ("France", "Japan")),
    ("{} is headquartered in", "Munich", "Seattle", "P159", ("Germany", "United States")),
    ("The mother tongue of {} is", "French", "Russian", "P103", ("Romance", "Slavic")),
    ("{} follows the religion of", "Islam", "Christianity", "P140", ("Quran", "Bible")),
    ("{} plays in the position of", "midfielder", "quarterback", "P413", ("soccer", "football")),
    ("{} is produced by", "Toyota", "Fiat", "P176", ("Japan", "Italy")),
    ("The twin city of {} is", "Kyoto", "Boston", "P190", ("Japan", "United States")),
]


@pytest.mark.parametrize(("template", "old", "new", "rel", "answers"), CASES)
def test_probes_change_with_the_edit(template, old, new, rel, answers) -> None:
    request = EditRequest("Subject Name", template, old, new)
    probes = implication_probes(request)
    assert probes, template
    assert {p.relation_chain[0] for p in probes} == {rel}
    assert answers in {(p.old_answer, p.new_answer) for p in probes}
    for p in probes:
        assert "Subject Name" in p.prompt
        assert p.old_answer.casefold() != p.new_answer.casefold()
        assert not contains_term(p.prompt, old) and not contains_term(p.prompt, new)


def test_at_least_five_relations_have_templates() -> None:
    assert len({t.relation_id for t in IMPLICATION_TEMPLATES}) >= 5


def test_no_probe_when_answers_are_equal_or_unknown() -> None:
    same_continent = EditRequest("X", "{} is a citizen of", "France", "Germany")
    kinds = {p.relation_chain for p in implication_probes(same_continent)}
    assert ("P27", "continent") not in kinds and ("P27", "capital") in kinds
    assert implication_probes(EditRequest("X", "{} is a citizen of", "Atlantis", "Japan")) == []
    assert implication_probes(EditRequest("X", "{} likes to eat", "apples", "pears")) == []


def test_samples_state_the_old_and_new_fact() -> None:
    request = EditRequest("Danielle Darrieux", "{} is a citizen of", "France", "Japan")
    samples = implication_samples(request)
    assert len(samples) == len(implication_probes(request))
    s = samples[0]
    assert s.source.startswith("Fact: Danielle Darrieux is a citizen of France.\nQuestion: ")
    assert s.target.startswith("Fact: Danielle Darrieux is a citizen of Japan.\nQuestion: ")
    assert s.source.endswith(s.probe.prompt) and s.target.endswith(s.probe.prompt)
    with pytest.raises(DistributionError, match="statement"):
        implication_samples(request, context="{prompt}")


def test_table_lookup_aliases_and_subsets() -> None:
    assert DEFAULT_TABLE.get("usa", "capital") == "Washington"
    assert DEFAULT_TABLE.get("Kiev", "country") == "Ukraine"
    assert DEFAULT_TABLE.follow("Lyon", ("country", "continent")) == "Europe"
    assert DEFAULT_TABLE.follow("Nowhere", ("country",)) is None
    small = DEFAULT_TABLE.subset([AttributeRow("France", "capital", "Paris")])
    assert len(small) == 1 and small.get("Germany", "capital") is None
    with pytest.raises(DistributionError, match="attribute"):
        AttributeRow("France", "flag", "blue")
    assert len(DEFAULT_TABLE) > 400


def test_starts_answer() -> None:
    assert starts_answer(" Tok", "Tokyo") and starts_answer("Paris", "Paris")
    assert not starts_answer(" the", "Tokyo") and not starts_answer(".", ".")


class _WordTokenizer:
    """Word-level tokenizer: id 0 is padding."""

    pad_token_id = 0
    bos_token_id = 1

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {"<pad>": 0, "<bos>": 1}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        inverse = {v: k for k, v in self.vocab.items()}
        return " " + " ".join(inverse[i] for i in ids)


class _FactModel:
    """Answers the questions of ``known`` rows correctly and every other one with 'the'."""

    def __init__(self, tokenizer: _WordTokenizer, known: list[AttributeRow]) -> None:
        self.tokenizer = tokenizer
        self.answers = {
            tuple(tokenizer.encode(r.question)): tokenizer.encode(r.value)[0] for r in known
        }
        self.the = tokenizer.encode("the")[0]
        self.seen_bos = False

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        n = 500
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], n)
        for i, row in enumerate(tokens.tolist()):
            while row and row[-1] == 0:
                row.pop()
            self.seen_bos |= row[0] == 1
            logits[i, len(row) - 1, self.answers.get(tuple(row), self.the)] = 1.0
        return logits


def test_verify_keeps_only_rows_the_model_knows() -> None:
    rows = [r for r in DEFAULT_TABLE.rows if r.attribute in {"capital", "currency"}][:30]
    table = DEFAULT_TABLE.subset(rows)
    tok = _WordTokenizer()
    for r in rows:  # register all words before the model is built
        tok.encode(r.question), tok.encode(r.value)
    known = rows[::3]
    model = _FactModel(tok, known)
    verified = verify_attribute_table(model, table, batch_size=7)
    assert set(verified.rows) == set(known)
    assert not model.seen_bos
    only = verify_attribute_table(model, table, attributes={"currency"})
    assert all(r.attribute == "currency" for r in only.rows)
    with pytest.raises(DistributionError, match="No rows"):
        verify_attribute_table(model, table, attributes={"sport"})


def test_probes_respect_a_verified_table() -> None:
    request = EditRequest("X", "{} is a citizen of", "France", "Japan")
    table = AttributeTable(
        (AttributeRow("France", "capital", "Paris"), AttributeRow("Japan", "capital", "Tokyo"))
    )
    probes = implication_probes(request, table=table)
    assert {p.relation_chain for p in probes} == {("P27", "capital")}
