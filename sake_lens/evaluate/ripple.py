"""The ripple suite: edits of a subject's country, with the probes whose answers must follow.

Built offline from what one model itself knows, as the known-fact sets are. Candidates are
well-known subjects of three kinds (``resources/ripple_subjects.yaml``: landmarks and places,
companies — both asked "X is located in the country of" — and people, "X is a citizen of"),
each with its country and, where one exists, another name, a description that picks it out
and a few facts that do not depend on its country. For one model :func:`build_ripple_suite`:

1. checks the attribute table's country rows (capital, official language, continent,
   currency) on the model (:func:`~sake_lens.prompts.implications.verify_attribute_table`);
   a country is *known* when the model names its capital; a row serves as a probe's answer
   only when the model's greedy token also passes the evaluation's own criterion
   (:func:`~sake_lens.model.tokens.starts_object`);
2. keeps each subject whose edit prompt the model completes with its country
   (:func:`~sake_lens.evaluate.known_facts.produces_object`), and moves it to another known
   country, drawn per subject from a seeded generator;
3. writes the probe families of RippleEdits, each from held-out templates
   (``resources/ripple.yaml``), keeping a probe only when the model gets every hop it depends
   on right on its own:

   * ``compositionality_1`` — an attribute of the new country through the edit ("The capital
     city of the country that the Eiffel Tower is in is" -> Rome); hops: the subject's old
     country, and the new country's attribute row;
   * ``compositionality_2`` — the subject reached through its description ("The tower
     designed by Gustave Eiffel stands in the country of" -> Italy); hops: the subject's
     country, and the description naming the subject (its greedy continuation after
     one of ``description_checks`` names the subject);
   * ``subject_aliasing`` — the edited relation asked of another name; hop: the model gives
     the old country for the other name too;
   * ``relation_specificity`` — facts of the subject that do not depend on its country, which
     the model completes with their answers; they must stay;
   * ``object_locality`` — the old and the new country's own attributes, which must stay.

   An implication answer that starts with the new country's own name ("Mexico City" after an
   edit to Mexico) is flagged ``ambiguous``: saying the new country would count as right, so
   such probes are left out of the scores.
4. splits the edits into a ``dev`` and a ``test`` half (alternating within each kind, in an
   order fixed by a seeded hash of the subject's name), and writes each half in that hashed
   order, so that the first N records of a split (``sake-lens eval --split test --n N``) are a
   random sample of it, every kind included.

The result is a JSON object ``{"format": "sake-lens-ripple", "format_version": 1,
"manifest": {...}, "records": [...]}``; records are in EasyEdit's flat format (``subject``,
``prompt``, ``ground_truth``, ``target_new``) plus ``kind``, ``split`` and ``ripple``, the list
of probes ``{"family", "prompt", "answer", "aliases", "old_answer", "ambiguous"}``, so
``sake-lens eval --data`` reads it like any CounterFact file and scores the families
(``ripple_*`` metrics). ``sake-lens ripple-suite`` is the command line.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

from .._version import __version__
from ..errors import DataError
from ..model.loading import model_id as get_model_id
from ..model.tokens import object_first_token, starts_object
from ..prompts.implications import verify_attribute_table
from ..prompts.text import normalize
from ..prompts.world import ATTRIBUTE_QUESTIONS, DEFAULT_TABLE, AttributeTable
from ..steer.generation import generate
from .known_facts import _known, check_built_for

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FAMILIES",
    "IMPLICATION_FAMILIES",
    "Subject",
    "RippleTemplates",
    "ripple_templates",
    "ripple_subjects",
    "fill",
    "build_ripple_suite",
    "check_ripple_model",
]

#: The ``format`` key of a ripple suite.
FORMAT = "sake-lens-ripple"
#: The version of that format this module writes and reads.
FORMAT_VERSION = 1
#: The probe families of the suite, in report order.
FAMILIES = (
    "compositionality_1",
    "compositionality_2",
    "subject_aliasing",
    "relation_specificity",
    "object_locality",
)
#: The families whose answers move with the edit (the rest must stay).
IMPLICATION_FAMILIES = ("compositionality_1", "compositionality_2", "subject_aliasing")
KINDS = ("landmark", "company", "person")
#: Attributes of a country an edit implies, in probe order.
COUNTRY_ATTRIBUTES = ("capital", "language", "continent", "currency")
#: Parts of a country, never used as the new country of an edit.
_NOT_TARGETS = frozenset({"England", "Scotland", "Wales"})
#: Greedy tokens read when checking that a description names its subject.
_DESCRIPTION_TOKENS = 8


@dataclass(frozen=True)
class Subject:
    """One candidate subject of the suite (a row of ``ripple_subjects.yaml``)."""

    kind: str
    name: str
    country: str
    alias: str | None = None
    description: str | None = None
    facts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RippleTemplates:
    """The held-out templates of ``resources/ripple.yaml`` (validated)."""

    version: int
    relations: dict[str, str]  # kind -> relation id
    edit_prompts: dict[str, tuple[str, ...]]  # kind -> prompts, in order of preference
    article: dict[str, bool]  # kind -> also try "the" before the name
    compositionality_1: dict[str, dict[str, tuple[str, ...]]]  # relation -> attribute -> list
    compositionality_2: dict[str, tuple[str, ...]]
    subject_aliasing: dict[str, tuple[str, ...]]
    object_locality: tuple[str, ...]
    description_checks: tuple[str, ...]


def _load_yaml(name: str) -> Any:
    import yaml

    return yaml.safe_load(
        resources.files(__package__).joinpath("resources", name).read_text(encoding="utf-8")
    )


def _one_slot(template: Any, where: str) -> str:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise DataError(f"{where}: {template!r} must be text with exactly one '{{}}'.")
    return template


@lru_cache(maxsize=1)
def ripple_templates() -> RippleTemplates:
    """The held-out probe templates (``resources/ripple.yaml``), validated once."""
    raw = _load_yaml("ripple.yaml")
    relations = {kind: str(v["relation"]) for kind, v in raw["edit_prompts"].items()}
    edit_prompts = {
        kind: tuple(_one_slot(t, f"edit_prompts.{kind}") for t in v["prompts"])
        for kind, v in raw["edit_prompts"].items()
    }
    article = {kind: bool(v.get("article", False)) for kind, v in raw["edit_prompts"].items()}
    if set(edit_prompts) != set(KINDS) or not all(edit_prompts.values()):
        raise DataError(f"ripple.yaml: edit_prompts must name the kinds {KINDS}.")
    comp1 = {
        rel: {
            attr: tuple(_one_slot(t, f"compositionality_1.{rel}.{attr}") for t in ts)
            for attr, ts in attrs.items()
        }
        for rel, attrs in raw["compositionality_1"].items()
    }
    comp2 = {
        rel: tuple(_one_slot(t, f"compositionality_2.{rel}") for t in ts)
        for rel, ts in raw["compositionality_2"].items()
    }
    alias = {
        rel: tuple(_one_slot(t, f"subject_aliasing.{rel}") for t in ts)
        for rel, ts in raw["subject_aliasing"].items()
    }
    for rel in relations.values():
        for name, table in (("compositionality_1", comp1), ("compositionality_2", comp2)):
            if rel not in table:
                raise DataError(f"ripple.yaml: {name} has no templates for relation {rel}.")
    attributes = tuple(raw["object_locality"])
    unknown = [a for a in attributes if a not in ATTRIBUTE_QUESTIONS]
    if unknown:
        raise DataError(f"ripple.yaml: object_locality names unknown attributes {unknown}.")
    return RippleTemplates(
        int(raw["version"]),
        relations,
        edit_prompts,
        article,
        comp1,
        comp2,
        alias,
        attributes,
        tuple(_one_slot(t, "description_checks") for t in raw["description_checks"]),
    )


@lru_cache(maxsize=1)
def ripple_subjects() -> tuple[Subject, ...]:
    """The candidate subjects (``resources/ripple_subjects.yaml``), validated once."""
    raw = _load_yaml("ripple_subjects.yaml")
    countries = DEFAULT_TABLE.entities("capital")
    out: list[Subject] = []
    seen: set[str] = set()
    for kind in KINDS:
        for row in raw.get(kind) or []:
            name = str(row["name"]).strip()
            where = f"ripple_subjects.yaml: {kind} {name!r}"
            if normalize(name) in seen:
                raise DataError(f"{where}: listed twice.")
            seen.add(normalize(name))
            if normalize(str(row["country"])) not in countries:
                raise DataError(f"{where}: unknown country {row['country']!r}.")
            facts = tuple(
                (_one_slot(f["prompt"], where), str(f["answer"]).strip())
                for f in row.get("facts") or []
            )
            out.append(
                Subject(
                    kind,
                    name,
                    str(row["country"]),
                    row.get("alias") or None,
                    row.get("description") or None,
                    facts,
                )
            )
    return tuple(out)


def _probe(
    family: str, prompt: str, answer: str, old: str | None = None, *, new: str | None = None
) -> dict[str, Any]:
    ambiguous = (
        new is not None
        and normalize(answer) != normalize(new)
        and normalize(answer).startswith(normalize(new))
    )
    return {
        "family": family,
        "prompt": prompt,
        "answer": answer,
        "aliases": [],
        "old_answer": old,
        "ambiguous": ambiguous,
    }


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, name: str, article: bool = False) -> str:
    """``template`` with the subject's name in its ``{}``, after "the" (or "The" at the start)
    when ``article``.

    Example:
        >>> fill("{} is in", "Eiffel Tower", True), fill("Visit {} now", "Eiffel Tower", True)
        ('The Eiffel Tower is in', 'Visit the Eiffel Tower now')
    """
    if not article:
        return template.format(name)
    return template.format(("The " if template.startswith("{}") else "the ") + name)


def _order(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}|{name}".encode()).hexdigest()


def _names_subject(continuation: str, subject: str) -> bool:
    return normalize(subject) in normalize(continuation)


def build_ripple_suite(
    model: Any,
    *,
    subjects: Sequence[Subject] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build the ripple suite for ``model`` (see the module docstring).

    Args:
        model: the model whose knowledge the suite is built from.
        subjects: the candidates (default: :func:`ripple_subjects`).
        seed: draws the new countries and the split.
        batch_size: prompts per generation call.
        progress: show progress bars (None: when on a terminal).

    Returns:
        The suite as a JSON-serialisable dict.
    """
    templates = ripple_templates()
    subjects = tuple(ripple_subjects() if subjects is None else subjects)
    # 1. the country rows the model knows
    countries = DEFAULT_TABLE.entities("capital")
    rows = [
        r
        for r in DEFAULT_TABLE.rows
        if r.attribute in COUNTRY_ATTRIBUTES and normalize(r.entity) in countries
    ]
    table: AttributeTable = verify_attribute_table(
        model, DEFAULT_TABLE.subset(rows), batch_size=batch_size
    )
    # a probe's answer must pass the criterion the evaluation scores with: the greedy token
    # starts the answer as a whole word or as its first token (" Afghan" starts "afghani" as
    # text, but is not how the model begins to say it)
    questions = [ATTRIBUTE_QUESTIONS[r.attribute].format(r.entity) for r in table.rows]
    greedy = generate(model, questions, max_new_tokens=1) if questions else []
    tokenizer = model.tokenizer
    known_value: dict[tuple[str, str], str] = {
        (normalize(r.entity), r.attribute): r.value
        for r, token in zip(table.rows, greedy)
        if starts_object(token, r.value, first_token=object_first_token(tokenizer, r.value))
    }
    every_value: dict[tuple[str, str], str] = {
        (normalize(r.entity), r.attribute): r.value for r in rows
    }
    known_countries = sorted(
        {r.entity for r in table.rows if r.attribute == "capital"} - _NOT_TARGETS
    )

    # 2. the subjects the model knows (through which edit prompt, with or without "the")
    def forms(s: Subject) -> list[tuple[str, bool]]:
        articles = (False, True) if templates.article[s.kind] else (False,)
        return [(t, a) for t in templates.edit_prompts[s.kind] for a in articles]

    first = [(fill(t, s.name, a), s.country) for s in subjects for t, a in forms(s)]
    known = dict(zip(first, _known(model, first, batch_size=batch_size, progress=progress)))
    form: dict[str, tuple[str, bool]] = {}
    for s in subjects:
        hit = next((f for f in forms(s) if known[(fill(f[0], s.name, f[1]), s.country)]), None)
        if hit is not None:
            form[s.name] = hit

    def edit_prompt(s: Subject, name: str | None = None) -> str:
        template, article = form[s.name]
        return fill(template, name or s.name, article and name is None)

    def about(s: Subject, template: str) -> str:
        return fill(template, s.name, form[s.name][1])

    # ... and the hops their probes need
    checks: list[tuple[str, str]] = []
    for s in subjects:
        if s.name not in form:
            continue
        if s.alias:
            checks.append((edit_prompt(s, s.alias), s.country))
        checks += [(about(s, p), answer) for p, answer in s.facts]
    known.update(zip(checks, _known(model, checks, batch_size=batch_size, progress=progress)))
    described = [s for s in subjects if s.description and s.name in form]
    pairs = [
        (s, t.format(_capitalised(s.description or "")))
        for s in described
        for t in templates.description_checks
    ]
    texts = [q for _, q in pairs]
    named: dict[str, bool] = {}
    for start in range(0, len(texts), batch_size):
        outs = generate(
            model, texts[start : start + batch_size], max_new_tokens=_DESCRIPTION_TOKENS
        )
        for (s, _), text in zip(pairs[start : start + batch_size], outs):
            named[s.name] = named.get(s.name, False) or _names_subject(text, s.name)

    # 3. the edits and their probes
    records: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for s in subjects:
        if s.name not in form:
            dropped["subject not known"] += 1
            continue
        old = s.country
        choices = [c for c in known_countries if normalize(c) != normalize(old)]
        new = random.Random(f"{seed}|{s.name}").choice(choices)
        relation = templates.relations[s.kind]
        probes: list[dict[str, Any]] = []
        for attr in COUNTRY_ATTRIBUTES:
            value = known_value.get((normalize(new), attr))
            old_value = every_value.get((normalize(old), attr))
            if value is None or (
                old_value is not None and normalize(value) == normalize(old_value)
            ):
                continue
            for t in templates.compositionality_1[relation].get(attr, ()):
                probes.append(_probe("compositionality_1", about(s, t), value, old_value, new=new))
        if s.description and named.get(s.name):
            for t in templates.compositionality_2[relation]:
                prompt = t.format(_capitalised(s.description))
                probes.append(_probe("compositionality_2", prompt, new, old))
        if s.alias and known[(edit_prompt(s, s.alias), old)]:
            for t in templates.subject_aliasing.get(relation, ()):
                probes.append(_probe("subject_aliasing", t.format(s.alias), new, old))
        for p, answer in s.facts:
            if known[(about(s, p), answer)]:
                probes.append(_probe("relation_specificity", about(s, p), answer))
        for country in (old, new):
            for attr in templates.object_locality:
                value = known_value.get((normalize(country), attr))
                if value is not None:
                    question = ATTRIBUTE_QUESTIONS[attr].format(country)
                    probes.append(_probe("object_locality", question, value))
        if not any(p["family"] == "compositionality_1" and not p["ambiguous"] for p in probes):
            dropped["no implication the model can check"] += 1
            continue
        records.append(
            {
                "case_id": f"{s.kind}-{normalize(s.name).replace(' ', '-')}",
                "kind": s.kind,
                "subject": s.name,
                "prompt": edit_prompt(s),
                "ground_truth": old,
                "target_new": new,
                "rephrase_prompt": [],
                "locality_prompt": [],
                "locality_ground_truth": [],
                "ripple": probes,
            }
        )

    # 4. the split: alternate within each kind, in a hashed order
    for kind in KINDS:
        mine = sorted(
            (r for r in records if r["kind"] == kind), key=lambda r: _order(r["subject"], seed)
        )
        for i, r in enumerate(mine):
            r["split"] = "dev" if i % 2 == 0 else "test"
    # dev first, each split in the hashed order: its first N records are a random sample
    records.sort(key=lambda r: (r["split"] != "dev", _order(r["subject"], seed)))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest": _manifest(model, records, subjects, table, dropped, seed, templates.version),
        "records": records,
    }


