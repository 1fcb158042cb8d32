"""Standard ripple and multi-hop sets (RippleEdits, MQuAKE) as ripple-suite records.

Both sets are read in their published JSON formats and converted into the ``sake-lens-ripple``
format: ``{"format": "sake-lens-ripple", "format_version": 1, "manifest": {...}, "records":
[...]}``. Every record has EasyEdit's flat edit fields (``case_id, subject, prompt, ground_truth,
target_new, rephrase_prompt, locality_prompt, locality_ground_truth``; the prompt is a template
with one ``{}`` where the subject goes and without the object), plus ``split`` (always
``"test"``), ``kind`` and ``ripple``: a list of probes ``{family, prompt, answer, aliases,
old_answer, ambiguous}``. A probe is ``ambiguous`` when its answer is not the record's new object
but starts with it (case-insensitively): new object "Mexico", answer "Mexico City". The manifest
names the source, the file (its name only), the number of source entries, the entries that could
not be converted (their number and the first 20 reasons), the test queries dropped for having no
answer, and the sake_lens version.

**RippleEdits** (``popular.json``, ``random.json``, ``recent.json``): a list of entries
``{example_type, edit, <criterion>: [test, ...], ...}``. ``edit`` is ``{prompt, subject_id,
relation, target_id, original_fact?}``; its prompt is the whole new fact, built by RippleEdits as
the relation's phrase with the subject's label, a space, the target's label and a full stop ("The
name of the country of citizenship of Leonardo DiCaprio is Syria."). The entry names neither the
subject nor the objects, so they are recovered from the prompts: the relation's phrase
(:data:`RIPPLEEDITS_TEMPLATES`, as RippleEdits defines it) is matched against the edit prompt and
the original fact's prompt; the text in the subject's place (the same in both) is the subject,
the text after the phrase is the new object (edit) or the old one (original fact), and the phrase
with ``{}`` is the record's prompt. One record per entry: ``case_id`` ``rippleedits-<position in
the file>``, ``kind`` the entry's ``example_type``. Each test is ``{test_queries, test_condition,
condition_queries}``; every test query ``{prompt, answers: [{value, aliases}], ...}`` becomes one
probe of the criterion's family (:data:`RIPPLEEDITS_FAMILIES`): its prompt, the first answer's
value as ``answer``, every other value and alias as ``aliases``, ``old_answer`` None. Queries
without answers are dropped (and counted); condition queries (the facts a test presupposes) are
not probes. Entries without an ``original_fact`` (the ``recent`` subset adds facts, so there is no
old object), with a relation whose phrase is unknown, or whose prompts do not match the phrase are
skipped. The published files call the paper's *Preservation* criterion ``Forgetfulness``; a
``Preservation`` key is read too, as family ``preservation``.

**MQuAKE** (``MQuAKE-CF-3k-v2.json``, ``MQuAKE-T.json``, ...): a list of cases ``{case_id,
requested_rewrite: [{prompt (with {}), relation_id, target_new {str, id}, target_true {str, id},
subject, question}], questions, answer, answer_alias, new_answer, new_answer_alias, single_hops,
new_single_hops: [{question, cloze, answer, answer_alias}], orig}``. Each requested rewrite
becomes one record (``case_id`` ``mquake-<case_id>-<i>``, ``kind`` ``"multi-hop"``; subject and
prompt from the rewrite, ``target_true.str`` as ``ground_truth``, ``target_new.str`` as
``target_new``). The case's probes go on its *last* rewrite's record: each multi-hop question is
a ``multi_hop`` probe (answer ``new_answer``, aliases ``new_answer_alias``, old answer
``answer``), and each hop of the edited chain (``new_single_hops``) a ``single_hop`` probe (its
cloze when it has one, else its question; answer and aliases from the hop). A case with several
rewrites is only answered by a model with all of them active at once: evaluate MQuAKE in mode
``all``. A case with a rewrite that cannot be converted (no ``{}`` in its prompt, the old and new
objects the same) is skipped whole.

A file that is not a list of entries in the expected format (not JSON, not a list, missing keys)
raises :class:`~sake_lens.errors.DataError`; ``strict=True`` raises it for the first entry that
cannot be converted too, instead of skipping it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RIPPLEEDITS_FAMILIES",
    "RIPPLEEDITS_TEMPLATES",
    "STANDARD_SETS",
    "detect_standard_set",
    "load_rippleedits",
    "load_mquake",
    "convert_standard_set",
    "convert_parsed",
]

#: The ``format`` key of a converted set.
FORMAT = "sake-lens-ripple"
#: The version of that format this module writes.
FORMAT_VERSION = 1
#: The names :func:`detect_standard_set` returns.
STANDARD_SETS = ("rippleedits", "mquake")
#: At most this many skip reasons are kept in a manifest (all are counted).
MAX_REASONS = 20

#: RippleEdits criterion key -> probe family. ``Relation_Specifity`` is the spelling of the
#: RippleEdits README; ``Preservation`` is the paper's name of ``Forgetfulness``.
RIPPLEEDITS_FAMILIES: dict[str, str] = {
    "Relation_Specificity": "relation_specificity",
    "Relation_Specifity": "relation_specificity",
    "Logical_Generalization": "logical_generalization",
    "Compositionality_I": "compositionality_1",
    "Compositionality_II": "compositionality_2",
    "Forgetfulness": "forgetfulness",
    "Subject_Aliasing": "subject_aliasing",
    "Preservation": "preservation",
}

#: RippleEdits relation -> the phrase its prompts are built from, ``{}`` for the subject.
RIPPLEEDITS_TEMPLATES: dict[str, str] = {
    "MOTHER": "The name of the mother of {} is",
    "FATHER": "The name of the father of {} is",
    "BROTHER": "The name of the brother of {} is",
    "SISTER": "The name of the sister of {} is",
    "SIBLING": "The names of the siblings of {} are",
    "SPOUSE": "The name of the spouse of {} is",
    "UNCLE": "The name of the uncle of {} is",
    "AUNT": "The name of the aunt of {} is",
    "CHILD": "The name of the child of {} is",
    "NUMBER_OF_CHILDREN": "The number of children {} has is",
    "SEX_OR_GENDER": "The gender of {} is",
    "PLACE_OF_BIRTH": "The place of birth of {} is",
    "PLACE_OF_DEATH": "The place of death of {} is",
    "PLACE_OF_BURIAL": "The place of burial of {} is",
    "COUNTRY": "The name of the country which {} is associated with is",
    "COUNTRY_OF_CITIZENSHIP": "The name of the country of citizenship of {} is",
    "POSITION_HELD": "The name of the position held by {} is",
    "STEPFATHER": "The name of the stepfather of {} is",
    "STEPMOTHER": "The name of the stepmother of {} is",
    "MEMBER_OF_SPORTS_TEAM": "The name of the sports team which {} is a member of is",
    "ALMA_MATER": "The name of the alma mater of {} is",
    "SEXUAL_ORIENTATION": "The sexual orientation of {} is",
    "OCCUPATION": "The occupation of {} is",
    "EMPLOYER": "The name of the employer of {} is",
    "LEAGUE": "The name of the league which {} plays in is",
    "FIELD_OF_WORK": "The name of the field of work of {} is",
    "NATIVE_LANGUAGE": "The mother tongue of {} is",
    "AWARD_RECEIVED": "The name of the award {} won is",
    "FOLLOWS": "{} follows",
    "FOLLOWED_BY": "{} is followed by",
    "ETHNIC_GROUP": "The name of the ethnic group which {} is associated with is",
    "RELIGION": "The name of the religion which {} is associated with is",
    "EYE_COLOR": "The eye color of {} is",
    "DATE_OF_BIRTH": "The date of birth of {} is",
    "DATE_OF_DEATH": "The date of death of {} is",
    "IS_ALIVE": "Is {} still alive?",
    "HEAD_OF_GOVERNMENT": "The name of the head of government of {} is",
    "HEAD_OF_STATE": "The name of the head of state of {} is",
    "CONTINENT": "The name of the continent which {} is part of is",
    "CAPITAL": "The name of the capital city of {} is",
    "CURRENCY": "The name of the currency in {} is",
    "OFFICIAL_LANGUAGE": "The official language of {} is",
    "ANTHEM": "The name of the anthem of {} is",
    "LIKELY_ANTHEM": "The name of the anthem that is most likely to be performed in {} is",
    "CAPITAL_OF": "The name of the country which {} is the capital of is",
    "AUTHOR": "The name of the author of {} is",
    "EDITOR": "The name of the editor of {} is",
    "DIRECTOR": "The name of the director of {} is",
    "SCREENWRITER": "The name of the screenwriter of {} is",
    "CAST_MEMBER": "The names of the cast members of {} are",
    "ARCHITECT": "The name of the architect of {} is",
    "COMPOSER": "The name of the composer of {} is",
    "FOUNDER": "The name of the founder of {} is",
}

_FIX = {
    "rippleedits": (
        "pass a RippleEdits benchmark file (popular.json, random.json or recent.json) unchanged"
    ),
    "mquake": "pass an MQuAKE dataset file (e.g. MQuAKE-CF-3k-v2.json or MQuAKE-T.json) unchanged",
}
_NAMES = {"rippleedits": "RippleEdits", "mquake": "MQuAKE"}
_A_NAME = {"rippleedits": "a RippleEdits", "mquake": "an MQuAKE"}
_LOADERS = {"rippleedits": "load_rippleedits", "mquake": "load_mquake"}
_TYPE_NAMES: dict[type, str] = {Mapping: "an object", list: "a list", str: "text", int: "a number"}


class _Unconvertible(Exception):
    """An entry in the right format that cannot become a record (the reason is the message)."""


# ------------------------------------------------------------------------------------ reading
def _read_json(path: str | Path) -> Any:
    """Parse the JSON file at ``path``.

    Raises:
        DataError: the file cannot be read or is not JSON.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {str(path)!r}: {exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}); pass a "
            "RippleEdits or MQuAKE file as published."
        ) from exc


