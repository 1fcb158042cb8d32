"""The probes of one evaluation record, built without a model.

Per record: the edit prompt, its paraphrases and neighbourhood prompts (from the data), the
paper's two doubt follow-ups and one long-context prompt (:mod:`sake_lens.prompts.probes`),
logical-implication prompts where the relation has two-hop templates and the model knows both
answers (:mod:`sake_lens.prompts.implications`, with a table verified on the model), a few
unrelated prompts and the first sentence of the neutral text (out-of-scope rows whose only job
is to show whether the gate fires; the perplexity and the generations follow from that).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data import EvalRecord
from .texts import NEUTRAL_TEXT, UNRELATED_PROMPTS, split_first_sentence

__all__ = [
    "ProbeSpec",
    "SuiteConfig",
    "build_probes",
    "unrelated_prompts",
    "with_space",
    "verified_table",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteConfig:
    """Which probes each record gets.

    Attributes:
        doubts: names of doubt templates (default: the paper's two).
        long_contexts: long-context probes per record.
        long_context_tokens: unrelated tokens before the prompt (at least).
        implications: implication probes per record (at most; 0 disables them).
        unrelated: unrelated prompts per record (their generations give the entropy check).
        neutral: check the perplexity of the neutral text.
    """

    doubts: tuple[str, ...] | None = None
    long_contexts: int = 1
    long_context_tokens: int = 200
    implications: int = 2
    unrelated: int = 2
    neutral: bool = True

    def __post_init__(self) -> None:
        for name in ("long_contexts", "long_context_tokens", "implications", "unrelated"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.unrelated > len(UNRELATED_PROMPTS):
            raise ValueError(
                f"unrelated must be <= {len(UNRELATED_PROMPTS)}, got {self.unrelated}."
            )
        if self.doubts is not None:
            object.__setattr__(self, "doubts", tuple(self.doubts))

    def doubt_names(self) -> tuple[str, ...]:
        if self.doubts is not None:
            return self.doubts
        from ..prompts.probes import PAPER_DOUBT_TEMPLATES

        return tuple(PAPER_DOUBT_TEMPLATES)


@dataclass(frozen=True)
class ProbeSpec:
    """One probe of a record, before any method's prefix.

    ``expected`` / ``competitor`` are the objects whose log-probabilities are compared (None for
    the out-of-scope gate rows ``unrelated`` and ``neutral``).
    """

    kind: str
    prompt: str
    expected: str | None = None
    competitor: str | None = None
    index: int = 0


def with_space(prompt: str, obj: str) -> str:
    """The object as it continues the prompt (a leading space unless the prompt ends in one)."""
    return obj if prompt[-1:].isspace() else " " + obj


def verified_table(model: Any, records: Sequence[EvalRecord]) -> Any:
    """The attribute-table rows ``model`` knows, among those the records' implication probes
    walk through (None when no record has implication probes). Only the rows needed are checked
    (one short forward pass per 64 rows)."""
    from ..prompts.implications import implication_probes, verify_attribute_table
    from ..prompts.text import normalize
    from ..prompts.world import DEFAULT_TABLE

    index = {(normalize(r.entity), r.attribute): r for r in DEFAULT_TABLE.rows}
    needed: dict[tuple[str, str], Any] = {}
    for record in records:
        req = record.request
        for probe in implication_probes(req):
            for start in (req.old, req.new):
                value: str | None = start
                for attribute in probe.relation_chain[1:]:
                    row = index.get((normalize(DEFAULT_TABLE.canonical(value or "")), attribute))
                    if row is None:
                        break
                    needed[(normalize(row.entity), attribute)] = row
                    value = row.value
    if not needed:
        return None
    return verify_attribute_table(model, DEFAULT_TABLE.subset(list(needed.values())))


def unrelated_prompts(record: EvalRecord, config: SuiteConfig, seed: int = 0) -> list[str]:
    """The record's unrelated prompts: a seeded sample of :data:`~.texts.UNRELATED_PROMPTS`."""
    rng = random.Random(f"unrelated|{seed}|{record.case_id}")
    return rng.sample(UNRELATED_PROMPTS, config.unrelated)


def build_probes(
    record: EvalRecord,
    config: SuiteConfig,
    *,
    seed: int = 0,
    tokenizer: Any = None,
    table: Any = None,
) -> list[ProbeSpec]:
    """Every probe of ``record`` (deterministic for a given seed and case id)."""
    from ..prompts.probes import doubt_probes, long_context_probes

    req = record.request
    probes = [ProbeSpec("edit", req.text, req.new, req.old)]
    probes += [
        ProbeSpec("paraphrase", p, req.new, req.old, i)
        for i, p in enumerate(record.paraphrase_prompts)
    ]
    probes += [
        ProbeSpec("neighbourhood", p, a, req.new, i)
        for i, (p, a) in enumerate(zip(record.neighborhood_prompts, record.neighborhood_answers))
    ]
    for i, probe in enumerate(doubt_probes(req, config.doubt_names())):
        probes.append(ProbeSpec("doubt", probe.prompt, req.new, req.old, i))
    if config.long_contexts:
        long = long_context_probes(
            req,
            n=config.long_contexts,
            seed=seed,
            min_tokens=config.long_context_tokens,
            tokenizer=tokenizer,
        )
        probes += [
            ProbeSpec("long_context", p.prompt, req.new, req.old, i) for i, p in enumerate(long)
        ]
    if config.implications and table is not None:
        from ..prompts.implications import implication_probes

        implied = implication_probes(req, table=table)[: config.implications]
        probes += [
            ProbeSpec("implication", p.prompt, p.new_answer, p.old_answer, i)
            for i, p in enumerate(implied)
        ]
    for i, p in enumerate(unrelated_prompts(record, config, seed)):
        probes.append(ProbeSpec("unrelated", p, index=i))
    if config.neutral:
        probes.append(ProbeSpec("neutral", split_first_sentence(NEUTRAL_TEXT)[0]))
    return probes
