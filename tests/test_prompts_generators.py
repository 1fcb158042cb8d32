"""Paraphrase generators: the template bank, the checks, parsing, and a local model (faked)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sake_lens.errors import DistributionError, GenerationError
from sake_lens.prompts import (
    EditRequest,
    LocalModelGenerator,
    ParaphraseSet,
    PromptFilter,
    ResponseCache,
    TemplateBankGenerator,
    parse_paraphrases,
)
from sake_lens.prompts.paraphrase import check_prompt
from sake_lens.prompts.text import contains_term, normalize, split_noisy_prefix

DARRIEUX = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")


def test_template_bank_gives_n_checked_prompts() -> None:
    ps = TemplateBankGenerator().generate(DARRIEUX, 60, seed=3)
    assert len(ps.prompts) == 60 and ps.complete
    assert ps.prompts[0] == DARRIEUX.text
    assert ps.relation_id == "P103"
    assert len({normalize(p) for p in ps.prompts}) == 60
    for p in ps.prompts:
        assert "Danielle Darrieux" in p
        assert not contains_term(p, "French") and not contains_term(p, "English")
    # beyond the bank's 17 templates, prompts come behind noisy prefixes
    assert sum(not p.startswith(("The mother", "Danielle")) for p in ps.prompts) > 20
    assert "60/60 prompts from template-bank, relation P103" in ps.summary()


def test_template_bank_is_seeded_and_cached() -> None:
    gen = TemplateBankGenerator()
    a = gen.generate(DARRIEUX, 20, seed=1)
    b = gen.generate(DARRIEUX, 20, seed=1)
    c = TemplateBankGenerator().generate(DARRIEUX, 20, seed=1)
    d = gen.generate(DARRIEUX, 20, seed=2)
    assert a.prompts == b.prompts == c.prompts
    assert a.prompts != d.prompts
    a.prompts.append("mutated")  # the cache hands out copies
    assert gen.generate(DARRIEUX, 20, seed=1).prompts == c.prompts


def test_prefix_fraction_mixes_plain_and_noisy() -> None:
    ps = TemplateBankGenerator(prefix_fraction=0.5).generate(DARRIEUX, 10, seed=0)
    noisy = [p for p in ps.prompts if split_noisy_prefix(p, DARRIEUX.subject)[0]]
    assert len(noisy) == 5


def test_objects_in_the_subject_do_not_count() -> None:
    req = EditRequest("Google Maps", "{}, by", "Google", "Apple")
    ps = TemplateBankGenerator().generate(req, 10)
    assert len(ps.prompts) == 10
    assert check_prompt("Google Maps is owned by Google", req) == "names the old object"
    assert check_prompt("Google Maps is owned by", req) is None


def test_unknown_relation_falls_back_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    req = EditRequest("Foo", "{} likes to eat", "apples", "pears")
    ps = TemplateBankGenerator().generate(req, 12, seed=0)
    assert ps.relation_id is None and ps.notes and "No relation" in ps.notes[0]
    assert len(ps.prompts) == 12
    assert all(p.count("likes to eat") == 1 for p in ps.prompts)
    assert any(p.startswith("As far as I know, Foo") for p in ps.prompts) or len(ps.prompts) == 12


def test_filter_reasons_and_exclusion() -> None:
    filt = PromptFilter(DARRIEUX, exclude=["Some noise. Danielle Darrieux grew up speaking"])
    assert filt.add("Danielle Darrieux speaks")
    assert not filt.add("danielle darrieux  speaks.")  # duplicate after normalisation
    assert not filt.add("Danielle Darrieux speaks French")
    assert not filt.add("She speaks English")
    assert not filt.add("   ")
    assert not filt.add("Danielle Darrieux grew up speaking")  # an evaluation prompt's core
    reasons = [r for _, r in filt.dropped]
    assert reasons == [
        "duplicate",
        "names the old object",
        "subject missing",
        "empty",
        "evaluation prompt (excluded)",
    ]


def test_generate_validates_arguments() -> None:
    gen = TemplateBankGenerator()
    with pytest.raises(DistributionError, match="positive"):
        gen.generate(DARRIEUX, 0)
    with pytest.raises(DistributionError, match="EditRequest"):
        gen.generate("The mother tongue of X is", 5)  # type: ignore[arg-type]
    with pytest.raises(DistributionError, match="prefix_fraction"):
        TemplateBankGenerator(prefix_fraction=2.0)


def test_paraphrase_set_round_trip() -> None:
    ps = TemplateBankGenerator().generate(DARRIEUX, 5)
    again = ParaphraseSet.from_dict(ps.to_dict())
    assert again == ps
    with pytest.raises(DistributionError):
        ParaphraseSet.from_dict({"prompts": []})


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('["X speaks", "X is fluent in"]', ["X speaks", "X is fluent in"]),
        ("```json\n['X speaks', 'X writes in']\n```", ["X speaks", "X writes in"]),
        (
            "1. X speaks\n2) X writes in...\n- 'X talks in ___'\n",
            ["X speaks", "X writes in", "X talks in"],
        ),
        ("Here you go:\n\n* {} speaks\n", ["Here you go", "X speaks"]),
        ('"X speaks",\n"X writes in",', ["X speaks", "X writes in"]),
        ("", []),
    ],
)
def test_parse_paraphrases(reply: str, expected: list[str]) -> None:
    assert parse_paraphrases(reply, "X")[0] == expected


def test_parse_drops_questions_and_inner_blanks() -> None:
    got, dropped = parse_paraphrases("Does X speak?\nX speaks ___ at home\nX speaks", "X")
    assert got == ["X speaks"]
    assert [r for _, r in dropped] == [
        "a question, not an unfinished sentence",
        "placeholder or ellipsis",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises(reply: str) -> None:
    got, dropped = parse_paraphrases(reply, "X")
    assert all(isinstance(p, str) and p for p in got)
    assert all(isinstance(line, str) and reason for line, reason in dropped)


class _FakeTokenizer:
    chat_template = "fake"
    pad_token_id = 0
    eos_token_id = 0

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.seen: list[str] = []

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text, add_special_tokens=False, return_tensors="pt"):
        self.seen.append(text)
        return {"input_ids": torch.tensor([[1, 2, 3]])}

    def decode(self, ids, skip_special_tokens=True):
        return self.reply


class _FakeHF(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[dict] = []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        return torch.cat([kwargs["input_ids"], torch.tensor([[7, 8]])], dim=1)


class _FakeBridge:
    """Stands in for a TransformerBridge: .tokenizer, .original_model, .cfg."""

    def __init__(self, reply: str) -> None:
        self.tokenizer = _FakeTokenizer(reply)
        self.original_model = _FakeHF()
        self.sake_lens_model_id = "fake-chat"


def test_local_model_generator_with_a_fake_bridge(tmp_path) -> None:
    reply = "\n".join(
        [
            "1. Danielle Darrieux grew up speaking",
            "2. Danielle Darrieux's native tongue is French",
            "3. What language did Danielle Darrieux speak?",
            "4. The first language of Danielle Darrieux was",
            "5. Her first language was",
        ]
    )
    model = _FakeBridge(reply)
    gen = LocalModelGenerator(model, cache_dir=tmp_path, max_rounds=1, per_request=5)
    ps = gen.generate(DARRIEUX, 3, seed=0)
    assert ps.prompts == [
        DARRIEUX.text,
        "Danielle Darrieux grew up speaking",
        "The first language of Danielle Darrieux was",
    ]
    assert ps.drop_summary == {
        "names the old object": 1,
        "a question, not an unfinished sentence": 1,
        "subject missing": 1,
    }
    call = model.original_model.calls[0]
    assert call["use_cache"] is False and call["do_sample"] is True
    assert "<user>Write 5 different sentences" in model.tokenizer.seen[0]
    # a second generator finds the reply in the disk cache: no generation
    model2 = _FakeBridge("garbage")
    again = LocalModelGenerator(model2, cache_dir=tmp_path, max_rounds=1, per_request=5)
    assert again.generate(DARRIEUX, 3, seed=0).prompts == ps.prompts
    assert model2.original_model.calls == [] and again.requests_made == 0


def test_local_model_generator_needs_a_tokenizer() -> None:
    with pytest.raises(GenerationError, match="tokenizer"):
        LocalModelGenerator(object())


def test_response_cache_survives_corrupt_entries(tmp_path) -> None:
    cache = ResponseCache(tmp_path)
    payload = {"a": 1}
    cache.put(payload, "reply")
    assert cache.get(payload) == "reply"
    path = next(tmp_path.rglob("*.json"))
    path.write_text("{not json")
    assert cache.get(payload) is None
