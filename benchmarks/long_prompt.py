"""Benchmark: peak memory and wall time of ``sake-lens edit`` on long probes.

Each size runs ``sake-lens edit`` once in a fresh process: the edit "The mother tongue of
Danielle Darrieux is" French -> English is fitted on its short prompt, then applied by
generation (``--max-new-tokens 8``, before and after) to one probe of about ``--chars``
characters: an unrelated passage (the harness's bread-baking text, repeated and cut at a
sentence end) followed by the edit prompt. Peak RSS is the child's own ``ru_maxrss``
(``os.wait4``), so it counts everything the command does: loading the model, fitting,
calibrating the gate, both generations. "edited" says whether the continuation after the edit
holds the new object.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_prompt.py --chars 1250 5000 10000 \
        --out benchmarks/results/long-prompt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import environment, markdown_table

from sake_lens.evaluate.texts import NEUTRAL_TEXT

SUBJECT, TEMPLATE, OLD, NEW = "Danielle Darrieux", "The mother tongue of {} is", "French", "English"
SCRIPT = Path(sys.executable).with_name("sake-lens")


def long_probe(chars: int) -> str:
    """About ``chars`` characters: whole sentences of the passage, a blank line, the question."""
    ask = TEMPLATE.format(SUBJECT)
    room = max(chars - len(ask) - 2, 1)
    passage = " ".join([NEUTRAL_TEXT] * (room // len(NEUTRAL_TEXT) + 1))[:room]
    cut = passage.rfind(". ")
    passage = passage[: cut + 1] if cut > 0 else passage
    return f"{passage}\n\n{ask}"


def run_once(probe: str, device: str) -> dict[str, Any]:
    """``sake-lens edit`` with ``probe`` in a fresh process: wall seconds, peak RSS, output."""
    argv = [str(SCRIPT), "edit", "--prompt", TEMPLATE, "--subject", SUBJECT, "--old", OLD]
    argv += ["--new", NEW, "--probe", probe, "--json", "--device", device]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or ["(no message)"]
        return {"exit": child.returncode, "wall_s": wall, "error": tail[0]}
    row = json.loads(stdout)[0]
    return {
        "exit": 0,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "before": row["before"],
        "after": row["after"],
        "edited": NEW.casefold() in row["after"].casefold(),
    }


def count_tokens(texts: list[str]) -> list[int]:
    """Tokens of each text with the default model's tokenizer (no model weights loaded)."""
    from transformers import AutoTokenizer

    from sake_lens.model.loading import default_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir()))
    return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chars", type=int, nargs="+", default=[1250, 5000, 10000])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write OUT.md and OUT.json")
    args = p.parse_args()
    if not SCRIPT.is_file():
        sys.exit(f"The sake-lens console script is not installed next to {sys.executable}.")

    probes = [long_probe(n) for n in args.chars]
    tokens = count_tokens(probes)
    runs = []
    for probe, n_tokens in zip(probes, tokens):
        res = {"chars": len(probe), "tokens": n_tokens, **run_once(probe, args.device)}
        print(json.dumps(res), file=sys.stderr, flush=True)
        runs.append(res)

    header = ["probe chars", "tokens", "peak RSS (MB)", "wall (s)", "edited", "after"]
    rows = [
        [
            r["chars"],
            r["tokens"],
            round(r["peak_rss_mb"]) if "peak_rss_mb" in r else "-",
            round(r["wall_s"], 1),
            r.get("edited", f"exit {r['exit']}: {r.get('error', '')}"),
            repr(r.get("after", "")),
        ]
        for r in runs
    ]
    env = environment(args.device)
    table = markdown_table(header, rows)
    caption = (
        f"`sake-lens edit` (fit on the short prompt, then 8 tokens before and after the edit on "
        f"the long probe), one fresh process per size; {env['cpus']} CPUs, OMP_NUM_THREADS="
        f"{env['omp_num_threads']}, load average {env['loadavg_1m']} at the end, torch "
        f"{env['torch']}."
    )
    print(table)
    if args.out:
        Path(args.out + ".md").write_text(caption + "\n\n" + table + "\n")
        payload = {"benchmark": "long_prompt", "runs": runs, "env": env}
        Path(args.out + ".json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
