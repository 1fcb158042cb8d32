"""mkdocs hooks of the sake_lens docs (``hooks:`` in mkdocs.yml).

* **API reference** — one page per name in ``sake_lens.__all__``, generated in memory by
  ``gen_api_pages.py`` (beside this file); the ``api/index.md`` entry of the nav is expanded to
  the full, grouped API section.
* **Notebooks** — ``notebooks/*.ipynb`` are stored once, at the repository root, and added to
  the site as ``notebooks/<name>.ipynb`` without copying (mkdocs-jupyter renders them).
* **Sphinx roles in docstrings** — ``:class:`~sake_lens.x.Y``` and friends (the docstrings are
  Google style but use these roles) are rendered as code, linked to the object's API page when
  it is public.
* **Notebook outputs load nothing remote** — plotly's notebook renderers put CDN loaders in
  the outputs (plotly.js, MathJax: ``<script src="https://…">`` and ``import "https://…"``);
  on notebook pages they are removed, since the site serves its own plotly.js and MathJax.
* **plotly.js** — copied from the installed ``plotly`` package to
  ``assets/javascripts/plotly.min.js`` so figures render offline (the theme override loads it
  in ``<head>``, before any inline figure script runs).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import gen_api_pages  # beside this file: mkdocs puts the hook's folder on sys.path
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.sake_lens")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PLOTLY_JS = "assets/javascripts/plotly.min.js"
API_PLACEHOLDER = f"{gen_api_pages.API_DIR}/index.md"
# ":class:`~a.b.C`" as Python-Markdown renders it inside a docstring.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([\w.]+)</code>")
_public: dict[str, str] = {}  # public name -> docs-relative page
# A <script> that loads code from another host: by src, or by a module import.
_REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>\s*</script>"
    r"|<script\b[^>]*>\s*import\s+[\"'](?:https?:)?//[^\"']*[\"'];?\s*</script>",
    re.I,
)


def _expand_api(nav: Any) -> bool:
    """Replace the nav entry ``X: api/index.md`` by ``X: [the API section]`` (in place)."""
    if isinstance(nav, list):
        for i, item in enumerate(nav):
            if isinstance(item, dict) and len(item) == 1:
                ((title, value),) = item.items()
                if value == API_PLACEHOLDER:
                    nav[i] = {title: gen_api_pages.api_nav()}
                    return True
            if _expand_api(item):
                return True
    elif isinstance(nav, dict):
        return any(_expand_api(v) for v in nav.values())
    return False


def on_config(config: Any) -> Any:
    if config.nav is not None and not _expand_api(config.nav):
        log.warning(
            "mkdocs.yml nav has no '%s' entry: the API pages are not in the nav", API_PLACEHOLDER
        )
    return config


@event_priority(100)  # before mkdocs-jupyter wraps the notebook files
def on_files(files: Files, config: Any) -> Files:
    _public.clear()
    _public.update({o.name: o.page for o in gen_api_pages.api_objects()})
    for rel, text in gen_api_pages.api_pages().items():
        files.append(File.generated(config, rel, content=text))
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{nb.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    files.append(File.generated(config, PLOTLY_JS, abs_src_path=str(js)))
    return files


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    def replace(m: re.Match[str]) -> str:
        tilde, target = m.groups()
        name = target.rsplit(".", 1)[-1]
        shown = name if tilde else target
        page_path = _public.get(name)
        file = files.get_file_from_path(page_path) if page_path else None
        if file is None or file is page.file:
            return f"<code>{shown}</code>"
        return f'<a href="{file.url_relative_to(page.file)}"><code>{shown}</code></a>'

    html = _ROLE.sub(replace, html)
    if page.file.src_uri.startswith("notebooks/"):
        html, n = _REMOTE_SCRIPT.subn("", html)
        if n:
            log.debug("%s: removed %d remote script loaders", page.file.src_uri, n)
    return html


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    server.watch(str(NOTEBOOKS))
    server.watch(str(ROOT / "sake_lens"))
    return server
