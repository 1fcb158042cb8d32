"""Evaluation data: CounterFact (EasyEdit's flat format and the original ROME format) and simple
lists of edit requests, read into one record type.

Three record formats are recognised per record (a file may even mix them):

* **EasyEdit flat** — ``case_id, prompt, subject, target_new, ground_truth, rephrase_prompt,
  locality_prompt, locality_ground_truth`` (the prompt has the subject filled in; the
  rephrase and locality fields may be strings or lists).
* **ROME** — ``case_id``, ``requested_rewrite`` ``{prompt (with {}), subject, target_new{str},
  target_true{str}}``, ``paraphrase_prompts``, ``neighborhood_prompts`` (strings, or
  ``{prompt, target}`` dicts). Neighbourhood prompts are other subjects whose true object is
  ``target_true``.
* **simple** — ``{subject, prompt, old, new, paraphrases?, neighbourhood?, id?}``; a
  neighbourhood entry is a prompt (its true answer is taken to be ``old``, as in CounterFact)
  or ``{prompt, answer}``.

Files are JSON (a list, or an object with a ``records``/``data`` list), JSON Lines (``.jsonl``)
or YAML (``.yaml``/``.yml``). A malformed record does not stop the others: it becomes a
:class:`~sake_lens.errors.DataError` message naming its position and id, collected in
:attr:`LoadResult.errors` and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, SakeLensError
from ..prompts.request import EditRequest

__all__ = [
    "EvalRecord",
    "RippleProbe",
    "LoadResult",
    "RECORD_FORMATS",
    "RIPPLE_FAMILIES",
    "parse_record",
    "load_records",
]

log = logging.getLogger(__name__)

#: Record formats :func:`parse_record` recognises.
RECORD_FORMATS = ("easyedit", "rome", "simple")


#: Probe families a record's ``ripple`` list may name: the ripple suite's
#: (:mod:`sake_lens.evaluate.ripple`) and those of the standard sets
#: (:mod:`sake_lens.evaluate.standard_sets`: RippleEdits, MQuAKE).
RIPPLE_FAMILIES = (
    "compositionality_1",
    "compositionality_2",
    "subject_aliasing",
    "relation_specificity",
    "object_locality",
    "logical_generalization",
    "forgetfulness",
    "preservation",
    "multi_hop",
    "single_hop",
)


@dataclass(frozen=True)
class RippleProbe:
    """A probe of an edit's ripple effects: ``prompt`` should be answered ``answer`` (or one of
    ``aliases``) with the edit active. ``old_answer`` is the answer before the edit where it
    changes (None where the answer must stay); ``ambiguous`` probes (the answer starts with
    the new object's own name) are kept in the data but not scored."""

    family: str
    prompt: str
    answer: str
    aliases: tuple[str, ...] = ()
    old_answer: str | None = None
    ambiguous: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> RippleProbe:
        if not isinstance(raw, Mapping):
            raise DataError(f"a ripple probe must be an object, got {raw!r}")
        family = raw.get("family")
        if family not in RIPPLE_FAMILIES:
            raise DataError(f"unknown ripple family {family!r}; known: {RIPPLE_FAMILIES}")
        old = raw.get("old_answer")
        return cls(
            str(family),
            _text(raw.get("prompt"), "ripple prompt"),
            _text(raw.get("answer"), "ripple answer"),
            tuple(_texts(raw.get("aliases") or [], "ripple aliases")),
            None if old is None else _text(old, "ripple old_answer"),
            bool(raw.get("ambiguous", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "prompt": self.prompt,
            "answer": self.answer,
            "aliases": list(self.aliases),
            "old_answer": self.old_answer,
            "ambiguous": self.ambiguous,
        }


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation case: an edit request and the prompts that test it.

    Attributes:
        case_id: the record's id as text (CounterFact's ``case_id``, or ``#<position>``).
        request: the edit (subject, prompt template, old object, new object).
        paraphrase_prompts: other prompts of the same fact (generalisation).
        neighborhood_prompts: prompts about *other* subjects that the edit must not change.
        neighborhood_answers: their true objects (one per neighbourhood prompt).
        source_format: which of :data:`RECORD_FORMATS` it was read from.
        ripple: ripple-effect probes (ripple suites and the standard sets).
        split: ``dev`` or ``test`` where the data says (ripple suites).
    """

    case_id: str
    request: EditRequest
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    neighborhood_answers: tuple[str, ...] = ()
    source_format: str = "simple"
    ripple: tuple[RippleProbe, ...] = ()
    split: str | None = None

    def __post_init__(self) -> None:
        if len(self.neighborhood_prompts) != len(self.neighborhood_answers):
            raise DataError(
                f"Record {self.case_id}: {len(self.neighborhood_prompts)} neighbourhood prompts "
                f"but {len(self.neighborhood_answers)} answers; give one answer per prompt."
            )
        if self.source_format not in RECORD_FORMATS:
            raise DataError(f"Unknown source_format {self.source_format!r}; use {RECORD_FORMATS}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "request": self.request.to_dict(),
            "paraphrase_prompts": list(self.paraphrase_prompts),
            "neighborhood_prompts": list(self.neighborhood_prompts),
            "neighborhood_answers": list(self.neighborhood_answers),
            "source_format": self.source_format,
            **({"ripple": [p.to_dict() for p in self.ripple]} if self.ripple else {}),
            **({"split": self.split} if self.split is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalRecord:
        return cls(
            case_id=str(data["case_id"]),
            request=EditRequest.from_dict(data["request"]),
            paraphrase_prompts=tuple(data.get("paraphrase_prompts", ())),
            neighborhood_prompts=tuple(data.get("neighborhood_prompts", ())),
            neighborhood_answers=tuple(data.get("neighborhood_answers", ())),
            source_format=data.get("source_format", "simple"),
            ripple=tuple(RippleProbe.from_dict(p) for p in data.get("ripple", ())),
            split=data.get("split"),
        )


@dataclass
class LoadResult:
    """Records read from a file, and one message per record that could not be read."""

    records: list[EvalRecord]
    errors: list[str] = field(default_factory=list)
    path: str = ""
    sha256: str = ""


# ----------------------------------------------------------------------------------- helpers
def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{what} must be non-empty text, got {value!r}")
    return value.strip()


def _texts(value: Any, what: str) -> list[str]:
    """A string or a list of strings (None and missing mean none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_text(value, what)]
    if isinstance(value, Sequence):
        return [_text(v, f"{what}[{i}]") for i, v in enumerate(value)]
    raise DataError(f"{what} must be a string or a list of strings, got {type(value).__name__}")


def _object_str(value: Any, what: str) -> str:
    """CounterFact objects are ``{"str": ..., "id": ...}``; plain strings are accepted too."""
    if isinstance(value, Mapping):
        value = value.get("str")
    return _text(value, what)


def _neighbours(entries: Any, default_answer: str, what: str) -> tuple[list[str], list[str]]:
    prompts: list[str] = []
    answers: list[str] = []
    if entries is None:
        return prompts, answers
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    if not isinstance(entries, Sequence):
        raise DataError(f"{what} must be a list, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            prompts.append(_text(entry.get("prompt"), f"{what}[{i}].prompt"))
            answer = entry.get("answer", entry.get("target", default_answer))
            answers.append(_object_str(answer, f"{what}[{i}].answer"))
        else:
            prompts.append(_text(entry, f"{what}[{i}]"))
            answers.append(default_answer)
    return prompts, answers


def _request(subject: Any, prompt: Any, old: Any, new: Any) -> EditRequest:
    return EditRequest(
        _text(subject, "subject"), _text(prompt, "prompt"), _text(old, "old"), _text(new, "new")
    )


def _parse_easyedit(raw: Mapping[str, Any]) -> EvalRecord:
    old = _text(raw.get("ground_truth"), "ground_truth")
    request = _request(raw.get("subject"), raw.get("prompt"), old, raw.get("target_new"))
    loc = _texts(raw.get("locality_prompt"), "locality_prompt")
    truth = raw.get("locality_ground_truth", old)
    answers = _texts(truth, "locality_ground_truth") if truth is not None and loc else []
    if len(answers) == 1 and len(loc) > 1:
        answers = answers * len(loc)
    if len(answers) != len(loc):
        raise DataError(
            f"{len(loc)} locality_prompt(s) but {len(answers)} locality_ground_truth value(s)"
        )
    return EvalRecord(
        case_id=str(raw["case_id"]),
        request=request,
        paraphrase_prompts=tuple(_texts(raw.get("rephrase_prompt"), "rephrase_prompt")),
        neighborhood_prompts=tuple(loc),
        neighborhood_answers=tuple(answers),
        source_format="easyedit",
        ripple=tuple(RippleProbe.from_dict(p) for p in raw.get("ripple") or ()),
        split=None if raw.get("split") is None else str(raw["split"]),
    )


def _parse_rome(raw: Mapping[str, Any]) -> EvalRecord:
    rw = raw["requested_rewrite"]
    if not isinstance(rw, Mapping):
        raise DataError(f"requested_rewrite must be an object, got {type(rw).__name__}")
    prompt = _text(rw.get("prompt"), "requested_rewrite.prompt")
    if "{}" not in prompt:
        raise DataError(f"requested_rewrite.prompt {prompt!r} has no '{{}}' for the subject")
    old = _object_str(rw.get("target_true"), "requested_rewrite.target_true")
    new = _object_str(rw.get("target_new"), "requested_rewrite.target_new")
    request = _request(rw.get("subject"), prompt, old, new)
    prompts, answers = _neighbours(raw.get("neighborhood_prompts"), old, "neighborhood_prompts")
    return EvalRecord(
        case_id=str(raw["case_id"]),
        request=request,
        paraphrase_prompts=tuple(_texts(raw.get("paraphrase_prompts"), "paraphrase_prompts")),
        neighborhood_prompts=tuple(prompts),
        neighborhood_answers=tuple(answers),
        source_format="rome",
    )


def _parse_simple(raw: Mapping[str, Any], position: int) -> EvalRecord:
    request = _request(raw.get("subject"), raw.get("prompt"), raw.get("old"), raw.get("new"))
    neigh = raw.get("neighbourhood", raw.get("neighborhood"))
    prompts, answers = _neighbours(neigh, request.old, "neighbourhood")
    paraphrases = [
        request.fill(p) if "{}" in p else p for p in _texts(raw.get("paraphrases"), "paraphrases")
    ]
    case_id = raw.get("id", raw.get("case_id"))
    return EvalRecord(
        case_id=str(case_id) if case_id is not None else f"#{position}",
        request=request,
        paraphrase_prompts=tuple(paraphrases),
        neighborhood_prompts=tuple(prompts),
        neighborhood_answers=tuple(answers),
        source_format="simple",
    )


def _record_label(raw: Any, position: int) -> str:
    if isinstance(raw, Mapping):
        for key in ("case_id", "id"):
            if raw.get(key) is not None:
                return f"record {position} (case_id {raw[key]})"
    return f"record {position}"


def parse_record(raw: Any, position: int = 0) -> EvalRecord:
    """Read one record in any of :data:`RECORD_FORMATS`.

    Returns:
        The record in sake_lens' own form.

    Raises:
        DataError: the record is malformed; the message names the position, the id and the
            problem.
    """
    label = _record_label(raw, position)
    try:
        if not isinstance(raw, Mapping):
            raise DataError(f"a record must be a JSON/YAML object, got {type(raw).__name__}")
        if "requested_rewrite" in raw:
            if "case_id" not in raw:
                raise DataError("ROME-format record without 'case_id'")
            return _parse_rome(raw)
        if "target_new" in raw and "ground_truth" in raw:
            if "case_id" not in raw:
                raise DataError("EasyEdit-format record without 'case_id'")
            return _parse_easyedit(raw)
        if {"subject", "prompt", "old", "new"} <= set(raw):
            return _parse_simple(raw, position)
        raise DataError(
            f"unknown record format (keys {sorted(raw)}); expected CounterFact's ROME format "
            "(requested_rewrite, paraphrase_prompts, neighborhood_prompts), EasyEdit's flat "
            "format (prompt, subject, target_new, ground_truth, ...) or a simple edit request "
            "(subject, prompt, old, new)"
        )
    except DataError as exc:
        raise DataError(f"{label}: {exc}.") from None
    except SakeLensError as exc:  # EditRequestError: old == new, subject not in prompt, ...
        raise DataError(f"{label}: {exc}") from None


_DATA_FIX = (
    "pass a UTF-8 JSON file holding a list of records (.jsonl: one record per line; .yaml: a "
    "YAML list)"
)


def _read_raw(path: Path) -> list[Any]:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(
            f"The evaluation data {str(path)!r} is a folder, not a file; {_DATA_FIX}."
        ) from None
    except OSError as exc:
        raise DataError(
            f"Cannot read the evaluation data {str(path)!r}: {exc.strerror or exc}; check the "
            f"path, or {_DATA_FIX}."
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{str(path)!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}): it is binary or in another encoding; {_DATA_FIX}."
        ) from None
    if "\x00" in text:
        raise DataError(f"{str(path)!r} holds NUL bytes: it is a binary file; {_DATA_FIX}.")
    suffix = path.suffix.casefold()
    kind = "YAML" if suffix in (".yaml", ".yml") else "JSON"
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data: Any = yaml.safe_load(text)
        elif suffix == ".jsonl":
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, RecursionError
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{str(path)!r} is not valid {kind}: {detail}; {_DATA_FIX}.") from exc
    from .standard_sets import convert_parsed, detect_standard_set

    if detect_standard_set(data) is not None:  # RippleEdits or MQuAKE as published
        data = convert_parsed(data, path.name)
    if isinstance(data, Mapping):
        for key in ("records", "data", "edits"):
            if isinstance(data.get(key), list):
                return list(data[key])
    if not isinstance(data, list):
        got = "nothing" if data is None else type(data).__name__
        raise DataError(
            f"{str(path)!r} must hold a list of records (or an object with a 'records' list), "
            f"got {got}; {_DATA_FIX}."
        )
    return data


def iter_records(raw: Iterable[Any], errors: list[str], *, offset: int = 0) -> Iterable[EvalRecord]:
    """Parse records one by one, appending a message to ``errors`` for each bad one
    (positions in messages count from ``offset``)."""
    seen: set[str] = set()
    for position, item in enumerate(raw, start=offset):
        try:
            record = parse_record(item, position)
            if record.case_id in seen:
                raise DataError(
                    f"record {position} (case_id {record.case_id}): duplicate case_id; ids must "
                    "be unique (outcomes are stored by id)."
                )
        except DataError as exc:
            errors.append(str(exc))
            log.warning("skipping a bad evaluation record: %s", exc)
            continue
        seen.add(record.case_id)
        yield record


def load_records(
    path: str | Path,
    *,
    n: int | None = None,
    records: tuple[int, int] | None = None,
    split: str | None = None,
) -> LoadResult:
    """Read evaluation records from ``path``: the first ``n`` valid ones in file order, or the
    valid ones at positions ``records = (start, stop)`` of the file (0-based, half-open).

    Bad records are skipped with a message each in :attr:`LoadResult.errors` (only those met
    before the ``n``-th valid record). The file's SHA-256 is recorded so that results can be
    tied to their data.

    With ``split``, only the records whose ``split`` field has that value are kept (before
    ``n`` counts them).

    Returns:
        The valid records and the reasons the others were skipped.

    Raises:
        DataError: the file cannot be read or holds no list of records, ``n < 1``, both ``n``
            and ``records``, a range outside the file, or a ``split`` the data does not mark.
    """
    if n is not None and n < 1:
        raise DataError(f"n must be >= 1 (or None for every record), got {n}.")
    if n is not None and records is not None:
        raise DataError("Give either --n or --records, not both.")
    path = Path(path)
    raw = _read_raw(path)
    offset = 0
    if records is not None:
        start, stop = records
        if not 0 <= start < stop or stop > len(raw):
            raise DataError(
                f"--records {start}:{stop} is outside {str(path)!r}, which holds {len(raw)} "
                f"records (positions 0 to {len(raw) - 1}); choose start:stop with "
                f"0 <= start < stop <= {len(raw)}."
            )
        raw, offset = raw[start:stop], start
    errors: list[str] = []
    kept: list[EvalRecord] = []
    marked: set[str] = set()
    for record in iter_records(raw, errors, offset=offset):
        if record.split is not None:
            marked.add(record.split)
        if split is not None and record.split != split:
            continue
        kept.append(record)
        if n is not None and len(kept) >= n:
            break
    if split is not None and not kept:
        raise DataError(
            f"No record of {str(path)!r} is in split {split!r}"
            + (f" (its splits: {sorted(marked)})" if marked else " (it marks no splits)")
            + "; drop --split or choose one of the data's splits."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadResult(kept, errors, str(path), digest)
