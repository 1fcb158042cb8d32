"""``sake-lens sweep``: fit an edit at every layer, measure it, recommend a layer, write figures."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ..errors import SakeLensError, SiteError
from .common import (
    BATCH_SIZE,
    PARAPHRASES,
    SEED,
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="fit an edit at every layer, measure efficacy/generalisation/specificity, "
        "recommend a layer",
    )
    p.add_argument("--prompt", required=True, help="template with {} for the subject")
    p.add_argument("--subject", required=True)
    p.add_argument("--old", required=True, help="the object the model says now")
    p.add_argument("--new", required=True, help="the object it should say")
    p.add_argument("--layers", default=None, help="'all' (default) or e.g. '0,5,10-15,-1'")
    p.add_argument(
        "--site-kind",
        action="append",
        default=[],
        choices=["resid_post", "attn_out", "mlp_out"],
        help="site kinds per layer (repeatable; default resid_post)",
    )
    p.add_argument("--no-final", action="store_true", help="do not sweep ln_final.hook_out")
    p.add_argument(
        "--paraphrase",
        action="append",
        default=[],
        metavar="P",
        help="fitting paraphrase (repeatable; default: the template bank)",
    )
    p.add_argument(
        "--held-out",
        action="append",
        default=[],
        metavar="P",
        help="held-out paraphrase for generalisation (repeatable)",
    )
    p.add_argument(
        "--neighbour",
        action="append",
        default=[],
        metavar="P",
        help="prompt the edit must not change (repeatable; default: other subjects)",
    )
    add_int_option(
        p, "--n-paraphrases", PARAPHRASES, default=40, help="fitting paraphrases from the bank"
    )
    add_int_option(
        p, "--n-held-out", PARAPHRASES, default=8, help="held-out paraphrases from the bank"
    )
    add_int_option(p, "--n-neighbours", PARAPHRASES, default=8, help="prompts about other subjects")
    p.add_argument("--map", default="gaussian", help="gaussian, diagonal or mean-shift")
    p.add_argument("--reg", type=float, default=1e-2)
    p.add_argument("--alpha", type=float, default=1.0)
    add_int_option(p, "--batch-size", BATCH_SIZE, default=32, help="rows per forward pass")
    add_int_option(p, "--seed", SEED, default=0, help="draws the prompts from the bank")
    p.add_argument("--title", default=None, help="title of the HTML page")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="print the sweep as JSON")
    add_model_args(p)
    p.set_defaults(func=run)


def build_prompts(args: argparse.Namespace, request: Any) -> tuple[list[str], list[str], list[str]]:
    from ..analysis.sweep import default_sweep_prompts
    from ..prompts.text import comparison_keys

    fit, held, near = default_sweep_prompts(
        request,
        n_paraphrases=args.n_paraphrases,
        n_held_out=args.n_held_out,
        n_neighbours=args.n_neighbours,
        seed=args.seed,
    )
    if args.paraphrase:
        fit = list(args.paraphrase)
        if not args.held_out:  # keep only bank held-outs unrelated to the given paraphrases
            keys = set().union(
                *(comparison_keys(request.fill(p), request.subject) for p in [*fit, request.text])
            )
            held = [h for h in held if not comparison_keys(h, request.subject) & keys]
    return fit, list(args.held_out) or held, list(args.neighbour) or near


def run(args: argparse.Namespace) -> int:
    from ..analysis.report import sweep_page
    from ..analysis.sweep import layer_sweep
    from ..analysis.sweep_plot import plot_sweep
    from ..prompts.distributions import check_paraphrases
    from ..prompts.request import EditRequest
    from ..steer.edit import EditConfig

    # The request, the paraphrases, the map settings, --layers and --out are checked before
    # the model is loaded.
    request = EditRequest(args.subject, args.prompt, args.old, args.new)
    check_paraphrases(request, args.paraphrase)
    try:
        config = EditConfig(
            map_kind=args.map, reg=args.reg, alpha=args.alpha, batch_size=args.batch_size
        )
    except ValueError as exc:
        raise SakeLensError(f"{str(exc).rstrip('.')}; correct --map, --reg or --alpha.") from None
    parse_layers(args.layers, MAX_LAYER + 1)
    check_output_folder("--out", args.out)
    model = load_from_args(args)
    layers = parse_layers(args.layers, int(model.cfg.n_layers))
    fit, held, near = build_prompts(args, request)
    result = layer_sweep(
        model,
        request,
        fit,
        held,
        near,
        layers=layers,
        site_kinds=tuple(args.site_kind) or ("resid_post",),
        include_final=not args.no_final,
        config=config,
    )
    out = Path(args.out)
    result.save(out)
    page = sweep_page(result, model=model, title=args.title)
    page.save(out / "page.json")
    page.write_html(out / "sweep.html")
    written = ["sweep.json", "page.json", "sweep.html"]
    try:
        import kaleido  # noqa: F401

        plot_sweep(result).write_image(str(out / "sweep.png"), width=1100, height=720)
        written.append("sweep.png")
    except Exception:  # kaleido missing or without a browser: PNG is optional
        pass
    if args.json:
        from .common import print_json

        print_json(result.to_dict())
        return 0
    rows = [
        [
            r.label,
            f"{r.efficacy:.2f}",
            f"{r.generalisation:.2f}",
            f"{r.specificity:.2f}",
            f"{r.score:.3f}",
            f"{r.p_new:.3f}",
            f"{r.cond_map:.3g}",
            "<-" if r.site == result.recommended else "",
        ]
        for r in result.layers
    ]
    print(
        markdown_table(
            ["layer", "efficacy", "generalisation", "specificity", "score", "P(new)", "cond", ""],
            rows,
        )
    )
    print(f"\nrecommended: {result.recommended}\nrule: {result.rule}")
    print(
        f"swept {len(result.layers)} sites in {result.timings['total_s']:.1f} s; wrote "
        + ", ".join(str(out / w) for w in written)
    )
    return 0
