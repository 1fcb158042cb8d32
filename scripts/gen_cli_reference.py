"""Generate the command-line reference (docs/cli-reference.md) from the ``sake-lens`` parser.

Every command and subcommand with its description, usage and options (help, default, range
or choices), read from ``sake_lens.cli.main.build_parser()`` — the page cannot drift from the
parser: ``tests/test_docs.py`` fails when the committed page differs from what this writes.

    python scripts/gen_cli_reference.py            # rewrite docs/cli-reference.md
    python scripts/gen_cli_reference.py --check    # exit 1 when the page is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli-reference.md"
WIDTH = 88  # usage lines are wrapped here, whatever the terminal
_RANGE = re.compile(r"\s*\((-?\d+) to (-?\d+)\)$")  # what add_int_option appends to a help
_DEFAULT_GROUPS = {"positional arguments", "options", "optional arguments"}

HEADER = """\
# Command-line reference

<!-- Generated from the sake-lens argument parser by scripts/gen_cli_reference.py; do not edit
by hand: run `python scripts/gen_cli_reference.py` after changing a command. -->

Every command and option of `sake-lens`, as `sake-lens COMMAND --help` prints them. The
[command-line overview](cli.md) says what each command is for. A value outside an option's
range is refused before any model is loaded, with one line on stderr and exit status 2.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH, max_help_position=32)


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, in --help order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _cell(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.replace("|", "\\|").replace("<", "&lt;")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "on" if action.default else "off"
    value = action.default
    if value is None or value is argparse.SUPPRESS:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    return _code(str(value))


def _row(fmt: argparse.HelpFormatter, action: argparse.Action) -> str:
    invocation = fmt._format_action_invocation(action)
    help_text = fmt._expand_help(action) if action.help else ""
    values = ""
    m = _RANGE.search(help_text)
    if m:
        help_text = help_text[: m.start()]
        values = f"{m.group(1)} to {m.group(2)}"
    elif action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        values = ", ".join(_code(str(c)) for c in action.choices)
    return f"| {_code(invocation)} | {_cell(help_text)} | {_default(action)} | {_cell(values)} |"


def _usage(parser: argparse.ArgumentParser) -> str:
    fmt = _formatter(parser.prog)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return fmt.format_help().strip()


def _tables(parser: argparse.ArgumentParser) -> list[str]:
    fmt = _formatter(parser.prog)
    lines: list[str] = []
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        if not actions:
            continue
        if group.title not in _DEFAULT_GROUPS:
            lines += [
                f"**{group.title}**"
                + (f" — {_cell(group.description)}" if group.description else ""),
                "",
            ]
        lines += ["| argument | meaning | default | values |", "| --- | --- | --- | --- |"]
        lines += [_row(fmt, a) for a in actions]
        lines.append("")
    return lines


def _section(parser: argparse.ArgumentParser, help_text: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    description = parser.description or help_text
    if description:
        text = re.sub(r"\s+", " ", description).strip()
        lines += [text[0].upper() + text[1:] if text else text, ""]
    lines += ["```text", _usage(parser), "```", ""]
    lines += _tables(parser)
    subs = list(_subcommands(parser))
    if subs:
        lines += ["| subcommand | what it does |", "| --- | --- |"]
        lines += [f"| [`{name}`](#{_anchor(sub.prog)}) | {_cell(h)} |" for name, h, sub in subs]
        lines.append("")
        for _, h, sub in subs:
            lines += _section(sub, h, level + 1)
    return lines


def _anchor(prog: str) -> str:
    """The id mkdocs' toc gives the heading ``# `prog` ``."""
    return re.sub(r"[^\w-]", "", prog.lower().replace(" ", "-"))


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference page for ``parser`` (default: the ``sake-lens`` parser)."""
    if parser is None:
        from sake_lens.cli.main import build_parser

        parser = build_parser()
    lines = [HEADER]
    lines += _section(parser, "", 2)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the page is stale")
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            sys.stderr.write(f"{args.out} is out of date: run scripts/gen_cli_reference.py\n")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
