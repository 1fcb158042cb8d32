"""Evaluation runs of several methods side by side: grouped tables, paired differences, a figure.

The inputs are the result files ``sake-lens eval --out`` writes. Every run must be finished and
must have evaluated the same records of the same data file with the same model; the first run
(or the one named by ``reference``) is the reference. For each metric a run's cell is its stored
aggregate, ``mean [95% interval] (n=N)``; each other run also gets a paired difference against
the reference: the mean of ``B - A`` over the records where both runs define the metric, with a
95% percentile bootstrap interval resampled by record. Rates are shown in percent (1 decimal),
the metrics of :data:`~sake_lens.evaluate.metrics.UNSCALED_METRICS` as numbers (3 decimals).

Tables follow :data:`~sake_lens.evaluate.metrics.METRIC_GROUPS`; metrics in no group go to
``other``. The ``cost`` group also shows the fit and evaluation seconds per record (from the
run's ``timings``) and the number of records.

Example:
    runs = [load_run("runs/eval-none.json"), load_run("runs/eval-sake.json")]
    comparison = compare_runs(runs, reference="none", seed=0)
    markdown = comparison.to_markdown()
    fig = plot_comparison(comparison, metrics=["efficacy", "paraphrase", "specificity"])
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._umask import chmod_like_new_file
from ..errors import DataError, SakeLensError
from ..evaluate.metrics import METRIC_GROUPS, METRICS, UNSCALED_METRICS, bootstrap_ci
from .theme import COLORS, apply_theme

__all__ = [
    "RunStat",
    "MetricComparison",
    "Comparison",
    "load_run",
    "check_run",
    "compare_runs",
    "plot_comparison",
]

#: ``format`` of the files ``sake-lens eval --out`` writes.
EVAL_FORMAT = "sake-lens-eval"
#: ``format`` of :meth:`Comparison.to_dict`.
COMPARE_FORMAT = "sake-lens-compare"
#: Key :func:`load_run` adds to a run: the file it was read from.
SOURCE_KEY = "loaded_from"
#: Rows the ``cost`` group adds from ``timings``: row name -> ``timings`` key.
TIMING_ROWS = {"fit s/record": "fit_s", "eval s/record": "eval_s"}
#: Row of the ``cost`` group with the number of records.
RECORDS_ROW = "records"
OTHER_GROUP = "other"
COST_GROUP = "cost"
_FIX = "pass a finished result file written by `sake-lens eval --out`"
_UNSCALED_SUFFIXES = ("_kl", "_change", "_margin")
_MINUS = "\u2212"
_PALETTE = (
    COLORS["target"],
    COLORS["source"],
    COLORS["transported"],
    COLORS["recommended"],
    COLORS["probe"],
    COLORS["distance"],
    "#17becf",
    "#bcbd22",
)
_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")


def _is_unscaled(metric: str) -> bool:
    if metric in UNSCALED_METRICS or metric in TIMING_ROWS:
        return True
    # metrics of older result files that the current table no longer lists
    return metric not in METRICS and metric.endswith(_UNSCALED_SUFFIXES)


def _scale(metric: str) -> float:
    return 1.0 if _is_unscaled(metric) else 100.0


def _digits(metric: str) -> int:
    return 3 if _is_unscaled(metric) else 1


# ----------------------------------------------------------------------------- loading
def load_run(path: str | Path) -> dict[str, Any]:
    """Read and check one result file of ``sake-lens eval --out``.

    A ``.gz`` file is decompressed first. Returns the file's JSON object with one key added,
    ``"loaded_from"`` (the path as given), which labels the run in messages and, when two runs
    share a method, in table headers.

    Returns:
        The result file's contents (config, records and aggregates).

    Raises:
        DataError: the file is unreadable, not JSON, not an evaluation result, incomplete
            (an interrupted run: finish or resume it first) or malformed.

    Example:
        run = load_run("runs/eval-sake.json")
        run["method"]["method"], len(run["records"])
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DataError(f"cannot read {path} ({reason}); {_FIX}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not JSON (not UTF-8 text); {_FIX}.") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {_FIX}."
        ) from None
    check_run(data, str(path))
    data[SOURCE_KEY] = str(path)
    return data


