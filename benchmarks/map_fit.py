"""Benchmark: fitting the Gaussian transport map, sake_lens vs POT's ``LinearTransport``.

For each width d: n source and n target samples of random *correlated* data (a 64-factor
low-rank part plus noise) with 4 outlier dimensions 100-1000x larger than the rest (like
Llama-family residuals). Reports, per d:

- fit time of ``GaussianMap`` (best and median of ``--repeats``) and of POT's
  ``ot.da.LinearTransport`` in float64 numpy with the same absolute regulariser (one run: it
  is the O(d^3) baseline; ``--skip-pot-above D`` skips it for d > D);
- peak extra memory of each fit: the process's resident-set high-water mark (VmHWM, reset
  through /proc/self/clear_refs before each fit) minus the resident set before the fit. This
  counts torch, numpy and LAPACK workspace alike (tracemalloc would miss torch's allocator).
  On CUDA, ``torch.cuda.max_memory_allocated`` for sake_lens;
- stored bytes per edit: ``GaussianMap.nbytes()`` (float32 basis, the default) vs POT's
  ``A_``, ``A1_`` and ``B_`` (float64);
- agreement: max over 64 probe points (random, outside the samples' span, plus source
  samples) of ||T(x) - T_POT(x)|| / ||T_POT(x)||, for float32 (default) and float64 storage.

Usage::

    python benchmarks/map_fit.py --dims 576 1600 4096 --n 300 --repeats 3 --device cpu

Prints a markdown table and one JSON line. Wall times depend on what else runs on the machine:
on a shared CPU, oversubscribed OpenMP threads spin (2 threads on a loaded 2-core box ran the
fit ~20x slower than 1 thread); set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MKL_NUM_THREADS=1`` there, and compare the CPU seconds, which load changes much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sake_lens.transport import GaussianMap


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_extra_bytes(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """Run ``fn``; return its result and the peak resident memory it added (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return fn(), None
    before = _proc_status("VmRSS")
    out = fn()
    peak = _proc_status("VmHWM")
    return out, None if peak is None or before is None else max(peak - before, 0)


def make_data(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated source/target activations (float32) with 4 outlier dimensions."""
    g = torch.Generator().manual_seed(seed)
    k = 64
    load_s = torch.randn(k, d, generator=g) / k**0.5
    load_t = load_s + 0.5 * torch.randn(k, d, generator=g) / k**0.5
    xs = torch.randn(n, k, generator=g) @ load_s + 0.5 * torch.randn(n, d, generator=g)
    xt = torch.randn(n, k, generator=g) @ load_t + 0.7 * torch.randn(n, d, generator=g) + 0.3
    outliers = torch.tensor([100.0, 300.0, 600.0, 1000.0])
    xs[:, :4] = xs[:, :4] * outliers + outliers
    xt[:, :4] = xt[:, :4] * outliers + 1.1 * outliers
    return xs, xt


def _max_rel(out: np.ndarray, ref: np.ndarray) -> float:
    return float((np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())


def bench_one(d: int, n: int, repeats: int, device: str, run_pot: bool) -> dict[str, Any]:
    xs, xt = make_data(n, d)
    xs_dev, xt_dev = xs.to(device), xt.to(device)
    times, cpu_times, mem = [], [], None
    m = GaussianMap()
    for i in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        c0, t0 = time.process_time(), time.perf_counter()
        if i == 0 and not device.startswith("cuda"):
            m, mem = _peak_extra_bytes(lambda: GaussianMap().fit(xs_dev, xt_dev))
        else:
            m = GaussianMap().fit(xs_dev, xt_dev)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            mem = torch.cuda.max_memory_allocated()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    diag = m.diagnostics()
    row: dict[str, Any] = {
        "d": d,
        "n": n,
        "fit_s_best": min(times),
        "fit_s_median": statistics.median(times),
        "fit_cpu_s_best": min(cpu_times),
        "fit_peak_mb": None if mem is None else mem / 1e6,
        "stored_mb": m.nbytes() / 1e6,
        "rank": int(diag["rank"]),
        "eps": diag["eps"],
        "cond_source": diag["cond_source"],
    }
    g = torch.Generator().manual_seed(1)
    probe = torch.cat(
        [xs.double().mean(0) + 3 * torch.randn(59, d, generator=g, dtype=torch.float64), xs[:5]]
    ).double()
    h = probe[:32].float().to(device)
    m.transform(h)  # warm the (dtype, device) cache
    t0 = time.perf_counter()
    for _ in range(20):
        m.transform(h)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    row["transform_ms_batch32"] = (time.perf_counter() - t0) / 20 * 1e3
    if run_pot:
        import ot

        xs_np, xt_np = xs.double().numpy(), xt.double().numpy()
        lt = ot.da.LinearTransport(reg=diag["eps"])
        c0, t0 = time.process_time(), time.perf_counter()
        lt, pot_mem = _peak_extra_bytes(lambda: lt.fit(Xs=xs_np, Xt=xt_np))
        row["pot_fit_s"] = time.perf_counter() - t0
        row["pot_fit_cpu_s"] = time.process_time() - c0
        row["pot_peak_mb"] = None if pot_mem is None else pot_mem / 1e6
        row["pot_stored_mb"] = (lt.A_.nbytes + lt.A1_.nbytes + lt.B_.nbytes) / 1e6
        row["speedup"] = row["pot_fit_s"] / row["fit_s_best"]
        ref = lt.transform(Xs=probe.numpy())
        row["pot_finite"] = bool(np.isfinite(ref).all())
        m64 = GaussianMap(storage_dtype=torch.float64).fit(xs_dev, xt_dev)
        row["max_rel_err_f32"] = _max_rel(m.transform(probe.to(device)).cpu().numpy(), ref)
        row["max_rel_err_f64"] = _max_rel(m64.transform(probe.to(device)).cpu().numpy(), ref)
    return row


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[576, 1600, 4096])
    p.add_argument("--n", type=int, default=300, help="samples per side")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-pot-above", type=int, default=None, metavar="D")
    args = p.parse_args(argv)
    rows = [
        bench_one(
            d,
            args.n,
            args.repeats,
            args.device,
            run_pot=args.skip_pot_above is None or d <= args.skip_pot_above,
        )
        for d in args.dims
    ]
    print(
        "| d | n | sake fit s (best / median) [CPU s] | POT fit s [CPU s] | speed-up "
        "| sake peak MB | POT peak MB | stored MB sake / POT | rank | max rel err f32 / f64 "
        "| transform ms (32×d, f32) |"
    )
    print("|" + "---|" * 11)
    for r in rows:
        print(
            f"| {r['d']} | {r['n']} | {r['fit_s_best']:.2f} / {r['fit_s_median']:.2f} "
            f"[{r['fit_cpu_s_best']:.2f}] "
            f"| {_fmt(r.get('pot_fit_s'), '.2f')} [{_fmt(r.get('pot_fit_cpu_s'), '.2f')}] "
            f"| {_fmt(r.get('speedup'), '.0f')}× "
            f"| {_fmt(r['fit_peak_mb'], '.0f')} | {_fmt(r.get('pot_peak_mb'), '.0f')} "
            f"| {r['stored_mb']:.2f} / {_fmt(r.get('pot_stored_mb'), '.1f')} | {r['rank']} "
            f"| {_fmt(r.get('max_rel_err_f32'), '.1e')} / {_fmt(r.get('max_rel_err_f64'), '.1e')} "
            f"| {r['transform_ms_batch32']:.2f} |"
        )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "machine": platform.machine(),
        "blas_threads_env": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "loadavg_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps({"benchmark": "map_fit", **meta, "rows": rows}))


if __name__ == "__main__":
    main()
