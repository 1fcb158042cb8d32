"""Context templates that turn a paraphrase into a source or a target sample.

A context template is a string with the fields ``{prompt}`` (the paraphrase, subject filled
in), ``{old}`` and ``{new}``. The sample's activation is read at the last token of the filled
template, where the model is about to say the object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DistributionError
from .noise import with_noisy_prefix

__all__ = [
    "FORCED_SOURCE_TEMPLATE",
    "TARGET_TEMPLATES",
    "DEFAULT_TARGET_TEMPLATES",
    "PAPER_TARGET_TEMPLATE",
    "fill_context",
    "CHAT_MODES",
    "DEFAULT_CHAT_INSTRUCTION",
    "chat_prompt",
    "noisy_context",
]

#: The paper's "forced" source context: the model is made to repeat the old fact.
FORCED_SOURCE_TEMPLATE = "Repeat this sentence: '{prompt} {old}'. {prompt}"

#: The paper's target context (it primes the *old* object on SmolLM2: see DESIGN.md).
PAPER_TARGET_TEMPLATE = "Do not mention '{old}'. Repeat this sentence: '{prompt} {new}'. {prompt}"

#: Named target contexts. Purity measured on SmolLM2-135M-Instruct (12 records x 6 prompts):
#: fact 66/72, fact-twice 71/72, repeat-3 69/72, repeat 69/72, paper lower.
TARGET_TEMPLATES: dict[str, str] = {
    "fact": "Fact: {prompt} {new}.\nQuestion: {prompt}",
    "fact-twice": "Fact: {prompt} {new}. Fact: {prompt} {new}.\nQuestion: {prompt}",
    "repeat": "Repeat this sentence: '{prompt} {new}'. {prompt}",
    "repeat-3": "{prompt} {new}. {prompt} {new}. {prompt} {new}. {prompt}",
    "paper": PAPER_TARGET_TEMPLATE,
}

#: The target contexts used by default: several, so the target cloud is not one context's.
DEFAULT_TARGET_TEMPLATES: tuple[str, ...] = ("fact", "repeat")


def fill_context(template: str, prompt: str, old: str, new: str) -> str:
    """Fill a context template (a name from :data:`TARGET_TEMPLATES` or a literal template).

    Returns:
        The filled-in prompt.
    """
    template = TARGET_TEMPLATES.get(template, template)
    if "{prompt}" not in template:
        raise DistributionError(
            f"The context template {template!r} has no '{{prompt}}' field. Use one of "
            f"{sorted(TARGET_TEMPLATES)} or a template such as 'Fact: {{prompt}} {{new}}.\\n"
            "Question: {prompt}'."
        )
    if not template.rstrip().endswith("{prompt}"):
        raise DistributionError(
            f"The context template {template!r} must end with '{{prompt}}': the activation is "
            "read where the model is about to say the object."
        )
    try:
        return template.format(prompt=prompt, old=old, new=new)
    except (KeyError, IndexError, ValueError) as exc:
        raise DistributionError(
            f"The context template {template!r} has a field other than {{prompt}}, {{old}}, "
            f"{{new}} ({exc}); double any literal braces: '{{{{' and '}}}}'."
        ) from exc


#: How :func:`chat_prompt` places the prompt in a chat.
CHAT_MODES: tuple[str, ...] = ("answer", "question")

#: The user turn of :func:`chat_prompt` in "answer" mode (and the question's lead-in).
DEFAULT_CHAT_INSTRUCTION = "Complete the sentence."


def _plain_chat(messages: list[dict[str, str]]) -> str:
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def chat_prompt(
    tokenizer: Any,
    prompt: str,
    *,
    mode: str = "answer",
    instruction: str = DEFAULT_CHAT_INSTRUCTION,
    history: Sequence[tuple[str, str]] = (),
    system: str | None = None,
) -> str:
    """Wrap ``prompt`` in a chat for instruct models, with the assistant turn opened.

    Modes:

    * ``"answer"`` (for activations and next-token scoring): the user turn is ``instruction``
      and the assistant's answer *begins with the prompt's sentence*, so the next token is the
      object, as with plain text prompts::

          <user> Complete the sentence. <assistant> The mother tongue of Danielle Darrieux is

    * ``"question"`` (for generation): the user turn is ``instruction`` followed by the prompt,
      and the assistant turn is opened empty; the object is expected somewhere in the generated
      answer, not necessarily as the next token.

    ``history`` holds earlier (user, assistant) turns (multi-turn probes); ``system`` an
    optional system message (the tokenizer's default is used otherwise). The tokenizer's own
    chat template is used (``apply_chat_template``); without one (base models, or
    ``tokenizer=None``) a plain "User: ... / Assistant: ..." transcript is written.

    The result already contains the template's special tokens as text: tokenise it without
    adding a BOS token (``model.to_tokens(text, prepend_bos=False)``).

    Returns:
        The chat text, ending where the assistant's answer starts.
    """
    if mode not in CHAT_MODES:
        raise DistributionError(f"Unknown chat mode {mode!r}; use one of {list(CHAT_MODES)}.")
    if not prompt.strip():
        raise DistributionError("chat_prompt() got an empty prompt; pass the sentence to wrap.")
    messages: list[dict[str, str]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    for user, assistant in history:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    if mode == "answer":
        messages.append({"role": "user", "content": instruction})
    else:
        messages.append({"role": "user", "content": f"{instruction} {prompt}".strip()})
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        text = _plain_chat(messages)
        return f"{text} {prompt}" if mode == "answer" else text
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # templates are user code (Jinja): report them, don't crash later
        raise DistributionError(
            f"The tokenizer's chat template failed on {len(messages)} messages ({exc}). Pass "
            "tokenizer=None for a plain 'User:/Assistant:' transcript, or fix the template."
        ) from exc
    if not isinstance(text, str):
        raise DistributionError(
            "apply_chat_template(tokenize=False) did not return text; upgrade transformers or "
            "pass tokenizer=None."
        )
    return text + prompt if mode == "answer" else text


def noisy_context(prompt: str, seed: int, *, sentences: int = 1, avoid: Sequence[str] = ()) -> str:
    """``prompt`` behind ``sentences`` unrelated sentences (see :mod:`sake_lens.prompts.noise`).

    Returns:
        The prompt behind its unrelated sentences.
    """
    return with_noisy_prefix(prompt, seed, sentences=sentences, avoid=avoid)
