"""Routing benchmark: 50 CounterFact edits active at once behind their scope gates.

For 50 records of ``dev.json`` (shuffled with a fixed seed; the first 50 whose edit fits), fit
one edit each on the default model (paraphrases from the relation template bank, never the
record's rephrase or locality prompts), put them all in an :class:`~sake_lens.EditBook`, and
measure, inside real forward passes with every edit active:

* own prompt -> its own edit (target >= 98 %),
* locality prompt -> no edit (target >= 95 %),
* rephrase prompt -> its own edit (generality of the gate; no target),
* AUROC of the gate distance, in scope (rephrase prompt vs its edit) against out of scope
  (locality prompt vs its record's edit, and held-out generic text vs every edit),
  target >= 0.95,
* efficacy: the greedy first token on the own prompt starts the new object,

for each gate kind (sentence embedding, hidden state at the site and at an earlier layer;
Euclidean, nearest, cosine, Mahalanobis). For the default gate it also saves the registry,
loads it into a fresh book and checks that the logits on every probe are bit-identical.

Prints a markdown table and one JSON line. Run:

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/routing_50.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import dev_data

from sake_lens import EditRequest, load_model
from sake_lens.errors import SakeLensError
from sake_lens.gate import FeatureCache, GateConfig, SentenceEmbedder, auroc
from sake_lens.model.tokens import starts_object, tokenize_batch
from sake_lens.registry import EditBook, load_edit, save_edit
from sake_lens.steer.edit import EditConfig
from sake_lens.steer.workflow import make_edit

DATA = Path(dev_data())

# Held-out generic text: none of these is in sake_lens.gate.GENERIC_PROMPTS (calibration).
GENERIC_TEST = (
    "The meaning of life is",
    "I went to the supermarket and bought",
    "The best movie of the year was",
    "Yesterday it rained so much that",
    "The key to happiness is",
    "My brother works as a",
    "The sky is blue because",
    "The new phone costs",
    "Please write a short poem about",
    "The train station is next to",
    "Good morning! Today we will talk about",
    "The quickest way to get there is",
)

GATES: dict[str, GateConfig] = {
    "embedding/euclidean": GateConfig(kind="embedding", metric="euclidean"),
    "embedding[full text]/euclidean": GateConfig(kind="embedding", metric="euclidean", text="full"),
    "embedding/nearest": GateConfig(kind="embedding", metric="nearest"),
    "embedding/cosine": GateConfig(kind="embedding", metric="cosine"),
    "embedding/mahalanobis": GateConfig(kind="embedding", metric="mahalanobis"),
    "hidden@site/euclidean": GateConfig(kind="hidden", metric="euclidean"),
    "hidden@site/nearest": GateConfig(kind="hidden", metric="nearest"),
    "hidden@site/cosine": GateConfig(kind="hidden", metric="cosine"),
    "hidden@site/mahalanobis": GateConfig(kind="hidden", metric="mahalanobis"),
    "hidden@15/cosine": GateConfig(kind="hidden", metric="cosine", layer=15),
    "hidden@15/mahalanobis": GateConfig(kind="hidden", metric="mahalanobis", layer=15),
}


def fit_edits(model: Any, args: argparse.Namespace) -> tuple[list[Any], list[dict[str, Any]], int]:
    records = json.loads(DATA.read_text())
    cache = None
    if args.cache:
        config = json.dumps(EditConfig().to_dict(), sort_keys=True)  # default config changes
        key = hashlib.sha256(config.encode()).hexdigest()[:8]  # invalidate the cache
        cache = Path(args.cache) / f"n{args.n_edits}-p{args.n_paraphrases}-s{args.seed}-{key}"
        if (cache / "records.json").is_file():
            meta = json.loads((cache / "records.json").read_text())
            by_id = {r["case_id"]: r for r in records}
            edits = [
                load_edit(cache / f"{i:03d}", model=model) for i in range(len(meta["case_ids"]))
            ]
            return edits, [by_id[c] for c in meta["case_ids"]], meta["skipped"]
    order = list(range(len(records)))
    random.Random(args.seed).shuffle(order)
    edits, used, skipped = [], [], 0
    for i in order:
        if len(edits) == args.n_edits:
            break
        r = records[i]
        request = EditRequest(r["subject"], r["prompt"], r["ground_truth"], r["target_new"])
        try:
            edit = make_edit(model, request, n_paraphrases=args.n_paraphrases, seed=args.seed)
        except SakeLensError as exc:
            logging.info("skipped case %s: %s", r["case_id"], exc)
            skipped += 1
            continue
        edits.append(edit)
        used.append(r)
    if cache is not None:
        for i, edit in enumerate(edits):
            save_edit(edit, cache / f"{i:03d}")
        ids = [r["case_id"] for r in used]
        (cache / "records.json").write_text(json.dumps({"case_ids": ids, "skipped": skipped}))
    return edits, used, skipped


@torch.no_grad()
def forward(model: Any, book: EditBook, prompts: list[str]) -> tuple[torch.Tensor, Any, Any]:
    """Last-token logits with every edit active, and the router's decisions and distances."""
    batch = tokenize_batch(model, prompts)
    with book.steer(model):
        logits = model(batch.tokens, attention_mask=batch.attention_mask)[:, -1, :]
    router = book.router(model)
    return logits.clone(), router.last_routes.clone(), router.last_distances.clone()


