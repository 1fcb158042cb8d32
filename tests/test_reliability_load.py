"""Load: a registry of 1,000 edits (d=576, n=60) saves, loads and serves within bounded memory.

The numbers (size on disk, save and load times, peak memory of a fresh loading process) are
printed with ``-s`` and asserted against generous bounds for a 24 GiB machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sake_lens.gate import fit_scope
from sake_lens.model.sites import Site
from sake_lens.prompts.distributions import PromptSet
from sake_lens.prompts.request import EditRequest
from sake_lens.registry import EditBook, storage
from sake_lens.steer.edit import Edit, EditConfig
from sake_lens.transport import GaussianMap

from .reliability_helpers import FAKE_GATE, FakeFeatures
from .test_gate_router import SITE

N_EDITS = int(os.environ.get("SAKE_LOAD_EDITS", "1000"))
D, N = 576, 60


def _edit(i: int) -> Edit:
    subject = f"Person {i:04d}"
    request = EditRequest(subject, "The mother tongue of {} is", "French", "English")
    paras = [f"The mother tongue of {subject} is", f"{subject} grew up speaking"]
    g = torch.Generator().manual_seed(i)
    src = torch.randn(N, D, generator=g, dtype=torch.float64)
    tgt = 1.1 * src + 0.1 * torch.randn(N, D, generator=g, dtype=torch.float64) + 3
    return Edit(
        request, Site(SITE), GaussianMap().fit(src, tgt), EditConfig(site=SITE), "fake-model",
        D, False, True, 1.0, N, N, hashlib.sha256(subject.encode()).hexdigest(),
        prompts=PromptSet(paras, paras, paras, [True, True]),
    )  # fmt: skip


_LOADER = """
import json, resource, sys, time
from pathlib import Path
import torch
from sake_lens.registry import EditBook
from tests.reliability_helpers import FakeFeatures
from tests.test_gate_router import SITE, steer_acts

def rss():  # peak resident memory of this process in MiB (VmHWM; ru_maxrss survives exec)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

before = rss()
t = time.perf_counter()
book = EditBook.load(Path(sys.argv[1]), features=FakeFeatures(576))
seconds = time.perf_counter() - t
router = book.router()
acts = torch.randn(8, 576, dtype=torch.float64)
out = steer_acts(book.active_edits(), router, acts)
probes = ["The mother tongue of Person 0007 is", "Person 0123 grew up speaking"]
routes = router.route(FakeFeatures(576)(probes, SITE), SITE).tolist()
print(json.dumps({"n": len(book), "load_s": seconds, "rss_before": before, "rss_after": rss(),
                  "finite": bool(torch.isfinite(out).all()), "routes": routes}))
"""


@pytest.mark.slow
def test_a_registry_of_1000_edits(tmp_path: Path) -> None:
    t = time.perf_counter()
    book = EditBook(gate=FAKE_GATE, features=FakeFeatures(D))
    feats = FakeFeatures(D)
    for i in range(N_EDITS):
        edit = _edit(i)
        book.add(edit, scope=fit_scope(edit, FAKE_GATE, features=feats))
    build = time.perf_counter() - t
    t = time.perf_counter()
    book.save(tmp_path)
    save = time.perf_counter() - t
    files = list((tmp_path / storage.OBJECTS).glob("*.safetensors"))
    size = sum(f.stat().st_size for f in files) + (tmp_path / storage.MANIFEST).stat().st_size
    manifest_mb = (tmp_path / storage.MANIFEST).stat().st_size / 2**20
    assert len(files) == N_EDITS
    del book

    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    n, load, rss_before, rss_after = got["n"], got["load_s"], got["rss_before"], got["rss_after"]
    print(
        f"\n{N_EDITS} edits (d={D}, n={N}): build {build:.1f} s, save {save:.1f} s, "
        f"{size / 2**20:.0f} MiB on disk ({size / N_EDITS / 1024:.0f} KiB per edit; manifest "
        f"{manifest_mb:.1f} MiB), load {load:.1f} s, peak RSS of a fresh loading process "
        f"{rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    assert n == N_EDITS and got["finite"]
    if N_EDITS > 123:
        assert got["routes"] == [7, 123]  # each in-scope prompt reaches its own edit
    assert rss_after - rss_before < 4 * size / 2**20 + 500  # no blow-up beyond the data itself
    assert rss_after < 12 * 1024  # half of this 24 GiB machine

    # Listing reads the manifest only; a change rewrites the manifest, not the tensor files.
    t = time.perf_counter()
    loaded = EditBook.load(tmp_path, features=FakeFeatures(D))
    loaded.disable(loaded.entries[0].id)
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}
    loaded.save()
    resave = time.perf_counter() - t
    assert {f.name: f.stat().st_mtime_ns for f in files} == mtimes
    print(f"load + disable one + save again: {resave:.1f} s")