def detect_standard_set(raw: Any) -> str | None:
    """Which standard set a parsed JSON value is, from its first entry's keys.

    Args:
        raw: the parsed content of a data file.

    Returns:
        ``"rippleedits"`` (entries with ``edit`` and ``example_type`` or criterion keys),
        ``"mquake"`` (entries with a ``requested_rewrite`` list and ``questions``), or None.
    """
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], Mapping):
        return None
    first = raw[0]
    if isinstance(first.get("requested_rewrite"), list) and "questions" in first:
        return "mquake"
    if isinstance(first.get("edit"), Mapping) and (
        "example_type" in first or any(key in first for key in RIPPLEEDITS_FAMILIES)
    ):
        return "rippleedits"
    return None


def _check_entries(raw: Any, path: str | Path, kind: str) -> list[Any]:
    """``raw`` as a non-empty list of objects, or a DataError naming the file and the fix."""
    where, fix = f"{str(path)!r}", _FIX[kind]
    if not isinstance(raw, list):
        raise DataError(
            f"{where} is not {_A_NAME[kind]} file: expected a JSON list of entries, got "
            f"{type(raw).__name__}; {fix}."
        )
    if not raw:
        raise DataError(f"{where} holds no entries; {fix}.")
    found = detect_standard_set(raw)
    if found is not None and found != kind:
        raise DataError(
            f"{where} is {_A_NAME[found]} file, not {_A_NAME[kind]} one; read it with "
            f"{_LOADERS[found]}() or convert_standard_set()."
        )
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise DataError(
                f"{where}: entry {index} is a {type(entry).__name__}, not an object; {fix}."
            )
    return raw


