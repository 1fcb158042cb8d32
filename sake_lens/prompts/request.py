"""Edit requests: which fact to change, and how."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import EditRequestError

__all__ = ["EditRequest"]


def _clean(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise EditRequestError(
            f"EditRequest.{field} must be a string, got {type(value).__name__}: {value!r}."
        )
    value = unicodedata.normalize("NFC", value)
    visible = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cf", "Cc", "Zs"))
    if not visible.strip():
        raise EditRequestError(
            f"EditRequest.{field} is empty or only whitespace / invisible characters ({value!r}); "
            f"give the {field.replace('_', ' ')} as non-empty text."
        )
    if "\x00" in value:
        raise EditRequestError(f"EditRequest.{field} contains a NUL character: {value!r}.")
    return value.strip()


def _object_key(text: str) -> str:
    """An object compared without case, spaces or punctuation ("Paris" = " paris. ")."""
    return "".join(ch for ch in text.casefold() if unicodedata.category(ch)[0] in "LNS")


@dataclass(frozen=True)
class EditRequest:
    """One fact to edit: ``prompt`` about ``subject`` should say ``new`` instead of ``old``.

    ``prompt`` is a template with ``{}`` where the subject goes ("The mother tongue of {} is"),
    or a sentence that already contains the subject verbatim. Objects may span several tokens.

    Example:
        >>> r = EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
        >>> r.text
        'The mother tongue of Danielle Darrieux is'
    """

    subject: str
    prompt: str
    old: str
    new: str

    def __post_init__(self) -> None:
        subject = _clean("subject", self.subject)
        prompt = _clean("prompt", self.prompt)
        old = _clean("old", self.old)
        new = _clean("new", self.new)
        if prompt.count("{}") > 1:
            raise EditRequestError(
                f"EditRequest.prompt {prompt!r} has {prompt.count('{}')} '{{}}' placeholders; "
                "use exactly one '{}' where the subject goes."
            )
        if "{}" not in prompt:
            if subject not in prompt:
                raise EditRequestError(
                    f"The subject {subject!r} does not appear in the prompt {prompt!r}. "
                    "Write '{}' where the subject goes (e.g. 'The mother tongue of {} is'), "
                    "or spell the subject exactly as in the prompt."
                )
            prompt = prompt.replace(subject, "{}", 1)
        if _object_key(old) == _object_key(new):
            raise EditRequestError(
                f"The old and new objects are the same ({old!r} and {new!r} differ only in case, "
                "spaces or punctuation); an edit must change the fact. Pass the object the model "
                "says now as old and the one it should say as new."
            )
        if _object_key(prompt.replace("{}", "")) == "":
            raise EditRequestError(
                f"The prompt {prompt!r} is only the subject; add the relation, e.g. "
                "'The mother tongue of {} is'."
            )
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "old", old)
        object.__setattr__(self, "new", new)

    @property
    def template(self) -> str:
        """The prompt with ``{}`` in place of the subject."""
        return self.prompt

    @property
    def text(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.replace("{}", self.subject)

    def fill(self, template: str) -> str:
        """Fill another template of the same relation with this request's subject."""
        return template.replace("{}", self.subject)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditRequest:
        missing = {"subject", "prompt", "old", "new"} - set(data)
        if missing:
            raise EditRequestError(
                f"An edit request needs the keys subject, prompt, old, new; missing {sorted(missing)}."
            )
        return cls(data["subject"], data["prompt"], data["old"], data["new"])
