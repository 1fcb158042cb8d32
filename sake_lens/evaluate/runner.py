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
from ..model.tokens import bos_convention, object_first_token
from ..prompts.relations import match_relation
from ..steer.generation import generate
from .data import RIPPLE_FAMILIES, EvalRecord, LoadResult, load_records
from .distributed import Shard, shard_files
from .locality import kl_divergence, locality_data
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
from .metrics import (
    LOCALITY_KINDS,
    METRIC_GROUPS,
    METRICS,
    OUT_OF_SCOPE_KINDS,
    UNSCALED_METRICS,
    ProbeResult,
    SideEffects,
    aggregate,
    ngram_entropy,
    record_metrics,
)
from .scoring import RowScore, ScoreRequest, score_rows
from .suite import ProbeSpec, SuiteConfig, build_probes, verified_table, with_space

__all__ = [
    "EvalConfig",
    "run_evaluation",
    "results_table",
    "locality_breakdowns",
    "FORMAT",
    "FORMAT_VERSION",
]

log = logging.getLogger(__name__)

FORMAT = "sake-lens-eval"
#: 2: locality against the unedited model; 3: generation and fluency on the edit prompt and
#: real paraphrases only (not CounterFact's generation prompts).
FORMAT_VERSION = 3


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run.

    Attributes:
        data: the data file (CounterFact flat or ROME format, a simple list, or a known-fact
            set made by ``sake-lens known-facts``; JSON/YAML).
        n: evaluate the first ``n`` valid records in file order (None: all).
        records: ``(start, stop)``: evaluate the records at these 0-based positions of the
            data file (half-open; exclusive with ``n``).
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
        split: only the records of this split (``dev`` or ``test``; data that marks splits,
            such as a ripple suite).
    """

    data: str
    n: int | None = None
    records: tuple[int, int] | None = None
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
    split: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; allowed: {METHODS}.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; allowed: {MODES}.")
        if self.n is not None and self.n < 1:
            raise ValueError(f"n must be >= 1 or None, got {self.n}.")
        if self.records is not None:
            if self.n is not None:
                raise ValueError("Give either n or records (a range of positions), not both.")
            start, stop = (int(x) for x in self.records)
            if not 0 <= start < stop:
                raise ValueError(
                    f"records must be a non-empty range start:stop with 0 <= start < stop, "
                    f"got {start}:{stop}."
                )
            object.__setattr__(self, "records", (start, stop))
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
        out["records"] = None if self.records is None else list(self.records)
        if self.overrides.empty:
            out.pop("overrides")  # older result files (and their hashes) stay resumable
        elif not self.overrides.implications:
            out["overrides"].pop("implications")
        if self.split is None:
            out.pop("split")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        data = dict(data)
        data["suite"] = SuiteConfig(**data.get("suite", {}))
        data["overrides"] = MethodOverrides(**data.get("overrides", {}))
        if data.get("records") is not None:
            data["records"] = tuple(data["records"])
        return cls(**data)


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def fit_hash(config: EvalConfig, data_sha256: str, model: Any) -> str:
    """What must match for a rerun to reuse saved fits (the data path may differ)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "data"}
    settings["locality_data"] = locality_data().version
    return _sha([settings, data_sha256, get_model_id(model), __version__])[:16]


def config_hash(config: EvalConfig, data_sha256: str, model: Any) -> str:
    """What must match for a rerun to reuse finished records: the fits' settings and the
    result format (a harness that scores differently does not reuse old records)."""
    return _sha([fit_hash(config, data_sha256, model), FORMAT_VERSION])[:16]


# ------------------------------------------------------------------------------ output file
def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """One atomic JSON writer for the evaluation package (temp file, fsync, replace)."""
    from .known_facts import write_known_facts

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_known_facts(data, path)
    except OSError as exc:
        raise DataError(
            f"Cannot write the evaluation result {str(path)!r} ({exc.strerror or exc}); the "
            "previous file (if any) is unchanged. Free disk space or choose a writable --out, "
            "then rerun: finished records are kept."
        ) from exc


def _not_a_result(path: Path, why: str) -> DataError:
    return DataError(
        f"The output file {str(path)!r} exists but is not a readable evaluation result ({why}); "
        "move it away or choose another --out."
    )


