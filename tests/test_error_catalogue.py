"""The catalogue of bad command-line inputs: each gives its documented one-line error.

The cases live in tests/data/error_catalogue.yaml. Each runs in a fresh folder holding its
files, through ``sake_lens.cli.main.main`` (a few also through the installed ``sake-lens``
script), and must exit with status 2 and print exactly one line on stderr: the documented
message, with no traceback. Unless a case says otherwise the model must not be loaded: the
command line checks its arguments first. docs/errors.md shows the same cases as a table, which
``python -m tests.test_error_catalogue`` rewrites; a test fails when the two differ.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sake_lens.cli.common import command_of
from sake_lens.cli.main import _COMMAND_MODULES, main

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = Path(__file__).with_name("data") / "error_catalogue.yaml"
ERRORS_PAGE = ROOT / "docs" / "errors.md"
START = "<!-- error-catalogue:start (generated from tests/data/error_catalogue.yaml) -->"
END = "<!-- error-catalogue:end -->"
SCRIPT = Path(sys.executable).with_name("sake-lens")


@dataclass(frozen=True)
class Case:
    """One bad command line, what the folder holds when it runs, and its message."""

    argv: tuple[str, ...]
    message: str
    given: str = ""
    files: dict[str, str] = field(default_factory=dict)
    binary: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    model: bool = False
    load: bool = False
    subprocess: bool = False
    states_fix: bool = True
    #: ``{WORD: [text, times]}``: the argument WORD stands for ``text`` repeated ``times`` times
    #: (a prompt too long to print); the docs show WORD.
    repeat: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return command_of(self.argv)

    @property
    def run_argv(self) -> list[str]:
        """The arguments as the command receives them (``repeat`` words expanded)."""
        return [self.repeat[a][0] * self.repeat[a][1] if a in self.repeat else a for a in self.argv]

    @property
    def line(self) -> str:
        """The whole line expected on stderr."""
        return f"sake-lens {self.command}: error: {self.message}"

    @property
    def shown(self) -> str:
        """The command line as a user types it (shell quoting where needed)."""
        import shlex

        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return " ".join(filter(None, [env, "sake-lens", shlex.join(self.argv)]))

    def prepare(self, folder: Path) -> None:
        for name in self.dirs:
            (folder / name).mkdir(parents=True)
        for name, text in self.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
        for name, hexdigits in self.binary.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(bytes.fromhex(hexdigits))


def load_cases(path: Path = CATALOGUE) -> list[Case]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = []
    for item in raw["cases"]:
        item = dict(item)
        item["argv"] = tuple(str(a) for a in item["argv"])
        item["dirs"] = tuple(item.get("dirs", ()))
        item["repeat"] = {k: (str(t), int(n)) for k, (t, n) in item.get("repeat", {}).items()}
        cases.append(Case(**item))
    return cases


CASES = load_cases()


def case_id(case: Case) -> str:
    return " ".join(case.argv)[:60] + (f" [{case.given}]" if case.given else "")


# ----------------------------------------------------------------------------- the docs table
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*").replace("\n", " ")


def _code(text: str) -> str:
    """``text`` as inline code in a table cell (backticks inside need a longer fence)."""
    assert "|" not in text, f"a command line with '|' does not fit a table cell: {text}"
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_table(cases: list[Case]) -> str:
    """The markdown table of docs/errors.md: one row per case, in catalogue order."""
    lines = [
        START,
        "",
        "| command line | given | message (after `sake-lens COMMAND: error:`) |",
        "| --- | --- | --- |",
    ]
    for case in cases:
        given = _cell(case.given) if case.given else ""
        lines.append(f"| {_code(case.shown)} | {given} | {_cell(case.message)} |")
    lines += ["", END]
    return "\n".join(lines)


def documented_table(page: Path = ERRORS_PAGE) -> str:
    text = page.read_text(encoding="utf-8")
    assert START in text and END in text, f"{page} lacks the markers {START!r} / {END!r}"
    return text[text.index(START) : text.index(END) + len(END)]


def write_table(page: Path = ERRORS_PAGE) -> None:
    text = page.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    page.write_text(text[:start] + render_table(CASES) + text[end:], encoding="utf-8")


# ----------------------------------------------------------------------------- running a case
@pytest.fixture
def patched_loader(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Set how commands load the model: refused (default), the shared model, or the real loader."""

    def install(case: Case) -> None:
        if case.load:
            return
        if case.model:
            model = request.getfixturevalue("model")

            def load(args: argparse.Namespace) -> Any:
                return model
        else:

            def load(args: argparse.Namespace) -> Any:
                raise AssertionError("the model was loaded although an argument is bad")

        for name in _COMMAND_MODULES:
            module = importlib.import_module(f"sake_lens.cli.{name}")
            if hasattr(module, "load_from_args"):
                monkeypatch.setattr(module, "load_from_args", load)

    yield install


