"""``sake-lens edit``: fit one edit and show greedy continuations before and after it."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from .common import (
    NEW_TOKENS,
    PARAPHRASES,
    SEED,
    OptionValueError,
    add_int_option,
    add_model_args,
    load_from_args,
    markdown_table,
    print_json,
)

log = logging.getLogger(__name__)


def check_old_object(model: Any, request: Any) -> str:
    """The unedited model's continuation of the edit prompt; warn when it lacks the old object
    (a wrong ``--old`` still gives an edit towards ``--new``, but the user should know)."""
    from ..evaluate.metrics import contains_object
    from ..steer.generation import generate

    n = len(model.tokenizer.encode(" " + request.old, add_special_tokens=False)) + 4
    said = str(generate(model, [request.text], max_new_tokens=n)[0])
    if not contains_object(said, request.old, request.subject):
        log.warning(
            "The unedited model does not say %r after %r; it says %r. The edit is fitted "
            "anyway and moves the model towards %r; check --old.",
            request.old,
            request.text,
            said.strip(),
            request.new,
        )
    return said


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="fit an edit and compare continuations before/after")
    p.add_argument("--prompt", required=True, help="template with {} for the subject")
    p.add_argument("--subject", required=True)
    p.add_argument("--old", required=True, help="the object the model says now")
    p.add_argument("--new", required=True, help="the object it should say")
    p.add_argument(
        "--paraphrase",
        action="append",
        default=[],
        metavar="P",
        help="a paraphrase of the prompt (repeatable; default: the relation template bank)",
    )
    add_int_option(p, "--n-paraphrases", PARAPHRASES, default=20, help="paraphrases from the bank")
    p.add_argument("--site", default=None, help="hook name (default: the library default)")
    p.add_argument("--probe", action="append", default=[], metavar="TEXT", help="repeatable")
    add_int_option(p, "--max-new-tokens", NEW_TOKENS, default=8, help="tokens generated per probe")
    add_int_option(p, "--seed", SEED, default=0, help="draws the paraphrases from the bank")
    p.add_argument(
        "--json", action="store_true", help="print a JSON list of {probe, before, after}"
    )
    p.add_argument("--save", metavar="DIR", help="add the edit to a registry directory")
    p.add_argument(
        "--edit-config",
        default=None,
        metavar="JSON",
        help='EditConfig fields, as in `sake-lens eval --edit-config`, e.g. \'{"distributions": '
        '{"target_templates": ["fact-twice", "repeat-3"], "min_purity": 0.2}}\'',
    )
    p.add_argument(
        "--implications",
        action="store_true",
        help="also fit the edit's implied edits (the capital, language... of a new country), "
        "each behind its own gate",
    )
    add_model_args(p)
    p.set_defaults(func=run)


def edit_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~sake_lens.steer.edit.EditConfig` of ``--edit-config``: the JSON is read
    and merged into the defaults exactly as ``sake-lens eval --edit-config`` does (one parser,
    :class:`~sake_lens.evaluate.methods.MethodOverrides`), so a setting means the same in both."""
    from ..errors import DistributionError
    from ..evaluate.methods import MethodOverrides
    from ..steer.edit import EditConfig
    from .eval import _json_object

    try:
        overrides = MethodOverrides(edit=_json_object(args.edit_config, "--edit-config"))
    except (TypeError, ValueError, DistributionError) as exc:
        text = str(exc).rstrip(".")
        raise OptionValueError(f"Bad --edit-config: {text}; correct --edit-config.") from exc
    return overrides.edit_config(EditConfig())


def check_probes(probes: list[str], example: str) -> None:
    """Every ``--probe`` is text to continue (found now, not after the fit)."""
    for probe in probes:
        if not probe.strip() or "\x00" in probe:
            raise OptionValueError(
                f"--probe {probe!r} is empty, only whitespace or holds a NUL character; give "
                f"the text to continue, e.g. --probe {example!r}."
            )


