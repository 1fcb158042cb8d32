"""Analysis pages, HTML reports and publishing to the mkdocs docs (nav edited safely)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest
import yaml

from sake_lens.analysis import AnalysisPage, add_to_nav, edits_report, publish_page
from sake_lens.analysis.publish import _TolerantLoader
from sake_lens.cli.main import main as cli_main
from sake_lens.errors import SakeLensError

from .test_analysis_explorer import fake_edit
from .test_analysis_sweep import synthetic_result

MKDOCS_YML = """\
# Site config: this comment must survive publishing.
site_name: test site
docs_dir: docs
theme:
  name: material
markdown_extensions:
  - md_in_html
  - pymdownx.emoji:
      emoji_generator: !!python/name:material.extensions.emoji.to_svg
exclude_docs: |
  drafts/

nav:
  - Home: index.md
  - Guides:
      - One: guides/one.md

# a comment before the next key
extra_css:
  - extra.css
"""


def page() -> AnalysisPage:
    p = AnalysisPage("Demo analysis")
    p.add_text("Some **markdown** with a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="line"))
    fig.update_layout(title_text="A figure", height=300)
    p.add_figure(fig, caption="A caption.")
    p.add_figure(go.Figure(go.Bar(x=[1], y=[2])), "A figure")
    return p


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    (tmp_path / "docs" / "guides").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    (tmp_path / "docs" / "guides" / "one.md").write_text("# One\n")
    (tmp_path / "mkdocs.yml").write_text(MKDOCS_YML)
    return tmp_path


def _nav(yml: Path) -> list:
    return yaml.load(yml.read_text(), Loader=_TolerantLoader)["nav"]


def test_page_round_trip_and_unique_names(tmp_path: Path) -> None:
    p = page()
    assert [f.name for f in p.figures] == ["a-figure", "a-figure-2"]
    back = AnalysisPage.load(p.save(tmp_path / "page.json"))
    assert back.title == p.title and len(back.blocks) == 3
    assert back.figures[0].figure.data[0].name == "line"
    assert back.figures[0].caption == "A caption."
    with pytest.raises(SakeLensError, match="not a sake_lens analysis page"):
        AnalysisPage.from_dict({"format": "nope"})


def test_html_is_self_contained_with_plotly_once(tmp_path: Path) -> None:
    html = page().write_html(tmp_path / "r.html").read_text()
    assert html.count('<script type="text/javascript">/**') == 1  # plotly.js inlined once
    assert "<script src=" not in html  # nothing loaded from the network
    assert html.count('class="plotly-graph-div"') == 2
    assert "<table>" in html and "<strong>markdown</strong>" in html


def test_markdown_page_has_front_matter_and_one_line_figures() -> None:
    text = page().to_markdown()
    front = text.split("---")[1]
    from sake_lens.analysis.provenance import page_front_matter

    expected = {"title": "Demo analysis", "plotly": True, **page_front_matter()}
    assert yaml.safe_load(front) == expected  # stamped with the version and defaults hash
    fig_lines = [ln for ln in text.splitlines() if "plotly-graph-div" in ln]
    assert len(fig_lines) == 2
    for ln in fig_lines:
        assert ln.startswith('<div class="sake-lens-figure"') and ln.endswith("</div>")
        assert "Plotly.newPlot" in ln and "plotly.min.js" not in ln


def test_add_to_nav_is_surgical_and_idempotent(site: Path) -> None:
    yml = site / "mkdocs.yml"
    assert add_to_nav(yml, "Darrieux", "analyses/darrieux.md")
    text = yml.read_text()
    assert text.startswith("# Site config: this comment must survive publishing.\n")
    assert "!!python/name:material.extensions.emoji.to_svg" in text
    assert "exclude_docs: |\n  drafts/\n" in text and "# a comment before the next key" in text
    assert "  - Home: index.md\n" in text  # mkdocs-style indentation kept
    assert _nav(yml)[-1] == {"Analyses": [{"Darrieux": "analyses/darrieux.md"}]}
    before = yml.read_text()
    assert not add_to_nav(yml, "Darrieux", "analyses/darrieux.md")
    assert yml.read_text() == before
    assert add_to_nav(yml, "Darrieux (v2)", "analyses/darrieux.md")  # retitled in place
    assert add_to_nav(yml, "Eiffel", "analyses/eiffel.md")
    assert _nav(yml)[-1] == {
        "Analyses": [{"Darrieux (v2)": "analyses/darrieux.md"}, {"Eiffel": "analyses/eiffel.md"}]
    }
    rest = yaml.load(yml.read_text(), Loader=_TolerantLoader)
    assert rest["extra_css"] == ["extra.css"] and rest["exclude_docs"] == "drafts/\n"


def test_add_to_nav_turns_a_page_entry_into_a_section(tmp_path: Path) -> None:
    yml = tmp_path / "mkdocs.yml"
    yml.write_text("site_name: s\nnav:\n  - Home: index.md\n  - Analyses: analyses/index.md\n")
    add_to_nav(yml, "New", "analyses/new.md")
    assert _nav(yml)[-1] == {"Analyses": ["analyses/index.md", {"New": "analyses/new.md"}]}


def test_add_to_nav_leaves_configs_without_nav_alone(tmp_path: Path) -> None:
    yml = tmp_path / "mkdocs.yml"
    yml.write_text("site_name: s\n")
    assert not add_to_nav(yml, "New", "analyses/new.md")
    assert yml.read_text() == "site_name: s\n"


def test_publish_page_writes_markdown_and_nav(site: Path) -> None:
    out = publish_page(page(), site / "docs" / "analyses" / "demo", title="Demo page")
    assert out == site / "docs" / "analyses" / "demo.md"
    assert "# Demo page" in out.read_text()
    assert _nav(site / "mkdocs.yml")[-1] == {"Analyses": [{"Demo page": "analyses/demo.md"}]}
    with pytest.raises(SakeLensError, match="outside the docs folder"):
        publish_page(page(), site / "elsewhere" / "x", mkdocs_yml=site / "mkdocs.yml")
    with pytest.raises(SakeLensError, match=r"no mkdocs\.yml found"):
        publish_page(page(), Path("/") / "tmp-no-such-dir-sake" / "x")


def test_cli_publish_sweep_is_idempotent(site: Path, capsys) -> None:
    sweep_dir = site / "sweep"
    synthetic_result().save(sweep_dir)
    args = [
        "publish",
        "--sweep",
        str(sweep_dir),
        "--docs",
        str(site / "docs/analyses/sw"),
        "--mkdocs",
        str(site / "mkdocs.yml"),
    ]
    assert cli_main(args) == 0
    first = (site / "mkdocs.yml").read_text()
    assert cli_main(args) == 0
    assert (site / "mkdocs.yml").read_text() == first
    md = (site / "docs/analyses/sw.md").read_text()
    assert "plotly-graph-div" in md and "**Recommended: `" in md
    result = synthetic_result()  # the new figures, the reason and the configuration
    assert 'id="layer-sweep"' in md and 'id="sweep-heatmap"' in md
    assert result.recommendation.reason in md and "**Configuration**" in md
    assert "published" in capsys.readouterr().out
    assert (
        cli_main(
            [
                "publish",
                "--report",
                str(site / "missing.html"),
                "--docs",
                str(site / "docs/analyses/r"),
            ]
        )
        == 2
    )


def test_edits_report_sections(tmp_path: Path) -> None:
    edits = [fake_edit(seed=0), fake_edit(seed=1, subject="Victor Hugo")]
    report = edits_report(edits, title="Two edits")
    assert [f.name for f in report.figures] == [f"displacement-{e.id}" for e in edits]
    md = report.to_markdown()
    assert md.count("\n## ") == 2 and "**Diagnostics**" in md and "target purity" in md
    assert md.count("| site | `ln_final.hook_out` |") == 2  # one request table per edit
    assert edits_report([]).blocks == ["The registry holds no edits."]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not Path(sys.executable).with_name("mkdocs").exists(),
    reason="mkdocs not installed",
)
def test_published_page_builds_with_mkdocs_material(site: Path) -> None:
    """mkdocs-material keeps the figure snippets intact (raw HTML blocks, md_in_html on)."""
    (site / "mkdocs.yml").write_text(
        MKDOCS_YML.replace(
            "  - pymdownx.emoji:\n      emoji_generator: !!python/name:material.extensions.emoji"
            ".to_svg\n",
            "",
        )
    )
    (site / "docs" / "extra.css").write_text("")
    publish_page(page(), site / "docs" / "analyses" / "demo")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    run = subprocess.run(
        [str(mkdocs), "build", "--strict", "-q"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    html = (site / "site" / "analyses" / "demo" / "index.html").read_text()
    assert html.count('class="plotly-graph-div"') == 2
    calls = re.findall(r'Plotly\.newPlot\(\s*"([\w-]+)",\s*(\[.*?\]),\s*\{', html)
    assert [c[0] for c in calls] == ["a-figure", "a-figure-2"]
    json.loads(calls[0][1])  # the data survived markdown untouched
    assert "<p><div" not in html


@pytest.mark.slow
def test_report_and_explorer_on_a_saved_registry(model, site: Path, tmp_path: Path) -> None:
    """`sake-lens report` on a real EditBook, then `publish --report`; the explorer opens it."""
    from sake_lens.analysis import Explorer
    from sake_lens.prompts.request import EditRequest
    from sake_lens.registry import EditBook
    from sake_lens.steer.edit import fit_edit

    request = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    edit = fit_edit(
        model,
        request,
        [
            "The native language of {} is",
            "{} grew up speaking",
            "{}'s first language is",
            "From birth, {} spoke",
        ],
    )
    book = EditBook.open(tmp_path / "edits", model=model, create=True)
    book.add(edit)
    book.save()

    out = tmp_path / "report.html"
    assert cli_main(["report", "--edits", str(tmp_path / "edits"), "--out", str(out)]) == 0
    html = out.read_text()
    assert "Danielle Darrieux: French → English" in html and "Scope gate" in html
    assert html.count('class="plotly-graph-div"') == 1
    assert (
        cli_main(
            [
                "publish",
                "--report",
                str(out),
                "--docs",
                str(site / "docs/analyses/reg"),
                "--mkdocs",
                str(site / "mkdocs.yml"),
            ]
        )
        == 0
    )
    assert _nav(site / "mkdocs.yml")[-1] == {
        "Analyses": [{"Edits in " + str(tmp_path / "edits"): "analyses/reg.md"}]
    }

    loaded = EditBook.open(tmp_path / "edits", model=model)
    ex = Explorer(model, loaded, sites=["ln_final.hook_out", "blocks.25.hook_resid_post"])
    gate = ex.figures["gate"]
    assert any(s.type == "line" for s in gate.layout.shapes)  # the scope's threshold
    assert "fact gate" in gate.layout.xaxis.title.text  # the registry's default gate
