"""Publish the docs' example analysis: the layer sweep of the Darrieux edit on the default model.

    OMP_NUM_THREADS=1 python scripts/make_example_analysis.py          # the default sweep
    python scripts/make_example_analysis.py --fast                     # SweepConfig.fast()

It runs the library's one sweep (``layer_sweep`` with ``SweepConfig``, the same function and
defaults as ``sake-lens sweep``) on the edit "The mother tongue of Danielle Darrieux is French ->
English" and its default companion edits, and publishes the result with the library's own
publishing path (``sweep_page`` + ``publish_page``), exactly what ``sake-lens sweep`` +
``sake-lens publish`` do: ``docs/analyses/<name>.md``, listed under "Analyses" in mkdocs.yml.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="darrieux-layer-sweep", help="page name under analyses/")
    parser.add_argument("--fast", action="store_true", help="the small sweep (SweepConfig.fast)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import sake_lens as sl
    from sake_lens.analysis.publish import publish_page
    from sake_lens.analysis.report import sweep_page
    from sake_lens.analysis.sweep import SweepConfig, layer_sweep

    model = sl.load_model(device="cpu")
    request = sl.EditRequest("Danielle Darrieux", "The mother tongue of {} is", "French", "English")
    result = layer_sweep(model, request, SweepConfig.default(fast=args.fast or None))
    page = sweep_page(result, model=model, title="Layer sweep: Danielle Darrieux, French → English")
    out = publish_page(page, ROOT / "docs" / "analyses" / args.name, mkdocs_yml=ROOT / "mkdocs.yml")
    sys.stdout.write(f"published {out.relative_to(ROOT)}; {result.recommendation.reason}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
