"""``sake-lens sweep``: the layer sweep of :func:`sake_lens.analysis.sweep.layer_sweep`, with
the same defaults (:class:`~sake_lens.analysis.sweep_config.SweepConfig` and
:class:`~sake_lens.steer.edit.EditConfig`): options only override what they name."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from ..analysis.sweep_config import SweepConfig, SweepConfigError
from ..errors import SakeLensError, SiteError
from ..steer.edit import EditConfig
from .common import (
    BATCH_SIZE,
    PARAPHRASES,
    SEED,
    OptionValueError,
    add_int_option,
    add_model_args,
    check_output_folder,
    load_from_args,
    markdown_table,
)

# The largest layer number --layers may name: above any model's depth, so a typo such as
# '0-100000000' is refused at once instead of being expanded.
MAX_LAYER = 1023


def _check_layer_numbers(text: str, numbers: list[int]) -> None:
    """Refuse layer numbers that no model has (one line, naming the number and the range)."""
    big = [x for x in numbers if abs(x) > MAX_LAYER]
    if big:
        raise SiteError(
            f"bad --layers {text!r}: layer {big[0]} is out of range: layer numbers must be "
            f">= -{MAX_LAYER} and <= {MAX_LAYER}; use the model's layers (`sake-lens info` "
            "shows n_layers), e.g. '0,5,10-15,-1'."
        )


def parse_layers(text: str | None, n_layers: int) -> list[int] | None:
    """``"all"``/None -> None (every layer); ``"0,5,10-12"`` -> [0, 5, 10, 11, 12]; a negative
    number counts from the end (``-1`` is the last layer). Numbers beyond ``MAX_LAYER`` and
    backward spans (``"12-5"``) raise :class:`SiteError`."""
    if text is None or text.strip().lower() == "all":
        return None
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        single = re.fullmatch(r"-?\d+", part)
        span = re.fullmatch(r"(\d+)-(\d+)", part)
        if single:
            x = int(part)
            _check_layer_numbers(text, [x])
            out.append(x + n_layers if x < 0 else x)
        elif span:
            lo, hi = int(span.group(1)), int(span.group(2))
            _check_layer_numbers(text, [lo, hi])
            if lo > hi:
                raise SiteError(
                    f"bad --layers {text!r}: the span {part!r} runs backwards; write it as "
                    f"'{hi}-{lo}'."
                )
            out += range(lo, hi + 1)
        elif part:
            raise SiteError(
                f"bad --layers {text!r}: use 'all' or numbers and ranges such as '0,5,10-15,-1'."
            )
    return sorted(set(out))


def parse_floats(
    flag: str, text: str, lo: float, hi: float, *, open_lo: bool = True
) -> tuple[float, ...]:
    """``"1,2.5,4"`` -> (1.0, 2.5, 4.0) for ``flag``; each value in (lo, hi] (or [lo, hi]).

    Raises:
        OptionValueError: an empty list, a value that is not a number, or one out of range
            (one line, naming the flag, the value and the fix).
    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise OptionValueError(
            f"bad {flag} {text!r}: give one number or a comma-separated list such as '1,2.5,4'."
        )
    out: list[float] = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise OptionValueError(
                f"bad {flag} {text!r}: {part!r} is not a number; use e.g. '1,2.5,4'."
            ) from None
        low_ok = value > lo if open_lo else value >= lo
        if not (math.isfinite(value) and low_ok and value <= hi):
            bound = f"> {lo:g}" if open_lo else f">= {lo:g}"
            raise OptionValueError(
                f"bad {flag} {text!r}: {part} is out of range; pass values {bound} and <= {hi:g}."
            )
        out.append(value)
    return tuple(dict.fromkeys(out))


def _float_list(flag: str, lo: float, hi: float) -> Any:
    def parse(text: str) -> tuple[float, ...]:
        return parse_floats(flag, text, lo, hi)

    parse.__name__ = "list"
    return parse


