"""Known-fact sets: the CounterFact records and neighbourhood prompts a model itself knows.

A small model knows few CounterFact facts (the default model's greedy continuation starts with
the true object on about 5 % of records), so specificity measured on every neighbourhood prompt
mostly measures facts the model never knew. :func:`build_known_facts` keeps, for one model:

* each record whose **edit prompt** the model completes with its true object (``known_edit``),
* each **neighbourhood prompt** the model completes with its answer,

where *completes with* means: the greedy continuation of ``len(object tokens) + 2`` tokens,
decoded, with leading whitespace stripped, starts with the whole object — case-sensitively,
after Unicode NFC normalisation — and the character after it is not a letter or a digit
(" Paris." counts for "Paris", " Parisian" does not). A record is kept when its edit prompt is
known or at least one of its neighbourhood prompts is; it keeps only its known neighbourhood
prompts.

The result is a JSON object ``{"format": "sake-lens-known-facts", "format_version": 1,
"manifest": {...}, "records": [...]}`` whose records are in EasyEdit's flat format with lists
(``rephrase_prompt``, ``locality_prompt``, ``locality_ground_truth``), plus ``known_edit`` and
``source_position`` (the record's position in the source file), so
:func:`~sake_lens.evaluate.data.load_records` reads it like any CounterFact file. The manifest
names the model: :func:`check_known_facts_model` refuses a set built for another model.
``sake-lens known-facts`` is the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._umask import chmod_like_new_file
from .._version import __version__
from ..errors import DataError
from ..model.loading import model_id as get_model_id
from ..model.tokens import bos_convention
from ..steer.generation import generate
from .data import EvalRecord, _read_raw, parse_record

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CRITERIA",
    "KnownFactsConfig",
    "Selection",
    "parse_records_range",
    "check_output_path",
    "select_records",
    "produces_object",
    "build_known_facts",
    "write_known_facts",
    "check_known_facts_model",
    "check_built_for",
]

#: The ``format`` key of a known-fact set.
FORMAT = "sake-lens-known-facts"
#: The version of that format this module writes and reads.
FORMAT_VERSION = 1
#: Extra greedy tokens generated after the object's own token count.
EXTRA_TOKENS = 2

#: The selection criteria, in words (recorded in every manifest).
CRITERIA = (
    "A prompt is known when the model's greedy continuation of len(object tokens) + 2 tokens, "
    "decoded and stripped of leading whitespace, starts with the whole object (case-sensitive, "
    "after Unicode NFC normalisation) and the next character, if any, is not a letter or a "
    "digit. A record is kept when its edit prompt (object: ground_truth) is known or at least "
    "one of its neighbourhood prompts (object: locality_ground_truth) is; only the known "
    "neighbourhood prompts are kept."
)


# ------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class KnownFactsConfig:
    """Which records of which file to test.

    Attributes:
        data: the source file (any format :func:`~sake_lens.evaluate.data.load_records` reads).
        records: ``(start, stop)``: the valid records at positions ``start <= i < stop`` of the
            file (0-based, half-open; positions count every record of the file, bad ones
            included). Exclusive with ``n``.
        n: the first ``n`` valid records. Neither: every record.
        batch_size: prompts per generation call.
    """

    data: str
    records: tuple[int, int] | None = None
    n: int | None = None
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.records is not None and self.n is not None:
            raise DataError(
                "Give either records=(start, stop) (--records A:B) or n (--n N), not both."
            )
        if self.n is not None and (isinstance(self.n, bool) or self.n < 1):
            raise DataError(f"n (--n) must be a whole number >= 1, got {self.n!r}.")
        if self.records is not None:
            start, stop = self.records
            if start < 0 or stop <= start:
                raise DataError(
                    f"records (--records) must be start:stop with 0 <= start < stop, got "
                    f"{start}:{stop}."
                )
        if self.batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {self.batch_size}.")

    def selection(self) -> dict[str, Any]:
        """The selection as recorded in the manifest."""
        if self.records is not None:
            return {"records": f"{self.records[0]}:{self.records[1]}"}
        if self.n is not None:
            return {"n": self.n}
        return {"all": True}


def parse_records_range(text: str) -> tuple[int, int]:
    """``"A:B"`` as ``(A, B)`` with ``0 <= A < B``.

    Raises:
        DataError: not two whole numbers separated by a colon, or not ``A < B``.
    """
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = int(parts[0]), int(parts[1])
    except ValueError:
        raise DataError(
            f"--records must be START:STOP, two whole numbers (0-based, STOP excluded), e.g. "
            f"--records 0:100; got {text!r}."
        ) from None
    if start < 0 or stop <= start:
        raise DataError(
            f"--records {text}: need 0 <= START < STOP (0-based positions, STOP excluded), e.g. "
            f"--records {max(start, 0)}:{max(start, 0) + 100}."
        )
    return start, stop


def check_output_path(out: str | Path, data: str | Path) -> Path:
    """Check that a known-fact set (or a ripple suite) can be written to ``out``; return it.

    Raises:
        DataError: ``out`` is a directory, its directory is missing or not writable, it is the
            data file itself, or its suffix would make it unreadable as JSON.
    """
    path = Path(out)
    if str(out).endswith(("/", os.sep)) or path.is_dir():
        raise DataError(f"--out {str(out)!r} is a directory; give a file name such as known.json.")
    parent = path.parent
    if not parent.is_dir():
        raise DataError(
            f"--out {str(out)!r}: the directory {str(parent)!r} does not exist; create it first."
        )
    if not os.access(parent, os.W_OK):
        raise DataError(f"--out {str(out)!r}: the directory {str(parent)!r} is not writable.")
    if path.suffix.casefold() in (".jsonl", ".yaml", ".yml"):
        raise DataError(
            f"--out {str(out)!r}: the output is one JSON object; give a .json file name."
        )
    same = path.resolve() == Path(data).resolve()
    if not same and path.exists() and Path(data).exists():
        same = os.path.samefile(path, data)
    if same:
        raise DataError(f"--out {str(out)!r} is the --data file; write the output to a new file.")
    return path


# ----------------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """The selected valid records of a file, with their raw entries and positions."""

    records: list[EvalRecord]
    raw: list[Mapping[str, Any]]
    positions: list[int]
    errors: list[str] = field(default_factory=list)
    path: str = ""
    sha256: str = ""
    n_file: int = 0


def select_records(config: KnownFactsConfig) -> Selection:
    """Read ``config.data`` and pick the records ``config`` asks for (no model needed).

    Bad records are skipped with a message each in :attr:`Selection.errors`, as
    :func:`~sake_lens.evaluate.data.load_records` does; so are later duplicates of a case id
    within the selection.

    Raises:
        DataError: the file cannot be read, ``records`` reaches past its end, or nothing valid
            is selected.
    """
    path = Path(config.data)
    if path.is_dir():
        raise DataError(f"--data {config.data!r} is a directory; give a CounterFact JSON file.")
    raw = _read_raw(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    n_file = len(raw)
    start, stop = 0, n_file
    if config.records is not None:
        start, stop = config.records
        if stop > n_file:
            raise DataError(
                f"--records {start}:{stop} reaches past the end of {path.name!r}, which holds "
                f"{n_file} records (positions 0:{n_file})."
            )
    sel = Selection([], [], [], [], str(path), digest, n_file)
    seen: set[str] = set()
    for position in range(start, stop):
        if config.n is not None and len(sel.records) >= config.n:
            break
        item = raw[position]
        try:
            record = parse_record(item, position)
        except DataError as exc:
            sel.errors.append(str(exc))
            continue
        if record.case_id in seen:
            sel.errors.append(
                f"record {position} (case_id {record.case_id}): duplicate case_id; skipped."
            )
            continue
        seen.add(record.case_id)
        sel.records.append(record)
        sel.raw.append(item)
        sel.positions.append(position)
    if not sel.records:
        where = f"records {start}:{stop} of " if config.records is not None else ""
        raise DataError(
            f"No valid record in {where}{path.name!r} ({len(sel.errors)} bad); "
            + (sel.errors[0] if sel.errors else "the file holds no records.")
        )
    return sel


# ------------------------------------------------------------------------------------ criterion
def produces_object(continuation: str, obj: str) -> bool:
    """Whether a decoded greedy continuation says ``obj`` as a whole word, first.

    Leading whitespace is stripped; the comparison is case-sensitive after Unicode NFC
    normalisation; the character after the object, if any, must not be a letter or a digit.

    Example:
        >>> produces_object(" Paris, the capital", "Paris"), produces_object(" Parisian", "Paris")
        (True, False)
    """
    text = unicodedata.normalize("NFC", continuation).lstrip()
    target = unicodedata.normalize("NFC", obj).strip()
    if not target or not text.startswith(target):
        return False
    return len(text) == len(target) or not text[len(target)].isalnum()


def _n_tokens(model: Any, text: str) -> int:
    return len(model.tokenizer.encode(text, add_special_tokens=False))


def _known(
    model: Any,
    items: Sequence[tuple[str, str]],
    *,
    batch_size: int,
    progress: bool | None,
) -> list[bool]:
    """For each ``(prompt, object)``: does the model's greedy continuation produce the object?

    Prompts are generated once per (prompt, token budget), grouped by budget and sorted by
    prompt length so that each batch pads little.
    """
    budgets = [_n_tokens(model, " " + obj.strip()) + EXTRA_TOKENS for _, obj in items]
    jobs = sorted({(budget, prompt) for (prompt, _), budget in zip(items, budgets)})
    lengths = {prompt: _n_tokens(model, prompt) for _, prompt in jobs}
    jobs.sort(key=lambda job: (job[0], lengths[job[1]], job[1]))
    continuations: dict[tuple[int, str], str] = {}
    bar = tqdm(
        total=len(jobs),
        desc="known facts",
        unit="prompt",
        disable=None if progress is None else not progress,
        leave=False,
    )
    try:
        i = 0
        while i < len(jobs):
            budget = jobs[i][0]
            batch = [jobs[i]]
            i += 1
            while i < len(jobs) and len(batch) < batch_size and jobs[i][0] == budget:
                batch.append(jobs[i])
                i += 1
            texts = generate(model, [p for _, p in batch], max_new_tokens=budget)
            for job, text in zip(batch, texts, strict=True):
                continuations[job] = text
            bar.update(len(batch))
    finally:
        bar.close()
    return [
        produces_object(continuations[(budget, prompt)], obj)
        for (prompt, obj), budget in zip(items, budgets)
    ]


# ----------------------------------------------------------------------------------- the build
def _case_id(raw: Mapping[str, Any], record: EvalRecord) -> Any:
    """The record's id as written in the source (an int stays an int) when it reads back."""
    for key in ("case_id", "id"):
        value = raw.get(key)
        if value is not None and str(value) == record.case_id and not isinstance(value, bool):
            return value
    return record.case_id


