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
