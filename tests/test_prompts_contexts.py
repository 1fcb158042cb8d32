"""Text helpers, noisy prefixes and chat formatting."""

from __future__ import annotations

import pytest

from sake_lens.errors import DistributionError
from sake_lens.prompts import chat_prompt, fill_context, long_context, noisy_context, sample_noise
from sake_lens.prompts.noise import NOISE_SENTENCES, approx_token_count, with_noisy_prefix
from sake_lens.prompts.text import (
    comparison_keys,
    contains_term,
    mask_subject,
    normalize,
    split_noisy_prefix,
    template_of,
)


def test_normalize_and_terms() -> None:
    assert normalize("  \u201cThe  Mother tongue of X is.\u201d ") == "the mother tongue of x is"
    assert contains_term("He speaks FRENCH.", "French")
    assert not contains_term("A Frenchman", "French")
    assert contains_term("in New York City", "New York")
    assert not contains_term("anything", "   ")
    assert "Google" not in mask_subject("Google Maps is owned by", "Google Maps")


def test_split_noisy_prefix_and_templates() -> None:
    assert split_noisy_prefix("A. B? C! Paul speaks", "Paul") == ("A. B? C!", "Paul speaks")
    assert split_noisy_prefix("Where is Rome? It is located in", "Rome") == (
        "",
        "Where is Rome? It is located in",
    )
    assert split_noisy_prefix("The twin city of St. Louis is", "St. Louis")[0] == ""
    assert split_noisy_prefix("no subject here", "Paul") == ("", "no subject here")
    assert template_of("The capital of Peru is", "Peru") == "The capital of {} is"
    assert template_of("nothing", "Peru") is None
    assert comparison_keys("Noise. Paul speaks.", "Paul") == {"noise. paul speaks", "paul speaks"}


def test_noise_bank_is_large_varied_and_neutral() -> None:
    assert len(NOISE_SENTENCES) >= 60
    assert len(set(NOISE_SENTENCES)) == len(NOISE_SENTENCES)
    for s in NOISE_SENTENCES:
        assert s.endswith(".") and "{" not in s


def test_noise_is_seeded_and_respects_avoid() -> None:
    assert sample_noise(5, sentences=2) == sample_noise(5, sentences=2)
    assert sample_noise(5, sentences=2) != sample_noise(6, sentences=2)
    text = sample_noise(0, sentences=40, avoid=["dinner", "coffee"])
    assert not contains_term(text, "dinner") and not contains_term(text, "coffee")
    assert with_noisy_prefix("Paul speaks", 1, sentences=3).endswith(". Paul speaks")
    assert noisy_context("Paul speaks", 1) == with_noisy_prefix("Paul speaks", 1)
    with pytest.raises(DistributionError):
        sample_noise(
            0,
            avoid=["the", "a", "is", "of", "and", "to", "in", "at", "for", "on"]
            + [w for s in NOISE_SENTENCES for w in s.split()],
        )


@pytest.mark.parametrize("min_tokens", [200, 600, 1500])
def test_long_contexts(min_tokens: int) -> None:
    text = long_context(3, min_tokens=min_tokens)
    assert approx_token_count(text) >= min_tokens


def test_token_count_with_a_tokenizer() -> None:
    class Tok:
        def encode(self, text, add_special_tokens=False):
            return list(text)

    assert approx_token_count("abc", Tok()) == 3
    assert approx_token_count(long_context(0, min_tokens=300, tokenizer=Tok()), Tok()) >= 300


class _ChatTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"


def test_chat_prompt_answer_and_question_modes() -> None:
    tok = _ChatTokenizer()
    text = "The mother tongue of Danielle Darrieux is"
    answer = chat_prompt(tok, text)
    assert answer == f"<|user|>Complete the sentence.<|end|><|assistant|>{text}"
    question = chat_prompt(tok, text, mode="question", system="Be brief.")
    assert question.startswith("<|system|>Be brief.<|end|><|user|>Complete the sentence. The")
    assert question.endswith("<|assistant|>")
    turns = chat_prompt(tok, text, history=[("Hi", "Hello!")])
    assert turns.startswith("<|user|>Hi<|end|><|assistant|>Hello!<|end|>")
    plain = chat_prompt(None, text, history=[("Hi", "Hello!")])
    assert plain == f"User: Hi\nAssistant: Hello!\nUser: Complete the sentence.\nAssistant: {text}"
    with pytest.raises(DistributionError, match="mode"):
        chat_prompt(tok, text, mode="nope")


def test_existing_context_names_still_work() -> None:
    assert (
        fill_context("fact", "X speaks", "French", "Dutch")
        == "Fact: X speaks Dutch.\nQuestion: X speaks"
    )
