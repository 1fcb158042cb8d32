"""No leakage: prompts used to *fit* an edit never include the prompts used to *evaluate* it.

For a CounterFact record the evaluation prompts are its rephrase (paraphrase) prompts, which
measure generalisation, and its locality (neighbourhood) prompts, which measure specificity;
the ROME format also has attribute and generation prompts. :func:`fitting_prompts` builds the
prompts for fitting while excluding all of them, compared after normalisation and with noisy
prefixes removed (:func:`~sake_lens.prompts.text.comparison_keys`), and then checks the result
once more (:func:`check_no_leakage`).

Both record formats are read: EasyEdit's flat one (``prompt, subject, target_new,
ground_truth, rephrase_prompt, locality_prompt, ...``) and the original ROME one
(``requested_rewrite``, ``paraphrase_prompts``, ``neighborhood_prompts``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import DataError, DistributionError
from .paraphrase import ParaphraseGenerator, ParaphraseSet, TemplateBankGenerator
from .request import EditRequest
from .text import comparison_keys

__all__ = [
    "record_request",
    "evaluation_prompts",
    "find_leaks",
    "check_no_leakage",
    "fitting_prompts",
]

_FLAT_EVAL = ("rephrase_prompt", "rephrase_prompts", "locality_prompt", "locality_prompts")
_ROME_EVAL = (
    "paraphrase_prompts",
    "neighborhood_prompts",
    "attribute_prompts",
    "generation_prompts",
)


def _text(value: Any) -> str:
    if isinstance(value, Mapping):  # ROME objects: {"str": "...", "id": "..."}
        value = value.get("str", value.get("text"))
    if not isinstance(value, str):
        raise DataError(f"Expected text, got {type(value).__name__}: {value!r}.")
    return value


def record_request(record: Mapping[str, Any]) -> EditRequest:
    """The edit request of a CounterFact record (EasyEdit flat or ROME format).

    Returns:
        The request.
    """
    try:
        if "requested_rewrite" in record:
            rw = record["requested_rewrite"]
            return EditRequest(
                rw["subject"], rw["prompt"], _text(rw["target_true"]), _text(rw["target_new"])
            )
        return EditRequest(
            record["subject"],
            record["prompt"],
            _text(record["ground_truth"]),
            _text(record["target_new"]),
        )
    except KeyError as exc:
        raise DataError(
            f"The record {record.get('case_id', '?')} lacks {exc}; expected EasyEdit's flat "
            "CounterFact format (subject, prompt, ground_truth, target_new, ...) or ROME's "
            "(requested_rewrite, paraphrase_prompts, neighborhood_prompts)."
        ) from exc


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [_text(value)] if ("str" in value or "text" in value) else []
    if isinstance(value, Iterable):
        out: list[str] = []
        for item in value:
            out.extend(_as_list(item))
        return out
    raise DataError(f"Expected a prompt or a list of prompts, got {type(value).__name__}.")


def evaluation_prompts(record: Mapping[str, Any]) -> list[str]:
    """Every prompt of ``record`` used for evaluation other than the edit prompt itself.

    Returns:
        The prompts.
    """
    keys = _ROME_EVAL if "requested_rewrite" in record else _FLAT_EVAL
    prompts: list[str] = []
    for key in keys:
        prompts.extend(p for p in _as_list(record.get(key)) if p.strip())
    return prompts


def find_leaks(prompts: Iterable[str], record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(fitting prompt, evaluation prompt) pairs that are the same prompt after normalisation.

    Returns:
        The leaking pairs; empty when none.
    """
    subject = record_request(record).subject
    evaluation = {key: e for e in evaluation_prompts(record) for key in comparison_keys(e, subject)}
    leaks = []
    for prompt in prompts:
        for key in comparison_keys(prompt, subject):
            if key in evaluation:
                leaks.append((prompt, evaluation[key]))
                break
    return leaks


def check_no_leakage(prompts: Iterable[str], record: Mapping[str, Any]) -> None:
    """Raise :class:`DistributionError` if any prompt is one of the record's evaluation prompts."""
    leaks = find_leaks(prompts, record)
    if leaks:
        shown = "; ".join(f"{p!r} = {e!r}" for p, e in leaks[:3])
        raise DistributionError(
            f"{len(leaks)} fitting prompt(s) of record {record.get('case_id', '?')} are evaluation "
            f"prompts: {shown}. Build them with fitting_prompts(record), or pass "
            "exclude=evaluation_prompts(record) to the generator."
        )


def fitting_prompts(
    record: Mapping[str, Any],
    n: int = 50,
    seed: int = 0,
    *,
    generator: ParaphraseGenerator | None = None,
) -> ParaphraseSet:
    """Prompts to fit the edit of ``record``, none of which is an evaluation prompt.

    The edit prompt itself is included (it is what efficacy is measured on, as in the paper);
    rephrase and locality prompts are excluded.

    Returns:
        The prompts, with those dropped as leaks.

    Example:
        >>> rec = {"subject": "Paul", "prompt": "{} speaks", "ground_truth": "French",
        ...        "target_new": "Dutch", "rephrase_prompt": "It rained. Paul is fluent in",
        ...        "locality_prompt": "Anna speaks"}
        >>> ps = fitting_prompts(rec, n=10)
        >>> "Paul is fluent in" in ps.prompts
        False
    """
    request = record_request(record)
    generator = TemplateBankGenerator() if generator is None else generator
    result = generator.generate(request, n, seed, exclude=evaluation_prompts(record))
    check_no_leakage(result.prompts, record)
    return result
