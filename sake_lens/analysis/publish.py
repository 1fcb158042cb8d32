"""Publish an analysis as documentation: a markdown page in the docs, listed in the mkdocs nav.

:func:`publish_page` writes ``docs/analyses/<name>.md`` (figures as raw-HTML blocks, front
matter ``plotly: true`` so the site loads plotly.js once in ``<head>``) and
:func:`add_to_nav` lists it under the "Analyses" section of ``mkdocs.yml``.

The nav is edited surgically: only the top-level ``nav:`` block is parsed and rewritten (with
the usual two-space indentation); every other line of ``mkdocs.yml`` — comments, tags such as
``!!python/name:``, block scalars — is left byte for byte. Publishing the same page twice
changes nothing (the entry is updated in place, never duplicated).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .._umask import chmod_like_new_file
from ..errors import SakeLensError
from .pages import AnalysisPage

__all__ = ["ANALYSES_SECTION", "publish_page", "add_to_nav", "find_mkdocs_config", "docs_dir_of"]

log = logging.getLogger(__name__)

ANALYSES_SECTION = "Analyses"
_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


class _TolerantLoader(yaml.SafeLoader):
    """A safe loader that reads unknown tags (``!!python/name:…``, ``!ENV``) as plain values."""


def _unknown_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TolerantLoader.add_multi_constructor("", _unknown_tag)
_TolerantLoader.add_multi_constructor("!", _unknown_tag)
_TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", _unknown_tag)


class _IndentDumper(yaml.SafeDumper):
    """Indent block sequences inside mappings (``nav:\\n  - Home: …``), as mkdocs.yml files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def _load_yaml(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_TolerantLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SakeLensError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SakeLensError(f"{path} is not an mkdocs config (a YAML mapping).")
    return data


def find_mkdocs_config(start: str | Path) -> Path | None:
    """The nearest ``mkdocs.yml`` at or above ``start`` (a file or folder), or None."""
    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / "mkdocs.yml"
        if candidate.is_file():
            return candidate
    return None


def docs_dir_of(mkdocs_yml: str | Path) -> Path:
    """The docs folder of an mkdocs config (``docs_dir``, default ``docs``, beside the file)."""
    path = Path(mkdocs_yml)
    data = _load_yaml(path.read_text(encoding="utf-8"), path)
    return (path.parent / str(data.get("docs_dir", "docs"))).resolve()


def _nav_block(lines: list[str]) -> tuple[int, int] | None:
    """Line range ``[start, end)`` of the top-level ``nav:`` block, or None."""
    start = next((i for i, ln in enumerate(lines) if re.match(r"^nav\s*:", ln)), None)
    if start is None:
        return None
    end = start + 1
    while (
        end < len(lines)
        and not _TOP_KEY.match(lines[end])
        and not lines[end].startswith(("---", "..."))
    ):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1  # blank lines and comments before the next key stay where they are
    return start, end


def _entry_path(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        value = next(iter(item.values()))
        return value if isinstance(value, str) else None
    return None


def _upsert(nav: list[Any], section: str, title: str, rel: str) -> bool:
    """Put ``{title: rel}`` in ``section`` of ``nav`` (in place); True if anything changed."""
    holder = None
    for item in nav:
        if isinstance(item, dict) and len(item) == 1 and section in item:
            if not isinstance(item[section], list):
                item[section] = [item[section]]  # "Analyses: analyses/index.md" -> a section
            holder = item[section]
            break
    if holder is None:
        nav.append({section: [{title: rel}]})
        return True
    for i, item in enumerate(holder):
        if _entry_path(item) == rel:
            if item == {title: rel}:
                return False
            holder[i] = {title: rel}
            return True
    holder.append({title: rel})
    return True


def add_to_nav(
    mkdocs_yml: str | Path, title: str, page: str, *, section: str = ANALYSES_SECTION
) -> bool:
    """List ``page`` (path relative to the docs folder) as ``title`` under ``section`` in the
    nav of ``mkdocs_yml``; create the section if missing. Idempotent.

    Returns:
        True when the file changed. A config without ``nav`` is left alone (mkdocs then lists
        every page by itself).
    """
    path = Path(mkdocs_yml)
    text = path.read_text(encoding="utf-8")
    before = _load_yaml(text, path)
    if before.get("nav") is None:
        log.info("%s has no nav: mkdocs lists every page itself; nothing to add.", path)
        return False
    lines = text.splitlines(keepends=True)
    block = _nav_block(lines)
    if block is None:
        raise SakeLensError(
            f"{path} has a nav that is not a top-level 'nav:' block (e.g. a flow mapping or an "
            f"anchor); add {{{title!r}: {page!r}}} under {section!r} by hand."
        )
    start, end = block
    nav = yaml.safe_load("".join(lines[start:end]))["nav"]
    if not isinstance(nav, list):
        raise SakeLensError(f"the nav of {path} is not a list; fix it before publishing.")
    if not _upsert(nav, section, title, page):
        return False
    dumped = yaml.dump(
        {"nav": nav},
        Dumper=_IndentDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1000,
    )
    new_text = "".join(lines[:start]) + dumped + "".join(lines[end:])
    after = _load_yaml(new_text, path)
    expected = dict(before, nav=nav)
    if after != expected:  # never write a config that parses differently than intended
        raise SakeLensError(
            f"editing the nav of {path} would change other settings; add {{{title!r}: "
            f"{page!r}}} under {section!r} by hand."
        )
    _atomic_write(path, new_text)
    return True


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        chmod_like_new_file(tmp)  # mkstemp makes it 0600; a docs page is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_page(
    page: AnalysisPage,
    docs_page: str | Path,
    *,
    mkdocs_yml: str | Path | None = None,
    title: str | None = None,
    section: str = ANALYSES_SECTION,
) -> Path:
    """Write ``page`` as a markdown docs page and list it in the mkdocs nav.

    Args:
        page: the analysis (figures and text).
        docs_page: where to write it, e.g. ``docs/analyses/darrieux`` (``.md`` is added).
        mkdocs_yml: the site's config (default: the nearest ``mkdocs.yml`` above the page).
        title: the page and nav title (default: the page's own title).
        section: the nav section (created when missing).

    Returns:
        The markdown file written.

    Raises:
        SakeLensError: no mkdocs.yml found, or the page lies outside its docs folder.
    """
    out = Path(docs_page)
    if out.suffix != ".md":
        out = out.with_name(out.name + ".md")
    config = Path(mkdocs_yml) if mkdocs_yml is not None else find_mkdocs_config(out.parent)
    if config is None or not config.is_file():
        raise SakeLensError(
            f"no mkdocs.yml found for {out} (looked at and above {out.parent}); pass "
            "--mkdocs path/to/mkdocs.yml."
        )
    docs = docs_dir_of(config)
    try:
        rel = out.resolve().relative_to(docs).as_posix()
    except ValueError:
        raise SakeLensError(
            f"{out} is outside the docs folder {docs} of {config}; write it under {docs}."
        ) from None
    if title:
        page = AnalysisPage(title, list(page.blocks), provenance=page.provenance)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page.to_markdown(), encoding="utf-8")
    changed = add_to_nav(config, page.title, rel, section=section)
    log.info(
        "published %s (%s the nav of %s)", out, "added to" if changed else "already in", config
    )
    return out
