"""``sake-lens eval``: evaluate a method on CounterFact-style data; print a markdown table.

Records are the first ``--n`` valid ones in file order (so runs of different methods compare the
same records); ``--seed`` drives the bootstrap intervals and every sampled choice. With
``--out``, per-record outcomes are written as they finish and a rerun with the same settings
resumes from the file.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    BATCH_SIZE,
    CHUNK_SIZE,
    PARAPHRASES,
    RECORDS,
    SEED,
    add_int_option,
    add_model_args,
    load_from_args,
    markdown_table,
    print_json,
)


def _records_range(text: str) -> tuple[int, int]:
    """``A:B`` -> (A, B) for ``--records`` (argparse type; one parser with known-facts)."""
    from ..errors import DataError
    from ..evaluate.known_facts import parse_records_range

    try:
        return parse_records_range(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    from ..evaluate.methods import METHODS, MODES

    p = sub.add_parser(
        "eval",
        help="evaluate an editing method on CounterFact-style data",
        description="Evaluate an editing method on CounterFact-style data and print a markdown "
        "table. Records are the first --n valid ones in file order (runs of different methods "
        "see the same records); --seed drives the bootstrap intervals and every sampled choice. "
        "With --out, outcomes are written as records finish and a rerun with the same settings "
        "resumes from the file.",
    )
    p.add_argument("--data", required=True, metavar="PATH", help="CounterFact JSON or a YAML list")
    which = p.add_mutually_exclusive_group()
    add_int_option(which, "--n", RECORDS, default=None, help="first N valid records (default: all)")
    which.add_argument(
        "--records",
        type=_records_range,
        default=None,
        metavar="A:B",
        help="the records at positions A to B-1 of the data file (0-based, half-open)",
    )
    p.add_argument(
        "--split",
        choices=("dev", "test"),
        default=None,
        help="only the records of this split (data that marks splits: a ripple suite)",
    )
    p.add_argument("--method", choices=METHODS, default="sake")
    p.add_argument(
        "--mode", choices=MODES, default="single", help="each edit alone, or all at once"
    )
    add_int_option(p, "--seed", SEED, default=0, help="bootstrap and sampled choices")
    p.add_argument("--out", metavar="FILE.json", help="write (and resume from) this JSON file")
    add_int_option(
        p, "--chunk-size", CHUNK_SIZE, default=8, help="records fitted and scored together"
    )
    add_int_option(p, "--batch-size", BATCH_SIZE, default=32, help="rows per forward pass")
    p.add_argument("--no-generation", action="store_true", help="skip the 20-token generations")
    p.add_argument(
        "--breakdown", action="store_true", help="also show same-subject locality per relation"
    )
    p.add_argument("--json", action="store_true", help="print the aggregates as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ab = p.add_argument_group(
        "ablations", "change a fitted method's settings (recorded in the output JSON)"
    )
    add_int_option(
        ab, "--paraphrases", PARAPHRASES, default=None, metavar="N", help="paraphrases per edit"
    )
    ab.add_argument(
        "--edit-config",
        default=None,
        metavar="JSON",
        help='EditConfig fields, e.g. \'{"alpha": 1.0, "distributions": {"target_templates": '
        '["fact"]}}\'',
    )
    ab.add_argument(
        "--gate-config",
        default=None,
        metavar="JSON",
        help="GateConfig fields, e.g. '{\"fpr\": 0.05}'",
    )
    ab.add_argument(
        "--implications",
        action="store_true",
        help="also fit each edit's implied edits (capital, language... of a new country), "
        "served behind their own gates",
    )
    add_model_args(p)
    p.set_defaults(func=run)


def _json_object(text: str | None, flag: str) -> dict[str, Any]:
    import json

    from ..errors import SakeLensError

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SakeLensError(
            f"{flag} is not valid JSON ({exc}): {text!r}; write a JSON object such as "
            "'{\"alpha\": 1.0}' (keys and strings in double quotes)."
        ) from exc
    if not isinstance(value, dict):
        raise SakeLensError(
            f"{flag} must be a JSON object such as '{{\"alpha\": 1.0}}', got {text!r}."
        )
    return value


def config_from_args(args: argparse.Namespace) -> Any:
    from ..errors import SakeLensError
    from ..evaluate.methods import MethodOverrides
    from ..evaluate.runner import EvalConfig

    try:
        overrides = MethodOverrides(
            n_paraphrases=args.paraphrases,
            edit=_json_object(args.edit_config, "--edit-config"),
            gate=_json_object(args.gate_config, "--gate-config"),
            implications=args.implications,
        )
    except (TypeError, ValueError) as exc:
        raise SakeLensError(
            f"Bad ablation settings: {str(exc).rstrip('.')}; correct --edit-config or "
            "--gate-config."
        ) from exc
    return EvalConfig(
        data=args.data,
        n=args.n,
        records=args.records,
        method=args.method,
        mode=args.mode,
        seed=args.seed,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        generation=not args.no_generation,
        overrides=overrides,
        split=args.split,
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluate.runner import run_evaluation

    try:
        config = config_from_args(args)
    except ValueError as exc:
        from ..errors import DataError

        raise DataError(str(exc)) from exc
    from ..evaluate.data import load_records
    from ..evaluate.runner import check_output, no_valid_record

    # The data and the output file are checked before the model loads.
    loaded = load_records(config.data, n=config.n, records=config.records, split=config.split)
    if not loaded.records:
        raise no_valid_record(config.data, loaded)
    if args.out:
        check_output(args.out)
    from ..evaluate.distributed import shard_from_environment

    shard = shard_from_environment(getattr(args, "device", None))  # under torchrun
    if shard is not None and not args.out:
        from ..errors import DataError

        raise DataError(
            "A data-parallel evaluation (torchrun) needs --out FILE.json to merge into."
        )
    model = load_from_args(args)
    leader = shard is None or shard.leader
    result = run_evaluation(
        model, config, out=args.out, progress=leader and not args.no_progress, shard=shard
    )
    if not leader:  # rank 0 prints the merged results
        return 0
    if args.json:
        print_json({"config": result["config"], "aggregates": result["aggregates"]})
        return 0
    from ..evaluate.runner import results_table

    failed = result["n_edit_failed"]
    sel = config.records
    which = f"records {sel[0]}:{sel[1]}" if sel else f"{len(result['records'])} records"
    print(
        f"{config.method} ({config.mode} mode), {which} of {config.data} "
        f"({len(result['records'])} evaluated)"
        + (f", {failed} edits failed (scored unedited)" if failed else "")
    )
    if result["data"]["errors"]:
        print(f"{len(result['data']['errors'])} bad records skipped; see the JSON's data.errors")
    for group, names in result["metric_groups"].items():
        rows = results_table(result, names)
        if group == "ripple":
            counts = result["breakdowns"].get("ripple_probes", {})
            rows = [[*r, counts.get(r[0][len("ripple_") :], {}).get("probes", 0)] for r in rows]
            rows = [r for r in rows if r[3]]
            if rows:
                print("\nripple (n: records; probes: probes scored)\n")
                print(markdown_table(["metric", "mean", "95% CI", "n", "probes"], rows))
            continue
        if group == "cost":
            t = result["timings"]
            rows.append(["fit s / record", f"{t['mean_fit_s']:.2f}", "", len(result["records"])])
            rows.append(["eval s / record", f"{t['mean_eval_s']:.2f}", "", len(result["records"])])
        print(f"\n{group}\n")
        print(markdown_table(["metric", "mean", "95% CI", "n"], rows))
    if args.breakdown:
        for name, groups in result["breakdowns"].items():
            rows = [
                [key, *results_table({"aggregates": aggs}, ["locality_relation"])[0][1:]]
                for key, aggs in groups.items()
            ]
            print(f"\n{name.replace('_', ' ')} (next token unchanged)\n")
            print(markdown_table(["relation", "mean", "95% CI", "n"], rows))
    if args.out:
        print(f"\nwritten to {args.out}")
    return 0
