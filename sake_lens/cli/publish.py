"""``sake-lens publish``: turn a sweep or a report into a docs page listed in the mkdocs nav."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SakeLensError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish", help="write a sweep or report as a markdown docs page and add it to the nav"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sweep", metavar="DIR", help="a folder written by `sake-lens sweep`")
    src.add_argument(
        "--report", metavar="FILE", help="an HTML report written by `sake-lens report`"
    )
    p.add_argument(
        "--docs",
        required=True,
        metavar="PAGE",
        help="the page to write, e.g. docs/analyses/darrieux (.md is added)",
    )
    p.add_argument("--title", default=None, help="page and nav title (default: the analysis')")
    p.add_argument(
        "--mkdocs",
        default=None,
        metavar="YML",
        help="the site config (default: the nearest mkdocs.yml above the page)",
    )
    p.add_argument("--section", default="Analyses", help="nav section (created if missing)")
    p.set_defaults(func=run)


def load_page(args: argparse.Namespace):  # -> AnalysisPage
    from ..analysis.pages import AnalysisPage
    from ..analysis.report import sweep_page
    from ..analysis.sweep_result import SweepResult
    from .report import page_json_path

    if args.sweep:
        folder = Path(args.sweep)
        if (folder / "page.json").is_file():
            return AnalysisPage.load(folder / "page.json")
        return sweep_page(SweepResult.load(folder))  # older sweeps: the sweep figure only
    report = Path(args.report)
    candidates = [report] if report.suffix == ".json" else [page_json_path(report)]
    for c in candidates:
        if c.is_file():
            return AnalysisPage.load(c)
    raise SakeLensError(
        f"no page data for the report {report}: `sake-lens report` writes it beside the HTML "
        f"as {page_json_path(report).name}; run the report again."
    )


def run(args: argparse.Namespace) -> int:
    from ..analysis.publish import publish_page

    page = load_page(args)
    out = publish_page(
        page, args.docs, mkdocs_yml=args.mkdocs, title=args.title, section=args.section
    )
    print(f"published {out} under '{args.section}' ({len(page.figures)} figures)")
    return 0
