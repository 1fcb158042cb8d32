"""The probes of one evaluation record, built without a model.

Per record: the edit prompt; its rephrase prompts, each classified as a real ``paraphrase`` of
the edited relation or a CounterFact ``generation_prompt`` (:func:`classify_rephrase`); the
neighbourhood prompts (from the data); the paper's two doubt follow-ups and one long-context
prompt (:mod:`sake_lens.prompts.probes`); logical-implication prompts where the relation has
two-hop templates and the model knows both answers (:mod:`sake_lens.prompts.implications`, with
a table verified on the model); the locality probes of :mod:`.locality` — the subject
through other relations, unrelated prompts, and passages that name the subject; and the
record's own ripple probes, where the data has them (:mod:`.ripple`, :mod:`.standard_sets`),
less the ambiguous ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data import EvalRecord
from .locality import locality_data, passage_probes, relation_probes, text_probes

__all__ = [
    "ProbeSpec",
    "SuiteConfig",
    "build_probes",
    "classify_rephrase",
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
        relations: same-subject/other-relation locality probes per record (at most: fewer
            when the subject's kind has fewer relations).
        texts: unrelated-prompt locality probes per record.
        passages: passages naming the subject per record (perplexity with the edit).
        locality_tokens: length of the greedy continuations compared for locality.
    """

    doubts: tuple[str, ...] | None = None
    long_contexts: int = 1
    long_context_tokens: int = 200
    implications: int = 2
    relations: int = 5
    texts: int = 3
    passages: int = 1
    locality_tokens: int = 8

    def __post_init__(self) -> None:
        for name in (
            "long_contexts",
            "long_context_tokens",
            "implications",
            "relations",
            "texts",
            "passages",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.locality_tokens < 1:
            raise ValueError(f"locality_tokens must be >= 1, got {self.locality_tokens}.")
        data = locality_data()
        for name, pool in (("texts", data.unrelated_prompts), ("passages", data.passages)):
            if getattr(self, name) > len(pool):
                raise ValueError(f"{name} must be <= {len(pool)}, got {getattr(self, name)}.")
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
    locality rows, which are compared with the unedited model instead). ``relation`` is the
    probed relation of a ``relation`` row and the family of a ``ripple`` row; ``rest`` the
    scored remainder of a ``passage``; ``aliases`` other answers a ``ripple`` row accepts.
    """

    kind: str
    prompt: str
    expected: str | None = None
    competitor: str | None = None
    index: int = 0
    relation: str | None = None
    rest: str | None = None
    aliases: tuple[str, ...] = ()


def classify_rephrase(record: EvalRecord) -> list[bool]:
    """Per rephrase prompt of ``record``: is it a real paraphrase of the edited relation?

    A rephrase prompt is a paraphrase when its core — after any lead-in sentence, as in
    CounterFact's ``"<unrelated sentence>. <subject> speaks the language"`` — is, with the
    subject as ``{}``, a CounterFact template or a bank paraphrase of the record's own relation.
    CounterFact's generation prompts ("{}'s surroundings include", "To get to work every day,
    {} has to") are not: on those the new object is often not even a correct continuation.
    Unknown relations give False for every prompt.

    Example:
        >>> from sake_lens.prompts.request import EditRequest
        >>> req = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
        >>> rec = EvalRecord("0", req, ("It rained. Danielle Darrieux's mother tongue is",
        ...                             "Danielle Darrieux's surroundings include"))
        >>> classify_rephrase(rec)
        [True, False]
    """
    from ..prompts.relations import match_relation
    from ..prompts.text import normalize_template, split_noisy_prefix, template_of

    req = record.request
    own = match_relation(req.prompt, objects=[req.old])
    if own is None:
        return [False] * len(record.paraphrase_prompts)
    known = {
        normalize_template(t).rstrip(" .")
        for t in (*own.counterfact_templates, *own.paraphrases, req.prompt)
    }
    out = []
    for p in record.paraphrase_prompts:
        _, core = split_noisy_prefix(p, req.subject)
        template = template_of(core, req.subject)
        out.append(template is not None and normalize_template(template).rstrip(" .") in known)
    return out


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
    for i, (p, real) in enumerate(zip(record.paraphrase_prompts, classify_rephrase(record))):
        probes.append(
            ProbeSpec("paraphrase" if real else "generation_prompt", p, req.new, req.old, i)
        )
    probes += [
        ProbeSpec("neighbourhood", p, a, req.new, i)
        for i, (p, a) in enumerate(zip(record.neighborhood_prompts, record.neighborhood_answers))
    ]
    probes += [
        ProbeSpec("relation", p, index=i, relation=rid)
        for i, (rid, p) in enumerate(relation_probes(req, config.relations, seed))
    ]
    probes += [
        ProbeSpec("text", p, index=i) for i, p in enumerate(text_probes(req, config.texts, seed))
    ]
    probes += [
        ProbeSpec("passage", first, index=i, rest=rest)
        for i, (first, rest) in enumerate(passage_probes(req, config.passages, seed))
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
    probes += [
        ProbeSpec("ripple", p.prompt, p.answer, p.old_answer, i, p.family, aliases=p.aliases)
        for i, p in enumerate(record.ripple)
        if not p.ambiguous
    ]
    return probes
