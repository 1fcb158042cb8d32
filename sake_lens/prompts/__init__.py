"""Prompt distributions for SAKE edits: requests, paraphrases, implications, probes, contexts.

Offline first: the relation template bank (:mod:`.relations`), noisy prefixes (:mod:`.noise`)
and the world-fact table (:mod:`.world`) need no model and no network. LLM paraphrases come from
a local chat model (:class:`LocalModelGenerator`) or any OpenAI-compatible endpoint
(:class:`OpenAIChatGenerator`); both cache their replies on disk.
"""

from .contexts import (
    CHAT_MODES,
    DEFAULT_TARGET_TEMPLATES,
    FORCED_SOURCE_TEMPLATE,
    PAPER_TARGET_TEMPLATE,
    TARGET_TEMPLATES,
    chat_prompt,
    fill_context,
    noisy_context,
)
from .implications import (
    IMPLICATION_TEMPLATES,
    ImplicationProbe,
    ImplicationSample,
    implication_probes,
    implication_samples,
    verify_attribute_table,
)
from .leakage import (
    check_no_leakage,
    evaluation_prompts,
    find_leaks,
    fitting_prompts,
    record_request,
)
from .llm import LocalModelGenerator, ResponseCache, parse_paraphrases
from .noise import NOISE_SENTENCES, long_context, sample_noise, with_noisy_prefix
from .openai_chat import OpenAIChatGenerator
from .paraphrase import ParaphraseGenerator, ParaphraseSet, PromptFilter, TemplateBankGenerator
from .probes import (
    DOUBT_TEMPLATES,
    PAPER_DOUBT_TEMPLATES,
    RobustnessProbe,
    doubt_probes,
    long_context_probes,
    multi_turn_probes,
    robustness_probes,
)
from .relations import RELATIONS, Relation, get_relation, match_relation
from .request import EditRequest
from .world import DEFAULT_TABLE, AttributeRow, AttributeTable

__all__ = [
    "EditRequest",
    # contexts
    "FORCED_SOURCE_TEMPLATE",
    "PAPER_TARGET_TEMPLATE",
    "TARGET_TEMPLATES",
    "DEFAULT_TARGET_TEMPLATES",
    "CHAT_MODES",
    "fill_context",
    "chat_prompt",
    "noisy_context",
    # relations and paraphrases
    "Relation",
    "RELATIONS",
    "get_relation",
    "match_relation",
    "ParaphraseSet",
    "PromptFilter",
    "ParaphraseGenerator",
    "TemplateBankGenerator",
    "LocalModelGenerator",
    "OpenAIChatGenerator",
    "ResponseCache",
    "parse_paraphrases",
    # noise
    "NOISE_SENTENCES",
    "sample_noise",
    "with_noisy_prefix",
    "long_context",
    # implications
    "AttributeRow",
    "AttributeTable",
    "DEFAULT_TABLE",
    "IMPLICATION_TEMPLATES",
    "ImplicationProbe",
    "ImplicationSample",
    "implication_probes",
    "implication_samples",
    "verify_attribute_table",
    # robustness
    "RobustnessProbe",
    "DOUBT_TEMPLATES",
    "PAPER_DOUBT_TEMPLATES",
    "doubt_probes",
    "long_context_probes",
    "multi_turn_probes",
    "robustness_probes",
    # leakage
    "record_request",
    "evaluation_prompts",
    "find_leaks",
    "check_no_leakage",
    "fitting_prompts",
]
