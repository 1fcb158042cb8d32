"""Benchmark: serving cost of many routed edits, against the unedited model, in one run.

A forward pass of a batch of 8 prompts of exactly 32 tokens (CounterFact prompts, cut or
extended to 32 tokens) with 0, 1, 100 and 1,000 edits active in an
:class:`~sake_lens.registry.EditBook`, each behind its scope gate:

* **hidden** gate (Euclidean distance of the site's last-token state to the edit's centre,
  routed in one vectorised ``(batch, N)`` operation by :class:`~sake_lens.gate.ScopeRouter`);
* **embedding** gate (the paper's sentence embedding, ``text="both"``: two MiniLM views per
  prompt). Its embedding cache is cleared before every pass, so each pass embeds its prompts
  afresh, as serving new prompts would.

The edits are built cheaply, not fitted by ``fit_edit``: real last-token activations of the
default model at ``ln_final.hook_out`` (d = 576) on 200 CounterFact prompts; each edit's
``GaussianMap`` is fitted on 40 of those rows (source) and the same rows shifted by a random
direction (target); ``--distinct-maps`` maps are fitted and shared round-robin by the edits
(routing cost grows with the number of edits, applying cost with the number of rows routed).
Eight edits have their gate centred on the 8 benchmark prompts (so every row is routed and
steered: the worst case for applying); the others are centred on other prompts.

Also: ``generate_tokens`` throughput (8 prompts, ``--new-tokens`` greedy tokens, KV cache) with
0 and 1,000 edits (hidden gate). Medians of ``--repeats``, conditions interleaved.

Run::

    OMP_NUM_THREADS=1 SAKE_LENS_CACHE=/tmp/slcache .venv/bin/python benchmarks/serving.py \
        --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
from _common import dev_data, environment, markdown_table, median, timed

from sake_lens import EditRequest, load_model
from sake_lens.collect.activations import collect_activations
from sake_lens.gate import Calibration, GateConfig, ScopeStats
from sake_lens.gate.config import TEXT_VIEWS
from sake_lens.gate.scope import Scope
from sake_lens.model.loading import model_id
from sake_lens.model.sites import FINAL_SITE, Site
from sake_lens.model.tokens import bos_convention
from sake_lens.registry import EditBook
from sake_lens.steer.edit import Edit, EditConfig
from sake_lens.steer.generation import generate_tokens
from sake_lens.transport import GaussianMap

DATA = Path(dev_data())
SEQ = 32
BATCH = 8


def load_prompts(n: int, seed: int = 0) -> list[str]:
    records = json.loads(DATA.read_text())
    rng = random.Random(seed)
    rng.shuffle(records)
    return [r["prompt"].replace("{}", r["subject"]) for r in records[:n]]


def batch_tokens(model: Any, prompts: list[str]) -> torch.Tensor:
    """``(8, 32)`` token ids: each prompt extended with the next ones, cut to 32 tokens."""
    tok = model.tokenizer
    rows = []
    for i in range(BATCH):
        text = " ".join(prompts[i : i + 6])
        ids = tok.encode(text, add_special_tokens=False)[:SEQ]
        assert len(ids) == SEQ, "prompts too short to fill 32 tokens"
        rows.append(ids)
    return torch.tensor(rows, device=model.cfg.device)


def make_edits(
    model: Any,
    acts: torch.Tensor,
    centres: torch.Tensor,
    n_edits: int,
    distinct: int,
    seed: int = 0,
) -> list[Edit]:
    """``n_edits`` edits at the final site with maps fitted on real activations."""
    g = torch.Generator().manual_seed(seed)
    maps = []
    for _ in range(distinct):
        rows = torch.randperm(acts.shape[0], generator=g)[:40]
        src = acts[rows]
        shift = torch.randn(acts.shape[1], generator=g, dtype=torch.float64)
        tgt = src + 0.5 * src.std(0).mean() * shift + 0.1 * torch.randn_like(src)
        maps.append(GaussianMap().fit(src, tgt))
    site = Site(FINAL_SITE)
    mid, d, bos = model_id(model), int(model.cfg.d_model), bos_convention(model)
    edits = []
    for i in range(n_edits):
        req = EditRequest(f"Subject {i}", "The favourite colour of {} is", "red", "blue")
        edits.append(
            Edit(
                req,
                site,
                maps[i % distinct],
                EditConfig(),
                mid,
                d,
                bos,
                True,
                1.0,
                80,
                40,
                f"bench{i}",
            )
        )
    return edits


def hidden_scope(centre: torch.Tensor, threshold: float) -> Scope:
    stats = ScopeStats.fit(centre[None, :], "euclidean")
    return Scope(GateConfig(kind="hidden"), FINAL_SITE, stats, Calibration(threshold, 0.05, 0.0))


def embedding_scope(centre: torch.Tensor, threshold: float) -> Scope:
    stats = ScopeStats.fit(centre[None, :], "euclidean")
    feature = TEXT_VIEWS["both"]
    return Scope(GateConfig(kind="embedding"), feature, stats, Calibration(threshold, 0.05, 0.0))


def build_book(model: Any, edits: list[Edit], scopes: list[Scope], embedder: Any = None) -> Any:
    book = EditBook(model=model, embedder=embedder)
    for e, s in zip(edits, scopes):
        book.add(e, scope=s)
    return book


@torch.no_grad()
def hook_cost(model: Any, book: Any, tokens: torch.Tensor, embedder: Any, repeats: int) -> float:
    """Median CPU ms spent in the router's and steering hooks for one pass.

    The hooks are called directly, as the forward pass calls them, on the batch's token ids and
    its ``(8, 32, d)`` site activations: token capture (embedding gates), routing, applying.
    """
    from sake_lens.steer.hooks import steering_hooks

    captured: dict[str, torch.Tensor] = {}

    def grab(act: torch.Tensor, hook: Any) -> None:
        captured["site"] = act.detach().clone()

    with model.hooks(fwd_hooks=[(FINAL_SITE, grab)]):
        model(tokens, attention_mask=torch.ones_like(tokens))
    site_act = captured["site"]
    router = book.router(model)
    capture = router.hooks()
    steer = steering_hooks(book.active_edits(), router)
    out = []
    for _ in range(repeats):
        if embedder is not None:
            embedder._cache.clear()
        act = site_act.clone()
        start = time.process_time()
        for name, fn in capture:
            fn(tokens if name == "embed.hook_in" else act, hook=None)
        for _, fn in steer:
            fn(act, hook=None)
        out.append(1000 * (time.process_time() - start))
    return median(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--edits", type=int, nargs="+", default=[1, 100, 1000])
    p.add_argument("--distinct-maps", type=int, default=50)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--skip-embedding", action="store_true")
    args = p.parse_args()

    model = load_model(device=args.device)
    prompts = load_prompts(200 + BATCH * 6)
    tokens = batch_tokens(model, prompts)  # (8, 32)
    mask = torch.ones_like(tokens)
    texts = [model.tokenizer.decode(r) for r in tokens.tolist()]
    pool = collect_activations(model, prompts[BATCH * 6 :], [FINAL_SITE], progress=False)
    acts = pool[FINAL_SITE]  # (200, 576) float64
    here = collect_activations(model, texts, [FINAL_SITE], progress=False)[FINAL_SITE]  # (8, d)

    n_max = max(args.edits)
    edits = make_edits(model, acts, acts, n_max, args.distinct_maps)
    # Gate centres: the 8 benchmark prompts for edits 0..7, other prompts for the rest.
    hid_centres = [here[i] if i < BATCH else acts[i % acts.shape[0]] for i in range(n_max)]
    thr = float(torch.cdist(here, acts).min()) * 0.5  # accepts the own prompt only
    hid_books = {
        n: build_book(model, edits[:n], [hidden_scope(c, thr) for c in hid_centres[:n]])
        for n in args.edits
    }
    emb_books: dict[int, Any] = {}
    embedder = None
    if not args.skip_embedding:
        from sake_lens.gate import SentenceEmbedder

        embedder = SentenceEmbedder()
        batch_texts = [t.strip() for t in texts]
        own = embedder.embed(batch_texts)  # (8, 384)
        other = embedder.embed(prompts[BATCH * 6 :])
        emb_centres = [own[i] if i < BATCH else other[i % other.shape[0]] for i in range(n_max)]
        ethr = float(torch.cdist(own, other).min()) * 0.5
        emb_books = {
            n: build_book(
                model, edits[:n], [embedding_scope(c, ethr) for c in emb_centres[:n]], embedder
            )
            for n in args.edits
        }

    @torch.no_grad()
    def forward() -> torch.Tensor:
        return model(tokens, attention_mask=mask)

    conditions: list[tuple[str, int, Any]] = [("unedited", 0, None)]
    conditions += [("hidden gate", n, hid_books[n]) for n in args.edits]
    conditions += [("embedding gate", n, emb_books[n]) for n in emb_books]
    times: dict[str, list[float]] = {f"{c[0]}|{c[1]}": [] for c in conditions}
    cpu: dict[str, list[float]] = {f"{c[0]}|{c[1]}": [] for c in conditions}
    routed: dict[str, int] = {}
    base_logits = forward()
    for book in [*hid_books.values(), *emb_books.values()]:  # warm-up, cache the routers
        with book.steer(model):
            forward()
    for _ in range(args.repeats):
        for name, n, book in conditions:
            key = f"{name}|{n}"
            if book is None:
                _, w, c = timed(forward, args.device)
            else:
                if embedder is not None:
                    embedder._cache.clear()  # new prompts every pass
                with book.steer(model):
                    out, w, c = timed(forward, args.device)
                router = book.router(model)
                routes = router.last_routes
                routed[key] = int((routes >= 0).sum()) if routes is not None else -1
                changed = (out[:, -1] - base_logits[:, -1]).abs().amax(-1) > 1e-4
                routed[key + "|changed"] = int(changed.sum())
            times[key].append(w)
            cpu[key].append(c)

    base = median(times["unedited|0"])
    base_cpu = median(cpu["unedited|0"])
    hook_ms = {
        f"{name}|{n}": hook_cost(model, book, tokens, embedder, args.repeats * 4)
        for name, n, book in conditions
        if book is not None
    }
    rows = []
    for name, n, _ in conditions:
        key = f"{name}|{n}"
        t, c = median(times[key]), median(cpu[key])
        h = hook_ms.get(key, 0.0)
        rows.append(
            [
                name,
                n,
                1000 * t,
                f"{100 * (t / base - 1):+.1f}%",
                f"{100 * (c / base_cpu - 1):+.1f}%",
                h,
                f"{100 * h / (1000 * base_cpu):.2f}%",
                routed.get(key, 0),
                routed.get(key + "|changed", 0),
            ]
        )

    # Generation throughput, 0 vs the largest hidden-gated book.
    prompt_rows = [r[:16] for r in tokens.tolist()]
    gen: dict[str, list[float]] = {"0": [], str(n_max): []}
    big = hid_books[n_max]
    for _ in range(max(1, args.repeats // 2)):
        _, w, _ = timed(
            lambda: generate_tokens(
                model, prompt_rows, max_new_tokens=args.new_tokens, stop_at_eos=False
            ),
            args.device,
        )
        gen["0"].append(BATCH * args.new_tokens / w)
        with big.steer(model):
            _, w, _ = timed(
                lambda: generate_tokens(
                    model, prompt_rows, max_new_tokens=args.new_tokens, stop_at_eos=False
                ),
                args.device,
            )
        gen[str(n_max)].append(BATCH * args.new_tokens / w)

    print(
        markdown_table(
            [
                "condition",
                "edits",
                "wall ms / forward (median)",
                "wall vs unedited",
                "CPU vs unedited",
                "hook ms (median)",
                "hook ms / unedited CPU ms",
                "rows routed",
                "rows changed",
            ],
            rows,
        )
    )
    print()
    print(
        markdown_table(
            ["generate_tokens, 8 x 16-token prompts", "edits (hidden gate)", "tokens/s (median)"],
            [["greedy, KV cache", k, median(v)] for k, v in gen.items()],
        )
    )
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "batch": BATCH,
                "seq": SEQ,
                "forward_s": times,
                "forward_cpu_s": cpu,
                "hook_ms": hook_ms,
                "routed": routed,
                "generate_tokens_per_s": gen,
                "distinct_maps": args.distinct_maps,
                "env": environment(args.device),
            }
        )
    )


if __name__ == "__main__":
    main()
