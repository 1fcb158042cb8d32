"""Context templates that turn a paraphrase into a source or a target sample.

A context template is a string with the fields ``{prompt}`` (the paraphrase, subject filled
in), ``{old}`` and ``{new}``. The sample's activation is read at the last token of the filled
template, where the model is about to say the object.
"""

from __future__ import annotations

from ..errors import DistributionError

__all__ = [
    "FORCED_SOURCE_TEMPLATE",
    "TARGET_TEMPLATES",
    "DEFAULT_TARGET_TEMPLATES",
    "PAPER_TARGET_TEMPLATE",
    "fill_context",
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
DEFAULT_TARGET_TEMPLATES: tuple[str, ...] = ("fact", "fact-twice", "repeat")


def fill_context(template: str, prompt: str, old: str, new: str) -> str:
    """Fill a context template (a name from :data:`TARGET_TEMPLATES` or a literal template)."""
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
