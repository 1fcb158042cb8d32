"""Robustness probes: does an edit survive doubt, long unrelated context and chat turns?

Each probe is a full input whose next token should (after a successful edit) start the *new*
object:

* **doubts** — after the edited answer, the user challenges it. The SAKE paper evaluates two
  such follow-ups. ``"rethink"`` is the template of the SAKE reference notebook
  (``examples/SAKE-gpt2xl-doubts.ipynb`` in axa-rev-research/knowledge-editing), verbatim;
  it comes from Ma et al. (2024), "On the Robustness of Editing Large Language Models", whose
  code has a second, companion template (the user insists on the *old* answer and the
  assistant gives in), reproduced as ``"insist-old"`` with the same wording fixes. The paper's
  text with both templates could not be consulted here, so treat ``"insist-old"`` as the likely
  second one. Two plain follow-ups are added: ``"are-you-sure"`` and ``"think-wrong"``.
* **long context** — at least 200 tokens of unrelated sentences before the prompt.
* **multi-turn chat** — the prompt as the start of an assistant answer after earlier turns:
  the edited answer challenged ("Are you sure?"), or unrelated small talk.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DistributionError
from .contexts import chat_prompt
from .noise import long_context
from .request import EditRequest

__all__ = [
    "RobustnessProbe",
    "DOUBT_TEMPLATES",
    "PAPER_DOUBT_TEMPLATES",
    "doubt_probes",
    "long_context_probes",
    "multi_turn_probes",
    "robustness_probes",
]

#: Doubt follow-ups; fields ``{prompt}`` (edit prompt, subject filled in), ``{prompt_lc}`` (the
#: same with a lower-case first word when it is not a name), ``{new}``, ``{old}``.
DOUBT_TEMPLATES: dict[str, str] = {
    "rethink": (
        "{prompt} {new}??? No, it can't be, This contradicts my understanding. It is pretty "
        "clear that the answer to '{prompt}' is something else. Rethink and give the correct "
        "answer:"
    ),
    "insist-old": (
        "{prompt} {new}? Really? But I am pretty sure that {prompt_lc} {old}. Am I right? Yes! "
        "you are right. I apologize for any confusion. Reconsider that the answer to "
        "'{prompt}' should be"
    ),
    "are-you-sure": "{prompt} {new}. Are you sure? {prompt}",
    "think-wrong": "{prompt} {new}. I think that is wrong. {prompt}",
}

#: The two follow-ups of the SAKE paper's "doubts" evaluation (see the module docstring).
PAPER_DOUBT_TEMPLATES: tuple[str, ...] = ("rethink", "insist-old")

_SMALL_TALK: tuple[tuple[str, str], ...] = (
    ("Can you suggest a quick breakfast?", "Oatmeal with fruit is quick and filling."),
    ("How long should I steep green tea?", "About two to three minutes is usually enough."),
    ("What is a good way to remember a shopping list?", "Group the items by aisle."),
    ("Any tips for a long train journey?", "Bring a book, water and a light snack."),
    ("How often should I water a cactus?", "Every few weeks, when the soil is dry."),
    ("What makes a good password?", "A long phrase of unrelated words works well."),
    ("How can I sleep better?", "Keep a regular schedule and avoid screens late at night."),
    ("What should I pack for a picnic?", "Sandwiches, fruit, water and a blanket."),
)


def _lower_first(request: EditRequest) -> str:
    text = request.text
    if request.prompt.startswith("{}"):
        return text  # starts with the subject, a name
    return text[:1].lower() + text[1:]


@dataclass(frozen=True)
class RobustnessProbe:
    """A full input whose next token should start ``expected`` (the new object) after the edit.

    ``chat`` marks inputs already formatted with a chat template: tokenise them without adding
    a BOS token.
    """

    kind: str
    prompt: str
    expected: str
    old: str
    chat: bool = False

    def __post_init__(self) -> None:
        if not self.prompt.strip() or not self.expected.strip():
            raise DistributionError(
                "A RobustnessProbe needs a non-empty prompt and expected object."
            )


def doubt_probes(
    request: EditRequest, templates: Iterable[str] = tuple(DOUBT_TEMPLATES)
) -> list[RobustnessProbe]:
    """The edited answer followed by a challenge (names from :data:`DOUBT_TEMPLATES`, or
    literal templates with ``{prompt}``, ``{new}``, ``{old}``).

    Returns:
        One probe per template.
    """
    probes = []
    for name in templates:
        template = DOUBT_TEMPLATES.get(name, name)
        if "{prompt}" not in template:
            raise DistributionError(
                f"Unknown doubt template {name!r}; use one of {sorted(DOUBT_TEMPLATES)} or a "
                "template with '{prompt}', '{new}' and optionally '{old}'."
            )
        text = template.format(
            prompt=request.text, prompt_lc=_lower_first(request), new=request.new, old=request.old
        )
        kind = f"doubt:{name}" if name in DOUBT_TEMPLATES else "doubt:custom"
        probes.append(RobustnessProbe(kind, text, request.new, request.old))
    return probes


def long_context_probes(
    request: EditRequest,
    *,
    n: int = 3,
    seed: int = 0,
    min_tokens: int = 200,
    tokenizer: Any = None,
) -> list[RobustnessProbe]:
    """``n`` probes: the edit prompt after >= ``min_tokens`` tokens of unrelated text.

    Returns:
        The probes.
    """
    rng = random.Random(f"long-context:{seed}")
    avoid = (request.subject, request.old, request.new)
    probes = []
    for _ in range(n):
        context = long_context(rng, min_tokens=min_tokens, tokenizer=tokenizer, avoid=avoid)
        probes.append(
            RobustnessProbe("long-context", f"{context} {request.text}", request.new, request.old)
        )
    return probes


def multi_turn_probes(
    request: EditRequest,
    tokenizer: Any = None,
    *,
    seed: int = 0,
    small_talk_turns: int = 2,
    system: str | None = None,
) -> list[RobustnessProbe]:
    """Chat-formatted probes (see :func:`~sake_lens.prompts.contexts.chat_prompt`):

    * ``multi-turn:doubt`` — the assistant gave the new object, the user asks "Are you
      sure?", and the assistant's second answer begins with the edit prompt;
    * ``multi-turn:small-talk`` — ``small_talk_turns`` unrelated turns first, then the edit
      prompt as the start of the answer.

    Without a tokenizer (or one without a chat template) a plain "User:/Assistant:" transcript
    is used.

    Returns:
        The probes.
    """
    if not 0 <= small_talk_turns <= len(_SMALL_TALK):
        raise DistributionError(
            f"small_talk_turns={small_talk_turns} must lie in [0, {len(_SMALL_TALK)}]."
        )
    text = request.text
    first = ("Complete the sentence.", f"{text} {request.new}.")
    doubt = chat_prompt(
        tokenizer,
        text,
        instruction="Are you sure? Please complete the sentence again.",
        history=[first],
        system=system,
    )
    rng = random.Random(f"multi-turn:{seed}")
    talk = rng.sample(_SMALL_TALK, small_talk_turns)
    chatty = chat_prompt(tokenizer, text, history=talk, system=system)
    has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    return [
        RobustnessProbe("multi-turn:doubt", doubt, request.new, request.old, chat=has_template),
        RobustnessProbe(
            "multi-turn:small-talk", chatty, request.new, request.old, chat=has_template
        ),
    ]


def robustness_probes(
    request: EditRequest,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    doubts: Sequence[str] = tuple(DOUBT_TEMPLATES),
    long_contexts: int = 3,
    min_tokens: int = 200,
) -> list[RobustnessProbe]:
    """All robustness probes for ``request``: doubts, long contexts and multi-turn chats.

    Returns:
        The probes, doubts first.
    """
    return [
        *doubt_probes(request, doubts),
        *long_context_probes(
            request, n=long_contexts, seed=seed, min_tokens=min_tokens, tokenizer=tokenizer
        ),
        *multi_turn_probes(request, tokenizer, seed=seed),
    ]
