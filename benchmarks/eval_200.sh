#!/usr/bin/env bash
# The evaluation behind the README's results table: the first 200 CounterFact dev records, every
# edit of a run active at once (--mode all), seed 0, one method after another so each run has the
# machine to itself. Writes <out>/<method>.json (every aggregate and per-record outcome; also
# gzipped as <method>.json.gz, the copy kept in the repository) and
# <out>/<method>.md (the printed table), and prints each run's wall time.
#
#   bash benchmarks/eval_200.sh [OUT_DIR] [METHOD ...]
#
# Default OUT_DIR: benchmarks/results/eval-200; default methods: none in-context mean-shift sake
# sake-reference. A rerun resumes each method from its JSON (a finished one returns at once).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/eval-200}
shift || true
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(none in-context mean-shift sake sake-reference)
data=${SAKE_LENS_EVAL_DATA:-../shared/data/counterfact/dev.json}
mkdir -p "$out"
for m in "${methods[@]}"; do
    start=$(date +%s)
    .venv/bin/sake-lens eval --data "$data" --n 200 --mode all --method "$m" --seed 0 \
        --out "$out/$m.json" --no-progress | tee "$out/$m.md"
    echo "$m: $(( $(date +%s) - start )) s wall" | tee -a "$out/$m.md"
    gzip -kf "$out/$m.json"     # the committed copy; the .json stays for resuming
done