#: The largest regulariser --reg accepts (relative to the data's variance; 1e6 is a mean shift).
MAX_REG = 1e6


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="fit several edits at every layer (and alpha, reg), measure efficacy, "
        "generalisation and locality with the gate on and off, recommend a setting",
    )
    p.add_argument("--prompt", required=True, help="template with {} for the subject")
    p.add_argument("--subject", required=True)
    p.add_argument("--old", required=True, help="the object the model says now")
    p.add_argument("--new", required=True, help="the object it should say")
    p.add_argument(
        "--fast",
        action="store_true",
        help="the small sweep (also SAKE_LENS_FAST=1): fewer edits, sites, alphas, prompts",
    )
    p.add_argument(
        "--layers", default=None, help="'all' or e.g. '0,5,10-15,-1' (default: the sweep's)"
    )
    p.add_argument(
        "--site-kind",
        action="append",
        default=[],
        choices=["resid_post", "attn_out", "mlp_out"],
        help="site kinds per layer (repeatable; default resid_post)",
    )
    p.add_argument("--no-final", action="store_true", help="do not sweep ln_final.hook_out")
    p.add_argument(
        "--alpha",
        type=_float_list("--alpha", 0.0, 4.0),
        default=None,
        help="steering strengths, comma-separated, each in (0, 4] (default: "
        + ",".join(f"{a:g}" for a in SweepConfig().alphas)
        + ")",
    )
    p.add_argument(
        "--reg",
        type=_float_list("--reg", 0.0, MAX_REG),
        default=None,
        help=f"regularisers, comma-separated, each > 0 (default: {EditConfig().reg:g})",
    )
    add_int_option(
        p, "--n-edits", EDITS, default=None, help="edits: this one, then default companions"
    )
    p.add_argument(
        "--paraphrase",
        action="append",
        default=[],
        metavar="P",
        help="fitting paraphrase of this edit (repeatable; default: the template bank)",
    )
    p.add_argument(
        "--held-out",
        action="append",
        default=[],
        metavar="P",
        help="held-out paraphrase of this edit (repeatable)",
    )
    p.add_argument(
        "--neighbour",
        action="append",
        default=[],
        metavar="P",
        help="other-subject prompt this edit must not change (repeatable)",
    )
    add_int_option(
        p, "--n-paraphrases", PARAPHRASES, default=None, help="fitting paraphrases per edit"
    )
    add_int_option(
        p, "--n-held-out", PARAPHRASES, default=None, help="held-out paraphrases per edit"
    )
    add_int_option(
        p, "--n-neighbours", PARAPHRASES, default=None, help="other-subject prompts per edit"
    )
    add_int_option(
        p, "--n-relation", PARAPHRASES, default=None, help="same-subject prompts per edit"
    )
    p.add_argument("--map", default=None, help="gaussian, diagonal or mean-shift")
    add_int_option(p, "--batch-size", BATCH_SIZE, default=None, help="rows per forward pass")
    add_int_option(p, "--seed", SEED, default=None, help="draws the prompts and the bootstrap")
    p.add_argument("--title", default=None, help="title of the HTML page")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="print the sweep as JSON")
    add_model_args(p)
    p.set_defaults(func=run)


#: --n-edits range: the bundled companions hold 12 edits.
EDITS = (1, 12)

#: Command-line option -> SweepConfig field, for the options that override the sweep's own.
_SWEEP_OPTIONS = {
    "alpha": "alphas",
    "reg": "regs",
    "n_edits": "n_edits",
    "n_paraphrases": "n_paraphrases",
    "n_held_out": "n_held_out",
    "n_neighbours": "n_neighbours",
    "n_relation": "n_relation",
    "seed": "seed",
}


