"""Evaluation harness: CounterFact-style data, the SAKE paper's metrics and more, baselines.

:func:`run_evaluation` runs one method (:data:`METHODS`) in one mode (``single``: each edit
alone, the paper's protocol; ``all``: every edit at once) and writes a resumable JSON file with
every per-record outcome and bootstrap-interval aggregates; ``sake-lens eval`` is its command
line. See :mod:`sake_lens.evaluate.metrics` for the exact definition of every metric.
:func:`build_known_facts` (``sake-lens known-facts``) keeps the records and neighbourhood
prompts a model itself knows, for measuring specificity on facts the model has.
"""

from .data import EvalRecord as EvalRecord
from .data import LoadResult as LoadResult
from .data import load_records as load_records
from .data import parse_record as parse_record
from .known_facts import KnownFactsConfig as KnownFactsConfig
from .known_facts import build_known_facts as build_known_facts
from .known_facts import check_known_facts_model as check_known_facts_model
from .methods import IN_CONTEXT_PREFIX as IN_CONTEXT_PREFIX
from .methods import METHODS as METHODS
from .methods import MODES as MODES
from .metrics import METRICS as METRICS
from .metrics import ProbeResult as ProbeResult
from .metrics import aggregate as aggregate
from .metrics import bootstrap_ci as bootstrap_ci
from .metrics import ngram_entropy as ngram_entropy
from .metrics import record_metrics as record_metrics
from .reference import REFERENCE_GATE_THRESHOLD as REFERENCE_GATE_THRESHOLD
from .reference import PotLinearMap as PotLinearMap
from .runner import EvalConfig as EvalConfig
from .runner import results_table as results_table
from .runner import run_evaluation as run_evaluation
from .scoring import RowScore as RowScore
from .scoring import ScoreRequest as ScoreRequest
from .scoring import score_rows as score_rows
from .suite import SuiteConfig as SuiteConfig

__all__ = [
    "EvalRecord",
    "LoadResult",
    "load_records",
    "parse_record",
    "KnownFactsConfig",
    "build_known_facts",
    "check_known_facts_model",
    "METHODS",
    "MODES",
    "IN_CONTEXT_PREFIX",
    "METRICS",
    "ProbeResult",
    "record_metrics",
    "aggregate",
    "bootstrap_ci",
    "ngram_entropy",
    "PotLinearMap",
    "REFERENCE_GATE_THRESHOLD",
    "EvalConfig",
    "run_evaluation",
    "results_table",
    "ScoreRequest",
    "RowScore",
    "score_rows",
    "SuiteConfig",
]
