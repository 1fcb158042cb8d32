"""Run the Python examples of a docs page and compare what they print with the page.

A page written this way pairs every ```` ```python ```` block with the ```` ```text ```` block
right after it: the exact output of the block, run in order in one namespace (as a reader runs
them). ``tests/test_docs.py`` runs the quickstart this way; after a change to the library,
rewrite the outputs with:

    OMP_NUM_THREADS=1 python scripts/doc_examples.py docs/quickstart.md --update
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# A python block, optionally followed (blank lines only between) by a text block.
_BLOCK = re.compile(
    r"^```python[^\n]*\n(?P<code>.*?)^```[ \t]*\n"
    r"(?:[ \t]*\n)*"
    r"(?:^```text[^\n]*\n(?P<out>.*?)^```[ \t]*$)?",
    re.M | re.S,
)


@dataclass
class Example:
    """One python block of a page: its code, the output the page shows, the output it prints."""

    code: str
    expected: str | None  # None: the page shows no output block
    actual: str = ""
    span: tuple[int, int] = (0, 0)  # the output block's text in the page (for --update)


def examples(text: str) -> list[Example]:
    """The python blocks of ``text`` with the output block that follows each."""
    found = []
    for m in _BLOCK.finditer(text):
        out = m.group("out")
        span = m.span("out") if out is not None else (m.end(), m.end())
        found.append(Example(m.group("code"), out, span=span))
    return found


def run(text: str) -> list[Example]:
    """Run the python blocks of ``text`` in order, in one namespace; record what each prints."""
    blocks = examples(text)
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    for block in blocks:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(block.code, "<docs example>", "exec"), namespace)
        block.actual = buffer.getvalue()
    return blocks


def update(text: str, blocks: Sequence[Example]) -> str:
    """``text`` with every output block replaced by what its python block printed."""
    out, last = [], 0
    for block in blocks:
        start, end = block.span
        out.append(text[last:start])
        if block.expected is None:
            out.append(f"\n```text\n{block.actual}```\n")
        else:
            out.append(block.actual)
        last = end
    out.append(text[last:])
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the markdown page")
    parser.add_argument("--update", action="store_true", help="rewrite the output blocks")
    args = parser.parse_args(argv)
    text = args.page.read_text(encoding="utf-8")
    blocks = run(text)
    if args.update:
        args.page.write_text(update(text, blocks), encoding="utf-8")
        return 0
    differ = [b for b in blocks if b.expected != b.actual]
    for b in differ:
        sys.stdout.write(f"--- code\n{b.code}--- page\n{b.expected}--- printed\n{b.actual}\n")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
