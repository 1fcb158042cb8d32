"""The docs stay in sync with the code: API pages, errors page, install commands, nav, notebooks.

Fast checks on the sources (no site build); ``test_docs_render.py`` builds the site and looks
at it in a headless browser.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import sake_lens
import sake_lens.errors

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
EXPECTED_NOTEBOOKS = (
    "01_quickstart_edit.ipynb",
    "02_layer_sweep.ipynb",
    "03_many_edits_and_gates.ipynb",
    "04_evaluation.ipynb",
)


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_script("gen_api_pages")


@pytest.fixture(scope="module")
def mkdocs_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _nav_paths(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_paths(item)]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_paths(v)]
    return []


# ----------------------------------------------------------------------------- API reference
def test_one_api_page_per_public_object(gen: ModuleType) -> None:
    pages = gen.api_pages()
    objects = gen.api_objects()
    assert [o.name for o in objects] == list(sake_lens.__all__)
    assert len(pages) == len(sake_lens.__all__) + 1  # + the index
    for obj in objects:
        assert f"::: sake_lens.{obj.name}\n" in pages[obj.page], obj.name
        assert f"({obj.page.removeprefix('api/')})" in pages["api/index.md"], obj.name


def test_api_nav_lists_every_page_once(gen: ModuleType) -> None:
    nav_pages = _nav_paths(gen.api_nav())
    assert sorted(nav_pages) == sorted(gen.api_pages())


def test_every_public_object_resolves_for_mkdocstrings() -> None:
    """mkdocstrings reads the sources statically (griffe): every alias in __all__ must resolve,
    e.g. a sub-package without ``__init__.py`` breaks it (and breaks a wheel install)."""
    griffe = pytest.importorskip("griffe")
    package = griffe.load("sake_lens", search_paths=[str(ROOT)], resolve_aliases=False)
    unresolved = []
    for name in sake_lens.__all__:
        member = package[name]
        try:
            if member.is_alias:
                member.final_target  # noqa: B018 - resolves or raises
        except Exception as exc:
            unresolved.append(f"{name}: {exc}")
    assert not unresolved, unresolved


def test_api_nav_placeholder_is_in_mkdocs_yml(
    mkdocs_config: dict[str, Any], gen: ModuleType
) -> None:
    assert f"{gen.API_DIR}/index.md" in _nav_paths(mkdocs_config["nav"])


# ----------------------------------------------------------------------------- errors page
def _error_classes() -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(sake_lens.errors, inspect.isclass)
        if issubclass(obj, sake_lens.errors.SakeLensError) and obj.__module__ == "sake_lens.errors"
    ]


def test_evaluate_page_defines_every_metric() -> None:
    """Every metric the harness reports has a row in the how-to's metric table."""
    from sake_lens.evaluate.metrics import METRIC_GROUPS, METRICS

    text = (DOCS / "how-to" / "evaluate.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in text.splitlines() if line.startswith("| "))
    names = set(re.findall(r"[a-z0-9_]+", table))
    for metric in METRICS:
        base = next(
            (
                b
                for b in METRICS
                if metric.startswith(b + "_") and f"_{metric[len(b) + 1 :]}" in names
            ),
            None,
        )
        assert metric in names or base in names, f"docs/how-to/evaluate.md lacks {metric}"
    assert set(METRIC_GROUPS) <= names, "a metric family is missing from the table"


def test_errors_page_documents_every_error_class() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    classes = _error_classes()
    assert {c.__name__ for c in classes} >= set(sake_lens.errors.__all__)
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    by_name = {s.split("\n", 1)[0].strip(): s for s in sections}
    missing = [c.__name__ for c in classes if c.__name__ not in by_name]
    assert not missing, f"docs/errors.md lacks a '## <Name>' section for {missing}"
    for cls in classes:
        body = by_name[cls.__name__]
        for part in ("**Symptom.**", "**Cause.**", "**Fix.**"):
            assert part in body, f"{cls.__name__} section lacks {part}"
        assert f"[`{cls.__name__}`](#{cls.__name__.lower()})" in text, (
            f"{cls.__name__} not in table"
        )


# ----------------------------------------------------------------------------- pages
def test_install_page_has_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = (DOCS / "install.md").read_text(encoding="utf-8")
    commands = [ln.strip() for ln in readme.splitlines() if ln.strip().startswith("make ")]
    assert len(commands) >= 2
    for cmd in commands:
        assert cmd in install, f"docs/install.md lacks the README command {cmd!r}"


def test_concept_pages_state_the_map() -> None:
    maps = (DOCS / "concepts" / "maps.md").read_text(encoding="utf-8")
    compact = re.sub(r"\s+", "", maps)
    assert (
        r"A=\Sigma_s^{-1/2}\bigl(\Sigma_s^{1/2}\Sigma_t\Sigma_s^{1/2}\bigr)^{1/2}\Sigma_s^{-1/2}"
        in compact
    )
    assert r"b=\mu_t-A\,\mu_s" in compact
    assert r"\mathrm{reg}\cdot\frac{\operatorname{tr}\barC}{d}" in compact  # relative regulariser
    assert r"T(x)=x-\mu_s+Q\,(A_Q-I)\,Q^\top(x-\mu_s)+\mu_t" in compact  # span-exact


def test_nav_targets_exist(mkdocs_config: dict[str, Any], gen: ModuleType) -> None:
    generated = set(gen.api_pages())
    missing = []
    for rel in _nav_paths(mkdocs_config["nav"]):
        if rel in generated or rel.startswith(("http://", "https://")):
            continue
        if rel.startswith("notebooks/"):
            if not (ROOT / rel).is_file():
                missing.append(rel)
        elif not (DOCS / rel).is_file():
            missing.append(rel)
    assert not missing, missing


def test_every_analysis_page_is_in_the_nav(mkdocs_config: dict[str, Any]) -> None:
    nav = _nav_paths(mkdocs_config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "analyses").glob("*.md"))
    assert "analyses/index.md" in pages
    assert [p for p in pages if p not in nav] == []
    assert len(pages) >= 2, "the Analyses section needs at least one published analysis"


