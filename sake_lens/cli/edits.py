"""``sake-lens edits``: list, remove, enable, disable and export the edits of a registry."""

from __future__ import annotations

import argparse
import sys

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
    ex = actions.add_parser(
        "export",
        help="write an edit for another runtime (easysteer: a vLLM steering spec)",
        description="Write an edit at blocks.{L}.hook_resid_post as an EasySteer SteeringSpec "
        "(JSON): one linear map with alpha folded in, at the prompt's last token. The scope "
        "gate and continuation maps are not exported (a warning names them).",
    )
    ex.add_argument("dir", metavar="DIR", help="registry directory")
    ex.add_argument("id", metavar="ID", help="edit id (see `sake-lens edits list DIR`)")
    ex.add_argument("--format", required=True, choices=["easysteer"], help="target format")
    ex.add_argument("--out", required=True, metavar="FILE", help="the JSON file to write")
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
    if args.action == "export":
        return _export(args)
    if args.action == "remove":
        row = remove_saved(args.dir, args.id)
        print(f"removed {row['id']} ({row['prompt']!r} -> {row['new']!r}) from {args.dir}")
        return 0
    set_saved_enabled(args.dir, args.id, args.action == "enable")
    print(f"{args.action}d {args.id} in {args.dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..registry.export import export_easysteer

    result = export_easysteer(args.dir, args.id, args.out)
    for item in result.lost:
        print(f"sake-lens edits export: warning: not exported: {item}.", file=sys.stderr)
    apply = result.spec["vectors"][0]["apply"]
    where = "the last prompt token" + (", every generated token" if "generation" in apply else "")
    print(
        f"wrote {args.out}: edit {args.id} as an EasySteer linear map at decoder layer "
        f"{result.layer} ({where}); serve it with `vllm serve MODEL --enable-steer-vector "
        f'--steering-config {args.out}` or send it as a request\'s "steering" field'
    )
    return 0
