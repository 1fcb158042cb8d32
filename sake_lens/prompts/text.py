"""Small text helpers shared by the prompt modules: normalisation, word matching, prefixes.

Every comparison of prompts in sake_lens (duplicates, leakage, template look-up) goes through
:func:`normalize`, so two prompts that differ only in case, spacing, quote style or a final
full stop count as the same prompt.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "normalize",
    "normalize_template",
    "contains_term",
    "mask_subject",
    "split_noisy_prefix",
    "fill_subject",
    "template_of",
    "comparison_keys",
]

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
_SPACES = re.compile(r"\s+")
# A sentence boundary: end punctuation, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+|\n+")


@lru_cache(maxsize=16384)
def _base(text: str) -> str:
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    return _SPACES.sub(" ", text).strip()


def normalize(text: str) -> str:
    """Case-folded, whitespace-collapsed text without surrounding quotes or final punctuation.

    Example:
        >>> normalize("  The mother   tongue of X is. ")
        'the mother tongue of x is'
    """
    text = _base(text).casefold()
    return text.strip(" \"'").rstrip(" .;:!,").strip(" \"'")


def normalize_template(template: str) -> str:
    """Normalise a ``{}`` template for look-up: case and spacing only (commas matter)."""
    return _base(template).casefold()


@lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(_base(term)) + r"(?!\w)", re.IGNORECASE)


def contains_term(text: str, term: str) -> bool:
    """Whether ``term`` occurs in ``text`` as a whole word (case-insensitive).

    Example:
        >>> contains_term("He speaks French fluently", "french"), contains_term("Frenchman", "French")
        (True, False)
    """
    if not term.strip():
        return False
    return _term_pattern(term).search(_base(text)) is not None


def mask_subject(text: str, subject: str) -> str:
    """``text`` with every occurrence of ``subject`` replaced by a neutral marker.

    Used before looking for the objects: a subject such as "Google Maps" contains its own
    object ("Google") and must not count as naming it.
    """
    return re.sub(re.escape(_base(subject)), " \u2022 ", _base(text), flags=re.IGNORECASE)


def split_noisy_prefix(text: str, subject: str) -> tuple[str, str]:
    """Split ``text`` into (unrelated prefix, core sentence about ``subject``).

    The core starts at the sentence boundary before the last occurrence of the subject, as in
    CounterFact's rephrase prompts ("<unrelated sentence>. <subject> speaks the language").
    Without the subject, or without a boundary before it, the prefix is empty.

    Example:
        >>> split_noisy_prefix("It rained all day. The capital of Peru is", "Peru")
        ('It rained all day.', 'The capital of Peru is')
    """
    text = _base(text)
    at = text.casefold().rfind(_base(subject).casefold())
    if at <= 0:
        return "", text
    last_end = 0
    for m in _BOUNDARY.finditer(text, 0, at):
        last_end = m.end()
    if last_end == 0:
        return "", text
    return text[:last_end].strip(), text[last_end:].strip()


def fill_subject(template: str, subject: str) -> str:
    """Put ``subject`` where ``{}`` is (no other braces are interpreted)."""
    return template.replace("{}", subject, 1)


def template_of(prompt: str, subject: str) -> str | None:
    """Turn a prompt into a ``{}`` template by replacing the subject; None if it is absent."""
    if "{}" in prompt:
        return prompt
    prompt = _base(prompt)
    at = prompt.casefold().find(_base(subject).casefold())
    if at < 0:
        return None
    return prompt[:at] + "{}" + prompt[at + len(_base(subject)) :]


def comparison_keys(text: str, subject: str) -> frozenset[str]:
    """The normalised forms under which two prompts about ``subject`` count as the same prompt:
    the whole text, and its core sentence without a noisy prefix.

    Example:
        >>> sorted(comparison_keys("It rained. X speaks", "X"))
        ['it rained. x speaks', 'x speaks']
    """
    _, core = split_noisy_prefix(text, subject)
    return frozenset({normalize(text), normalize(core)} - {""})
