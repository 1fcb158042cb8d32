"""Scope gates: decide which inputs an edit applies to, and route many edits at once.

The default, the fact gate (:mod:`sake_lens.gate.fact`), fires when the prompt names the edit's
subject and, with the subject masked, is nearer the edit's relation than any other. The
distance gates compare an input's features — the prompt's sentence embedding (the paper) or the
model's hidden state at the prompt's last token — with an edit's in-scope samples (Euclidean to
the mean, nearest sample, cosine, or Mahalanobis under a shrinkage covariance), and accepts
distances below a threshold calibrated at a target false-positive rate on out-of-scope prompts.
"""

from .bank import StackedStats as StackedStats
from .calibrate import Calibration as Calibration
from .calibrate import auroc as auroc
from .calibrate import calibrate_threshold as calibrate_threshold
from .config import EMBEDDING as EMBEDDING
from .config import GATE_KINDS as GATE_KINDS
from .config import GATE_METRICS as GATE_METRICS
from .config import TEXT_VIEWS as TEXT_VIEWS
from .config import GateConfig as GateConfig
from .embedder import SentenceEmbedder as SentenceEmbedder
from .embedder import default_embedder as default_embedder
from .fact import FactScope as FactScope
from .out_of_scope import GENERIC_PROMPTS as GENERIC_PROMPTS
from .out_of_scope import OTHER_SUBJECTS as OTHER_SUBJECTS
from .out_of_scope import OutOfScope as OutOfScope
from .out_of_scope import default_out_of_scope as default_out_of_scope
from .out_of_scope import generic_prompts as generic_prompts
from .out_of_scope import other_relation_prompts as other_relation_prompts
from .out_of_scope import other_subject_prompts as other_subject_prompts
from .router import ScopeRouter as ScopeRouter
from .scope import FeatureCache as FeatureCache
from .scope import Scope as Scope
from .scope import fit_scope as fit_scope
from .scope import gate_score as gate_score
from .scope import in_scope_prompts as in_scope_prompts
from .scope import last_sentence as last_sentence
from .stats import ScopeStats as ScopeStats
from .stats import ledoit_wolf_shrinkage as ledoit_wolf_shrinkage

__all__ = [
    "GateConfig",
    "GATE_KINDS",
    "GATE_METRICS",
    "EMBEDDING",
    "TEXT_VIEWS",
    "ScopeStats",
    "ledoit_wolf_shrinkage",
    "StackedStats",
    "Calibration",
    "auroc",
    "calibrate_threshold",
    "SentenceEmbedder",
    "default_embedder",
    "OutOfScope",
    "OTHER_SUBJECTS",
    "GENERIC_PROMPTS",
    "default_out_of_scope",
    "other_subject_prompts",
    "other_relation_prompts",
    "generic_prompts",
    "Scope",
    "FactScope",
    "FeatureCache",
    "fit_scope",
    "gate_score",
    "in_scope_prompts",
    "last_sentence",
    "ScopeRouter",
]
