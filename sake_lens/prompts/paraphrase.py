"""Paraphrase sets, the checks every generated prompt passes, and the template-bank generator.

All generators share one interface::

    generator.generate(request, n, seed, exclude=()) -> ParaphraseSet

Every candidate prompt is checked: non-empty, contains the subject, names neither the old nor
the new object (case-insensitive, whole words, outside the subject itself), not a duplicate
(after :func:`~sake_lens.prompts.text.normalize`), not one of the ``exclude``-d evaluation
prompts. Rejected candidates are kept in ``ParaphraseSet.dropped`` with the reason. Results are
seeded and cached in memory (an LRU per generator); LLM generators also cache their raw replies
on disk (:mod:`sake_lens.prompts.llm`).
"""

from __future__ import annotations

import abc
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import DistributionError
from .noise import with_noisy_prefix
from .relations import Relation, match_relation
from .request import EditRequest
from .text import comparison_keys, contains_term, mask_subject, normalize

__all__ = [
    "ParaphraseSet",
    "PromptFilter",
    "ParaphraseGenerator",
    "TemplateBankGenerator",
    "DROP_REASONS",
    "check_prompt",
]

log = logging.getLogger(__name__)

EMPTY = "empty"
NO_SUBJECT = "subject missing"
NAMES_OLD = "names the old object"
NAMES_NEW = "names the new object"
DUPLICATE = "duplicate"
EXCLUDED = "evaluation prompt (excluded)"
TOO_LONG = "too long"
#: Every reason a candidate prompt can be dropped for (LLM parsing adds its own, see llm.py).
DROP_REASONS = (EMPTY, NO_SUBJECT, NAMES_OLD, NAMES_NEW, DUPLICATE, EXCLUDED, TOO_LONG)


def check_prompt(prompt: str, request: EditRequest, *, max_chars: int = 2000) -> str | None:
    """Why ``prompt`` is unfit for ``request`` (one of :data:`DROP_REASONS`), or None if fit."""
    if not isinstance(prompt, str) or not prompt.strip():
        return EMPTY
    if len(prompt) > max_chars:
        return TOO_LONG
    if not contains_term(prompt, request.subject) and request.subject not in prompt:
        return NO_SUBJECT
    rest = mask_subject(prompt, request.subject)
    if contains_term(rest, request.old):
        return NAMES_OLD
    if contains_term(rest, request.new):
        return NAMES_NEW
    return None


class PromptFilter:
    """Accumulates fit prompts for one request; remembers what it dropped and why."""

    def __init__(
        self, request: EditRequest, exclude: Iterable[str] = (), *, max_chars: int = 2000
    ) -> None:
        self.request = request
        self.max_chars = max_chars
        self.kept: list[str] = []
        self.dropped: list[tuple[str, str]] = []
        self._seen: set[str] = set()
        self._excluded: set[str] = set()
        for text in exclude:
            self._excluded |= self._keys(text)

    def _keys(self, text: str) -> frozenset[str]:
        return comparison_keys(text, self.request.subject)

    def reason(self, prompt: str) -> str | None:
        """Why ``prompt`` would be dropped now (None: it would be kept)."""
        why = check_prompt(prompt, self.request, max_chars=self.max_chars)
        if why is not None:
            return why
        if self._keys(prompt) & self._excluded:
            return EXCLUDED
        if normalize(prompt) in self._seen:
            return DUPLICATE
        return None

    def add(self, prompt: str, *, record: bool = True) -> bool:
        """Keep ``prompt`` if it is fit; otherwise record (unless ``record=False``) why not."""
        prompt = prompt.strip() if isinstance(prompt, str) else prompt
        why = self.reason(prompt)
        if why is None:
            self.kept.append(prompt)
            self._seen.add(normalize(prompt))
            return True
        if record:
            self.dropped.append((prompt if isinstance(prompt, str) else repr(prompt), why))
        return False

    def drop(self, prompt: str, reason: str) -> None:
        """Record a candidate rejected before the checks (e.g. unparseable LLM output)."""
        self.dropped.append((prompt, reason))