def measure(model: Any, book: EditBook, records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    own_logits, own, _ = forward(model, book, [r["prompt"] for r in records])
    _, loc, d_loc = forward(model, book, [r["locality_prompt"] for r in records])
    _, reph, d_reph = forward(model, book, [r["rephrase_prompt"] for r in records])
    _, gen, d_gen = forward(model, book, list(GENERIC_TEST))
    idx = torch.arange(n)
    in_d = d_reph[idx, idx]
    out_d = torch.cat([d_loc[idx, idx], d_gen.flatten()])
    preds = [model.tokenizer.decode(int(t)) for t in own_logits.argmax(-1)]
    cal = [e.scope.calibration for e in book.entries if e.scope is not None]
    cal_auroc = [c.auroc for c in cal if c.auroc is not None]
    return {
        "own_to_self": float((own == idx).double().mean()),
        "locality_to_none": float((loc == -1).double().mean()),
        "rephrase_to_self": float((reph == idx).double().mean()),
        "generic_to_none": float((gen == -1).double().mean()),
        "auroc": auroc(in_d, out_d),
        "calibration_auroc": sum(cal_auroc) / len(cal_auroc) if cal_auroc else None,
        "median_threshold": float(torch.tensor([c.threshold for c in cal]).median()),
        "efficacy": sum(starts_object(p, r["target_new"]) for p, r in zip(preds, records)) / n,
    }


@torch.no_grad()
def save_load_identical(model: Any, book: EditBook, prompts: list[str]) -> bool:
    batch = tokenize_batch(model, prompts)
    with book.steer(model):
        before = model(batch.tokens, attention_mask=batch.attention_mask)
    with tempfile.TemporaryDirectory() as tmp:
        book.save(Path(tmp) / "registry")
        loaded = EditBook.load(Path(tmp) / "registry", model=model)
        with loaded.steer(model):
            after = model(batch.tokens, attention_mask=batch.attention_mask)
    return bool(torch.equal(before, after))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-edits", type=int, default=50)
    p.add_argument("--n-paraphrases", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gates", default="all", help="comma-separated names of GATES, or 'all'")
    p.add_argument("--default-gate", default="embedding/euclidean")
    p.add_argument("--cache", default=None, help="folder to keep the fitted edits in (reruns)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    model = load_model(device="cpu")
    edits, records, skipped = fit_edits(model, args)
    fit_s = time.perf_counter() - t0
    print(f"fitted {len(edits)} edits ({skipped} skipped) in {fit_s:.0f} s", file=sys.stderr)

    names = list(GATES) if args.gates == "all" else args.gates.split(",")
    if args.default_gate not in names:
        names.insert(0, args.default_gate)
    features = FeatureCache(model, SentenceEmbedder())
    rows: dict[str, dict[str, Any]] = {}
    books: dict[str, EditBook] = {}
    for name in names:
        t = time.perf_counter()
        book = EditBook(model=model, gate=GATES[name], features=features)
        for edit in edits:
            book.add(edit)
        add_s = time.perf_counter() - t
        rows[name] = {**measure(model, book, records), "add_s": round(add_s, 1)}
        books[name] = book
        print(f"{name}: {rows[name]}", file=sys.stderr)

    probes = [r[k] for r in records for k in ("prompt", "rephrase_prompt", "locality_prompt")]
    identical = save_load_identical(model, books[args.default_gate], probes + list(GENERIC_TEST))

    cols = [
        "own_to_self",
        "locality_to_none",
        "rephrase_to_self",
        "generic_to_none",
        "auroc",
        "calibration_auroc",
        "median_threshold",
        "efficacy",
        "add_s",
    ]
    print("| gate | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, row in rows.items():
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print(
            f"| {name}{' (default)' if name == args.default_gate else ''} | "
            + " | ".join(cells)
            + " |"
        )
    d = rows[args.default_gate]
    ok = (
        d["own_to_self"] >= 0.98
        and d["locality_to_none"] >= 0.95
        and (d["auroc"] or 0) >= 0.95
        and identical
    )
    print(
        json.dumps(
            {
                "benchmark": "routing_50",
                "n_edits": len(edits),
                "skipped": skipped,
                "n_paraphrases": args.n_paraphrases,
                "seed": args.seed,
                "default_gate": args.default_gate,
                "fit_edits_s": round(fit_s, 1),
                "save_load_bit_identical": identical,
                "gates": rows,
                "pass": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
