"""Noisy prefixes: unrelated sentences put before a prompt, as in CounterFact's rephrase prompts.

CounterFact's rephrase prompts put one unrelated sentence before the paraphrase ("Regarding
individual vitamin and mineral supplementation, research shows mixed results. <subject> is
affiliated with the religion"). The sentences below were written for sake_lens: neutral
everyday statements that name no country, city, language, religion, company or person, so they
cannot prime an object. Sampling is seeded; contexts can be made as long as needed (a long
unrelated context of >= 200 tokens is one of the robustness probes).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..errors import DistributionError
from .text import contains_term

__all__ = [
    "NOISE_SENTENCES",
    "approx_token_count",
    "sample_noise",
    "with_noisy_prefix",
    "long_context",
]

log = logging.getLogger(__name__)

NOISE_SENTENCES: tuple[str, ...] = (
    "The kettle takes about three minutes to boil when it is full.",
    "Most houseplants need less water in winter than in summer.",
    "The meeting was moved to the afternoon because the projector was broken.",
    "A good night's sleep often helps more than a second cup of coffee.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Some birds start singing well before sunrise.",
    "The library extended its opening hours during the exam period.",
    "Regular stretching can make long walks more comfortable.",
    "The train was delayed by twenty minutes this morning.",
    "A sharp knife is safer to use than a dull one.",
    "The committee will publish its annual report next month.",
    "Fresh bread tastes best on the day it is baked.",
    "The children built a small dam in the stream behind the school.",
    "Painting a room usually takes longer than people expect.",
    "The new bicycle lane has made the commute a little quieter.",
    "Honey can stay edible for a very long time if it is sealed.",
    "The museum's café serves soup and sandwiches at lunchtime.",
    "Many people find it easier to concentrate in the morning.",
    "The storm knocked over several fences along the road.",
    "A spreadsheet can save hours of work when it is set up well.",
    "The bakery on the corner opens at six every day except Sunday.",
    "Walking after dinner is a habit that many doctors recommend.",
    "The orchestra rehearsed the final movement three times.",
    "Cats often sleep for more than half of the day.",
    "The parking lot was almost empty on the holiday weekend.",
    "The recycling bins are collected every other Tuesday.",
    "The old clock in the hallway still needs to be wound every week.",
    "Students were asked to submit their essays before the end of the term.",
    "A light jacket is usually enough for an evening in early autumn.",
    "The garden hose had a small leak near the tap.",
    "Board games have become popular again in recent years.",
    "The printer ran out of paper halfway through the report.",
    "Tomatoes ripen faster when they are kept in a warm place.",
    "The hiking trail is steep at the start but flattens out later.",
    "Our neighbours adopted a dog from the local shelter last spring.",
    "The paint on the window frames has started to peel.",
    "Some people like to write their shopping lists by hand.",
    "The bus stop was moved a few metres further down the street.",
    "Soup is a simple way to use up vegetables at the end of the week.",
    "The lecture ran over time because of the many questions.",
    "A quick backup can prevent the loss of important files.",
    "Snow fell for most of the night and covered the cars.",
    "The pharmacy closes early on Saturdays.",
    "Learning to juggle takes patience and plenty of practice.",
    "The river was higher than usual after the heavy rain.",
    "The company picnic was postponed because of the weather forecast.",
    "Reading before bed helps some people fall asleep.",
    "The bridge will be closed for repairs over the weekend.",
    "A well-made cup of tea needs water that is not quite boiling.",
    "The team celebrated the end of the project with a small dinner.",
    "Mushrooms grow best in damp and shady places.",
    "The elevator in the old building is slow but reliable.",
    "Drawing maps by hand was once a common school exercise.",
    "The town council discussed new rules for street parking.",
    "Fresh paint should be left to dry for at least a day.",
    "Crossword puzzles can be a pleasant way to spend a rainy afternoon.",
    "The bookshop has a quiet corner with a few comfortable chairs.",
    "Owls hunt mostly at night and rest during the day.",
    "The ferry crossing took longer than planned because of the wind.",
    "A balanced breakfast can make the morning feel easier.",
    "The photographer waited an hour for the light to change.",
    "The school choir performed at the end-of-year concert.",
    "Spare batteries are useful to keep in a kitchen drawer.",
    "The field was full of wild flowers in early summer.",
    "The carpenter measured the shelf twice before cutting the wood.",
    "The report recommends planting more trees along busy roads.",
    "A short break every hour can reduce eye strain.",
    "The night market sells grilled corn and sweet pastries.",
    "The volunteers cleaned the beach early on Saturday morning.",
    "Old letters can say a lot about everyday life in the past.",
    "The cinema added a late showing on Friday evenings.",
    "Frost formed on the windows during the cold night.",
    "The gym is usually crowded in the first weeks of the year.",
    "The puzzle had a thousand pieces and took a week to finish.",
    "Sunflowers turn to follow the sun while they are young.",
)

_TOKENS = re.compile(r"\w+|[^\w\s]")


def approx_token_count(text: str, tokenizer: Any = None) -> int:
    """Number of tokens of ``text``: exact with a tokenizer, else words plus punctuation marks.

    Without a tokenizer the count is close to a lower bound for sub-word tokenizers (each word
    is at least one token), so a context built to reach ``min_tokens`` by this count reaches it
    on real tokenizers too.
    """
    if tokenizer is not None:
        return len(tokenizer.encode(text, add_special_tokens=False))
    return len(_TOKENS.findall(text))


@lru_cache(maxsize=1024)
def _pool(bank: tuple[str, ...], avoid: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for s in bank if not any(contains_term(s, term) for term in avoid))


def _rng(seed: int | random.Random) -> random.Random:
    if isinstance(seed, random.Random):
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DistributionError(f"seed must be an int or a random.Random, got {seed!r}.")
    return random.Random(seed)


def sample_noise(
    seed: int | random.Random,
    *,
    sentences: int = 1,
    min_tokens: int | None = None,
    tokenizer: Any = None,
    avoid: Sequence[str] = (),
    bank: Sequence[str] = NOISE_SENTENCES,
) -> str:
    """Unrelated sentences joined into one context: at least ``sentences`` of them and, when
    ``min_tokens`` is set, at least that many tokens (sentences repeat only once the bank is
    used up).

    Args:
        seed: an int, or a ``random.Random`` to draw from (for several draws in a row).
        avoid: words that must not appear (e.g. the subject and both objects of an edit).
        bank: the sentences to draw from.

    Returns:
        The sentences, joined by spaces.

    Example:
        >>> sample_noise(0, sentences=2).count(".") >= 2
        True
    """
    if sentences < 0 or (min_tokens is not None and min_tokens < 0):
        raise DistributionError(
            f"sentences={sentences} and min_tokens={min_tokens} must not be negative."
        )
    rng = _rng(seed)
    pool = list(_pool(tuple(bank), tuple(t for t in avoid if t and t.strip())))
    if not pool:
        raise DistributionError(
            "Every noise sentence names one of the words to avoid; pass a larger bank."
        )
    chosen: list[str] = []
    order: list[str] = []
    while len(chosen) < sentences or (
        min_tokens is not None and approx_token_count(" ".join(chosen), tokenizer) < min_tokens
    ):
        if not order:
            if chosen:
                log.debug("Noise bank used up; sentences repeat from here.")
            order = rng.sample(pool, len(pool))
        chosen.append(order.pop())
    return " ".join(chosen)


def with_noisy_prefix(
    prompt: str,
    seed: int | random.Random,
    *,
    sentences: int = 1,
    min_tokens: int | None = None,
    tokenizer: Any = None,
    avoid: Sequence[str] = (),
) -> str:
    """``prompt`` behind a noisy prefix ("<unrelated sentence(s)> <prompt>").

    Returns:
        The prompt behind its prefix.
    """
    noise = sample_noise(
        seed, sentences=sentences, min_tokens=min_tokens, tokenizer=tokenizer, avoid=avoid
    )
    return f"{noise} {prompt}" if noise else prompt


def long_context(
    seed: int | random.Random,
    *,
    min_tokens: int = 200,
    tokenizer: Any = None,
    avoid: Sequence[str] = (),
) -> str:
    """An unrelated context of at least ``min_tokens`` tokens (default 200).

    Returns:
        The context.
    """
    return sample_noise(seed, sentences=1, min_tokens=min_tokens, tokenizer=tokenizer, avoid=avoid)
