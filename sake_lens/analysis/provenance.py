"""What a published result was made with: the library version and a hash of its defaults.

A notebook or an analysis page records a *stamp* — ``sake_lens.__version__``, a hash of the
library's default configurations (:func:`defaults_hash`) and the date — when it is made. The
docs tests compare the recorded hash with the current one, so a result made with other
defaults than the current code's is found instead of being published as current.

* Notebooks: the first cell calls :func:`stamp_notebook`, which prints the stamp line;
  ``scripts/build_notebooks.py`` also writes it into the notebook's metadata (``sake_lens``).
* Analysis pages: :meth:`~sake_lens.analysis.AnalysisPage.to_markdown` and the benchmark scripts
  that write pages put :func:`page_front_matter` into the page's front matter.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import inspect
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Provenance",
    "default_configs",
    "defaults_hash",
    "current_provenance",
    "stamp_notebook",
    "notebook_stamp",
    "page_front_matter",
    "front_matter_lines",
    "page_stamp",
]

#: The line :func:`stamp_notebook` prints (and :func:`notebook_stamp` reads back).
STAMP_LINE = re.compile(
    r"sake_lens (?P<version>\S+) \| defaults (?P<defaults_hash>[0-9a-f]{16}) "
    r"\| (?P<date>\d{4}-\d{2}-\d{2})"
)
#: Key of the stamp in a notebook's metadata.
METADATA_KEY = "sake_lens"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _field_defaults(cls: type) -> dict[str, Any]:
    """The defaults of a dataclass's fields (fields without one are left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default_factory())
    return out


def _parameter_defaults(func: Any) -> dict[str, Any]:
    return {
        name: _jsonable(p.default)
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def default_configs() -> dict[str, dict[str, Any]]:
    """The library's default settings: every field default of its configuration dataclasses.

    Returns:
        ``{name: {field: default}}`` for ``EditConfig`` (with its ``DistributionConfig``),
        ``GateConfig``, ``SuiteConfig``, ``EvalConfig`` (every field but ``data``) and the
        keyword defaults of ``make_edit`` (such as ``n_paraphrases``), as plain JSON values.
    """
    from ..evaluate.runner import EvalConfig
    from ..evaluate.suite import SuiteConfig
    from ..gate.config import GateConfig
    from ..steer.edit import EditConfig
    from ..steer.workflow import make_edit

    return {
        "EditConfig": _field_defaults(EditConfig),
        "GateConfig": _field_defaults(GateConfig),
        "SuiteConfig": _field_defaults(SuiteConfig),
        "EvalConfig": _field_defaults(EvalConfig),
        "make_edit": _parameter_defaults(make_edit),
    }


def defaults_hash(configs: dict[str, Any] | None = None) -> str:
    """A short hash of the default settings (:func:`default_configs`).

    Args:
        configs: the settings to hash (default: the current :func:`default_configs`).

    Returns:
        16 hex digits of the SHA-256 of the settings as canonical JSON; it changes whenever a
        default changes, a field is added or one is removed.

    Example:
        >>> len(defaults_hash({"EditConfig": {"reg": 100.0}}))
        16
    """
    data = default_configs() if configs is None else configs
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    """What a result was made with.

    Attributes:
        version: ``sake_lens.__version__`` when it was made.
        defaults_hash: :func:`defaults_hash` when it was made.
        date: the day it was made (ISO format, ``YYYY-MM-DD``).
    """

    version: str
    defaults_hash: str
    date: str

    def line(self) -> str:
        """The stamp as one line (what :func:`stamp_notebook` prints).

        Returns:
            ``sake_lens VERSION | defaults HASH | DATE``.
        """
        return f"sake_lens {self.version} | defaults {self.defaults_hash} | {self.date}"

    def to_dict(self) -> dict[str, str]:
        """The stamp as a dictionary.

        Returns:
            ``{"version": ..., "defaults_hash": ..., "date": ...}``.
        """
        return dataclasses.asdict(self)

    def problem(self) -> str | None:
        """Why this stamp does not describe the current code, or None when it does.

        Returns:
            None when the recorded defaults hash is the current one; else a one-line message.
        """
        current = defaults_hash()
        if self.defaults_hash == current:
            return None
        return (
            f"made on {self.date} with sake_lens {self.version} and other defaults (hash "
            f"{self.defaults_hash}, current {current}): run it again"
        )


def current_provenance(date: str | None = None) -> Provenance:
    """The stamp of something made now.

    Args:
        date: the day to record (default: today).

    Returns:
        The current version, defaults hash and date.
    """
    from .._version import __version__

    return Provenance(__version__, defaults_hash(), date or _dt.date.today().isoformat())


def stamp_notebook() -> Provenance:
    """Print the stamp line in a notebook's first cell (so its outputs record it).

    Returns:
        The stamp that was printed.
    """
    stamp = current_provenance()
    sys.stdout.write(stamp.line() + "\n")
    return stamp


def notebook_stamp(notebook: dict[str, Any]) -> Provenance | None:
    """The stamp a notebook (parsed JSON) was made with.

    Read from the notebook's metadata (``sake_lens``) when there, else from the stamp line the
    first code cells printed (:func:`stamp_notebook`).

    Returns:
        The stamp, or None when the notebook records none.
    """
    meta = notebook.get("metadata", {}).get(METADATA_KEY)
    if isinstance(meta, dict) and {"version", "defaults_hash", "date"} <= set(meta):
        return Provenance(str(meta["version"]), str(meta["defaults_hash"]), str(meta["date"]))
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain") or ""
            m = STAMP_LINE.search(text if isinstance(text, str) else "".join(text))
            if m:
                return Provenance(**m.groupdict())
    return None


def page_front_matter(stamp: Provenance | None = None) -> dict[str, str]:
    """The front-matter entries that stamp an analysis page.

    Args:
        stamp: what the page was made with (default: :func:`current_provenance`).

    Returns:
        ``{"sake_lens_version": ..., "defaults_hash": ..., "made": ...}``.
    """
    stamp = stamp or current_provenance()
    return {
        "sake_lens_version": stamp.version,
        "defaults_hash": stamp.defaults_hash,
        "made": stamp.date,
    }


def front_matter_lines(stamp: Provenance | None = None) -> str:
    """:func:`page_front_matter` as YAML lines, for a page whose front matter is written by hand.

    Returns:
        One ``key: "value"`` line per entry, each ending with a newline.
    """
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in page_front_matter(stamp).items())


def page_stamp(text: str) -> Provenance | None:
    """The stamp in a markdown page's front matter (:func:`page_front_matter`).

    Returns:
        The stamp, or None when the page has no front matter or no stamp in it.
    """
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        return None
    import yaml

    meta = yaml.safe_load(m.group(1)) or {}
    keys = ("sake_lens_version", "defaults_hash", "made")
    if not isinstance(meta, dict) or not all(k in meta for k in keys):
        return None
    return Provenance(*(str(meta[k]) for k in keys))