def check_output(out: str | Path) -> dict[str, Any] | None:
    """Check an ``--out`` file before any work: what it holds (None: nothing yet).

    The file may be missing or empty (a fresh output, e.g. made by ``mktemp``), or hold a
    result of this package; its folder must be a folder (or creatable).

    Raises:
        DataError: a folder given as the file, a regular file where a folder is needed, or a
            file that is not a readable evaluation result (binary, not JSON, a JSON list...).
    """
    path = Path(out)
    if path.is_dir():
        raise DataError(f"--out {str(path)!r} is a folder; give a file name, e.g. {path}/run.json.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(
                    f"--out {str(path)!r} cannot be written: {str(parent)!r} is a regular file, "
                    "not a folder; choose an --out in a folder."
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(
                    f"--out {str(path)!r} cannot be written: the folder {str(parent)!r} is not "
                    "writable; choose an --out in a writable folder."
                )
            break
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _not_a_result(path, exc.strerror or str(exc)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_a_result(
            path, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    if not text.strip():
        return None  # an empty file: a fresh output
    try:
        prev = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _not_a_result(path, f"not JSON: {exc}") from None
    if not isinstance(prev, dict):
        raise _not_a_result(path, f"a JSON {type(prev).__name__}, not an object")
    if prev.get("format") != FORMAT:
        raise DataError(f"{str(path)!r} is not a sake-lens evaluation file; choose another --out.")
    return prev


def _read_done(
    paths: Sequence[Path],
    expected_hash: str,
    done: dict[str, dict[str, Any]],
    timings: dict[str, Any],
) -> None:
    """Add the finished records and their timings of every file in ``paths`` (an output or
    the shard files of a data-parallel run) to ``done`` and ``timings``."""
    for path in paths:
        prev = _read_previous(path, expected_hash)
        if prev is None:
            continue
        done.update({r["case_id"]: r for r in prev.get("records", [])})
        for key, value in prev.get("timings", {}).items():
            if isinstance(value, dict):
                timings.setdefault(key, {}).update(value)


def _read_previous(path: Path, expected_hash: str) -> dict[str, Any] | None:
    prev = check_output(path)
    if prev is None:
        return None
    if prev.get("config_hash") != expected_hash:
        raise DataError(
            f"{str(path)!r} holds results of another configuration (config hash "
            f"{prev.get('config_hash')} != {expected_hash}: other settings, data, model or "
            "sake_lens version); choose another --out or delete the file to start over."
        )
    return prev


def no_valid_record(data: str, loaded: LoadResult) -> DataError:
    """The error for a data file (or selection) without one valid record."""
    if not loaded.errors:
        return DataError(f"No record in {data!r}: its list of records is empty; add records.")
    return DataError(
        f"No valid record in {data!r} ({len(loaded.errors)} bad "
        f"record{'s' if len(loaded.errors) != 1 else ''}; the first: "
        f"{loaded.errors[0]}); fix the records the messages name, or choose others with "
        "--records or --n."
    )


# ------------------------------------------------------------------------------ baseline
def _ppl(score: RowScore) -> float:
    return math.exp(-score.logprobs[0] / score.n_tokens[0])


def _generate(
    model: Any,
    prompts: Sequence[str],
    owners: Sequence[int],
    treatment: Treatment | None,
    config: EvalConfig,
    max_new_tokens: int | None = None,
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
            model,
            [prompts[i] for i in idx],
            max_new_tokens=max_new_tokens or config.max_new_tokens,
            fwd_hooks=hooks,
        )
        for i, t in zip(idx, texts):
            out[i] = t
    return out


@dataclass
class _Baseline:
    """What the unedited model does, computed once per run (and cached across chunks)."""

    table: Any
    neighbourhood: dict[tuple[str, tuple[str, ...]], RowScore] = field(default_factory=dict)
    texts: dict[tuple[str, tuple[str, ...]], RowScore] = field(default_factory=dict)
    text_generations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"implication_table_rows": None if self.table is None else len(self.table.rows)}


def _baseline(model: Any, records: Sequence[EvalRecord], config: EvalConfig) -> _Baseline:
    table = verified_table(model, records) if config.suite.implications else None
    return _Baseline(table)


# ------------------------------------------------------------------------------ one chunk
def _request_of(prompt: str, spec: ProbeSpec, owner: int) -> ScoreRequest:
    if spec.kind == "passage":
        assert spec.rest is not None
        return ScoreRequest(prompt, (spec.rest,), owner)
    keep = spec.kind in LOCALITY_KINDS
    if spec.expected is not None and spec.competitor is None:  # a ripple answer that must stay
        return ScoreRequest(prompt, (with_space(prompt, spec.expected),), owner)
    if spec.expected is None or spec.competitor is None:
        return ScoreRequest(prompt, (), owner, keep_distribution=keep)
    conts = (with_space(prompt, spec.expected), with_space(prompt, spec.competitor))
    return ScoreRequest(prompt, conts, owner, keep_distribution=keep)


def _split_first_token(tokenizer: Any, text: str) -> tuple[str, str] | None:
    """``(first token, rest)`` of a generated text (None when nothing follows the first)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) < 2:
        return None
    rest = tokenizer.decode(ids[1:])
    return (tokenizer.decode(ids[:1]), rest) if rest.strip() else None


@dataclass
class _Row:
    record: int
    spec: ProbeSpec
    prefix: str
    request: ScoreRequest
    score: RowScore | None = None
    fired: tuple[bool | None, bool | None] = (None, None)

    @property
    def text(self) -> str:
        return self.request.prompt

    @property
    def changed(self) -> bool:
        """Whether the model saw anything but the unedited run (a prefix, or an edit fired)."""
        return bool(self.prefix) or bool(self.fired[0])


def _unedited_scores(
    model: Any,
    keys: Sequence[tuple[str, tuple[str, ...]]],
    cache: dict[tuple[str, tuple[str, ...]], RowScore],
    config: EvalConfig,
) -> None:
    """Score ``keys`` (prompt, continuations) on the unedited model into ``cache``."""
    missing = list(dict.fromkeys(k for k in keys if k not in cache))
    if missing:
        fresh = score_rows(
            model,
            [ScoreRequest(p, c, keep_distribution=True) for p, c in missing],
            batch_size=config.batch_size,
        )
        cache.update(zip(missing, fresh))


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
    tokenizer = model.tokenizer
    specs = [
        build_probes(r, suite, seed=config.seed, tokenizer=tokenizer, table=baseline.table)
        for r in records
    ]
    # 1. every probe with the treatment
    flat = [(k, s) for k, sp in enumerate(specs) for s in sp]
    flat_prefixes = treatment.prefixes_for(
        [owners[k] for k, _ in flat], [s.prompt for _, s in flat]
    )
    rows = [
        _Row(k, s, pre, _request_of(pre + s.prompt, s, owners[k]))
        for (k, s), pre in zip(flat, flat_prefixes)
    ]
    scores = score_rows(
        model,
        [r.request for r in rows],
        hooks=treatment.hooks,
        steerers=treatment.steerers,
        before_batch=treatment.before_batch,
        batch_size=config.batch_size,
    )
    for row, sc in zip(rows, scores):
        row.score = sc
        row.fired = treatment.fired(sc.decision, owners[row.record])

    # 2. the unedited model where it is needed: every neighbourhood prompt (the paper's
    # specificity filter) and the out-of-scope rows whose input changed
    def raw_key(row: _Row) -> tuple[str, tuple[str, ...]]:
        return (row.spec.prompt, _request_of(row.spec.prompt, row.spec, -1).continuations)

    unedited: dict[tuple[str, tuple[str, ...]], RowScore] = {}
    out_of_scope = [r for r in rows if r.spec.kind in OUT_OF_SCOPE_KINDS]
    for row in out_of_scope:  # an unchanged row *is* the unedited run
        if not row.changed:
            assert row.score is not None
            unedited[raw_key(row)] = row.score
    neigh_keys = [raw_key(r) for r in out_of_scope if r.spec.kind == "neighbourhood"]
    _unedited_scores(model, neigh_keys, baseline.neighbourhood, config)
    unedited.update({k: baseline.neighbourhood[k] for k in neigh_keys})
    text_keys = [raw_key(r) for r in out_of_scope if r.changed and r.spec.kind == "text"]
    _unedited_scores(model, text_keys, baseline.texts, config)
    unedited.update({k: baseline.texts[k] for k in text_keys})
    other = [raw_key(r) for r in out_of_scope if r.changed and r.spec.kind != "text"]
    _unedited_scores(model, other, unedited, config)

    # 3. greedy generations: the edit prompt and the real paraphrases with and without the
    # treatment (whole new object, fluency), and the changed locality rows (their
    # continuations against the unedited model's)
    in_scope_kinds = ("edit", "paraphrase")
    in_scope = [r for r in rows if r.spec.kind in in_scope_kinds] if config.generation else []
    local_changed = [r for r in out_of_scope if r.spec.kind in LOCALITY_KINDS and r.changed]
    identity = not treatment.steers and not any(r.prefix for r in rows)
    steer = None if identity else treatment
    texts = _generate(
        model, [r.text for r in in_scope], [owners[r.record] for r in in_scope], steer, config
    )
    plain = (
        texts
        if identity
        else _generate(model, [r.spec.prompt for r in in_scope], [-1] * len(in_scope), None, config)
    )
    local_texts = _generate(
        model,
        [r.text for r in local_changed],
        [owners[r.record] for r in local_changed],
        steer,
        config,
        suite.locality_tokens,
    )
    wanted = [r.spec.prompt for r in local_changed]
    todo = [p for p in dict.fromkeys(wanted) if p not in baseline.text_generations]
    fresh = _generate(model, todo, [-1] * len(todo), None, config, suite.locality_tokens)
    local_plain = dict(zip(todo, fresh))
    gen_unchanged = {
        id(r): t == (baseline.text_generations.get(r.spec.prompt) or local_plain[r.spec.prompt])
        for r, t in zip(local_changed, local_texts)
    }
    for r in local_changed:
        if r.spec.kind == "text":
            baseline.text_generations.setdefault(r.spec.prompt, local_plain.get(r.spec.prompt, ""))

    # 4. fluency: the in-scope generations judged by the unedited model (after their first
    # token, which the edit is meant to change)
    judge: list[tuple[int, str, ScoreRequest]] = []  # (row position, "edited"/"plain", request)
    for j, (r, t_edit, t_plain) in enumerate(zip(in_scope, texts, plain)):
        for what, t in (("edited", t_edit), ("plain", t_plain)):
            split = _split_first_token(tokenizer, t)
            if split is not None:
                judge.append((j, what, ScoreRequest(r.spec.prompt + split[0], (split[1],))))
    judged = score_rows(model, [q for _, _, q in judge], batch_size=config.batch_size)
    gen_ppl: dict[tuple[int, str], float] = {
        (j, what): _ppl(sc) for (j, what, _), sc in zip(judge, judged)
    }

    out = []
    for k, record in enumerate(records):
        o = owners[k]
        req = record.request
        edit = treatment.edits[o] if treatment.edits else None
        mine = [r for r in rows if r.record == k]
        results: list[ProbeResult] = []
        generations: list[dict[str, Any]] = []
        for r in mine:
            rs = r.score
            assert rs is not None
            lp = rs.logprobs
            extra: dict[str, Any] = {}
            if r.spec.kind in LOCALITY_KINDS:
                base = unedited[raw_key(r)]
                if not r.changed:
                    extra = {"unchanged": True, "gen_unchanged": True, "kl": 0.0}
                else:
                    assert base.distribution is not None and rs.distribution is not None
                    extra = {
                        "unchanged": rs.greedy_id == base.greedy_id,
                        "gen_unchanged": gen_unchanged.get(id(r)) if config.generation else None,
                        "kl": kl_divergence(base.distribution, rs.distribution),
                    }
            results.append(
                ProbeResult(
                    kind=r.spec.kind,
                    prompt=r.text,
                    greedy=rs.greedy,
                    expected=r.spec.expected,
                    competitor=r.spec.competitor,
                    lp_expected=lp[0] if lp and r.spec.kind != "passage" else None,
                    lp_competitor=lp[1] if len(lp) > 1 else None,
                    fired=r.fired[0],
                    own=r.fired[1],
                    index=r.spec.index,
                    expected_first=tokenizer.decode([rs.first_ids[0]]) if rs.first_ids else None,
                    relation=r.spec.relation,
                    aliases=r.spec.aliases,
                    **extra,
                )
            )
        unedited_neigh = [
            ProbeResult(
                kind="neighbourhood",
                prompt=r.spec.prompt,
                greedy=unedited[raw_key(r)].greedy,
                expected=r.spec.expected,
                expected_first=tokenizer.decode([unedited[raw_key(r)].first_ids[0]]),
            )
            for r in mine
            if r.spec.kind == "neighbourhood"
        ]
        side = SideEffects()
        positions = [j for j, r in enumerate(in_scope) if r.record == k]
        if positions:
            generations = [
                {"prompt": in_scope[j].text, "text": texts[j], "unedited": plain[j]}
                for j in positions
            ]
            side = replace(
                side,
                entropy_edited=_avg([ngram_entropy(texts[j]) for j in positions]),
                entropy_unedited=_avg([ngram_entropy(plain[j]) for j in positions]),
                gen_ppl_edited=_avg([gen_ppl.get((j, "edited")) for j in positions]),
                gen_ppl_unedited=_avg([gen_ppl.get((j, "plain")) for j in positions]),
            )
        passages = [r for r in mine if r.spec.kind == "passage"]
        if passages:
            side = replace(
                side,
                passage_ppl_edited=_avg([_ppl(r.score) for r in passages if r.score]),
                passage_ppl_unedited=_avg([_ppl(unedited[raw_key(r)]) for r in passages]),
            )
        failed = treatment.failures.get(o)
        applies = treatment.method not in ("none", "in-context")
        metrics = record_metrics(
            results,
            subject=req.subject,
            new=req.new,
            old=req.old,
            generations=[g["text"] for g in generations],
            unedited_neighbourhood=unedited_neigh,
            side_effects=side,
            edit_applied=failed is None,
            new_first=object_first_token(tokenizer, req.new),
            other_edits_active=treatment.mode == "all" and treatment.steers,
        )
        if not applies:
            metrics["edit_applied"] = None
        relation = match_relation(req.prompt, objects=[req.old])
        out.append(
            {
                "case_id": record.case_id,
                "request": req.to_dict(),
                "relation": None if relation is None else relation.id,
                "status": "edit_failed" if failed else "ok",
                "error": failed,
                "edit": edit_summary(edit) if edit is not None else None,
                "metrics": metrics,
                "probes": [r.to_dict() for r in results],
                "unedited_neighbourhood": [
                    {"greedy": u.greedy, "ok": u.greedy_ok} for u in unedited_neigh
                ],
                "generations": generations,
                "locality_generations": [
                    {
                        "prompt": r.text,
                        "text": t,
                        "unedited": baseline.text_generations.get(r.spec.prompt)
                        or local_plain[r.spec.prompt],
                    }
                    for r, t in zip(local_changed, local_texts)
                    if r.record == k
                ],
            }
        )
    return out


def _avg(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


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


def _check_known_facts(data: str, model: Any) -> None:
    """Refuse a known-fact set or a ripple suite made with another model."""
    from .known_facts import _load_json, check_known_facts_model
    from .ripple import check_ripple_model

    raw = _load_json(Path(data))
    check_known_facts_model(raw, model)
    check_ripple_model(raw, model)


def _edits_dir(out_path: Path | None) -> Path | None:
    """Where ``all`` mode keeps its fitted edits, so that a resumed run does not refit them."""
    return None if out_path is None else out_path.with_name(out_path.name + ".edits")


def _fit_states(where: Path) -> list[dict[str, Any]]:
    """The fit state files of an edit folder (``fits.json``, or one per rank of a
    data-parallel run), unreadable ones left out."""
    states = []
    for f in sorted(where.glob("fits*.json")):
        try:
            states.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return states


def _prepare_edits_dir(where: Path, fhash: str) -> None:
    """Empty an edit folder saved by another configuration (its fits do not apply)."""
    import shutil

    if any(s.get("config_hash") != fhash for s in _fit_states(where)):
        shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True, exist_ok=True)


def _fit_persisted(
    model: Any,
    records: Sequence[EvalRecord],
    config: EvalConfig,
    where: Path | None,
    fhash: str,
    on_done: Any = None,
    *,
    only: set[int] | None = None,
    state_name: str = "fits.json",
    prepare: bool = True,
) -> tuple[list[Any], dict[int, str], dict[int, tuple[float, float]]]:
    """:func:`fit_all`, saving each fitted edit under ``where`` and reading back the ones a
    previous run of the same configuration saved (fitting is deterministic, so a read edit is
    the edit a refit would give). An edit that cannot be saved or read back is refitted.

    With ``only``, just those positions are fitted or read (the others are ``None`` in the
    result): a data-parallel rank fits its share and records it in its own state file
    ``state_name``; ``prepare=False`` leaves the folder's clean-up to the first rank.
    """
    if where is None:
        return fit_all(
            model,
            records,
            config.method,
            seed=config.seed,
            on_done=on_done,
            overrides=config.overrides,
        )
    import shutil

    from ..registry.book import load_edit, save_edit

    if prepare:
        _prepare_edits_dir(where, fhash)
    saved_fits: dict[str, Any] = {}
    for st in _fit_states(where):
        if st.get("config_hash") == fhash:
            saved_fits.update(st.get("fits", {}))
    state_file = where / state_name
    state: dict[str, Any] = {"config_hash": fhash, "fits": {}}
    try:  # this state file's own entries stay in it
        own = json.loads(state_file.read_text(encoding="utf-8"))
        if own.get("config_hash") == fhash:
            state["fits"].update(own.get("fits", {}))
    except (OSError, json.JSONDecodeError):
        pass
    edits: list[Any] = []
    failures: dict[int, str] = {}
    seconds: dict[int, tuple[float, float]] = {}
    for i, record in enumerate(records):
        if only is not None and i not in only:
            edits.append(None)
            continue
        saved = saved_fits.get(record.case_id)
        folder = where / f"{i:06d}"
        edit = None
        if saved is not None:
            if saved.get("error"):
                edits.append(None)
                failures[i] = saved["error"]
                seconds[i] = tuple(saved["seconds"])  # type: ignore[assignment]
                if on_done is not None:
                    on_done(i)
                continue
            try:
                edit = load_edit(folder, model=model)
                implied = tuple(
                    load_edit(where / f"{i:06d}.implied-{k}", model=model)
                    for k in range(int(saved.get("implied", 0)))
                )
                edit = replace(edit, implied=implied)
                seconds[i] = tuple(saved["seconds"])  # type: ignore[assignment]
            except Exception as exc:  # a damaged or unreadable fit: refit it
                log.info("record %s: saved edit not readable (%s); refitting", record.case_id, exc)
                edit = None
        if edit is None:
            fitted, failed, secs = fit_all(
                model, [record], config.method, seed=config.seed, overrides=config.overrides
            )
            edit, seconds[i] = fitted[0], secs[0]
            entry: dict[str, Any] = {"seconds": list(seconds[i]), "error": failed.get(0)}
            if edit is not None:
                try:
                    shutil.rmtree(folder, ignore_errors=True)
                    save_edit(edit, folder)
                    for k, part in enumerate(edit.implied):
                        sub = where / f"{i:06d}.implied-{k}"
                        shutil.rmtree(sub, ignore_errors=True)
                        save_edit(part, sub)
                    entry["implied"] = len(edit.implied)
                except Exception as exc:  # e.g. a map kind the registry cannot store
                    log.info("record %s: fitted edit not saved (%s)", record.case_id, exc)
                    entry = {}
            else:
                failures[i] = failed[0]
            if entry:
                state["fits"][record.case_id] = entry
                _write_atomic(state_file, state)
        edits.append(edit)
        if on_done is not None:
            on_done(i)
    return edits, failures, seconds


def locality_breakdowns(
    records: Sequence[dict[str, Any]], *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """Same-subject locality per probed relation and per edited relation: for each, the
    next-token and continuation rates and the mean KL, with bootstrap intervals (by record)."""
    by_probe: dict[str, list[dict[str, Any]]] = {}
    by_edit: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        rows = [p for p in rec.get("probes", []) if p["kind"] == "relation" and "unchanged" in p]
        for p in rows:
            by_probe.setdefault(p["relation"], []).append(
                {"unchanged": p["unchanged"], "gen": p["gen_unchanged"], "kl": p["kl"]}
            )
        if rows:
            by_edit.setdefault(rec.get("relation") or "unknown", []).append(
                {
                    "unchanged": _avg([float(p["unchanged"]) for p in rows]),
                    "gen": _avg(
                        [
                            None if p["gen_unchanged"] is None else float(p["gen_unchanged"])
                            for p in rows
                        ]
                    ),
                    "kl": _avg([p["kl"] for p in rows]),
                }
            )

    def summarise(groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        out = {}
        for key in sorted(groups):
            rows = [
                {
                    "locality_relation": r["unchanged"],
                    "locality_relation_gen": r["gen"],
                    "locality_relation_kl": r["kl"],
                }
                for r in groups[key]
            ]
            out[key] = aggregate(
                rows,
                seed=seed,
                n_boot=n_boot,
                metrics=["locality_relation", "locality_relation_gen", "locality_relation_kl"],
            )
        return out

    return {
        "locality_relation_by_probed_relation": summarise(by_probe),
        "locality_relation_by_edited_relation": summarise(by_edit),
    }


def ripple_counts(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ripple family: records and probes scored, and the rate over probes (the
    ``ripple_*`` aggregates weigh each record the same; this weighs each probe the same)."""
    out: dict[str, dict[str, Any]] = {}
    for family in RIPPLE_FAMILIES:
        per_record = [
            [
                p["ok"]
                for p in rec.get("probes", [])
                if p["kind"] == "ripple" and p.get("relation") == family
            ]
            for rec in records
        ]
        probes = [ok for rows in per_record for ok in rows]
        if probes:
            out[family] = {
                "records": sum(1 for rows in per_record if rows),
                "probes": len(probes),
                "probe_rate": round(sum(probes) / len(probes), 6),
            }
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_evaluation(
    model: Any,
    config: EvalConfig,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Evaluate ``config.method`` on ``model``; write and return the results.

    Args:
        model: a TransformerLens model (:func:`sake_lens.load_model`).
        config: what to run.
        out: the JSON file to write (and to resume from when it holds a partial run of the
            same configuration).
        progress: show a progress bar (default: when stderr is a terminal).
        shard: this process's part of a data-parallel run (:mod:`sake_lens.evaluate.distributed`;
            needs ``out``). Rank 0 returns the merged results; the other ranks their shard.

    Raises:
        DataError: unreadable data, no valid record, an output file of another config, or a
            data-parallel run without ``out``.

    Returns:
        The results (what ``out`` holds): ``config``, ``records`` with every probe's outcome,
        ``aggregates`` (mean, 95 % bootstrap interval and n per metric), ``breakdowns`` and
        ``timings``. A data-parallel rank other than 0 returns its own shard, incomplete.
    """
    started = time.perf_counter()
    if shard is not None and out is None:
        raise DataError(
            "A data-parallel evaluation (torchrun) needs --out FILE.json to merge into."
        )
    loaded = load_records(config.data, n=config.n, records=config.records, split=config.split)
    _check_known_facts(config.data, model)
    records = loaded.records
    if not records:
        raise no_valid_record(config.data, loaded)
    chash = config_hash(config, loaded.sha256, model)
    fhash = fit_hash(config, loaded.sha256, model)
    out_path = Path(out) if out is not None else None
    if shard is not None and out_path is None:
        raise DataError(
            "A data-parallel evaluation (torchrun) needs --out FILE.json to merge into."
        )
    done: dict[str, dict[str, Any]] = {}
    timings: dict[str, Any] = {"fit_s": {}, "fit_cpu_s": {}, "eval_s": {}, "eval_cpu_s": {}}
    if out_path is not None:
        # finished records of this configuration, from the output and any shard files
        _read_done([out_path, *shard_files(out_path)], chash, done, timings)
        if done:
            log.info("resuming %s: %d/%d records already done", out_path, len(done), len(records))
    write_path = shard.path(out_path) if shard is not None and out_path is not None else out_path
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
        "metric_groups": {k: list(v) for k, v in METRIC_GROUPS.items()},
        "locality_data_version": locality_data().version,
        "baseline": None,
        "records": [],
        "aggregates": None,
        "n_edit_failed": None,
        "timings": timings,
    }
    order = {r.case_id: i for i, r in enumerate(records)}

    def flush() -> None:
        result["records"] = sorted(done.values(), key=lambda r: order[r["case_id"]])
        if write_path is not None:
            _write_atomic(write_path, result)

    t0, c0 = time.perf_counter(), time.process_time()
    baseline = _baseline(model, records, config)
    result["baseline"] = baseline.to_dict()
    timings["baseline_s"] = time.perf_counter() - t0
    timings["baseline_cpu_s"] = time.process_time() - c0
    flush()  # the output exists (and says complete: false) from the start
    mine = shard.mine(len(records)) if shard is not None else range(len(records))
    todo = [i for i in mine if records[i].case_id not in done]
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
            # every edit is active at once: fit them all (on resume, the saved fits are read)
            fit_bar = tqdm(
                total=len(records),
                desc=f"fit {config.method} edits",
                unit="edit",
                disable=bar.disable or not fits,
                leave=False,
            )
            where = _edits_dir(out_path) if fits else None
            try:
                if shard is not None and where is not None:
                    # each rank fits its share into the edit folder; then all read all of them
                    if shard.leader:
                        _prepare_edits_dir(where, fhash)
                    shard.barrier()
                    _fit_persisted(
                        model,
                        records,
                        config,
                        where,
                        fhash,
                        on_done=lambda _: fit_bar.update(shard.world),
                        only=set(mine),
                        state_name=f"fits.rank-{shard.rank}.json",
                        prepare=False,
                    )
                    shard.barrier()
                edits, failures, secs = _fit_persisted(
                    model,
                    records,
                    config,
                    where,
                    fhash,
                    on_done=None if shard is not None else lambda _: fit_bar.update(1),
                    state_name="fits.json" if shard is None else f"fits.rank-{shard.rank}.json",
                    prepare=shard is None,
                )
            finally:
                fit_bar.close()
            for i, (wall, cpu) in secs.items():
                timings["fit_s"][records[i].case_id] = wall
                timings["fit_cpu_s"][records[i].case_id] = cpu
            bar.update(fit_share * len(todo))
            flush()
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
    if shard is not None:
        assert out_path is not None
        shard.barrier()  # every shard file is written
        if not shard.leader:
            return result
        _read_done(shard_files(out_path), chash, done, timings)
        missing = [r.case_id for r in records if r.case_id not in done]
        if missing:
            raise DataError(
                f"The shard files of {str(out_path)!r} lack {len(missing)} of {len(records)} "
                f"records (e.g. case {missing[0]}); rerun the same command to score them."
            )
    per_record = [done[r.case_id]["metrics"] for r in records]
    result["records"] = sorted(done.values(), key=lambda r: order[r["case_id"]])
    result["aggregates"] = aggregate(per_record, seed=config.seed, n_boot=config.n_boot)
    result["breakdowns"] = locality_breakdowns(
        result["records"], seed=config.seed, n_boot=config.n_boot
    )
    ripple = ripple_counts(result["records"])
    if ripple:
        result["breakdowns"]["ripple_probes"] = ripple
    result["n_edit_failed"] = sum(1 for r in result["records"] if r["status"] == "edit_failed")
    result["complete"] = True
    timings["last_run_s"] = time.perf_counter() - started
    timings["finished_at"] = _now()
    for key in ("fit_s", "fit_cpu_s", "eval_s", "eval_cpu_s"):
        values = [timings[key].get(r.case_id, 0.0) for r in records]
        timings[f"mean_{key}"] = sum(values) / len(values)
    if out_path is not None:
        _write_atomic(out_path, result)
        for f in shard_files(out_path):  # merged: the shards are spent
            f.unlink(missing_ok=True)
    return result


def results_table(result: dict[str, Any], metrics: Sequence[str] | None = None) -> list[list[Any]]:
    """Rows ``[metric, mean, 95% CI, n]`` of a result's aggregates (percent for rates).

    Returns:
        One row per metric (all of ``result["aggregates"]`` unless ``metrics`` names some);
        ``"n/a"`` where a metric was not measured.
    """
    rows = []
    for name in metrics or list(result["aggregates"]):
        agg = result["aggregates"][name]
        if agg["mean"] is None:
            rows.append([name, "n/a", "", 0])
            continue
        scale = 1.0 if name in UNSCALED_METRICS else 100.0
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
