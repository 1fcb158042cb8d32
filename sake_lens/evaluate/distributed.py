"""Data-parallel evaluation under ``torchrun``: shard the records, merge one results file.

``torchrun --nproc-per-node N -m sake_lens.cli.main eval ... --out run.json`` starts N copies
of the command; each reads its rank from the environment ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) and joins one process group (``gloo`` on CPU, ``nccl`` on GPUs).

* **Which records.** Rank ``r`` scores the records at positions ``r, r + N, r + 2N, ...`` of the
  selection (round robin, so neighbouring records — often of one relation and length — spread
  over the ranks) and writes them to its shard file ``run.json.rank-r-of-N``, a result file of
  the usual format that says ``complete: false``.
* **Every edit active at once** (``--mode all``). Each rank must serve the registry of *all*
  edits, added in one global order (an embedding gate's calibration depends on the edits added
  before it). Each rank fits its own records' edits and saves them in the run's edit folder
  (``run.json.edits/``, which a single-process run keeps too); after a barrier each rank reads
  every saved edit back in record order. Fitting is deterministic and per record, so a read
  edit is the edit a single process would fit: the work of fitting is split, the registry is
  the same.
* **Merging.** After a last barrier rank 0 reads every shard file, checks that together they
  hold every record, writes ``run.json`` (aggregates over all records) and removes the shards.
  A rank that dies stops the group (``torchrun`` ends the others); ``run.json`` is then never
  written as complete, and a rerun — with any number of processes — resumes from the shards and
  ``run.json``: finished records are read from all of them, whoever wrote them.

Record-level outcomes equal a single process's for the same seed, except timings and
log-probabilities, which batch composition moves by ~1e-6.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

__all__ = ["Shard", "shard_from_environment", "shard_files"]

#: How long a rank waits at a barrier for the others (fitting a shard of a large run is slow).
BARRIER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Shard:
    """One process's part of a data-parallel run."""

    rank: int
    world: int
    barrier: Callable[[], None]

    def mine(self, n: int) -> list[int]:
        """The positions (of ``n`` selected records) this rank scores."""
        return list(range(self.rank, n, self.world))

    def path(self, out: Path) -> Path:
        """This rank's shard file beside ``out``."""
        return out.with_name(f"{out.name}.rank-{self.rank}-of-{self.world}")

    @property
    def leader(self) -> bool:
        return self.rank == 0


def shard_files(out: Path) -> list[Path]:
    """Every shard file beside ``out``, of any world size (a resume may use another)."""
    return sorted(out.parent.glob(f"{out.name}.rank-*-of-*"))


def shard_from_environment(device: str | None = None) -> Shard | None:
    """The shard ``torchrun`` gave this process (None when it runs alone).

    Joins the default process group on first use (``nccl`` when the model runs on CUDA —
    ``device`` names it, or is None and a GPU is present — else ``gloo``) and pins a CUDA
    process to its ``LOCAL_RANK`` GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    cuda = str(device).startswith("cuda") if device else torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    return Shard(rank=dist.get_rank(), world=dist.get_world_size(), barrier=dist.barrier)
