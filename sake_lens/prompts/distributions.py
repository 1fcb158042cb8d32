"""Source and target prompt distributions for one edit.

SAKE models a fact as a distribution of prompts. The *source* prompts are the paraphrases
(and each in the forced context, where the model is made to repeat the old fact); the *target*
prompts are the same paraphrases in contexts that make the model say the new object. Every
target sample is validated: the model's greedy next token there must start the new object.
The kept fraction is the distribution's *purity*.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DistributionError
from .contexts import DEFAULT_TARGET_TEMPLATES, FORCED_SOURCE_TEMPLATE, fill_context
from .request import EditRequest

__all__ = [
    "DistributionConfig",
    "PromptSet",
    "build_prompt_sets",
    "check_paraphrase",
    "check_paraphrases",
    "prompts_hash",
]


@dataclass(frozen=True)
class DistributionConfig:
    """How source and target prompts are built from the paraphrases.

    Attributes:
        target_templates: names in ``TARGET_TEMPLATES`` or literal templates with
            ``{prompt}``, ``{old}``, ``{new}``; each paraphrase is put in every template.
        forced_source: add each paraphrase in the paper's forced context to the source.
        include_edit_prompt: use the request's own prompt as a paraphrase.
        min_purity: refuse the edit when fewer target samples than this fraction are valid.
        validate_targets: keep only target samples where the model predicts the new object.
    """

    target_templates: tuple[str, ...] = DEFAULT_TARGET_TEMPLATES
    forced_source: bool = True
    include_edit_prompt: bool = True
    min_purity: float = 0.3
    validate_targets: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.target_templates, str):
            object.__setattr__(self, "target_templates", (self.target_templates,))
        object.__setattr__(self, "target_templates", tuple(self.target_templates))
        if not self.target_templates:
            raise DistributionError("DistributionConfig.target_templates is empty; name one.")
        if not 0.0 <= self.min_purity <= 1.0:
            raise DistributionError(
                f"min_purity must lie in [0, 1], got {self.min_purity}; pass a fraction such as "
                "0.3 (the default)."
            )
        for t in self.target_templates:
            fill_context(t, "p", "o", "n")  # validates the template early

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistributionConfig:
        data = dict(data)
        data["target_templates"] = tuple(data.get("target_templates", DEFAULT_TARGET_TEMPLATES))
        return cls(**data)


@dataclass
class PromptSet:
    """The prompts of one edit's source and target distributions."""

    paraphrases: list[str]
    source: list[str]
    target: list[str]
    kept: list[bool] = field(default_factory=list)
    target_predictions: list[str] = field(default_factory=list)

    @property
    def purity(self) -> float:
        """Fraction of target samples whose prediction starts the new object."""
        return sum(self.kept) / len(self.kept) if self.kept else 1.0

    @property
    def kept_target(self) -> list[str]:
        return [p for p, k in zip(self.target, self.kept) if k] if self.kept else self.target


def _spell_subject(text: str, subject: str) -> str | None:
    """``text`` with the subject spelled as in the request, or None when it is absent.

    The subject's first letter may differ in case ("Tourists visit the Eiffel Tower" for "The
    Eiffel Tower"); such whole-word occurrences are rewritten to ``subject``, so every later
    exact look-up of the subject finds it.
    """
    if subject in text:
        return text
    first, rest = subject[:1], subject[1:]
    for other in dict.fromkeys((first.lower(), first.upper())):
        if other == first:
            continue
        pattern = re.compile(r"(?<!\w)" + re.escape(other + rest) + r"(?!\w)")
        spelled, n = pattern.subn(lambda _: subject, text)
        if n:
            return spelled
    return None


def check_paraphrase(request: EditRequest, paraphrase: object, index: int = 0) -> str:
    """One paraphrase, NFC-normalised and stripped, with the request's subject filled in.

    Checked like the request's prompt: at most one ``{}``, and the subject (first letter in
    either case) where there is none.

    Raises:
        DistributionError: the paraphrase is empty, has several ``{}`` or lacks the subject.
    """
    if not isinstance(paraphrase, str) or not paraphrase.strip():
        raise DistributionError(f"Paraphrase {index} is empty ({paraphrase!r}); remove it.")
    p = unicodedata.normalize("NFC", paraphrase).strip()
    n = p.count("{}")
    if n > 1:
        raise DistributionError(
            f"Paraphrase {index} ({p!r}) has {n} '{{}}' placeholders; use exactly one '{{}}' "
            "where the subject goes."
        )
    if n == 1:
        return request.fill(p)
    spelled = _spell_subject(p, request.subject)
    if spelled is None:
        raise DistributionError(
            f"Paraphrase {index} ({p!r}) does not mention the subject {request.subject!r}; "
            "every paraphrase must name the subject (or use '{}' for it)."
        )
    return spelled


def check_paraphrases(request: EditRequest, paraphrases: Sequence[object]) -> list[str]:
    """Every paraphrase through :func:`check_paraphrase` (no model involved), in order."""
    return [check_paraphrase(request, p, i) for i, p in enumerate(paraphrases)]


def build_prompt_sets(
    request: EditRequest, paraphrases: Sequence[str], config: DistributionConfig
) -> PromptSet:
    """Fill the source and target contexts for every paraphrase (no model involved)."""
    paras: list[str] = []
    if config.include_edit_prompt:
        paras.append(request.text)
    paras += check_paraphrases(request, paraphrases)
    paras = list(dict.fromkeys(paras))
    if not paras:
        raise DistributionError("No paraphrases: pass paraphrases or set include_edit_prompt=True.")
    source = list(paras)
    if config.forced_source:
        source += [
            FORCED_SOURCE_TEMPLATE.format(prompt=p, old=request.old, new=request.new) for p in paras
        ]
    target = [
        fill_context(t, p, request.old, request.new) for t in config.target_templates for p in paras
    ]
    return PromptSet(paras, source, target)


def prompts_hash(prompts: PromptSet) -> str:
    """A SHA-256 of the prompts used to fit an edit (recorded with the edit)."""
    blob = json.dumps([prompts.source, prompts.kept_target], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()