def _manifest(
    model: Any,
    records: Sequence[Mapping[str, Any]],
    subjects: Sequence[Subject],
    table: AttributeTable,
    dropped: Mapping[str, int],
    seed: int,
    templates_version: int,
) -> dict[str, Any]:
    probes = [p for r in records for p in r["ripple"]]
    return {
        "model_id": get_model_id(model),
        "built_with": f"sake-lens {__version__}",
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "how": "sake-lens ripple-suite (sake_lens.evaluate.ripple)",
        "source": {
            "subjects": "sake_lens/evaluate/resources/ripple_subjects.yaml",
            "templates": "sake_lens/evaluate/resources/ripple.yaml",
            "templates_version": templates_version,
            "attribute_table": "sake_lens/prompts/world.py",
        },
        "seed": seed,
        "counts": {
            "candidates": len(subjects),
            "edits": len(records),
            "dropped": dict(sorted(dropped.items())),
            "country_rows_known": len(table.rows),
            "edits_by_split": dict(Counter(r["split"] for r in records)),
            "edits_by_kind": dict(Counter(r["kind"] for r in records)),
            "probes": len(probes),
            "probes_by_family": {f: sum(p["family"] == f for p in probes) for f in FAMILIES},
            "ambiguous": sum(bool(p["ambiguous"]) for p in probes),
        },
    }


def check_ripple_model(data: Any, model: Any) -> dict[str, Any] | None:
    """Refuse a ripple suite built for another model (None when ``data`` is not a suite).

    Converted standard sets (:mod:`.standard_sets`) share the format but name no model: they
    are not built from a model's knowledge and pass.

    Raises:
        DataError: ``data`` is a ripple suite of another model or of a newer format.
    """
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        return None
    manifest = data.get("manifest")
    if isinstance(manifest, Mapping) and "model_id" not in manifest:
        return dict(manifest)
    command = "sake-lens ripple-suite --out NEW"
    return check_built_for(
        data,
        model,
        name="the data",
        what="a ripple suite",
        version=FORMAT_VERSION,
        rebuild=command,
        build=command,
    )
