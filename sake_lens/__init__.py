"""sake_lens: edit facts in language models by steering activations with optimal transport.

The SAKE method (Scialanga et al., ACL 2025) on TransformerLens hook points, with analysis
figures for Jupyter and docs. The public API lives here; submodules are implementation.

Example:
    >>> import sake_lens as sl  # doctest: +SKIP
    >>> model = sl.load_model()  # doctest: +SKIP
    >>> request = sl.EditRequest("Danielle Darrieux", "The mother tongue of {} is",
    ...                          "French", "English")  # doctest: +SKIP
    >>> edit = sl.fit_edit(model, request, ["The native language of {} is"])  # doctest: +SKIP
    >>> with sl.steered(model, [edit]):  # doctest: +SKIP
    ...     sl.generate(model, request.text, max_new_tokens=5)
"""

from ._version import __version__ as __version__
from ._version import library_versions as library_versions
from .analysis import Explorer as Explorer
from .analysis import SweepConfig as SweepConfig
from .analysis import SweepResult as SweepResult
from .analysis import layer_sweep as layer_sweep
from .analysis import plot_displacement as plot_displacement
from .analysis import plot_distributions as plot_distributions
from .analysis import plot_edit_overview as plot_edit_overview
from .analysis import plot_gate_calibration as plot_gate_calibration
from .analysis import plot_sweep as plot_sweep
from .collect.activations import Activations as Activations
from .collect.activations import collect_activations as collect_activations
from .errors import CollectionError as CollectionError
from .errors import DataError as DataError
from .errors import DistributionError as DistributionError
from .errors import EditFileError as EditFileError
from .errors import EditRequestError as EditRequestError
from .errors import FitError as FitError
from .errors import GateError as GateError
from .errors import GenerationError as GenerationError
from .errors import ModelLoadError as ModelLoadError
from .errors import ModelMismatchError as ModelMismatchError
from .errors import RegistryError as RegistryError
from .errors import SakeLensError as SakeLensError
from .errors import SiteError as SiteError
from .evaluate import EvalConfig as EvalConfig
from .evaluate import load_records as load_records
from .evaluate import run_evaluation as run_evaluation
from .gate import GateConfig as GateConfig
from .model.loading import load_model as load_model
from .model.sites import Site as Site
from .model.sites import offered_sites as offered_sites
from .model.sites import resolve_site as resolve_site
from .model.tokens import bos_convention as bos_convention
from .prompts.contexts import TARGET_TEMPLATES as TARGET_TEMPLATES
from .prompts.distributions import DistributionConfig as DistributionConfig
from .prompts.request import EditRequest as EditRequest
from .registry import EditBook as EditBook
from .steer.edit import Edit as Edit
from .steer.edit import EditConfig as EditConfig
from .steer.edit import fit_edit as fit_edit
from .steer.generation import generate as generate
from .steer.hooks import steered as steered
from .transport import DiagonalMap as DiagonalMap
from .transport import GaussianMap as GaussianMap
from .transport import MeanShiftMap as MeanShiftMap
from .transport import TransportMap as TransportMap
from .transport import make_map as make_map

__all__ = [
    "__version__",
    "library_versions",
    "load_model",
    "Site",
    "offered_sites",
    "resolve_site",
    "bos_convention",
    "EditRequest",
    "DistributionConfig",
    "TARGET_TEMPLATES",
    "Activations",
    "collect_activations",
    "TransportMap",
    "GaussianMap",
    "DiagonalMap",
    "MeanShiftMap",
    "make_map",
    "Edit",
    "EditConfig",
    "fit_edit",
    "steered",
    "generate",
    "GateConfig",
    "EditBook",
    "EvalConfig",
    "load_records",
    "run_evaluation",
    "layer_sweep",
    "SweepConfig",
    "SweepResult",
    "plot_sweep",
    "plot_distributions",
    "plot_displacement",
    "plot_gate_calibration",
    "plot_edit_overview",
    "Explorer",
    "SakeLensError",
    "ModelLoadError",
    "EditRequestError",
    "SiteError",
    "CollectionError",
    "FitError",
    "DistributionError",
    "GateError",
    "RegistryError",
    "EditFileError",
    "ModelMismatchError",
    "DataError",
    "GenerationError",
]
