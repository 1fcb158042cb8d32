"""``sake-lens report``: a self-contained HTML report of a saved edit registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args, load_from_args


def page_json_path(html_path: Path) -> Path:
    """Where the report's page (figures as JSON, for ``sake-lens publish``) is saved."""
    return html_path.with_name(html_path.stem + ".page.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write an HTML report of a saved edit registry")
    p.add_argument("--edits", required=True, metavar="DIR", help="the registry directory")
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    p.add_argument("--title", default=None)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.report import edits_report
    from ..registry import EditBook

    model = load_from_args(args)
    book = EditBook.open(args.edits, model=model)
    page = edits_report(book, model=model, title=args.title or f"Edits in {args.edits}")
    out = Path(args.out)
    page.write_html(out)
    page.save(page_json_path(out))
    print(f"wrote {out} ({len(page.figures)} figures) and {page_json_path(out)}")
    return 0