def _need(
    mapping: Mapping[str, Any], key: str, kind_of: type | tuple[type, ...], where: str
) -> Any:
    """``mapping[key]``, checked to be of type ``kind_of``; else a DataError naming ``where``."""
    if key not in mapping:
        raise DataError(f"{where} lacks the key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind_of):
        kinds = kind_of if isinstance(kind_of, tuple) else (kind_of,)
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise DataError(f"{where}: {key!r} is a {type(value).__name__}, not {expected}")
    return value


# ----------------------------------------------------------------------------------- records
def _texts(values: Iterable[Any]) -> list[str]:
    """Non-empty texts of ``values`` (numbers as text), stripped, without repeats, in order."""
    out: list[str] = []
    for value in values:
        if value is None or isinstance(value, (Mapping, list)):
            continue
        text = str(value).strip()
        if text and text not in out:
            out.append(text)
    return out


def _probe(
    family: str,
    prompt: str,
    answers: list[str],
    target_new: str,
    old_answer: str | None = None,
) -> dict[str, Any]:
    """One ripple probe; ``answers[0]`` is the answer and the rest are its aliases."""
    answer = answers[0]
    return {
        "family": family,
        "prompt": prompt.strip(),
        "answer": answer,
        "aliases": [a for a in answers[1:] if a != answer],
        "old_answer": old_answer,
        "ambiguous": answer != target_new and answer.casefold().startswith(target_new.casefold()),
    }


def _record(
    case_id: str, kind: str, subject: str, prompt: str, old: str, new: str
) -> dict[str, Any]:
    """A record without probes; raises _Unconvertible for an edit that changes nothing."""
    if old.casefold() == new.casefold():
        raise _Unconvertible(f"the old and new objects are the same ({new!r})")
    if prompt.count("{}") != 1 or "{}" in subject:
        raise _Unconvertible(f"the prompt {prompt!r} needs exactly one '{{}}' for the subject")
    return {
        "case_id": case_id,
        "split": "test",
        "kind": kind,
        "subject": subject,
        "prompt": prompt,
        "ground_truth": old,
        "target_new": new,
        "rephrase_prompt": [],
        "locality_prompt": [],
        "locality_ground_truth": [],
        "ripple": [],
    }


def _result(
    source: str,
    path: str | Path,
    n_entries: int,
    records: list[dict[str, Any]],
    reasons: list[str],
    n_no_answer: int,
) -> dict[str, Any]:
    """The converted set: format keys, manifest and records."""
    manifest = {
        "source": _NAMES[source],
        "source_file": Path(path).name,
        "n_source_entries": n_entries,
        "n_skipped": len(reasons),
        "skipped": reasons[:MAX_REASONS],
        "n_queries_without_answers": n_no_answer,
        "built_with": f"sake-lens {__version__}",
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest": manifest,
        "records": records,
    }


# -------------------------------------------------------------------------------- RippleEdits
def _fact_splits(sentence: str, template: str) -> list[tuple[str, str]]:
    """Every ``(subject, object)`` for which ``template`` + " object." gives ``sentence``."""
    before, after = template.split("{}")
    if not sentence.startswith(before) or not sentence.endswith("."):
        return []
    body, sep = sentence[len(before) : -1], after + " "
    out: list[tuple[str, str]] = []
    at = body.find(sep)
    while at != -1:
        subject, obj = body[:at].strip(), body[at + len(sep) :].strip()
        if subject and obj:
            out.append((subject, obj))
        at = body.find(sep, at + 1)
    return out


def _split_edit(edit: Mapping[str, Any], where: str) -> tuple[str, str, str, str]:
    """Subject, prompt template, old object and new object of a RippleEdits ``edit``."""
    relation = str(_need(edit, "relation", str, where))
    new_sentence = _need(edit, "prompt", str, where).strip()
    original = edit.get("original_fact")
    if not isinstance(original, Mapping):
        raise _Unconvertible("no original_fact, so no old object (entries of 'recent' add a fact)")
    old_sentence = original.get("prompt")
    if not isinstance(old_sentence, str) or not old_sentence.strip():
        raise _Unconvertible("the original_fact has no prompt to read the old object from")
    template = RIPPLEEDITS_TEMPLATES.get(relation)
    if template is None:
        raise _Unconvertible(f"unknown relation {relation!r}")
    old_splits = dict(_fact_splits(old_sentence.strip(), template))
    for subject, new in _fact_splits(new_sentence, template):
        if subject in old_splits:
            return subject, template, old_splits[subject], new
    raise _Unconvertible(
        f"the prompts {new_sentence!r} and {old_sentence.strip()!r} do not both read "
        f"{template!r} + object"
    )


def _query_answers(query: Mapping[str, Any], where: str) -> list[str]:
    """The first answer's value, then every other value and alias of a test query."""
    values: list[Any] = []
    for j, answer in enumerate(_need(query, "answers", list, where)):
        if not isinstance(answer, Mapping):
            raise DataError(f"{where}: answers[{j}] is not an object {{value, aliases}}")
        values.append(answer.get("value"))
        values.extend(answer.get("aliases") or [])
    return _texts(values)


def _rippleedits_probes(
    entry: Mapping[str, Any], target_new: str, where: str
) -> tuple[list[dict[str, Any]], int]:
    """The probes of one entry's test queries, and how many queries had no answer."""
    probes: list[dict[str, Any]] = []
    n_no_answer = 0
    for key, family in RIPPLEEDITS_FAMILIES.items():
        if entry.get(key) is None:
            continue
        for t, test in enumerate(_need(entry, key, list, where)):
            at = f"{where}, {key}[{t}]"
            if not isinstance(test, Mapping):
                raise DataError(f"{at} is not an object {{test_queries, ...}}")
            for q, query in enumerate(_need(test, "test_queries", list, at)):
                at_q = f"{at}.test_queries[{q}]"
                if not isinstance(query, Mapping):
                    raise DataError(f"{at_q} is not an object {{prompt, answers, ...}}")
                prompt = _need(query, "prompt", str, at_q)
                answers = _query_answers(query, at_q)
                if not answers or not prompt.strip():
                    n_no_answer += 1
                    continue
                probes.append(_probe(family, prompt, answers, target_new))
    return probes, n_no_answer


def _rippleedits_entry(entry: Mapping[str, Any], index: int) -> tuple[dict[str, Any], int]:
    """The record of the entry at ``index`` and its number of queries without answers."""
    where = f"entry {index}"
    kind = _need(entry, "example_type", str, where)
    edit = _need(entry, "edit", Mapping, where)
    subject, template, old, new = _split_edit(edit, f"{where}, edit")
    record = _record(f"rippleedits-{index}", kind, subject, template, old, new)
    record["ripple"], n_no_answer = _rippleedits_probes(entry, new, where)
    return record, n_no_answer


def _convert_entries(
    raw: Any,
    path: str | Path,
    kind: str,
    strict: bool,
    convert: Callable[[Mapping[str, Any], int], tuple[list[dict[str, Any]], int]],
    label: Callable[[Mapping[str, Any], int], str],
) -> dict[str, Any]:
    """Convert parsed entries of ``kind`` read from ``path``, one by one: ``convert`` gives an
    entry's records and its number of queries without answers; an entry it cannot convert is
    skipped (named by ``label``), or raised with ``strict``."""
    entries = _check_entries(raw, path, kind)
    records: list[dict[str, Any]] = []
    reasons: list[str] = []
    n_no_answer = 0
    for index, entry in enumerate(entries):
        try:
            converted, missing = convert(entry, index)
        except _Unconvertible as exc:
            if strict:
                raise DataError(
                    f"{str(path)!r}: {label(entry, index)} cannot be converted: {exc}."
                ) from None
            reasons.append(f"{label(entry, index)}: {exc}")
            continue
        except DataError as exc:
            raise DataError(f"{str(path)!r}: {exc}; {_FIX[kind]}.") from None
        records.extend(converted)
        n_no_answer += missing
    return _result(kind, path, len(entries), records, reasons, n_no_answer)


def _convert_rippleedits(raw: Any, path: str | Path, strict: bool) -> dict[str, Any]:
    """Convert parsed RippleEdits entries read from ``path`` (see :func:`load_rippleedits`)."""

    def one(entry: Mapping[str, Any], index: int) -> tuple[list[dict[str, Any]], int]:
        record, missing = _rippleedits_entry(entry, index)
        return [record], missing

    return _convert_entries(
        raw, path, "rippleedits", strict, one, lambda _, index: f"entry {index}"
    )


def load_rippleedits(path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """Convert a RippleEdits benchmark file into ripple-suite records.

    Args:
        path: ``popular.json``, ``random.json`` or ``recent.json`` as published.
        strict: raise on the first entry that cannot be converted instead of skipping it.

    Returns:
        ``{"format", "format_version", "manifest", "records"}``; see the module docstring.

    Raises:
        DataError: the file cannot be read, is not a list of RippleEdits entries (or an entry
            lacks a key), or, with ``strict``, an entry cannot be converted.
    """
    return _convert_rippleedits(_read_json(path), path, strict)


# ------------------------------------------------------------------------------------- MQuAKE
def _object_str(value: Any, where: str) -> str:
    """The text of an MQuAKE object ``{"str", "id"}`` (plain text is accepted too)."""
    if isinstance(value, Mapping):
        value = value.get("str")
    if not isinstance(value, str):
        raise DataError(f"{where} has no object text ('str')")
    if not value.strip():
        raise _Unconvertible(f"{where} is empty")
    return value.strip()


def _rewrite_record(rewrite: Any, case_id: Any, i: int, where: str) -> dict[str, Any]:
    """The record of the ``i``-th requested rewrite of a case."""
    if not isinstance(rewrite, Mapping):
        raise DataError(f"{where} is not an object {{prompt, subject, target_new, ...}}")
    prompt = _need(rewrite, "prompt", str, where).strip()
    subject = _need(rewrite, "subject", str, where).strip()
    if not subject:
        raise _Unconvertible(f"{where} has an empty subject")
    old = _object_str(_need(rewrite, "target_true", (Mapping, str), where), f"{where}.target_true")
    new = _object_str(_need(rewrite, "target_new", (Mapping, str), where), f"{where}.target_new")
    return _record(f"mquake-{case_id}-{i}", "multi-hop", subject, prompt, old, new)


def _mquake_probes(
    case: Mapping[str, Any], target_new: str, where: str
) -> tuple[list[dict[str, Any]], int]:
    """The multi-hop and single-hop probes of a case, and how many hops had no answer."""
    new_answer = _need(case, "new_answer", str, where).strip()
    if not new_answer:
        raise _Unconvertible("the case has an empty new_answer")
    new_answers = _texts([new_answer, *(case.get("new_answer_alias") or [])])
    old = _need(case, "answer", str, where).strip() or None
    probes = [
        _probe("multi_hop", question, new_answers, target_new, old)
        for question in _need(case, "questions", list, where)
        if isinstance(question, str) and question.strip()
    ]
    n_no_answer = 0
    for h, hop in enumerate(case.get("new_single_hops") or []):
        at = f"{where}, new_single_hops[{h}]"
        if not isinstance(hop, Mapping):
            raise DataError(f"{at} is not an object {{question, cloze, answer, answer_alias}}")
        prompt = hop.get("cloze") or hop.get("question")
        answer = hop.get("answer")
        if not isinstance(prompt, str) or not prompt.strip() or not _texts([answer]):
            n_no_answer += 1
            continue
        answers = _texts([answer, *(hop.get("answer_alias") or [])])
        probes.append(_probe("single_hop", prompt, answers, target_new))
    return probes, n_no_answer


def _mquake_case(case: Mapping[str, Any], index: int) -> tuple[list[dict[str, Any]], int]:
    """The records of one case (one per rewrite; probes on the last) and its unanswered hops."""
    where = f"entry {index}"
    case_id = _need(case, "case_id", (int, str), where)
    where = f"entry {index} (case_id {case_id})"
    rewrites = _need(case, "requested_rewrite", list, where)
    if not rewrites:
        raise _Unconvertible("no requested_rewrite")
    records = [
        _rewrite_record(rw, case_id, i, f"{where}, requested_rewrite[{i}]")
        for i, rw in enumerate(rewrites)
    ]
    last = records[-1]
    last["ripple"], n_no_answer = _mquake_probes(case, last["target_new"], where)
    return records, n_no_answer


def _convert_mquake(raw: Any, path: str | Path, strict: bool) -> dict[str, Any]:
    """Convert parsed MQuAKE cases read from ``path`` (see :func:`load_mquake`)."""
    return _convert_entries(
        raw,
        path,
        "mquake",
        strict,
        _mquake_case,
        lambda case, index: f"case {case.get('case_id', f'#{index}')}",
    )


def load_mquake(path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """Convert an MQuAKE dataset file into ripple-suite records (one per requested rewrite).

    Args:
        path: ``MQuAKE-CF-3k-v2.json``, ``MQuAKE-T.json`` or another MQuAKE file as published.
        strict: raise on the first case that cannot be converted instead of skipping it.

    Returns:
        ``{"format", "format_version", "manifest", "records"}``; see the module docstring.
        Evaluate in mode ``all``: a case's multi-hop probes need all its rewrites at once.

    Raises:
        DataError: the file cannot be read, is not a list of MQuAKE cases (or a case lacks a
            key), or, with ``strict``, a case cannot be converted.
    """
    return _convert_mquake(_read_json(path), path, strict)


# -------------------------------------------------------------------------------- dispatching
def convert_standard_set(path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """Detect which standard set ``path`` holds and convert it.

    Args:
        path: a RippleEdits or MQuAKE file as published.
        strict: raise on the first entry that cannot be converted instead of skipping it.

    Returns:
        The converted set, as :func:`load_rippleedits` or :func:`load_mquake` returns it.

    Raises:
        DataError: the file cannot be read, is neither a RippleEdits nor an MQuAKE file, or is
            malformed (see the loaders).
    """
    return convert_parsed(_read_json(path), path, strict=strict)


def convert_parsed(raw: Any, path: str | Path, *, strict: bool = False) -> dict[str, Any]:
    """:func:`convert_standard_set` for a file already parsed (``path`` names it in errors)."""
    kind = detect_standard_set(raw)
    if kind == "rippleedits":
        return _convert_rippleedits(raw, path, strict)
    if kind == "mquake":
        return _convert_mquake(raw, path, strict)
    keys = sorted(raw[0]) if isinstance(raw, list) and raw and isinstance(raw[0], Mapping) else None
    found = f"its first entry has keys {keys}" if keys is not None else type(raw).__name__
    raise DataError(
        f"{str(path)!r} is neither a RippleEdits nor an MQuAKE file ({found}); "
        f"{_FIX['rippleedits']}, or {_FIX['mquake']}."
    )