def sweep_config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The :class:`SweepConfig` of a command line: ``SweepConfig.default()`` (or its fast
    variant) with the options given; layers are resolved later, against the model."""
    changes: dict[str, Any] = {
        field: getattr(args, opt)
        for opt, field in _SWEEP_OPTIONS.items()
        if getattr(args, opt) is not None
    }
    if args.site_kind:
        changes["site_kinds"] = tuple(args.site_kind)
    if args.no_final:
        changes["include_final"] = False
    try:
        return SweepConfig.default(fast=True if args.fast else None, **changes)
    except SweepConfigError as exc:
        raise SakeLensError(f"{str(exc).rstrip('.')}; correct the sweep options.") from None


def edit_config_from_args(args: argparse.Namespace) -> EditConfig:
    """``EditConfig()`` with --map and --batch-size when given (alpha and reg are swept)."""
    changes: dict[str, Any] = {}
    if args.map is not None:
        changes["map_kind"] = args.map
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    try:
        return EditConfig(**changes)
    except ValueError as exc:
        raise SakeLensError(f"{str(exc).rstrip('.')}; correct --map.") from None


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..analysis.report import sweep_page
    from ..analysis.sweep import layer_sweep
    from ..analysis.sweep_plot import plot_sweep, plot_sweep_heatmap
    from ..prompts.distributions import check_paraphrases
    from ..prompts.request import EditRequest

    # The request, the paraphrases, the map and sweep settings, --layers and --out are checked
    # before the model is loaded.
    request = EditRequest(args.subject, args.prompt, args.old, args.new)
    check_paraphrases(request, args.paraphrase)
    config = sweep_config_from_args(args)
    edit_config = edit_config_from_args(args)
    parse_layers(args.layers, MAX_LAYER + 1)
    check_output_folder("--out", args.out)
    model = load_from_args(args)
    if args.layers is not None:
        layers = parse_layers(args.layers, int(model.cfg.n_layers))
        config = dataclasses.replace(config, layers=None if layers is None else tuple(layers))
    result = layer_sweep(
        model,
        request,
        config,
        edit_config=edit_config,
        paraphrases=args.paraphrase or None,
        held_out=args.held_out or None,
        neighbours=args.neighbour or None,
    )
    out = Path(args.out)
    result.save(out)
    page = sweep_page(result, model=model, title=args.title)
    page.save(out / "page.json")
    page.write_html(out / "sweep.html")
    written = ["sweep.json", "page.json", "sweep.html"]
    try:
        import kaleido  # noqa: F401

        plot_sweep(result).write_image(str(out / "sweep.png"), width=1100, height=1100)
        plot_sweep_heatmap(result).write_image(str(out / "heatmap.png"), width=1100)
        written += ["sweep.png", "heatmap.png"]
    except Exception:  # kaleido missing or without a browser: PNG is optional
        pass
    if args.json:
        from .common import print_json

        print_json(result.to_dict())
        return 0
    rec = result.recommendation
    rows = [
        [
            s.label,
            s["score_on"].text(2),
            f"{s['efficacy_on'].value:.2f}",
            f"{s['generalisation_on'].value:.2f}",
            f"{s['locality_on'].value:.2f}",
            s["locality_off"].text(2),
            f"{s.cond_map:.3g}",
            "<-" if s.candidate == rec.candidate else ("tied" if s.candidate in rec.tied else ""),
        ]
        for s in result.at()
    ]
    print(f"at alpha {rec.alpha:g}, reg {rec.reg:g} (gate on: the default fact gate):")
    print(
        markdown_table(
            [
                "site",
                "score (on)",
                "efficacy",
                "held-out",
                "locality",
                "locality (off)",
                "cond",
                "",
            ],
            rows,
        )
    )
    print(
        f"\nrecommended: {rec.site} at alpha {rec.alpha:g}, reg {rec.reg:g} "
        f"(decided by {rec.decided_by})\nwhy: {rec.reason}\nrule: {rec.rule}"
    )
    print(
        f"swept {len(result.requests)} edits x {len(result.summaries)} settings in "
        f"{result.timings['total_s']:.1f} s; wrote " + ", ".join(str(out / w) for w in written)
    )
    return 0