@dataclass(frozen=True)
class ParaphraseSet:
    """Prompts (subject filled in) for one edit request, and the candidates dropped on the way.

    ``prompts`` may be shorter than ``requested`` when a generator could not produce enough
    (then :attr:`complete` is False and ``notes`` says why).
    """

    request: EditRequest
    prompts: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    generator: str = ""
    seed: int = 0
    requested: int = 0
    relation_id: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.request, EditRequest):
            raise DistributionError(
                f"ParaphraseSet.request must be an EditRequest, got {type(self.request).__name__}."
            )
        if not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise DistributionError("ParaphraseSet.prompts must be non-empty strings.")
        object.__setattr__(self, "prompts", list(self.prompts))
        object.__setattr__(self, "dropped", [(str(p), str(r)) for p, r in self.dropped])
        object.__setattr__(self, "notes", tuple(self.notes))

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.prompts)

    @property
    def complete(self) -> bool:
        """Whether as many prompts as requested were produced."""
        return len(self.prompts) >= self.requested

    @property
    def drop_summary(self) -> dict[str, int]:
        """How many candidates were dropped, per reason (most frequent first)."""
        return dict(Counter(reason for _, reason in self.dropped).most_common())

    def summary(self) -> str:
        """One line: how many prompts, from where, and what was dropped."""
        rel = f", relation {self.relation_id}" if self.relation_id else ", relation unknown"
        text = f"{len(self.prompts)}/{self.requested} prompts from {self.generator}{rel}"
        if self.dropped:
            parts = ", ".join(f"{r}: {k}" for r, k in self.drop_summary.items())
            text += f"; dropped {len(self.dropped)} ({parts})"
        return text

    def copy(self) -> ParaphraseSet:
        """A copy whose lists can be changed without touching the cached original."""
        return replace(self, prompts=list(self.prompts), dropped=list(self.dropped))

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request.to_dict(),
            "prompts": list(self.prompts),
            "dropped": [list(d) for d in self.dropped],
            "generator": self.generator,
            "seed": self.seed,
            "requested": self.requested,
            "relation_id": self.relation_id,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParaphraseSet:
        try:
            return cls(
                request=EditRequest.from_dict(data["request"]),
                prompts=list(data["prompts"]),
                dropped=[(p, r) for p, r in data.get("dropped", [])],
                generator=data.get("generator", ""),
                seed=int(data.get("seed", 0)),
                requested=int(data.get("requested", len(data["prompts"]))),
                relation_id=data.get("relation_id"),
                notes=tuple(data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DistributionError(
                f"Not a saved ParaphraseSet ({exc}); expected the keys of ParaphraseSet.to_dict()."
            ) from exc


class ParaphraseGenerator(abc.ABC):
    """Base class: argument checks and an in-memory LRU cache around :meth:`_generate`."""

    name: str = "generator"

    def __init__(self, *, cache_size: int = 256) -> None:
        self._cache: OrderedDict[tuple[Any, ...], ParaphraseSet] = OrderedDict()
        self._cache_size = cache_size

    def generate(
        self, request: EditRequest, n: int, seed: int = 0, *, exclude: Iterable[str] = ()
    ) -> ParaphraseSet:
        """Up to ``n`` checked prompts for ``request`` (seeded, cached).

        Args:
            request: the edit request; its own prompt is normally the first prompt.
            n: how many prompts to produce.
            seed: the same seed gives the same prompts.
            exclude: prompts that must not appear, compared after normalisation and with any
                noisy prefix removed (e.g. the evaluation prompts: see
                :mod:`sake_lens.prompts.leakage`).
        """
        if not isinstance(request, EditRequest):
            raise DistributionError(
                f"generate() takes an EditRequest, got {type(request).__name__}; build one with "
                "EditRequest(subject, 'The mother tongue of {} is', old, new)."
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DistributionError(f"n must be a positive int, got {n!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DistributionError(f"seed must be an int, got {seed!r}.")
        excluded = tuple(sorted({e for e in exclude if isinstance(e, str) and e.strip()}))
        key = (request, n, seed, excluded, self._config_key())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key].copy()
        result = self._generate(request, n, seed, excluded)
        if not result.complete:
            log.warning("%s: %s", self.name, result.summary())
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result.copy()

    def _config_key(self) -> tuple[Any, ...]:
        """Settings that change the output (part of the cache key)."""
        return ()

    @abc.abstractmethod
    def _generate(
        self, request: EditRequest, n: int, seed: int, exclude: tuple[str, ...]
    ) -> ParaphraseSet:
        """Produce the set (no caching here)."""

    def _result(
        self,
        request: EditRequest,
        filt: PromptFilter,
        n: int,
        seed: int,
        relation: Relation | None,
        notes: list[str],
    ) -> ParaphraseSet:
        """The :class:`ParaphraseSet` of a finished generation (the first ``n`` kept prompts)."""
        return ParaphraseSet(
            request=request,
            prompts=filt.kept[:n],
            dropped=filt.dropped,
            generator=self.name,
            seed=seed,
            requested=n,
            relation_id=relation.id if relation else None,
            notes=tuple(notes),
        )


#: Lead-ins used when the relation is unknown: generic rewrites of the request's own prompt.
FALLBACK_LEAD_INS: tuple[str, ...] = (
    "Fact: {}",
    "Did you know? {}",
    "Trivia: {}",
    "Here is a fact: {}",
    "Quick question. {}",
    "As far as I know, {lc}",
    "To the best of my knowledge, {lc}",
    "According to most sources, {lc}",
    "It is widely known that {lc}",
    "Many people know that {lc}",
    "Everyone agrees that {lc}",
    "In short, {lc}",
    "Put simply, {lc}",
    "It is said that {lc}",
    "Most references agree: {}",
)
_FUNCTION_WORDS = {
    "the",
    "a",
    "an",
    "in",
    "on",
    "at",
    "what",
    "which",
    "where",
    "who",
    "this",
    "that",
    "its",
    "his",
    "her",
    "their",
    "one",
    "some",
}


def _lead_in(lead: str, sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    lc = sentence[0].lower() + sentence[1:] if first.lower() in _FUNCTION_WORDS else sentence
    if "{lc}" in lead:
        return lead.replace("{lc}", lc, 1)
    return lead.replace("{}", sentence, 1)


class TemplateBankGenerator(ParaphraseGenerator):
    """Paraphrases from the relation template bank (offline, instant; the default).

    The request's relation is matched (:func:`~sake_lens.prompts.relations.match_relation`),
    its paraphrase templates are shuffled with ``seed`` and filled with the subject; when more
    than the bank's templates are asked for, templates are repeated behind seeded noisy
    prefixes (:mod:`sake_lens.prompts.noise`). If the relation is unknown, generic lead-ins
    around the request's own prompt are used instead ("Fact: ...", "As far as I know, ...") and
    ``notes`` says so.

    Args:
        include_request: the request's own prompt comes first.
        prefix_fraction: the share of the ``n`` prompts that get a noisy prefix even when the
            bank has enough plain templates (0: prefixes only to make up the number).
        prefix_sentences: the (min, max) number of prefix sentences.
        use_counterfact_templates: also use CounterFact's own templates of the relation (off by
            default, so CounterFact's rephrase prompts stay unseen).
    """

    name = "template-bank"

    def __init__(
        self,
        *,
        include_request: bool = True,
        prefix_fraction: float = 0.0,
        prefix_sentences: tuple[int, int] = (1, 2),
        use_counterfact_templates: bool = False,
        cache_size: int = 256,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if not 0.0 <= prefix_fraction <= 1.0:
            raise DistributionError(f"prefix_fraction={prefix_fraction} must lie in [0, 1].")
        lo, hi = prefix_sentences
        if not 1 <= lo <= hi:
            raise DistributionError(
                f"prefix_sentences={prefix_sentences} must be (min, max) with 1 <= min <= max."
            )
        self.include_request = include_request
        self.prefix_fraction = prefix_fraction
        self.prefix_sentences = (lo, hi)
        self.use_counterfact_templates = use_counterfact_templates

    def _config_key(self) -> tuple[Any, ...]:
        return (
            self.include_request,
            self.prefix_fraction,
            self.prefix_sentences,
            self.use_counterfact_templates,
        )

    def _templates(self, request: EditRequest, relation: Relation | None) -> list[str]:
        if relation is None:
            return [_lead_in(lead, request.prompt) for lead in FALLBACK_LEAD_INS]
        templates = list(relation.paraphrases)
        if self.use_counterfact_templates:
            templates += [t for t in relation.counterfact_templates if t not in templates]
        return templates

    def _generate(
        self, request: EditRequest, n: int, seed: int, exclude: tuple[str, ...]
    ) -> ParaphraseSet:
        relation = match_relation(request.prompt, objects=(request.old, request.new))
        notes: list[str] = []
        if relation is None:
            notes.append(
                f"No relation in the bank matches {request.prompt!r}: used generic lead-ins "
                "around the request's own prompt. Add the relation to sake_lens.prompts."
                "relations, or use an LLM generator for real paraphrases."
            )
            log.warning(notes[-1])
        rng = random.Random(f"template-bank:{seed}")
        filt = PromptFilter(request, exclude)
        if self.include_request:
            filt.add(request.text)
        templates = self._templates(request, relation)
        rng.shuffle(templates)
        candidates = [request.fill(t) for t in templates]
        n_plain = n - round(self.prefix_fraction * n)
        for prompt in candidates:
            if len(filt.kept) >= n_plain:
                break
            filt.add(prompt)
        pool = [p for p in [request.text, *candidates] if filt.reason(p) in (None, DUPLICATE)]
        avoid = (request.old, request.new)
        attempts = 0
        while len(filt.kept) < n and pool and attempts < 50 * n:
            attempts += 1
            base = rng.choice(pool)
            k = rng.randint(*self.prefix_sentences)
            filt.add(with_noisy_prefix(base, rng, sentences=k, avoid=avoid), record=False)
        if len(filt.kept) < n:
            notes.append(
                f"Only {len(filt.kept)} distinct prompts could be built (asked for {n}); lower "
                "n, or add paraphrases."
            )
        return self._result(request, filt, n, seed, relation, notes)