def stderr_line(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line on stderr:\n{err}"
    return err[:-1]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_gives_its_documented_error(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    patched_loader: Any,
) -> None:
    case.prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    patched_loader(case)
    assert main(case.run_argv) == 2
    assert stderr_line(capsys.readouterr().err) == case.line


SAMPLE = [c for c in CASES if c.subprocess]


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the sake-lens console script is not installed")
@pytest.mark.parametrize("case", SAMPLE, ids=case_id)
def test_the_console_script_gives_the_same_error(case: Case, tmp_path: Path) -> None:
    case.prepare(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **case.env}
    done = subprocess.run(
        [str(SCRIPT), *case.run_argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert stderr_line(done.stderr) == case.line
    assert done.stdout == ""


def test_the_catalogue_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 80 and 5 <= len(SAMPLE) <= 8
    commands = {c.command for c in CASES}
    assert {name.replace("_", "-") for name in _COMMAND_MODULES} <= commands
    edits_actions = {c.argv[1] for c in CASES if c.command == "edits" and len(c.argv) > 2}
    assert {"list", "remove", "enable", "disable"} <= edits_actions
    assert sum(c.model for c in CASES) <= 5, "keep the cases that load the model few"
    assert len({(*c.argv, c.given) for c in CASES}) == len(CASES), "a case is listed twice"


def test_every_message_states_a_fix() -> None:
    """A message names the problem and what to do: a verb of fixing, or the help to read."""
    fixes = (
        "use ", "pass ", "give ", "choose ", "write ", "delete ", "restore ", "add ",
        "remove ", "create ", "point ", "fix ", "see ", "drop ", "move ", "run ", "rebuild ",
        "check ", "install ", "upgrade ", "load ", "make ", "spell ", "raise ", "lower ",
        "set ", "free ", "correct ", "list them", "such as", "e.g.",
    )  # fmt: skip
    lacking = [c.shown for c in CASES if not any(f in c.message.casefold() for f in fixes)]
    assert lacking == [c.shown for c in CASES if not c.states_fix], "a fix was added or lost"


def test_the_docs_table_is_the_catalogue() -> None:
    assert documented_table() == render_table(CASES), (
        "docs/errors.md and tests/data/error_catalogue.yaml differ; run "
        "`python -m tests.test_error_catalogue` to rewrite the table"
    )


def test_the_table_renders_each_case_once(tmp_path: Path) -> None:
    page = tmp_path / "errors.md"
    page.write_text(f"# Errors\n\n{START}\nold\n{END}\n\nafter\n", encoding="utf-8")
    write_table(page)
    table = documented_table(page)
    assert table == render_table(CASES) and page.read_text().endswith("\n\nafter\n")
    assert table.count("\n| `") == len(CASES)


if __name__ == "__main__":  # rewrite the table in docs/errors.md from the catalogue
    write_table()
    print(f"wrote {len(CASES)} cases to {ERRORS_PAGE.relative_to(ROOT)}")
