"""The Jupyter explorer, headless: build it, change the widgets from code, watch the figures."""

from __future__ import annotations

import hashlib

import pytest
import torch

from sake_lens.analysis import Explorer
from sake_lens.errors import SakeLensError
from sake_lens.model.sites import Site
from sake_lens.prompts.distributions import DistributionConfig, build_prompt_sets, prompts_hash
from sake_lens.prompts.request import EditRequest
from sake_lens.steer.edit import Edit, EditConfig
from sake_lens.transport import GaussianMap

D = 16
SITES = ["ln_final.hook_out", "blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]
PARAS = [
    "The native language of {} is",
    "{} grew up speaking",
    "{}'s first language is",
    "From birth, {} spoke",
]


def fake_acts(prompt: str, site: str) -> torch.Tensor:
    """A deterministic activation per (prompt, site); target contexts are shifted."""
    seed = int(hashlib.sha1(f"{prompt}|{site}".encode()).hexdigest()[:8], 16)
    x = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x + (3.0 if prompt.startswith(("Fact:", "Repeat")) else 0.0)


def fake_collector(prompts, sites):
    return {s: torch.stack([fake_acts(p, s) for p in prompts]) for s in sites}


def fake_edit(seed: int = 0, subject: str = "Danielle Darrieux", site: str = SITES[0]) -> Edit:
    request = EditRequest(subject, "The mother tongue of {} is", "French", "English")
    prompts = build_prompt_sets(request, PARAS, DistributionConfig())
    prompts.kept = [True] * len(prompts.target)
    xs = torch.stack([fake_acts(p, site) for p in prompts.source])
    xt = torch.stack([fake_acts(p, site) for p in prompts.target])
    return Edit(
        request=request,
        site=Site(site),
        map=GaussianMap().fit(xs, xt),
        config=EditConfig(site=site),
        model_id="fake",
        d_model=D,
        prepend_bos=False,
        compatibility_mode=True,
        purity=1.0,
        n_source=len(xs),
        n_target=len(xt),
        prompts_hash=prompts_hash(prompts),
        prompts=prompts,
        source_acts=xs,
        target_acts=xt,
    )


OOS = [
    "The capital of France is",
    "The mother tongue of Pablo Picasso is",
    "A triangle has",
    "Once upon a time",
    "The Eiffel Tower is in",
]


@pytest.fixture()
def explorer() -> Explorer:
    edits = [fake_edit(), fake_edit(subject="Victor Hugo")]
    return Explorer(
        None,
        edits,
        out_of_scope=OOS,
        sites=SITES,
        collector=fake_collector,
        probes=["Danielle Darrieux's native tongue is"],
    )


def test_explorer_builds_three_figures(explorer: Explorer) -> None:
    assert set(explorer.figures) == {"distributions", "displacement", "gate"}
    assert explorer.updates == 1
    dist = explorer.figures["distributions"]
    assert [t.name for t in dist.data if t.mode == "markers"] == [
        "source",
        "target",
        "transported T(source)",
        "out of scope",
        "probe",
        "T(probe)",
    ]
    gate = explorer.figures["gate"]
    assert [t.name for t in gate.data if t.type == "histogram"] == ["in scope", "out of scope"]
    assert any(a.text == "probe" for a in gate.layout.annotations)
    for name, out in explorer.outputs.items():  # each figure is displayed in its Output
        (bundle,) = out.outputs
        spec = bundle["data"]["application/vnd.plotly.v1+json"]
        assert spec["layout"]["title"]["text"] == explorer.figures[name].layout.title.text
    assert explorer.site_picker.options[0] == "ln_final.hook_out"
    assert "probe" in explorer.widget.children[1].description


def test_changing_the_site_refits_and_updates_in_place(explorer: Explorer) -> None:
    before = explorer.figures["distributions"]
    out = explorer.outputs["distributions"]
    explorer.site_picker.value = "blocks.1.hook_resid_post"
    after = explorer.figures["distributions"]
    assert after is not before and explorer.updates == 2
    assert after.layout.title.text == "Danielle Darrieux at blocks.1.hook_resid_post"
    assert explorer.outputs["distributions"] is out  # same widget, new content
    spec = out.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert spec["layout"]["title"]["text"].endswith("blocks.1.hook_resid_post")
    assert "map refitted here" in explorer.status.value
    key = (explorer.edit.id, "blocks.1.hook_resid_post")
    assert key in explorer._maps  # fitted once, cached
    explorer.site_picker.value = "ln_final.hook_out"
    explorer.site_picker.value = "blocks.1.hook_resid_post"
    assert len(explorer._maps) == 1


def test_changing_the_probe_moves_the_probe_point(explorer: Explorer) -> None:
    def probe_trace():
        return next(t for t in explorer.figures["distributions"].data if t.name == "probe")

    before = probe_trace()
    explorer.probe_picker.value = "Some brand new probe about Danielle Darrieux"
    after = probe_trace()
    assert after.hovertext[0] == "Some brand new probe about Danielle Darrieux"
    assert (after.x[0], after.y[0]) != (before.x[0], before.y[0])


def test_changing_the_edit_resets_site_and_probe(explorer: Explorer) -> None:
    explorer.site_picker.value = "blocks.0.hook_resid_post"
    n = explorer.updates
    explorer.edit_picker.value = 1
    assert explorer.updates == n + 1  # one refresh for the whole change
    assert explorer.site_picker.value == "ln_final.hook_out"
    assert explorer.probe_picker.value == "The mother tongue of Victor Hugo is"
    assert explorer.figures["distributions"].layout.title.text.startswith("Victor Hugo")


def test_explorer_reports_errors_in_its_status() -> None:
    edit = fake_edit()
    edit.prompts = None
    ex = Explorer(None, [edit], out_of_scope=OOS, sites=SITES, collector=fake_collector)
    assert "carries no prompts" in ex.status.value and ex.figures == {}
    with pytest.raises(SakeLensError, match="pass a model"):
        Explorer(None, [edit])
    with pytest.raises(SakeLensError, match="at least one edit"):
        Explorer(None, [], collector=fake_collector)


@pytest.mark.slow
def test_explorer_on_the_real_model(model) -> None:
    from sake_lens.steer.edit import fit_edit

    request = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    edit = fit_edit(model, request, PARAS)
    ex = Explorer(
        model,
        [edit],
        out_of_scope=OOS[:3],
        sites=["ln_final.hook_out", "blocks.20.hook_resid_post"],
    )
    assert "promoted tokens" in [a.text for a in ex.figures["displacement"].layout.annotations]
    ex.site_picker.value = "blocks.20.hook_resid_post"
    assert (
        ex.figures["displacement"].layout.title.text == "Displacement at blocks.20.hook_resid_post"
    )


def test_explorer_draws_a_fact_gate() -> None:
    from sake_lens.gate import fit_scope

    edit = fake_edit()
    scope = fit_scope(edit)  # the default gate: a fact gate, with the real sentence embedder
    ex = Explorer(
        None,
        [(edit, scope)],
        out_of_scope=OOS,
        sites=SITES,
        collector=fake_collector,
        probes=["The capital of France is"],
    )
    gate = ex.figures["gate"]
    assert [t.name for t in gate.data if t.type == "histogram"] == ["in scope", "out of scope"]
    assert "fact gate" in str(gate.layout)
