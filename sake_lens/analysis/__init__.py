"""Analysis figures: activation distributions, transport displacement, gate calibration, layer
sweeps, registry overviews, evaluation runs compared — plotly figures (never shown), one shared
template — plus analysis pages (self-contained HTML, docs pages) and an interactive Jupyter
explorer.

Every figure function returns a ``plotly.graph_objects.Figure`` drawn with the ``"sake_lens"``
template (:mod:`~sake_lens.analysis.theme`): source blue, target orange, transported green,
out-of-scope grey.
"""

from .calibration import RocCurve as RocCurve
from .calibration import best_threshold as best_threshold
from .calibration import plot_gate_calibration as plot_gate_calibration
from .calibration import roc_curve as roc_curve
from .compare import Comparison as Comparison
from .compare import compare_runs as compare_runs
from .compare import load_run as load_run
from .compare import plot_comparison as plot_comparison
from .displacement import LogitLens as LogitLens
from .displacement import displacement_norms as displacement_norms
from .displacement import logit_lens as logit_lens
from .displacement import map_spectrum as map_spectrum
from .displacement import plot_displacement as plot_displacement
from .displacement import plot_displacement_norms as plot_displacement_norms
from .displacement import plot_logit_lens as plot_logit_lens
from .displacement import plot_map_spectrum as plot_map_spectrum
from .distributions import plot_displacement_histograms as plot_displacement_histograms
from .distributions import plot_distributions as plot_distributions
from .explorer import Explorer as Explorer
from .overview import plot_edit_overview as plot_edit_overview
from .overview import probe_outcomes as probe_outcomes
from .pages import AnalysisPage as AnalysisPage
from .projections import fit_projection as fit_projection
from .provenance import Provenance as Provenance
from .provenance import default_configs as default_configs
from .provenance import defaults_hash as defaults_hash
from .provenance import stamp_notebook as stamp_notebook
from .publish import add_to_nav as add_to_nav
from .publish import publish_page as publish_page
from .report import edits_report as edits_report
from .report import sweep_page as sweep_page
from .sweep import default_sweep_prompts as default_sweep_prompts
from .sweep import layer_sweep as layer_sweep
from .sweep_config import SweepConfig as SweepConfig
from .sweep_decide import DECISION_RULE as DECISION_RULE
from .sweep_plot import plot_sweep as plot_sweep
from .sweep_plot import plot_sweep_heatmap as plot_sweep_heatmap
from .sweep_result import Recommendation as Recommendation
from .sweep_result import SiteSummary as SiteSummary
from .sweep_result import SweepResult as SweepResult
from .theme import COLORS as COLORS
from .theme import TEMPLATE_NAME as TEMPLATE_NAME
from .theme import register_template as register_template

__all__ = [
    "Provenance",
    "default_configs",
    "defaults_hash",
    "stamp_notebook",
    "COLORS",
    "TEMPLATE_NAME",
    "register_template",
    "fit_projection",
    "plot_distributions",
    "plot_displacement_histograms",
    "displacement_norms",
    "map_spectrum",
    "LogitLens",
    "logit_lens",
    "plot_displacement_norms",
    "plot_map_spectrum",
    "plot_logit_lens",
    "plot_displacement",
    "RocCurve",
    "roc_curve",
    "best_threshold",
    "plot_gate_calibration",
    "SweepConfig",
    "SiteSummary",
    "Recommendation",
    "SweepResult",
    "DECISION_RULE",
    "default_sweep_prompts",
    "layer_sweep",
    "plot_sweep",
    "plot_sweep_heatmap",
    "plot_edit_overview",
    "probe_outcomes",
    "AnalysisPage",
    "sweep_page",
    "edits_report",
    "publish_page",
    "add_to_nav",
    "Explorer",
    "Comparison",
    "load_run",
    "compare_runs",
    "plot_comparison",
]