def check_save_dir(text: str) -> None:
    """``--save DIR`` can hold a registry: a directory (existing or creatable) that is writable
    and, when it already holds a registry, an undamaged one (found now, not after the fit)."""
    from ..registry.book import list_saved
    from ..registry.storage import MANIFEST

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise OptionValueError(
            f"--save {text!r} is a file, not a registry directory; give a directory that is new "
            "or holds a registry, e.g. --save edits/."
        )
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OptionValueError(
            f"--save {text!r}: {str(ancestor)!r} is a file, so no directory can be created "
            "under it; choose a path under a directory, e.g. --save edits/."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OptionValueError(
            f"--save {text!r}: the directory {str(ancestor)!r} is not writable; choose a "
            "writable place."
        )
    if (path / MANIFEST).exists():
        list_saved(path)  # a damaged manifest raises EditFileError naming the file and the fix


def _purity_advice(exc: Any, args: argparse.Namespace, config: Any) -> str:
    """The options of ``sake-lens edit`` that fix a refused purity, with values to try."""
    templates = ["fact-twice", "repeat-3"]
    dist: dict[str, Any] = {"target_templates": templates}
    lower = math.floor(exc.purity * 20) / 20
    if exc.n_kept >= 2 and 0 < lower < config.distributions.min_purity:
        dist["min_purity"] = lower
    example = json.dumps({"distributions": dist})
    # The retry drew twice the paraphrases already: suggest twice that again.
    more = min(4 * max(args.n_paraphrases, len(args.paraphrase)), PARAPHRASES[1])
    return (
        "Pass stronger target contexts (or, as a last resort, a lower bar) "
        f"with --edit-config '{example}', more paraphrases with --n-paraphrases {more} or "
        f"--paraphrase P, or check that --new {exc.new!r} is spelled as the model would "
        "continue the prompt."
    )


def build_edit(model: Any, args: argparse.Namespace) -> Any:
    from ..prompts.request import EditRequest
    from ..steer.edit import LowPurityError
    from ..steer.workflow import make_edit

    request = EditRequest(args.subject, args.prompt, args.old, args.new)
    config = edit_config_from_args(args)
    try:
        return make_edit(
            model,
            request,
            paraphrases=args.paraphrase or None,
            n_paraphrases=args.n_paraphrases,
            site=args.site,
            seed=args.seed,
            config=config,
            implications=args.implications,
            retry=True,
        )
    except LowPurityError as exc:
        raise LowPurityError(
            n_kept=exc.n_kept,
            n_total=exc.n_total,
            min_purity=exc.min_purity,
            new=exc.new,
            advice=_purity_advice(exc, args, config),
            retried=exc.retried,
        ) from exc


def check_args(args: argparse.Namespace) -> Any:
    """Every argument that can be checked without the model; return the edit request.

    A bad value is one line and exit status 2 before the model loads and long before the fit.
    """
    from ..prompts.distributions import check_paraphrases
    from ..prompts.request import EditRequest

    request = EditRequest(args.subject, args.prompt, args.old, args.new)
    check_paraphrases(request, args.paraphrase)
    check_probes(args.probe, request.text)
    edit_config_from_args(args)
    if args.save:
        check_save_dir(args.save)
    return request


def run(args: argparse.Namespace) -> int:
    from ..model.sites import resolve_site
    from ..registry.book import EditBook
    from ..steer.generation import check_context, generate

    request = check_args(args)  # before the model
    model = load_from_args(args)
    probes = args.probe or [request.text]
    check_context(model, probes, args.max_new_tokens, name="--probe", budget="--max-new-tokens")
    resolve_site(model, args.site or edit_config_from_args(args).site)  # before any fit
    check_old_object(model, request)
    edit = build_edit(model, args)
    before = generate(model, probes, max_new_tokens=args.max_new_tokens)
    gated = EditBook(model=model)  # the edit behind its calibrated scope gate
    gated.add(edit)
    with gated.steer(model):
        after = generate(model, probes, max_new_tokens=args.max_new_tokens)
    rows = [{"probe": p, "before": b, "after": a} for p, b, a in zip(probes, before, after)]
    if args.save:
        book = EditBook.open(args.save, model=model, create=True)
        book.add(edit)
        book.save()
    if args.json:
        print_json(rows)
    else:
        print(
            f"edit {edit.id}: {edit.request.text!r} {edit.request.old!r} -> {edit.request.new!r}"
            f" at {edit.site} (target purity {edit.purity:.0%}, {edit.n_source} source / "
            f"{edit.n_target} target samples)"
        )
        if edit.retry:
            print(
                f"retried after {edit.retry['reason']}: target templates "
                f"{', '.join(edit.retry['target_templates'])}, "
                f"{edit.retry['n_paraphrases']} paraphrases"
            )
        for x in edit.implied:
            print(f"implied edit {x.id}: {x.request.text!r} {x.request.old!r} -> {x.request.new!r}")
        print(markdown_table(["probe", "before", "after"], [list(r.values()) for r in rows]))
        if args.save:
            print(f"saved to {args.save}")
    return 0