def _output_record(
    record: EvalRecord,
    raw: Mapping[str, Any],
    position: int,
    known_edit: bool,
    neighbours: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    request = record.request
    return {
        "case_id": _case_id(raw, record),
        "subject": request.subject,
        "prompt": request.text,
        "target_new": request.new,
        "ground_truth": request.old,
        "rephrase_prompt": list(record.paraphrase_prompts),
        "locality_prompt": [p for p, _ in neighbours],
        "locality_ground_truth": [a for _, a in neighbours],
        "known_edit": known_edit,
        "source_position": position,
    }


def build_known_facts(
    model: Any,
    config: KnownFactsConfig,
    *,
    selection: Selection | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Test every selected record on ``model``; return the known-fact set as a JSON object.

    Args:
        model: the model whose knowledge is tested (:func:`sake_lens.load_model`).
        config: the data file and which of its records.
        selection: the records, when :func:`select_records` already read them.
        progress: show a progress bar (None: only on a terminal).

    Returns:
        ``{"format", "format_version", "manifest", "records"}``; see the module docstring.
    """
    sel = selection if selection is not None else select_records(config)
    items: list[tuple[str, str]] = []
    for record in sel.records:
        items.append((record.request.text, record.request.old))
        items.extend(zip(record.neighborhood_prompts, record.neighborhood_answers))
    known = iter(_known(model, items, batch_size=config.batch_size, progress=progress))

    kept: list[dict[str, Any]] = []
    n_neighbours = n_neighbours_kept = n_known_edit = 0
    for record, raw, position in zip(sel.records, sel.raw, sel.positions):
        known_edit = next(known)
        pairs = list(zip(record.neighborhood_prompts, record.neighborhood_answers))
        neighbours = [pair for pair in pairs if next(known)]
        n_neighbours += len(pairs)
        if known_edit or neighbours:
            kept.append(_output_record(record, raw, position, known_edit, neighbours))
            n_known_edit += known_edit
            n_neighbours_kept += len(neighbours)
    manifest = {
        "model_id": get_model_id(model),
        "prepend_bos": bos_convention(model),
        "sake_lens_version": __version__,
        "criteria": CRITERIA,
        "source": {"file": Path(sel.path).name, "sha256": sel.sha256},
        "selection": config.selection(),
        "counts": {
            "records_read": len(sel.records),
            "records_skipped": len(sel.errors),
            "records_kept": len(kept),
            "known_edit_prompts": n_known_edit,
            "neighbourhood_prompts_read": n_neighbours,
            "neighbourhood_prompts_kept": n_neighbours_kept,
        },
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest": manifest,
        "records": kept,
    }


def write_known_facts(result: Mapping[str, Any], out: str | Path) -> Path:
    """Write a known-fact set atomically (a temporary file in the same directory, then
    ``os.replace``); return the path."""
    path = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        chmod_like_new_file(tmp)  # mkstemp creates 0600; a data file is shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- model check
def _load_json(path: Path) -> Any:
    if path.suffix.casefold() in (".jsonl", ".yaml", ".yml"):
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # not a known-fact set; reading the records reports the problem


def check_known_facts_model(data: str | Path | Any, model: Any) -> dict[str, Any] | None:
    """Refuse a known-fact set built for another model.

    Args:
        data: a data file's path, or its already-loaded JSON.
        model: the model about to be evaluated.

    Returns:
        The set's manifest, or None when ``data`` is not a known-fact set (any other data).

    Raises:
        DataError: ``data`` is a known-fact set of another model (the message names both model
            ids and the command that builds a set for this model), of a newer format, or
            without a manifest.
    """
    name = "the data"
    if isinstance(data, (str, Path)):
        name = repr(Path(data).name)
        data = _load_json(Path(data))
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        return None
    manifest = data.get("manifest")
    source = manifest.get("source") if isinstance(manifest, Mapping) else None
    src = source.get("file") if isinstance(source, Mapping) else None
    return check_built_for(
        data,
        model,
        name=name,
        what="a known-fact set",
        version=FORMAT_VERSION,
        rebuild="sake-lens known-facts --data SRC --out NEW",
        build=f"sake-lens known-facts --data {src or 'SRC'} --out NEW",
    )


def check_built_for(
    data: Mapping[str, Any],
    model: Any,
    *,
    name: str,
    what: str,
    version: int,
    rebuild: str,
    build: str,
) -> dict[str, Any]:
    """Refuse a data set built from another model's knowledge; return its manifest.

    Args:
        data: the loaded set (``format_version`` and ``manifest`` with ``model_id``).
        model: the model about to be evaluated.
        name: how messages name the data; ``what``: what it is ("a known-fact set").
        version: the newest format version this sake_lens reads.
        rebuild: the command that rebuilds the set; ``build``: the one that builds it for
            this model (``--model`` added in the message).

    Raises:
        DataError: no manifest naming the model, a newer format, or another model.
    """
    manifest = data.get("manifest")
    if not isinstance(manifest, Mapping) or not manifest.get("model_id"):
        raise DataError(
            f"{name} is {what} without a manifest naming its model; rebuild it with {rebuild}."
        )
    found = data.get("format_version")
    if not isinstance(found, int) or found > version:
        raise DataError(
            f"{name} is {what} of format version {found!r}; this sake_lens "
            f"({__version__}) reads version {version}: upgrade sake_lens or rebuild it "
            f"with {rebuild}."
        )
    built_for, current = str(manifest["model_id"]), get_model_id(model)
    if built_for != current:
        raise DataError(
            f"{name} is {what} built for model {built_for!r}, but the model is "
            f"{current!r} (which facts a model knows depends on the model); build one for "
            f"this model with {build} (with the same --model as this run)."
        )
    return dict(manifest)
