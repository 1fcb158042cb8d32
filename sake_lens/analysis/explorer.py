"""An interactive explorer for Jupyter: pick an edit, a site and a probe; the figures follow.

:class:`Explorer` shows three figures — the activation distributions (with the probe and its
transported point), the displacement (norms per group, spectrum, logit lens), and the scope
gate's calibration (with the probe's distance) — in ipywidgets ``Output`` areas that are
replaced in place when a selection changes. Activations of every site are collected in one
pass per prompt set and cached; a map at a site other than the edit's own is fitted on the
fly from the same source and target prompts (and cached).

Everything runs headless too: change ``explorer.edit_picker.value`` (or ``site_picker``,
``probe_picker``) from code and read ``explorer.figures``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from torch import Tensor

from ..errors import SakeLensError
from ..steer.edit import Edit
from ..transport import TransportMap
from .calibration import plot_gate_calibration
from .displacement import plot_displacement
from .distributions import plot_distributions
from .report import book_entries

__all__ = ["Explorer", "Collector"]

log = logging.getLogger(__name__)

#: ``collector(prompts, sites) -> {site: (len(prompts), d) tensor}``.
Collector = Callable[[Sequence[str], Sequence[str]], dict[str, Tensor]]

FIGURES = ("distributions", "displacement", "gate")


def _bundle(fig: go.Figure) -> dict[str, Any]:
    """A Jupyter display bundle for a plotly figure (rendered by JupyterLab's plotly
    extension, VS Code and nbconvert)."""
    import json

    spec = json.loads(fig.to_json())
    spec["config"] = {"responsive": True, "displaylogo": False}
    return {
        "application/vnd.plotly.v1+json": spec,
        "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>",
    }


class Explorer:
    """Explore edits in Jupyter.

    Args:
        model: the TransformerLens model (``None`` with a custom ``collector``: no logit lens).
        edits_or_book: an ``EditBook``, a list of edits, or one edit.
        probes: extra prompts to offer in the probe picker (free text works too).
        out_of_scope: prompts the edits must leave alone (default: the gate's out-of-scope
            prompts for each edit).
        sites: sites offered in the site picker (default: every offered site of the model).
        projection: ``"pca"`` or ``"displacement"``.
        collector: how activations are collected (default: :func:`collect_activations`).

    Example:
        >>> explorer = Explorer(model, [edit])  # doctest: +SKIP
        >>> explorer  # doctest: +SKIP  (displays the widgets)
        >>> explorer.site_picker.value = "blocks.20.hook_resid_post"  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        edits_or_book: Any,
        *,
        probes: Sequence[str] = (),
        out_of_scope: Sequence[str] | None = None,
        sites: Sequence[str] | None = None,
        projection: str = "pca",
        collector: Collector | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.model = model
        self.entries = book_entries(edits_or_book)
        if not self.entries:
            raise SakeLensError("the explorer needs at least one edit.")
        if model is None and collector is None:
            raise SakeLensError(
                "pass a model (or a collector) so the explorer can read activations."
            )
        self.collector: Collector = collector or self._collect_with_model
        self.projection = projection
        self._out_of_scope = list(out_of_scope) if out_of_scope is not None else None
        if sites is None:
            if model is not None:
                from ..model.sites import offered_sites

                sites = offered_sites(model)
            else:
                sites = list(dict.fromkeys(e.site.hook for e, _ in self.entries))
        self.sites = list(sites)
        self._acts: dict[tuple[str, str], Tensor] = {}
        self._maps: dict[tuple[str, str], TransportMap] = {}
        self.figures: dict[str, go.Figure] = {}
        self.updates = 0
        self._busy = False
        self._features: Any = None  # the gate's feature cache, made on first use

        first = self.entries[0][0]
        self.edit_picker = widgets.Dropdown(
            options=[
                (f"{e.request.subject}: {e.request.old} → {e.request.new} ({e.id})", i)
                for i, (e, _) in enumerate(self.entries)
            ],
            value=0,
            description="edit",
            layout=widgets.Layout(width="420px"),
        )
        self.site_picker = widgets.Dropdown(
            options=self._site_options(first),
            value=first.site.hook,
            description="site",
        )
        self.probe_picker = widgets.Combobox(
            options=self._probe_options(first, probes),
            value=first.request.text,
            description="probe",
            ensure_option=False,
            continuous_update=False,
            layout=widgets.Layout(width="520px"),
        )
        self._extra_probes = list(probes)
        self.status = widgets.HTML()
        self.outputs = {name: widgets.Output() for name in FIGURES}
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.edit_picker, self.site_picker]),
                self.probe_picker,
                self.status,
                *self.outputs.values(),
            ]
        )
        self.edit_picker.observe(self._on_edit, names="value")
        self.site_picker.observe(self._on_change, names="value")
        self.probe_picker.observe(self._on_change, names="value")
        self.refresh()

    # ------------------------------------------------------------------ Jupyter display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ selection
    @property
    def edit(self) -> Edit:
        return self.entries[self.edit_picker.value][0]

    @property
    def scope(self) -> Any:
        return self.entries[self.edit_picker.value][1]

    def _site_options(self, edit: Edit) -> list[str]:
        return list(dict.fromkeys([edit.site.hook, *self.sites]))

    def _probe_options(self, edit: Edit, extra: Sequence[str]) -> list[str]:
        return list(
            dict.fromkeys([edit.request.text, *extra, *self.out_of_scope_prompts(edit)[:8]])
        )

    def _on_edit(self, change: dict[str, Any]) -> None:
        edit = self.edit
        self._busy = True  # options and values below change together: refresh once
        try:
            self.site_picker.options = self._site_options(edit)
            self.site_picker.value = edit.site.hook
            self.probe_picker.options = self._probe_options(edit, self._extra_probes)
            self.probe_picker.value = edit.request.text
        finally:
            self._busy = False
        self.refresh()

    def _on_change(self, change: dict[str, Any]) -> None:
        if not self._busy:
            self.refresh()

    # ------------------------------------------------------------------ data
    def _collect_with_model(
        self, prompts: Sequence[str], sites: Sequence[str]
    ) -> dict[str, Tensor]:
        from ..collect.activations import collect_activations

        return dict(collect_activations(self.model, list(prompts), list(sites)).acts)

    def activations(self, prompts: Sequence[str], site: str) -> Tensor:
        """``(n, d)`` activations of ``prompts`` at ``site`` (all sites collected at once, cached)."""
        missing = [p for p in dict.fromkeys(prompts) if (p, site) not in self._acts]
        if missing:
            sites = list(dict.fromkeys([site, *self.sites]))
            got = self.collector(missing, sites)
            for s, acts in got.items():
                for p, row in zip(missing, acts):
                    self._acts[(p, s)] = row.detach().to("cpu", torch.float64)
        if not prompts:
            raise SakeLensError("no prompts to collect.")
        return torch.stack([self._acts[(p, site)] for p in prompts])

    def prompts_of(self, edit: Edit) -> tuple[list[str], list[str]]:
        """The edit's source prompts and kept target prompts."""
        if edit.prompts is None:
            raise SakeLensError(
                f"edit {edit.id} carries no prompts, so its distributions cannot be drawn; fit it "
                "with fit_edit (it keeps them) or load it from a registry that stores them."
            )
        return list(edit.prompts.source), list(edit.prompts.kept_target)

    def out_of_scope_prompts(self, edit: Edit) -> list[str]:
        if self._out_of_scope is not None:
            return self._out_of_scope
        try:
            from ..gate.out_of_scope import default_out_of_scope

            oos = default_out_of_scope(edit.request, n_subjects=8, n_relations=4, n_generic=4)
            return list(oos.prompts)
        except (ImportError, SakeLensError):
            return [e.request.text for e, _ in self.entries if e.id != edit.id]

    def map_at(self, edit: Edit, site: str) -> TransportMap:
        """The edit's map at ``site``: its own, or one fitted on the fly (cached)."""
        if site == edit.site.hook:
            return edit.map
        key = (edit.id, site)
        if key not in self._maps:
            source, target = self.prompts_of(edit)
            xs, xt = self.activations(source, site), self.activations(target, site)
            self._maps[key] = edit.config.make_map().fit(xs, xt)
        return self._maps[key]

    # ------------------------------------------------------------------ figures
    def _gate_figure(self, edit: Edit, site: str, probe_x: Tensor, probe: str) -> go.Figure:
        source, _ = self.prompts_of(edit)
        oos = self.out_of_scope_prompts(edit)
        scope = self.scope
        feature = getattr(scope, "feature", None)
        threshold: float | None = None
        if scope is not None and feature == "fact":
            from ..gate.fact import FactIndex

            index = FactIndex([scope])

            def score(texts: list[str]) -> Tensor:  # 2^excess; 4 where the subject is absent
                return torch.exp2(index.excess(texts)[:, 0]).clamp(max=4.0)

            d_in, d_out = score(source), score(oos)
            d_probe = float(score([probe])[0])
            threshold = 1.0
            name = "fact gate: 2^excess (accepted below 1; 4: subject absent)"
        elif scope is not None and feature is not None and self.model is not None:
            from ..gate.scope import FeatureCache

            if self._features is None:
                self._features = FeatureCache(self.model)
            features = self._features
            d_in = scope.distance(features(source, feature))
            d_out = scope.distance(features(oos, feature))
            d_probe = float(scope.distance(features([probe], feature))[0])
            threshold = float(scope.threshold)
            name = f"{scope.stats.metric} distance ({feature})"
        else:
            centre = self.activations(source, site).mean(0)
            d_in = (self.activations(source, site) - centre).norm(dim=1)
            d_out = (self.activations(oos, site) - centre).norm(dim=1)
            d_probe = float((probe_x[0] - centre).norm())
            name = f"Euclidean distance to the source mean at {site}"
        labels = [True] * len(d_in) + [False] * len(d_out)
        fig = plot_gate_calibration(
            torch.cat([d_in, d_out]),
            labels,
            threshold,
            prompts=[*source, *oos],
            distance_name=name,
            title=f"Scope of {edit.id}",
        )
        fig.add_vline(x=d_probe, line={"color": "#c0392b", "width": 2}, row=1, col=1)
        fig.add_annotation(
            text="probe",
            x=d_probe,
            y=0.9,
            xref="x",
            yref="y domain",
            showarrow=False,
            font={"color": "#c0392b"},
            xanchor="right",
        )
        return fig

    def build_figures(self) -> dict[str, go.Figure]:
        """The three figures for the current selection."""
        edit, site, probe = self.edit, self.site_picker.value, self.probe_picker.value or ""
        source, target = self.prompts_of(edit)
        oos = self.out_of_scope_prompts(edit)
        xs, xt = self.activations(source, site), self.activations(target, site)
        x_oos = self.activations(oos, site)
        probe = probe.strip() or edit.request.text
        x_probe = self.activations([probe], site)
        map_ = self.map_at(edit, site)
        prompts = {"source": source, "target": target, "out_of_scope": oos}
        figs = {
            "distributions": plot_distributions(
                xs,
                xt,
                map=map_,
                out_of_scope=x_oos,
                prompts=prompts,
                probes=x_probe,
                probe_labels=[probe],
                projection=self.projection,
                title=f"{edit.request.subject} at {site}",
            ),
            "displacement": plot_displacement(
                map_,
                groups={"source": xs, "target": xt, "out_of_scope": x_oos, "probe": x_probe},
                prompts={**prompts, "probe": [probe]},
                model=self.model,
                site=site,
                title=f"Displacement at {site}",
            ),
            "gate": self._gate_figure(edit, site, x_probe, probe),
        }
        return figs

    def refresh(self) -> None:
        """Recompute the figures for the current selection and replace them in place."""
        try:
            figs = self.build_figures()
        except SakeLensError as exc:
            self.status.value = f"<span style='color:#c0392b'>{html.escape(str(exc))}</span>"
            log.info("explorer: %s", exc)
            return
        self.figures = figs
        self.updates += 1
        edit = self.edit
        self.status.value = html.escape(
            f"{edit.id}: {edit.request.text!r} {edit.request.old} → {edit.request.new}; "
            f"site {self.site_picker.value}"
            + ("" if self.site_picker.value == edit.site.hook else " (map refitted here)")
        )
        for name, fig in figs.items():
            out = self.outputs[name]
            out.outputs = ({"output_type": "display_data", "data": _bundle(fig), "metadata": {}},)