# ----------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_notebook_is_committed_with_outputs(name: str) -> None:
    path = NOTEBOOKS / name
    assert path.is_file(), f"{path} is missing"
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    assert all(isinstance(c.get("execution_count"), int) for c in code), "not executed"
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, "too few outputs"
    errors = [o for c in code for o in c["outputs"] if o.get("output_type") == "error"]
    assert not errors, f"{name} was committed with an error output: {errors[0].get('ename')}"
    source = "".join("".join(c["source"]) for c in code)
    assert "SAKE_LENS_FAST" in source, "the notebook must honour SAKE_LENS_FAST"
    widgets = [
        o
        for c in code
        for o in c["outputs"]
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert not widgets and "widgets" not in nb["metadata"], (
        f"{name} has widget outputs (progress bars?): the docs would load widget JS from a CDN"
    )
    size = path.stat().st_size
    assert size < 1_500_000, (
        f"{name} is {size} bytes: was plotly.js inlined? (see notebooks/README.md)"
    )


def _eval_table_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_table", ROOT / "benchmarks/eval_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_published_result_tables_match_their_result_files() -> None:
    """The README's and the defaults page's results tables are generated from the committed
    result files (``python benchmarks/eval_table.py --sync README.md docs/concepts/defaults.md``):
    a table that no longer matches its files is stale."""
    table = _eval_table_module()
    docs = [ROOT / "README.md", ROOT / "docs/concepts/defaults.md"]
    assert table.MARKER.search((ROOT / "README.md").read_text(encoding="utf-8"))
    stale = [msg for doc in docs for msg in table.sync(doc, ROOT, check=True)]
    assert not stale, "; ".join(stale) + " (run benchmarks/eval_table.py --sync ...)"


# ----------------------------------------------------------------------------- generated pages
def test_cli_reference_matches_the_parser() -> None:
    """docs/cli-reference.md is what scripts/gen_cli_reference.py writes from the parser."""
    cli = _load_script("gen_cli_reference")
    page = DOCS / "cli-reference.md"
    assert page.is_file(), "docs/cli-reference.md is missing: run scripts/gen_cli_reference.py"
    assert page.read_text(encoding="utf-8") == cli.render(), (
        "docs/cli-reference.md differs from the sake-lens parser: run "
        "`python scripts/gen_cli_reference.py`"
    )


def test_cli_reference_lists_every_command_and_option() -> None:
    import argparse

    from sake_lens.cli.main import build_parser

    cli = _load_script("gen_cli_reference")
    text = cli.render()
    todo: list[argparse.ArgumentParser] = [build_parser()]
    n_commands = 0
    while todo:
        parser = todo.pop()
        n_commands += 1
        assert f"`{parser.prog}`" in text, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
            elif action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.option_strings[-1] in text, f"{parser.prog} {action.option_strings}"
    assert n_commands >= 15  # the commands and the edits actions
    assert "`sake-lens edits list`" in text and "`sake-lens edits disable`" in text
    assert "| 1 to 200 |" in text  # --n-paraphrases' range, from add_int_option


def test_defaults_table_matches_the_configs() -> None:
    table = _load_script("gen_defaults_table")
    text = (DOCS / "concepts" / "defaults.md").read_text(encoding="utf-8")
    assert text == table.sync(text), (
        "the defaults table of docs/concepts/defaults.md is stale: run "
        "`python scripts/gen_defaults_table.py`"
    )
    assert "| `reg` | `100.0` |" in table.render()  # read from EditConfig, not typed


def test_defaults_table_meanings_drop_the_stated_default() -> None:
    table = _load_script("gen_defaults_table")
    assert table.meaning("strength (default 2.5: far better (see x)). More.") == "strength"
    assert table.meaning("one of :data:`GATE_KINDS`.") == "one of `GATE_KINDS`"


# A default stated in prose: "default" right before or right after a backticked `name=value`:
# "`reg=100` (the default)", "`alpha=2.5`, the default", "the default `fpr=0.1`", "by default".
_CLAIM_AFTER = re.compile(r"\s*[,(]?\s*(?:the\s+|by\s+)?default\b(?!s? (?:at|before) )", re.I)
_CLAIM_BEFORE = re.compile(r"\bdefault\s*(?::|is|of)?\s*\(?\s*$", re.I)
_NOT_CURRENT = re.compile(r"previous|earlier|at the time|was the default|before", re.I)
_ASSIGN = re.compile(r"\b([a-z_]+)\s*=\s*([^,)\s`]+)")


def _config_defaults() -> dict[str, dict[str, Any]]:
    """Owner -> field -> default, for the settings prose may state a default of."""
    import dataclasses

    from sake_lens.analysis.provenance import default_configs
    from sake_lens.transport import DiagonalMap, GaussianMap

    configs = default_configs()
    edit = dict(configs["EditConfig"])
    edit.update(edit.pop("distributions"))
    owners: dict[str, dict[str, Any]] = {
        "EditConfig": edit,
        "GateConfig": configs["GateConfig"],
        "make_edit": configs["make_edit"],
    }
    for cls in (GaussianMap, DiagonalMap):
        params = inspect.signature(cls).parameters.values()
        owners[cls.__name__] = {
            p.name: p.default for p in params if p.default is not inspect.Parameter.empty
        }
    assert not dataclasses.is_dataclass(GaussianMap)
    return owners


def _same(stated: str, default: Any) -> bool:
    if isinstance(default, bool) or default is None or isinstance(default, str):
        return stated.strip("'\"") == str(default)
    try:
        return float(stated) == float(default)
    except ValueError:
        return False


def default_claims(text: str, owners: dict[str, dict[str, Any]]) -> list[str]:
    """The `name=value` default claims of ``text`` that disagree with the code's defaults.

    A claim is a backticked ``name=value`` of an EditConfig/GateConfig/make_edit setting with
    the word "default" right before or after it (not a "previous"/"earlier" one). It is checked against the
    owner the paragraph names (``GaussianMap``...), else against EditConfig, GateConfig and
    make_edit."""
    general = ("EditConfig", "GateConfig", "make_edit")
    wrong = []
    for para in re.split(r"\n\s*\n", text):
        if "default" not in para.lower():
            continue
        named = [o for o in owners if o not in general and o in para]
        for span in re.finditer(r"`([^`\n]+)`", para):
            for m in _ASSIGN.finditer(span.group(1)):
                name, value = m.groups()
                after, before = para[span.end() : span.end() + 40], para[: span.start()][-40:]
                claimed = _CLAIM_AFTER.match(after) or _CLAIM_BEFORE.search(before)
                if not claimed or _NOT_CURRENT.search(before + after) or value == "...":
                    continue
                candidates = [owners[o] for o in (named or general) if name in owners[o]]
                if not candidates:
                    continue
                if not any(_same(value, c[name]) for c in candidates):
                    defaults = {c[name] for c in candidates}
                    wrong.append(f"`{name}={value}` stated as a default; the code's: {defaults}")
    return wrong


def test_default_claims_checker_finds_a_wrong_default() -> None:
    owners = _config_defaults()
    assert default_claims("`reg=1e-2` (the default) means 1%.", owners)
    assert not default_claims("`reg=100` (the default) and `alpha=2.5`, the default.", owners)
    assert not default_claims("at `reg=10`, the previous default, the map fails.", owners)
    assert not default_claims("`GaussianMap`'s default `reg=1e-2` on its own.", owners)
    assert default_claims("the fact gate (`fpr=0.2`, the default)", owners)
    assert default_claims("by default `alpha=1.5`.", owners)
    assert not default_claims("fitted with `validate_targets=False`; the default keeps", owners)


def test_docs_state_the_current_defaults() -> None:
    """Every default a docs page or a public docstring states agrees with the code."""
    owners = _config_defaults()
    wrong = []
    for page in sorted(DOCS.rglob("*.md")):
        for msg in default_claims(page.read_text(encoding="utf-8"), owners):
            wrong.append(f"{page.relative_to(ROOT)}: {msg}")
    for name in sake_lens.__all__:
        doc = inspect.getdoc(getattr(sake_lens, name)) or ""
        wrong += [f"sake_lens.{name}: {msg}" for msg in default_claims(doc, owners)]
    assert not wrong, "\n".join(wrong) + "\n(link to docs/concepts/defaults.md#every-default)"


# ----------------------------------------------------------------------------- docstrings
def _public_functions() -> dict[str, Any]:
    import pkgutil

    modules = [sake_lens] + [
        importlib.import_module(f"sake_lens.{m.name}")
        for m in pkgutil.iter_modules(sake_lens.__path__)
        if m.ispkg
    ]
    found: dict[str, Any] = {}
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def _returns_something(func: Any) -> bool:
    annotation = inspect.signature(func).return_annotation
    if annotation in (None, "None", inspect.Signature.empty):
        return False
    return not re.fullmatch(r"(Iterator|Generator)\[None.*\]", str(annotation))


def test_public_functions_document_what_they_return() -> None:
    """Every public function (``sake_lens.__all__`` and its packages' ``__all__``) that returns
    something has a Returns (or Yields) section; functions returning None are exempt."""
    functions = _public_functions()
    assert "sake_lens.steer.edit.fit_edit" in functions and len(functions) > 50
    missing = [
        name
        for name, func in sorted(functions.items())
        if _returns_something(func)
        and not re.search(r"^(Returns|Yields):", inspect.getdoc(func) or "", re.M)
    ]
    assert not missing, f"no Returns/Yields section: {missing}"


def test_api_pages_show_signatures(gen: ModuleType) -> None:
    pages = gen.api_pages()
    for name in ("fit_edit", "layer_sweep", "generate"):
        page = pages[f"api/{name}.md"]
        assert "show_signature: true" in page and "separate_signature: true" in page
        assert "show_root_heading: true" in page  # mkdocstrings shows the signature under it
    assert '<div class="api-index" markdown>' in pages["api/index.md"]
    css = (DOCS / "assets" / "stylesheets" / "extra.css").read_text(encoding="utf-8")
    assert ".api-index td:first-child" in css and "white-space: nowrap" in css


# ----------------------------------------------------------------------------- quickstart
def test_quickstart_pairs_every_code_block_with_its_output() -> None:
    examples = _load_script("doc_examples").examples(
        (DOCS / "quickstart.md").read_text(encoding="utf-8")
    )
    assert len(examples) >= 5
    assert all(e.expected for e in examples), "a quickstart step shows no output"


@pytest.mark.slow
def test_quickstart_output_is_what_the_code_prints() -> None:
    """Runs the quickstart's code on the default model; each block must print what the page
    shows (rewrite the page with `python scripts/doc_examples.py docs/quickstart.md --update`)."""
    runner = _load_script("doc_examples")
    blocks = runner.run((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    for block in blocks:
        assert block.actual == block.expected, f"{block.code}\nprinted:\n{block.actual}"


# ----------------------------------------------------------------------------- provenance
def test_defaults_hash_follows_every_default() -> None:
    from sake_lens.analysis.provenance import default_configs, defaults_hash

    configs = default_configs()
    assert defaults_hash() == defaults_hash(configs)
    changed = json.loads(json.dumps(configs))
    changed["EditConfig"]["reg"] = 10.0
    assert defaults_hash(changed) != defaults_hash(configs)
    assert configs["EditConfig"]["reg"] == sake_lens.EditConfig().reg
    assert configs["GateConfig"]["fpr"] == sake_lens.GateConfig().fpr


def test_stamps_are_read_back() -> None:
    from sake_lens.analysis import AnalysisPage
    from sake_lens.analysis.provenance import (
        Provenance,
        current_provenance,
        notebook_stamp,
        page_stamp,
    )

    now = current_provenance()
    assert now.problem() is None
    old = Provenance("0.0.1", "0" * 16, "2020-01-01")
    assert "other defaults" in (old.problem() or "")
    printed = {"cell_type": "code", "outputs": [{"output_type": "stream", "text": now.line()}]}
    assert notebook_stamp({"metadata": {}, "cells": [printed]}) == now
    assert notebook_stamp({"metadata": {"sake_lens": old.to_dict()}, "cells": [printed]}) == old
    assert notebook_stamp({"metadata": {}, "cells": []}) is None
    page = AnalysisPage("A page")
    assert page_stamp(page.to_markdown()) == page.provenance == now
    assert AnalysisPage.from_dict(page.to_dict()).provenance == now
    unstamped = {k: v for k, v in page.to_dict().items() if k != "provenance"}
    assert page_stamp(AnalysisPage.from_dict(unstamped).to_markdown()) is None


@pytest.mark.parametrize("name", EXPECTED_NOTEBOOKS)
def test_notebook_was_made_with_the_current_defaults(name: str) -> None:
    from sake_lens.analysis.provenance import notebook_stamp

    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    stamp = notebook_stamp(nb)
    assert stamp is not None, (
        f"notebooks/{name} records no library version or defaults hash: execute it with "
        "`python scripts/build_notebooks.py` (which stamps it)"
    )
    problem = stamp.problem()
    assert problem is None, f"notebooks/{name}: {problem} (scripts/build_notebooks.py)"


@pytest.mark.parametrize(
    "page",
    sorted(p.name for p in (DOCS / "analyses").glob("*.md") if p.name != "index.md"),
)
def test_analysis_was_made_with_the_current_defaults(page: str) -> None:
    from sake_lens.analysis.provenance import page_stamp

    stamp = page_stamp((DOCS / "analyses" / page).read_text(encoding="utf-8"))
    assert stamp is not None, (
        f"docs/analyses/{page} records no library version or defaults hash in its front matter: "
        "make it again (sake-lens publish, or the benchmark script that wrote it)"
    )
    problem = stamp.problem()
    assert problem is None, f"docs/analyses/{page}: {problem}"
