"""Helpers shared by the benchmark scripts: timing, load, environment, tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def dev_data() -> str:
    """The CounterFact development file: ``$SAKE_LENS_DATA``, else the repository's copy."""
    return os.environ.get("SAKE_LENS_DATA", "benchmarks/data/counterfact-dev.json")


def environment(device: str) -> dict[str, Any]:
    """What the numbers depend on: machine, load, threads, versions, device name."""
    import transformers

    try:
        import transformer_lens

        tl = getattr(transformer_lens, "__version__", "?")
    except ImportError:  # pragma: no cover
        tl = None
    env: dict[str, Any] = {
        "host_cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": tl,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Timer:
    """Wall and CPU seconds of a block (CPU time is less sensitive to a loaded machine)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[Any, float, float]:
    """Run ``fn``; return (result, wall seconds, CPU seconds)."""
    with Timer(device) as t:
        out = fn()
    return out, t.wall, t.cpu


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