def check_run(data: Any, name: str = "the run") -> None:
    """Check that ``data`` is a finished evaluation result (what :func:`load_run` checks after
    reading a file); ``name`` labels it in the message.

    Raises:
        DataError: not an evaluation result, incomplete, or malformed.
    """
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt != EVAL_FORMAT:
        raise DataError(
            f"{name} is not a sake-lens evaluation result (format {fmt!r}, expected "
            f"{EVAL_FORMAT!r}); {_FIX}."
        )
    records = data.get("records")
    if not isinstance(records, list):
        raise DataError(f"{name} has no list of records; {_FIX}.")
    if data.get("complete") is not True:
        total = (data.get("data") or {}).get("n_records")
        of = f" of {total}" if isinstance(total, int) else ""
        raise DataError(
            f"{name} is an unfinished run ({len(records)}{of} records); the run must finish or "
            "be resumed (rerun the same `sake-lens eval ... --out` command) before it can be "
            "compared."
        )
    for key in ("aggregates", "data", "model", "config"):
        if not isinstance(data.get(key), dict):
            raise DataError(f"{name} has no {key!r} object; {_FIX}.")
    for i, rec in enumerate(records):
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("case_id"), (str, int))
            or not isinstance(rec.get("metrics"), dict)
        ):
            raise DataError(f"{name}: record {i} lacks a case_id or a metrics object; {_FIX}.")


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RunStat:
    """A mean with its 95% interval and count, in the metric's display scale (percent for
    rates). ``mean`` is None when no record defines the metric (``n == 0``)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}

    def format(self, digits: int, *, signed: bool = False) -> str:
        """``mean [lo, hi] (n=N)``, or ``n/a (n=0)``."""
        if self.mean is None or self.ci_low is None or self.ci_high is None:
            return f"n/a (n={self.n})"

        def num(x: float, sign: bool = False) -> str:
            x = round(x, digits) + 0.0  # no "-0.0"
            return f"{x:+.{digits}f}" if sign and x != 0 else f"{x:.{digits}f}"

        return f"{num(self.mean, signed)} [{num(self.ci_low)}, {num(self.ci_high)}] (n={self.n})"


@dataclass(frozen=True)
class MetricComparison:
    """One metric across the runs.

    Attributes:
        name: the metric (or a ``cost`` row: ``fit s/record``, ``eval s/record``, ``records``).
        unscaled: True for a plain number; False for a rate (values in percent).
        stats: per run, in run order; None where the run lacks the metric.
        diffs: per run, the paired difference run - reference; None for the reference and
            where there is nothing to pair.
        description: the metric's one-line description (from the result files).
    """

    name: str
    unscaled: bool
    stats: list[RunStat | None]
    diffs: list[RunStat | None]
    description: str = ""

    @property
    def digits(self) -> int:
        return 0 if self.name == RECORDS_ROW else (3 if self.unscaled else 1)

    @property
    def unit(self) -> str:
        if self.name in TIMING_ROWS:
            return "s"
        return "" if self.unscaled else "%"


@dataclass
class Comparison:
    """Runs side by side; made by :func:`compare_runs`.

    ``groups`` maps each metric family (in report order) to its metrics. Values are in display
    scale: percent for rates.
    """

    labels: list[str]
    methods: list[str]
    modes: list[str | None]
    sources: list[str | None]
    reference: int
    groups: dict[str, list[MetricComparison]]
    n_records: int
    model_id: str
    data_path: str | None
    data_sha256: str
    seed: int
    n_boot: int
    level: float = 0.95
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def diff_labels(self) -> list[str | None]:
        """Per run, the header of its difference column (``B − A``); None for the reference."""
        ref = self.labels[self.reference]
        return [
            None if i == self.reference else f"{label} {_MINUS} {ref}"
            for i, label in enumerate(self.labels)
        ]

    def metric(self, name: str) -> MetricComparison:
        """The row of ``name`` (a metric or a ``cost`` row)."""
        for rows in self.groups.values():
            for row in rows:
                if row.name == name:
                    return row
        raise KeyError(name)

    def summary(self) -> str:
        """One paragraph: what is compared and how the cells read."""
        data = self.data_path or "the data"
        runs = ", ".join(
            f"{label} ({mode} mode)" if mode else label
            for label, mode in zip(self.labels, self.modes)
        )
        return (
            f"{len(self.labels)} runs on the same {self.n_records} records of {data} "
            f"(sha256 {self.data_sha256[:12]}), model {self.model_id}: {runs}. "
            f"Cells: mean [95% bootstrap interval] (n); rates in %. "
            f"Differences against {self.labels[self.reference]}: mean over the records both "
            f"runs define, 95% percentile bootstrap by record (seed {self.seed}, "
            f"{self.n_boot} resamples)."
        )

    def to_markdown(self) -> str:
        """A summary line, then one table per metric family under a ``##`` heading."""
        diff_labels = [d for d in self.diff_labels if d is not None]
        header = ["metric", *self.labels, *diff_labels]
        lines = [self.summary(), ""]
        for group, rows in self.groups.items():
            lines += [f"## {group}", ""]
            lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for row in rows:
                cells = [row.name]
                for stat in row.stats:
                    cells.append(_format_stat(row, stat, signed=False))
                for i, diff in enumerate(row.diffs):
                    if i != self.reference:
                        cells.append(_format_stat(row, diff, signed=True))
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the runs, and ``groups -> metric -> {unit, runs, diffs}`` where ``runs``
        and ``diffs`` map a run label (a ``B − A`` header) to ``{mean, ci_low, ci_high, n}``
        in display scale (percent for rates, ``unit`` says which)."""
        diff_labels = self.diff_labels
        groups: dict[str, dict[str, Any]] = {}
        for group, rows in self.groups.items():
            out: dict[str, Any] = {}
            for row in rows:
                out[row.name] = {
                    "unit": row.unit,
                    "description": row.description,
                    "runs": {
                        label: None if s is None else s.to_dict()
                        for label, s in zip(self.labels, row.stats)
                    },
                    "diffs": {
                        d_label: None if d is None else d.to_dict()
                        for d_label, d in zip(diff_labels, row.diffs)
                        if d_label is not None
                    },
                }
            groups[group] = out
        return {
            "format": COMPARE_FORMAT,
            "format_version": 1,
            "runs": [
                {"label": label, "method": method, "mode": mode, "path": source}
                for label, method, mode, source in zip(
                    self.labels, self.methods, self.modes, self.sources
                )
            ],
            "reference": self.labels[self.reference],
            "model": {"id": self.model_id},
            "data": {"path": self.data_path, "sha256": self.data_sha256},
            "n_records": self.n_records,
            "bootstrap": {"seed": self.seed, "n_boot": self.n_boot, "level": self.level},
            "groups": groups,
        }

    def to_html(self, metrics: Sequence[str] | None = None) -> str:
        """A self-contained HTML page: the tables and :func:`plot_comparison`'s figure."""
        from .pages import AnalysisPage

        page = AnalysisPage("Evaluation runs compared")
        page.add_figure(plot_comparison(self, metrics), "comparison")
        page.add_text(self.to_markdown())
        return page.to_html()

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically; returns the path."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        return _atomic_write_text(Path(path), text)

    def write_html(self, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
        """Write :meth:`to_html` to ``path`` atomically; returns the path."""
        return _atomic_write_text(Path(path), self.to_html(metrics))


def _cell(value: str) -> str:
    return value.replace("\n", " ").replace("|", "\\|")


def _format_stat(row: MetricComparison, stat: RunStat | None, *, signed: bool) -> str:
    if stat is None:
        return "—"
    if row.name == RECORDS_ROW:
        return str(stat.n)
    return stat.format(row.digits, signed=signed)


def _atomic_write_text(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SakeLensError(
            f"cannot write {path} ({exc.strerror}); choose a writable folder."
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        chmod_like_new_file(tmp)  # mkstemp makes it private; give it a new file's mode
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise SakeLensError(
                f"cannot write {path} ({exc.strerror}); nothing was replaced."
            ) from None
        raise
    return path


# ----------------------------------------------------------------------------- comparing
def _source(run: Mapping[str, Any], i: int) -> str:
    src = run.get(SOURCE_KEY)
    return str(src) if src else f"run {i + 1}"


def _method(run: Mapping[str, Any]) -> str:
    method = run.get("method")
    if isinstance(method, dict) and method.get("method"):
        return str(method["method"])
    config = run.get("config") or {}
    return str(config.get("method") or "?")


def _labels(runs: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> list[str]:
    labels = []
    for i, (run, method) in enumerate(zip(runs, methods)):
        if methods.count(method) > 1:
            src = run.get(SOURCE_KEY)
            labels.append(f"{method} ({Path(str(src)).stem if src else f'run {i + 1}'})")
        else:
            labels.append(method)
    for i, label in enumerate(labels):  # same method and same file stem: number them
        if labels.count(label) > 1:
            labels[i] = f"{label} #{i + 1}"
    return labels


def _case_ids(run: Mapping[str, Any]) -> list[str]:
    return [str(r["case_id"]) for r in run["records"]]


def _check_same_setup(runs: Sequence[Mapping[str, Any]]) -> None:
    ref = runs[0]
    ref_src = _source(ref, 0)
    ref_sha = ref["data"].get("sha256")
    ref_model = ref["model"].get("id")
    ref_ids = set(_case_ids(ref))
    for i, run in enumerate(runs[1:], start=1):
        src = _source(run, i)
        sha = run["data"].get("sha256")
        if sha != ref_sha:
            raise DataError(
                f"{src} was run on other data than {ref_src} (data.sha256 {str(sha)[:12]} vs "
                f"{str(ref_sha)[:12]}); compare runs of the same --data file."
            )
        model = run["model"].get("id")
        if model != ref_model:
            raise DataError(
                f"{src} evaluated model {model!r} but {ref_src} evaluated {ref_model!r}; "
                "compare runs of the same --model."
            )
        ids = set(_case_ids(run))
        if ids != ref_ids:
            extra, missing = len(ids - ref_ids), len(ref_ids - ids)
            raise DataError(
                f"{src} and {ref_src} evaluated different records ({extra + missing} differ: "
                f"{extra} only in {src}, {missing} only in {ref_src}); compare runs with the "
                "same --data and --n."
            )


def _resolve_reference(reference: int | str, labels: list[str], methods: list[str]) -> int:
    if isinstance(reference, int):
        if not -len(labels) <= reference < len(labels):
            raise DataError(
                f"reference {reference} is out of range for {len(labels)} runs; pass 0 to "
                f"{len(labels) - 1} or a method name."
            )
        return reference % len(labels)
    if reference in labels:
        return labels.index(reference)
    hits = [i for i, m in enumerate(methods) if m == reference]
    if len(hits) == 1:
        return hits[0]
    choices = ", ".join(repr(label) for label in labels)
    if hits:
        raise DataError(
            f"reference {reference!r} names {len(hits)} runs; pass one of the labels {choices}."
        )
    raise DataError(f"no run of method {reference!r}; pass one of {choices}.")


def _metric_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for name in run["aggregates"]:
            seen.setdefault(str(name), None)
        for rec in run["records"]:
            for name in rec["metrics"]:
                seen.setdefault(str(name), None)
    return list(seen)


def _finite(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6) + 0.0


def _stat_from_aggregate(agg: Any, scale: float) -> RunStat | None:
    if not isinstance(agg, dict):
        return None
    n = int(agg.get("n") or 0)
    mean, lo, hi = agg.get("mean"), agg.get("ci_low"), agg.get("ci_high")
    if not (_finite(mean) and _finite(lo) and _finite(hi)):
        return RunStat(None, None, None, n)
    return RunStat(_round(mean * scale), _round(lo * scale), _round(hi * scale), n)


def _bootstrap(
    values: Sequence[float], scale: float, *, seed: int, n_boot: int, name: str
) -> RunStat:
    if not values:
        return RunStat(None, None, None, 0)
    scaled = (np.asarray(values, dtype=np.float64) * scale).tolist()
    mean, lo, hi = bootstrap_ci(scaled, seed=seed, n_boot=n_boot, name=name)
    return RunStat(_round(mean), _round(lo), _round(hi), len(values))


def _paired(
    run: Mapping[str, Any],
    ref: Mapping[str, Any],
    values: Callable[[Mapping[str, Any]], dict[str, float]],
    scale: float,
    *,
    seed: int,
    n_boot: int,
    name: str,
) -> RunStat:
    """Bootstrap of ``values(run, cid) - values(ref, cid)`` over the records both define."""
    a, b = values(ref), values(run)
    diffs = [b[cid] - a[cid] for cid in a if cid in b]
    return _bootstrap(diffs, scale, seed=seed, n_boot=n_boot, name=name)


def _metric_values(name: str) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    def values(run: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for rec in run["records"]:
            v = rec["metrics"].get(name)
            if _finite(v):
                out[str(rec["case_id"])] = float(v)
        return out

    return values


def _timing_values(key: str) -> Callable[[Mapping[str, Any]], dict[str, float] | None]:
    def values(run: Mapping[str, Any]) -> dict[str, float] | None:
        per = (run.get("timings") or {}).get(key)
        if not isinstance(per, dict):
            return None
        # as the runner's mean_* timings: a record without an entry took no time (no fit)
        out: dict[str, float] = {}
        for cid in _case_ids(run):
            v = per.get(cid, 0.0)
            out[cid] = float(v) if _finite(v) else 0.0
        return out

    return values


def compare_runs(
    runs: Sequence[Mapping[str, Any] | str | Path],
    reference: int | str = 0,
    seed: int = 0,
    n_boot: int = 2000,
) -> Comparison:
    """Compare evaluation runs of several methods on the same records.

    Args:
        runs: result objects from :func:`load_run` (or paths, loaded with it), at least one.
        reference: the run the others are compared with: an index, or a method name (or
            label) of exactly one run. Default: the first.
        seed: seed of the paired bootstrap (one stream per metric).
        n_boot: bootstrap resamples.

    Returns:
        The runs side by side, with paired differences against the first.

    Raises:
        DataError: a file fails :func:`load_run`; the runs used other data, other records or
            another model; ``reference`` names no run or several.

    Example:
        comparison = compare_runs(["runs/eval-none.json", "runs/eval-sake.json"])
        comparison.metric("efficacy").diffs[1]     # RunStat of sake - none, in percent
    """
    loaded: list[Mapping[str, Any]] = []
    for i, r in enumerate(runs):
        if isinstance(r, (str, Path)):
            loaded.append(load_run(r))
        else:
            check_run(r, _source(r, i))
            loaded.append(r)
    if not loaded:
        raise DataError(
            "compare_runs() needs at least one run; pass result files of sake-lens eval."
        )
    _check_same_setup(loaded)
    methods = [_method(r) for r in loaded]
    labels = _labels(loaded, methods)
    ref_i = _resolve_reference(reference, labels, methods)
    ref = loaded[ref_i]

    descriptions: dict[str, str] = {}
    for run in reversed(loaded):
        descriptions.update({str(k): str(v) for k, v in (run.get("metrics") or {}).items()})
    names = _metric_names(loaded)
    grouped = {m for ms in METRIC_GROUPS.values() for m in ms}
    layout: dict[str, list[str]] = {}

    def measured(metric: str) -> bool:  # ripple families exist only where the data has them
        return any(((r["aggregates"].get(metric) or {}).get("n") or 0) > 0 for r in loaded)

    for group, members in METRIC_GROUPS.items():
        present = [m for m in members if m in names and (group != "ripple" or measured(m))]
        if present or group == COST_GROUP:
            layout[group] = present
    others = [m for m in names if m not in grouped]
    if others:
        layout[OTHER_GROUP] = others

    groups: dict[str, list[MetricComparison]] = {}
    for group, shown in layout.items():
        rows: list[MetricComparison] = []
        for name in shown:
            scale = _scale(name)
            stats = [_stat_from_aggregate(r["aggregates"].get(name), scale) for r in loaded]
            values = _metric_values(name)
            diffs: list[RunStat | None] = [
                None
                if i == ref_i
                else _paired(run, ref, values, scale, seed=seed, n_boot=n_boot, name=name)
                for i, run in enumerate(loaded)
            ]
            rows.append(
                MetricComparison(name, _is_unscaled(name), stats, diffs, descriptions.get(name, ""))
            )
        if group == COST_GROUP:
            rows += _cost_rows(loaded, ref_i, seed=seed, n_boot=n_boot)
        groups[group] = rows

    return Comparison(
        labels=labels,
        methods=methods,
        modes=[(r.get("config") or {}).get("mode") for r in loaded],
        sources=[r.get(SOURCE_KEY) for r in loaded],
        reference=ref_i,
        groups=groups,
        n_records=len(ref["records"]),
        model_id=str(ref["model"].get("id")),
        data_path=ref["data"].get("path"),
        data_sha256=str(ref["data"].get("sha256")),
        seed=seed,
        n_boot=n_boot,
        descriptions=descriptions,
    )


def _cost_rows(
    runs: Sequence[Mapping[str, Any]], ref_i: int, *, seed: int, n_boot: int
) -> list[MetricComparison]:
    rows = []
    for row_name, key in TIMING_ROWS.items():
        values = _timing_values(key)
        per_run = [values(r) for r in runs]
        stats: list[RunStat | None] = [
            None
            if v is None
            else _bootstrap(list(v.values()), 1.0, seed=seed, n_boot=n_boot, name=key)
            for v in per_run
        ]
        ref_v = per_run[ref_i]
        diffs: list[RunStat | None] = []
        for i, v in enumerate(per_run):
            if i == ref_i or v is None or ref_v is None:
                diffs.append(None)
            else:
                pairs = [v[cid] - ref_v[cid] for cid in ref_v if cid in v]
                diffs.append(_bootstrap(pairs, 1.0, seed=seed, n_boot=n_boot, name=key))
        rows.append(
            MetricComparison(row_name, True, stats, diffs, f"wall-clock seconds per record ({key})")
        )
    counts: list[RunStat | None] = [
        RunStat(float(len(r["records"])), None, None, len(r["records"])) for r in runs
    ]
    rows.append(
        MetricComparison(
            RECORDS_ROW, True, counts, [None] * len(runs), "records evaluated by the run"
        )
    )
    return rows


# ----------------------------------------------------------------------------- figure
def plot_comparison(
    runs: Comparison | Sequence[Mapping[str, Any] | str | Path],
    metrics: Sequence[str] | None = None,
) -> go.Figure:
    """Dot-and-whisker plot of the runs: one row per metric, one colour per method.

    Each run is one trace per panel (named by its label): the mean as a dot, the 95% interval
    as an error bar, ``n`` in the hover text. Rates are in percent in the left panel; metrics
    that are not rates (KL, changes, margins, seconds), when asked for, get a second panel.

    Args:
        runs: a :class:`Comparison`, or what :func:`compare_runs` takes.
        metrics: metrics (or ``cost`` rows) to show, in order. Default: every rate.

    Returns:
        The figure (plotly, not shown).

    Example:
        fig = plot_comparison(["runs/eval-none.json", "runs/eval-sake.json"], ["efficacy"])
    """
    comparison = runs if isinstance(runs, Comparison) else compare_runs(runs)
    rows_by_name = {row.name: row for rows in comparison.groups.values() for row in rows}
    if metrics is None:
        names = [n for n, row in rows_by_name.items() if not row.unscaled]
    else:
        unknown = [m for m in metrics if m not in rows_by_name]
        if unknown:
            raise DataError(
                f"no metric {unknown[0]!r} in these runs; pass some of {', '.join(rows_by_name)}."
            )
        names = [m for m in metrics if m != RECORDS_ROW]
    panels = [
        (title, [n for n in names if rows_by_name[n].unscaled == unscaled])
        for title, unscaled in (("rate (%)", False), ("value", True))
    ]
    panels = [(title, members) for title, members in panels if members]
    if not panels:
        panels = [("rate (%)", [])]
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        horizontal_spacing=0.25 if len(panels) > 1 else 0.1,
    )
    colors = _method_colors(comparison.methods)
    n_runs = len(comparison.labels)
    width = 0.6
    for col, (title, members) in enumerate(panels, start=1):
        for i, label in enumerate(comparison.labels):
            offset = (i - (n_runs - 1) / 2) * (width / max(n_runs, 1))
            xs, ys, lo, hi, hover, ns = [], [], [], [], [], []
            for k, name in enumerate(members):
                stat = rows_by_name[name].stats[i]
                if stat is None or stat.mean is None:
                    continue
                row = rows_by_name[name]
                mean, low, high = stat.mean, stat.ci_low, stat.ci_high
                assert low is not None and high is not None
                xs.append(mean)
                ys.append(k + offset)
                lo.append(mean - low)
                hi.append(high - mean)
                ns.append(stat.n)
                unit = f" ({row.unit})" if row.unit else ""
                hover.append(f"<b>{label}</b><br>{name}{unit}: {stat.format(row.digits)}")
            same_method = comparison.methods[: i + 1].count(comparison.methods[i]) - 1
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    marker={
                        "color": colors[comparison.methods[i]],
                        "size": 9,
                        "symbol": _SYMBOLS[same_method % len(_SYMBOLS)],
                    },
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": hi,
                        "arrayminus": lo,
                        "thickness": 1.5,
                        "width": 4,
                    },
                    customdata=ns,
                    text=hover,
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(
            tickmode="array",
            tickvals=list(range(len(members))),
            ticktext=members,
            range=[len(members) - 0.5, -0.5],
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=title, zeroline=True, row=1, col=col)
    n_rows = max((len(m) for _, m in panels), default=1)
    fig.update_layout(
        height=max(260, 120 + 34 * n_rows),
        legend_title_text="method",
        hovermode="closest",
    )
    return apply_theme(
        fig,
        title=f"{', '.join(comparison.labels)} on {comparison.n_records} records "
        "(mean, 95% interval)",
    )


def _method_colors(methods: Sequence[str]) -> dict[str, str]:
    colors: dict[str, str] = {}
    k = 0
    for method in methods:
        if method in colors:
            continue
        if method == "none":
            colors[method] = COLORS["out_of_scope"]
        else:
            colors[method] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return colors
