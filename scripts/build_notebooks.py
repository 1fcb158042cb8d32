"""Execute the notebooks in place, so they are committed with their outputs.

    OMP_NUM_THREADS=1 python scripts/build_notebooks.py              # all, full sizes
    OMP_NUM_THREADS=1 python scripts/build_notebooks.py 02 03 --fast # some, SAKE_LENS_FAST=1

Each notebook runs in a fresh kernel with the working directory at notebooks/; a cell error
stops the build (the notebook is left unchanged). An executed notebook is stamped: its metadata
(``sake_lens``) records the library version, the hash of the library's defaults and the date
(``sake_lens.analysis.provenance``), which the docs tests compare with the current code's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--fast", action="store_true", help="set SAKE_LENS_FAST=1")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)

    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    from sake_lens.analysis.provenance import METADATA_KEY, current_provenance, notebook_stamp

    if args.fast:
        os.environ["SAKE_LENS_FAST"] = "1"
    else:
        os.environ.pop("SAKE_LENS_FAST", None)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    for path in paths:
        t0 = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        ExecutePreprocessor(timeout=args.timeout, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(NOTEBOOKS)}}
        )
        # The stamp the kernel printed (stamp_notebook in the first cell), else this process's:
        # both run the same library.
        nb.metadata.pop(METADATA_KEY, None)
        stamp = notebook_stamp(nb) or current_provenance()
        nb.metadata[METADATA_KEY] = stamp.to_dict()
        nbformat.write(nb, path)
        sys.stdout.write(f"{path.name}: executed in {time.perf_counter() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
