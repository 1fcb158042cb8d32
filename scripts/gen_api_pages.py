"""Generate the API reference: one page per public object in ``sake_lens.__all__``.

The docs build runs this through ``scripts/mkdocs_hooks.py`` (the pages are generated in memory,
never committed, so they cannot drift from ``__all__``). Run it by hand to see the pages:

    python scripts/gen_api_pages.py --out /tmp/api   # writes the .md files there
    python scripts/gen_api_pages.py --list           # object -> page, grouped by stage
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "sake_lens"
API_DIR = "api"

#: Stages of the data flow, in order: (title, module prefixes below ``sake_lens``).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Models and sites", ("model", "_version")),
    ("Prompts and distributions", ("prompts",)),
    ("Activations", ("collect",)),
    ("Transport maps", ("transport",)),
    ("Scope gates", ("gate",)),
    ("Edits and steering", ("steer",)),
    ("Edit registry", ("registry",)),
    ("Evaluation", ("evaluate",)),
    ("Analysis and plots", ("analysis",)),
    ("Errors", ("errors",)),
)
OTHER_STAGE = "Other"


@dataclass(frozen=True)
class ApiObject:
    """One public name: where it is defined and which page documents it."""

    name: str
    module: str  # defining module, e.g. sake_lens.steer.edit ("" when unknown, e.g. constants)
    kind: str  # class, function, exception, data
    summary: str
    stage: str

    @property
    def page(self) -> str:
        """Docs-relative path of the object's page (``__version__`` -> ``api/version.md``)."""
        return f"{API_DIR}/{self.name.strip('_') or self.name}.md"


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


def _summary(obj: object, kind: str) -> str:
    doc = inspect.getdoc(obj) if kind != "data" else None
    return doc.strip().splitlines()[0].strip() if doc else ""


def _stage(module: str) -> str:
    sub = module.removeprefix(PACKAGE + ".")
    for title, prefixes in STAGES:
        if any(sub == p or sub.startswith(p + ".") for p in prefixes):
            return title
    return OTHER_STAGE


def _defining_module(package: object, name: str, obj: object) -> str:
    module = getattr(obj, "__module__", None) if not isinstance(obj, (str, dict, tuple)) else None
    if isinstance(module, str) and module.startswith(PACKAGE):
        return module
    # Data (constants): find the submodule the package imported it from by scanning sources.
    src = inspect.getsource(package)  # type: ignore[arg-type]
    for line in src.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "from" and parts[2] == "import" and parts[3] == name:
            return PACKAGE + parts[1] if parts[1].startswith(".") else parts[1]
    return PACKAGE


def api_objects(package_name: str = PACKAGE) -> list[ApiObject]:
    """The public objects of ``package_name``, in ``__all__`` order."""
    package = importlib.import_module(package_name)
    objects = []
    for name in package.__all__:
        obj = getattr(package, name)
        kind = _kind(obj)
        module = _defining_module(package, name, obj)
        objects.append(ApiObject(name, module, kind, _summary(obj, kind), _stage(module)))
    return objects


def object_page(obj: ApiObject) -> str:
    """Markdown of one object's page (rendered by mkdocstrings)."""
    return (
        f"# `{PACKAGE}.{obj.name}`\n\n"
        f"*{obj.kind}, defined in `{obj.module}`*\n\n"
        f"::: {PACKAGE}.{obj.name}\n"
        "    options:\n"
        "      show_root_heading: true\n"  # the signature is shown under the root heading
        "      show_root_toc_entry: false\n"
        "      show_root_full_path: false\n"
        "      show_signature: true\n"
        "      separate_signature: true\n"
        "      show_signature_annotations: true\n"
    )


def grouped(objects: Sequence[ApiObject]) -> list[tuple[str, list[ApiObject]]]:
    """Objects grouped by stage of the data flow, stages in order, empty ones dropped."""
    order = [title for title, _ in STAGES] + [OTHER_STAGE]
    groups: dict[str, list[ApiObject]] = {title: [] for title in order}
    for obj in objects:
        groups[obj.stage].append(obj)
    return [(title, objs) for title, objs in groups.items() if objs]


def index_page(objects: Sequence[ApiObject]) -> str:
    """The API index: every public object, one table per stage, with its one-line summary."""
    lines = [
        "# API reference",
        "",
        "The public API is everything in `sake_lens.__all__` — import it as "
        "`import sake_lens as sl`. Submodules are implementation details. One page per object, "
        "grouped by stage of the data flow (model → prompts → activations → maps → gate → "
        "steering → registry → evaluation → analysis).",
        "",
    ]
    for title, objs in grouped(objects):
        lines += [f"## {title}", "", '<div class="api-index" markdown>', ""]
        lines += ["| object | kind | summary |", "| --- | --- | --- |"]
        for obj in objs:
            link = f"[`{obj.name}`]({obj.page.removeprefix(API_DIR + '/')})"
            summary = obj.summary.replace("|", "\\|")
            lines.append(f"| {link} | {obj.kind} | {summary} |")
        lines += ["", "</div>", ""]
    return "\n".join(lines)


def api_pages(package_name: str = PACKAGE) -> dict[str, str]:
    """Docs-relative path -> markdown, for the index and every public object."""
    objects = api_objects(package_name)
    pages = {f"{API_DIR}/index.md": index_page(objects)}
    for obj in objects:
        if obj.page in pages:
            raise ValueError(f"two public objects map to the page {obj.page}: rename one")
        pages[obj.page] = object_page(obj)
    return pages


def api_nav(package_name: str = PACKAGE) -> list[object]:
    """The nav entries of the API section: the index, then one sub-section per stage."""
    nav: list[object] = [{"Overview": f"{API_DIR}/index.md"}]
    for title, objs in grouped(api_objects(package_name)):
        nav.append({title: [{obj.name: obj.page} for obj in objs]})
    return nav


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the pages under this folder")
    parser.add_argument("--list", action="store_true", help="list object -> page")
    args = parser.parse_args(argv)
    if args.list or not args.out:
        for title, objs in grouped(api_objects()):
            sys.stdout.write(f"{title}\n")
            for obj in objs:
                sys.stdout.write(f"    {obj.name:24s} {obj.page}\n")
    if args.out:
        for rel, text in api_pages().items():
            path = args.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
