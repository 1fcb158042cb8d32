"""The evaluation run: records -> edits -> batched probes -> metrics -> one JSON file.

:func:`run_evaluation` evaluates one method in one mode on the first ``n`` valid records of a
data file (file order, so runs of different methods see the same records; the seed drives the
bootstrap and every sampled choice — paraphrases, unrelated prompts, long contexts).

Records are processed in chunks: the chunk's edits are fitted, then every probe of every record
in the chunk goes through the model in shared batches (:func:`~.scoring.score_rows`), and the
greedy generations likewise. After each chunk the output file is rewritten atomically with the
finished records, so an interrupted run resumes where it stopped: a rerun with the same
configuration (same config hash: settings, data file content, model, sake_lens version) skips
the records already in the file. In ``all`` mode a resumed run fits every edit again (fitting is
deterministic) and scores only the missing records.

Out-of-scope rows are cheap when the gate works: the unrelated prompts and the neutral text are
first run as short gate probes; only where an edit fired (or a prefix changed the input) are
their generations and the neutral text's perplexity recomputed with the treatment — elsewhere
the model is untouched, so the unedited run-level values are exact.

The output holds ``config``, ``config_hash``, ``versions``, ``method``, ``data``, ``baseline``,
``records`` (every per-record outcome), ``aggregates`` (mean and 95% bootstrap interval per
metric) and ``timings`` — the only key that differs between two runs with the same seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._version import __version__, library_versions
from ..errors import DataError
from ..model.loading import model_id as get_model_id
from ..model.tokens import bos_convention
from ..steer.generation import generate
from .data import EvalRecord, load_records
from .methods import (
    METHODS,
    MODES,
    MethodOverrides,
    Treatment,
    edit_summary,
    fit_all,
    method_description,
    prepare_treatment,
)
from .metrics import METRICS, ProbeResult, SideEffects, aggregate, ngram_entropy, record_metrics
from .scoring import RowScore, ScoreRequest, score_rows
from .suite import (
    ProbeSpec,
    SuiteConfig,
    build_probes,
    unrelated_prompts,
    verified_table,
    with_space,
)
from .texts import NEUTRAL_TEXT, UNRELATED_PROMPTS, split_first_sentence

__all__ = ["EvalConfig", "run_evaluation", "results_table", "FORMAT", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT = "sake-lens-eval"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run.

    Attributes:
        data: the data file (CounterFact flat or ROME format, or a simple list; JSON/YAML).
        n: evaluate the first ``n`` valid records in file order (None: all).
        method: one of :data:`~.methods.METHODS`.
        mode: ``single`` (each edit alone) or ``all`` (every edit at once).
        seed: drives the bootstrap and every sampled choice.
        chunk_size: records fitted and scored together (single mode) / per flush.
        batch_size: rows per forward pass.
        max_new_tokens: length of the greedy generations.
        generation: run the generation metrics.
        suite: which probes each record gets.
        n_boot: bootstrap resamples.
        overrides: changes to a fitted method's settings (ablations; see
            :class:`~.methods.MethodOverrides`).
    """

    data: str
    n: int | None = None
    method: str = "sake"
    mode: str = "single"
    seed: int = 0
    chunk_size: int = 8
    batch_size: int = 32
    max_new_tokens: int = 20
    generation: bool = True
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    n_boot: int = 2000
    overrides: MethodOverrides = field(default_factory=MethodOverrides)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; allowed: {METHODS}.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; allowed: {MODES}.")
        if self.n is not None and self.n < 1:
            raise ValueError(f"n must be >= 1 or None, got {self.n}.")
        for name in ("chunk_size", "batch_size", "max_new_tokens", "n_boot"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        object.__setattr__(self, "data", str(self.data))
        if not self.overrides.empty and self.method in ("none", "in-context"):
            raise ValueError(
                f"Method {self.method!r} fits no edit: --paraphrases, --edit-config and "
                "--gate-config apply to mean-shift, sake and sake-reference only."
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["suite"] = asdict(self.suite)
        if self.overrides.empty:
            out.pop("overrides")  # older result files (and their hashes) stay resumable
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        data = dict(data)
        data["suite"] = SuiteConfig(**data.get("suite", {}))
        data["overrides"] = MethodOverrides(**data.get("overrides", {}))
        return cls(**data)


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def config_hash(config: EvalConfig, data_sha256: str, model: Any) -> str:
    """What must match for a rerun to reuse finished records (the data path may differ)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "data"}
    return _sha([settings, data_sha256, get_model_id(model), __version__])[:16]


# ------------------------------------------------------------------------------ output file
def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_previous(path: Path, expected_hash: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"The output file {str(path)!r} exists but is not a readable evaluation result "
            f"({exc}); move it away or choose another --out."
        ) from exc
    if prev.get("format") != FORMAT:
        raise DataError(f"{str(path)!r} is not a sake-lens evaluation file; choose another --out.")
    if prev.get("config_hash") != expected_hash:
        raise DataError(
            f"{str(path)!r} holds results of another configuration (config hash "
            f"{prev.get('config_hash')} != {expected_hash}: other settings, data, model or "
            "sake_lens version); choose another --out or delete the file to start over."
        )
    return prev


# ------------------------------------------------------------------------------ baseline
def _ppl(score: RowScore) -> float:
    return math.exp(-score.logprobs[0] / score.n_tokens[0])


def _generate(
    model: Any,
    prompts: Sequence[str],
    owners: Sequence[int],
    treatment: Treatment | None,
    config: EvalConfig,
) -> list[str]:
    """Greedy continuations, batched by length, each batch with its row owners set."""
    if not prompts:
        return []
    lengths = [len(model.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    hooks = treatment.hooks if treatment is not None else []
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        if treatment is not None:
            treatment.before_batch([owners[i] for i in idx])
        texts = generate(
            model, [prompts[i] for i in idx], max_new_tokens=config.max_new_tokens, fwd_hooks=hooks
        )
        for i, t in zip(idx, texts):
            out[i] = t
    return out


@dataclass
class _Baseline:
    neutral_ppl: float | None
    unrelated: dict[str, str]
    table: Any
    neighbourhood: dict[tuple[str, tuple[str, ...]], RowScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "neutral_ppl": None if self.neutral_ppl is None else round(self.neutral_ppl, 6),
            "unrelated_generations": self.unrelated,
            "implication_table_rows": None if self.table is None else len(self.table.rows),
        }


def _baseline(model: Any, records: Sequence[EvalRecord], config: EvalConfig) -> _Baseline:
    suite = config.suite
    ppl = None
    if suite.neutral:
        first, rest = split_first_sentence(NEUTRAL_TEXT)
        ppl = _ppl(score_rows(model, [ScoreRequest(first, (rest,))])[0])
    unrelated: dict[str, str] = {}
    if suite.unrelated and config.generation:
        used = {p for r in records for p in unrelated_prompts(r, suite, config.seed)}
        prompts = [p for p in UNRELATED_PROMPTS if p in used]
        texts = _generate(model, prompts, [-1] * len(prompts), None, config)
        unrelated = dict(zip(prompts, texts))
    table = verified_table(model, records) if suite.implications else None
    return _Baseline(ppl, unrelated, table)


# ------------------------------------------------------------------------------ one chunk
def _request_of(prompt: str, spec: ProbeSpec, owner: int) -> ScoreRequest:
    if spec.expected is None or spec.competitor is None:
        return ScoreRequest(prompt, (), owner)
    conts = (with_space(prompt, spec.expected), with_space(prompt, spec.competitor))
    return ScoreRequest(prompt, conts, owner)


def _result(spec: ProbeSpec, prompt: str, score: RowScore, fired: Any) -> ProbeResult:
    lp = score.logprobs
    return ProbeResult(
        kind=spec.kind,
        prompt=prompt,
        greedy=score.greedy,
        expected=spec.expected,
        competitor=spec.competitor,
        lp_expected=lp[0] if lp else None,
        lp_competitor=lp[1] if len(lp) > 1 else None,
        fired=fired[0],
        own=fired[1],
        index=spec.index,
    )


def _evaluate_chunk(
    model: Any,
    records: Sequence[EvalRecord],
    treatment: Treatment,
    owners: Sequence[int],
    baseline: _Baseline,
    config: EvalConfig,
) -> list[dict[str, Any]]:
    """Score every probe of ``records``; ``owners[k]`` is record k's index in ``treatment``."""
    suite = config.suite
    specs = [
        build_probes(r, suite, seed=config.seed, tokenizer=model.tokenizer, table=baseline.table)
        for r in records
    ]
    # 1. every probe with the treatment
    flat = [(k, s) for k, sp in enumerate(specs) for s in sp]
    flat_prefixes = treatment.prefixes_for(
        [owners[k] for k, _ in flat], [s.prompt for _, s in flat]
    )
    rows = [(k, s, pre + s.prompt) for (k, s), pre in zip(flat, flat_prefixes)]
    prefixes: list[list[str]] = [[] for _ in specs]  # per record, its probes' prefixes
    for (k, _), pre in zip(flat, flat_prefixes):
        prefixes[k].append(pre)
    identity = not treatment.steers and not any(p for pre in prefixes for p in pre)
    requests = [_request_of(p, s, owners[k]) for k, s, p in rows]
    scores = score_rows(
        model,
        requests,
        hooks=treatment.hooks,
        steerers=treatment.steerers,
        before_batch=treatment.before_batch,
        batch_size=config.batch_size,
    )
    # 2. neighbourhood probes on the unedited model (the paper's specificity filter)
    neigh = [(k, s) for k, sp in enumerate(specs) for s in sp if s.kind == "neighbourhood"]
    keys = [(s.prompt, _request_of(s.prompt, s, -1).continuations) for _, s in neigh]
    if identity:  # the treated run *is* the unedited run
        for (_, s, p), q, sc in zip(rows, requests, scores):
            if s.kind == "neighbourhood":
                baseline.neighbourhood[(p, q.continuations)] = sc
    missing = list(dict.fromkeys(key for key in keys if key not in baseline.neighbourhood))
    if missing:
        fresh = score_rows(
            model, [ScoreRequest(p, c) for p, c in missing], batch_size=config.batch_size
        )
        baseline.neighbourhood.update(zip(missing, fresh))

    results: list[list[ProbeResult]] = [[] for _ in records]
    prefix_of: dict[int, str] = {}  # id(result) -> its prefix
    for (k, s, p), sc in zip(rows, scores):
        results[k].append(_result(s, p, sc, treatment.fired(sc.decision, owners[k])))
        prefix_of[id(results[k][-1])] = prefixes[k][len(results[k]) - 1]
    unedited: list[list[ProbeResult]] = [[] for _ in records]
    for (k, s), key in zip(neigh, keys):
        unedited[k].append(_result(s, s.prompt, baseline.neighbourhood[key], (None, None)))

    def changed(r: ProbeResult) -> bool:
        return bool(prefix_of[id(r)]) or bool(r.fired)

    # 3. generations: edit prompt + paraphrases; unrelated prompts where the input changed
    gen_prompts: list[str] = []
    gen_owner: list[int] = []
    gen_where: list[tuple[int, str, int]] = []  # (record, "probe"/"unrelated", position)
    if config.generation:
        for k, res in enumerate(results):
            in_scope = [r for r in res if r.kind in ("edit", "paraphrase")]
            for j, r in enumerate(in_scope):
                gen_prompts.append(r.prompt)
                gen_owner.append(owners[k])
                gen_where.append((k, "probe", j))
            for j, r in enumerate(x for x in res if x.kind == "unrelated"):
                if changed(r):
                    gen_prompts.append(r.prompt)
                    gen_owner.append(owners[k])
                    gen_where.append((k, "unrelated", j))
    steer = None if identity else treatment
    texts = _generate(model, gen_prompts, gen_owner, steer, config)
    generations: list[list[dict[str, Any]]] = [[] for _ in records]
    unrelated_edited: list[dict[int, str]] = [{} for _ in records]
    for (k, what, j), prompt, text in zip(gen_where, gen_prompts, texts):
        if what == "probe":
            generations[k].append({"prompt": prompt, "text": text})
        else:
            unrelated_edited[k][j] = text

    # 4. the neutral text's perplexity where the input changed
    ppl_rows: list[tuple[int, ScoreRequest]] = []
    rest = split_first_sentence(NEUTRAL_TEXT)[1]
    for k, res in enumerate(results):
        for r in (x for x in res if x.kind == "neutral"):
            if changed(r):
                ppl_rows.append((k, ScoreRequest(r.prompt, (rest,), owners[k])))
    ppl_scores = score_rows(
        model,
        [q for _, q in ppl_rows],
        hooks=treatment.hooks,
        steerers=treatment.steerers,
        before_batch=treatment.before_batch,
        batch_size=config.batch_size,
    )
    ppl_edited = {k: _ppl(sc) for (k, _), sc in zip(ppl_rows, ppl_scores)}

    out = []
    for k, record in enumerate(records):
        o = owners[k]
        edit = treatment.edits[o] if treatment.edits else None
        unrelated = [r for r in results[k] if r.kind == "unrelated"]
        side = SideEffects()
        unrelated_out = []
        if config.generation and unrelated:
            base = [baseline.unrelated[r.prompt[len(prefix_of[id(r)]) :]] for r in unrelated]
            edited = [unrelated_edited[k].get(j, b) for j, b in enumerate(base)]
            side = replace(
                side,
                entropy_edited=sum(map(ngram_entropy, edited)) / len(edited),
                entropy_unedited=sum(map(ngram_entropy, base)) / len(base),
            )
            unrelated_out = [
                {"prompt": r.prompt, "text": t, "fired": r.fired} for r, t in zip(unrelated, edited)
            ]
        if baseline.neutral_ppl is not None:
            side = replace(
                side,
                ppl_unedited=baseline.neutral_ppl,
                ppl_edited=ppl_edited.get(k, baseline.neutral_ppl),
            )
        failed = treatment.failures.get(o)
        applies = treatment.method not in ("none", "in-context")
        metrics = record_metrics(
            results[k],
            subject=record.request.subject,
            new=record.request.new,
            old=record.request.old,
            generations=[g["text"] for g in generations[k]],
            unedited_neighbourhood=unedited[k],
            side_effects=side,
            edit_applied=failed is None,
        )
        if not applies:
            metrics["edit_applied"] = None
        out.append(
            {
                "case_id": record.case_id,
                "request": record.request.to_dict(),
                "status": "edit_failed" if failed else "ok",
                "error": failed,
                "edit": edit_summary(edit) if edit is not None else None,
                "metrics": metrics,
                "probes": [r.to_dict() for r in results[k]],
                "unedited_neighbourhood": [
                    {"greedy": u.greedy, "ok": u.greedy_ok} for u in unedited[k]
                ],
                "generations": generations[k],
                "unrelated_generations": unrelated_out,
                "neutral_ppl": None if side.ppl_edited is None else round(side.ppl_edited, 6),
            }
        )
    return out


# ------------------------------------------------------------------------------ the run
def _add_gate_time(
    timings: dict[str, Any], records: Sequence[EvalRecord], wall0: float, cpu0: float
) -> None:
    """Spread the gates' fitting time (``prepare_treatment``) over the records' fit times."""
    wall = (time.perf_counter() - wall0) / len(records)
    cpu = (time.process_time() - cpu0) / len(records)
    for r in records:
        timings["fit_s"][r.case_id] = timings["fit_s"].get(r.case_id, 0.0) + wall
        timings["fit_cpu_s"][r.case_id] = timings["fit_cpu_s"].get(r.case_id, 0.0) + cpu


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_evaluation(
    model: Any,
    config: EvalConfig,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate ``config.method`` on ``model``; write and return the results.

    Args:
        model: a TransformerLens model (:func:`sake_lens.load_model`).
        config: what to run.
        out: the JSON file to write (and to resume from when it holds a partial run of the
            same configuration).
        progress: show a progress bar (default: when stderr is a terminal).

    Raises:
        DataError: unreadable data, no valid record, or an output file of another config.
    """
    started = time.perf_counter()
    loaded = load_records(config.data, n=config.n)
    records = loaded.records
    if not records:
        raise DataError(
            f"No valid record in {config.data!r} ({len(loaded.errors)} bad ones; first: "
            f"{loaded.errors[:1]})."
        )
    chash = config_hash(config, loaded.sha256, model)
    out_path = Path(out) if out is not None else None
    prev = _read_previous(out_path, chash) if out_path is not None else None
    done: dict[str, dict[str, Any]] = {}
    timings: dict[str, Any] = {"fit_s": {}, "fit_cpu_s": {}, "eval_s": {}, "eval_cpu_s": {}}
    if prev is not None:
        done = {r["case_id"]: r for r in prev.get("records", [])}
        timings.update(
            {k: dict(v) for k, v in prev.get("timings", {}).items() if isinstance(v, dict)}
        )
        log.info("resuming %s: %d/%d records already done", out_path, len(done), len(records))
    result: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "complete": False,
        "config": config.to_dict(),
        "config_hash": chash,
        "method": method_description(config.method, config.overrides),
        "model": {
            "id": get_model_id(model),
            "d_model": int(model.cfg.d_model),
            "prepend_bos": bos_convention(model),
        },
        "versions": library_versions(),
        "data": {
            "path": loaded.path,
            "sha256": loaded.sha256,
            "n_records": len(records),
            "errors": loaded.errors,
        },
        "metrics": METRICS,
        "baseline": None,
        "records": [],
        "aggregates": None,
        "n_edit_failed": None,
        "timings": timings,
    }
    order = {r.case_id: i for i, r in enumerate(records)}

    def flush() -> None:
        result["records"] = sorted(done.values(), key=lambda r: order[r["case_id"]])
        if out_path is not None:
            _write_atomic(out_path, result)

    t0, c0 = time.perf_counter(), time.process_time()
    baseline = _baseline(model, records, config)
    result["baseline"] = baseline.to_dict()
    timings["baseline_s"] = time.perf_counter() - t0
    timings["baseline_cpu_s"] = time.process_time() - c0
    todo = [i for i, r in enumerate(records) if r.case_id not in done]
    fits = config.method not in ("none", "in-context")
    bar = tqdm(
        total=len(records),
        initial=len(records) - len(todo),
        desc=f"eval {config.method}/{config.mode}",
        unit="record",
        disable=None if progress is None else not progress,
        leave=False,
    )
    # progress: a fitted edit is half a record, its scoring the other half
    fit_share = 0.5 if fits else 0.0
    chunks = [todo[s : s + config.chunk_size] for s in range(0, len(todo), config.chunk_size)]
    try:
        shared: Treatment | None = None
        if config.mode == "all":
            # every edit is active at once: fit them all (also the finished ones', on resume)
            edits, failures, secs = fit_all(
                model, records, config.method, seed=config.seed, overrides=config.overrides
            )
            for i, (wall, cpu) in secs.items():
                timings["fit_s"][records[i].case_id] = wall
                timings["fit_cpu_s"][records[i].case_id] = cpu
            bar.update(fit_share * len(todo))
            t2, c2 = time.perf_counter(), time.process_time()
            shared = prepare_treatment(
                model, config.method, "all", records, edits, failures, config.overrides, config.seed
            )
            _add_gate_time(timings, records, t2, c2)
        for idx in chunks:
            chunk = [records[i] for i in idx]
            if shared is None:
                edits, failures, secs = fit_all(
                    model,
                    chunk,
                    config.method,
                    seed=config.seed,
                    on_done=lambda _: bar.update(fit_share),
                    overrides=config.overrides,
                )
                for j, (wall, cpu) in secs.items():
                    timings["fit_s"][chunk[j].case_id] = wall
                    timings["fit_cpu_s"][chunk[j].case_id] = cpu
                t2, c2 = time.perf_counter(), time.process_time()
                treat = prepare_treatment(
                    model,
                    config.method,
                    "single",
                    chunk,
                    edits,
                    failures,
                    config.overrides,
                    config.seed,
                )
                _add_gate_time(timings, chunk, t2, c2)
                owners = list(range(len(chunk)))
            else:
                treat, owners = shared, list(idx)
            t1, c1 = time.perf_counter(), time.process_time()
            outcomes = _evaluate_chunk(model, chunk, treat, owners, baseline, config)
            wall = (time.perf_counter() - t1) / len(chunk)
            cpu = (time.process_time() - c1) / len(chunk)
            for o in outcomes:
                done[o["case_id"]] = o
                timings["eval_s"][o["case_id"]] = wall
                timings["eval_cpu_s"][o["case_id"]] = cpu
            bar.update((1 - fit_share) * len(chunk))
            flush()
    finally:
        bar.close()
    per_record = [done[r.case_id]["metrics"] for r in records]
    result["records"] = sorted(done.values(), key=lambda r: order[r["case_id"]])
    result["aggregates"] = aggregate(per_record, seed=config.seed, n_boot=config.n_boot)
    result["n_edit_failed"] = sum(1 for r in result["records"] if r["status"] == "edit_failed")
    result["complete"] = True
    timings["last_run_s"] = time.perf_counter() - started
    timings["finished_at"] = _now()
    for key in ("fit_s", "fit_cpu_s", "eval_s", "eval_cpu_s"):
        values = [timings[key].get(r.case_id, 0.0) for r in records]
        timings[f"mean_{key}"] = sum(values) / len(values)
    if out_path is not None:
        _write_atomic(out_path, result)
    return result


def results_table(result: dict[str, Any], metrics: Sequence[str] | None = None) -> list[list[Any]]:
    """Rows ``[metric, mean, 95% CI, n]`` of a result's aggregates (percent for rates)."""
    rows = []
    for name in metrics or list(result["aggregates"]):
        agg = result["aggregates"][name]
        if agg["mean"] is None:
            rows.append([name, "n/a", "", 0])
            continue
        scale = (
            1.0 if name in ("ppl_change", "entropy_change") or name.endswith("_margin") else 100.0
        )
        digits = 3 if scale == 1.0 else 1
        rows.append(
            [
                name,
                f"{agg['mean'] * scale:.{digits}f}",
                f"[{agg['ci_low'] * scale:.{digits}f}, {agg['ci_high'] * scale:.{digits}f}]",
                agg["n"],
            ]
        )
    return rows
