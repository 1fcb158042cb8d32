"""``sake-lens edits``: list, remove, enable and disable the edits of a registry directory."""

from __future__ import annotations

import argparse

from .common import markdown_table, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edits", help="manage a registry of saved edits")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the edits of a registry")
    ls.add_argument("dir", metavar="DIR", help="registry directory")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name, text in (
        ("remove", "remove an edit"),
        ("enable", "apply a disabled edit again"),
        ("disable", "keep an edit without applying it"),
    ):
        a = actions.add_parser(name, help=text)
        a.add_argument("dir", metavar="DIR", help="registry directory")
        a.add_argument("id", metavar="ID", help="edit id (see `sake-lens edits list DIR`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Manifest-level operations: no tensor is loaded, so a damaged entry can still be removed.
    from ..registry.book import list_saved, remove_saved, set_saved_enabled

    if args.action == "list":
        rows = list_saved(args.dir)
        if args.json:
            print_json(rows)
            return 0
        if not rows:
            print(f"{args.dir}: no edits")
            return 0
        header = ["id", "on", "prompt", "old -> new", "site", "gate", "threshold"]
        table = [
            [
                r["id"],
                "yes" if r["enabled"] else "no",
                r["prompt"],
                f"{r['old']} -> {r['new']}",
                r["site"],
                r["gate"],
                "-" if r["threshold"] is None else f"{r['threshold']:.4g}",
            ]
            for r in rows
        ]
        print(markdown_table(header, table))
        return 0
    if args.action == "remove":
        row = remove_saved(args.dir, args.id)
        print(f"removed {row['id']} ({row['prompt']!r} -> {row['new']!r}) from {args.dir}")
        return 0
    set_saved_enabled(args.dir, args.id, args.action == "enable")
    print(f"{args.action}d {args.id} in {args.dir}")
    return 0
