"""Griffe extension for the API reference (``extensions:`` of mkdocstrings in mkdocs.yml).

sake_lens docstrings are Google style but title their doctest sections ``Example:``, which
Google-style parsing reads as an admonition (the ``>>>`` lines then render as nested quotes).
This extension retitles them ``Examples:`` before griffe parses the docstring, so they render as
highlighted code.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.M)


class ExampleSections(Extension):
    """``Example:`` -> ``Examples:`` in every docstring (the section griffe parses as doctest)."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
