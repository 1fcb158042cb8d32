#!/usr/bin/env bash
# Implied edits on CounterFact: sake with and without --implications on dev records 2000-2039
# (nothing was tuned on them), every edit active at once, seed 0 — the check that implied
# edits cost the CounterFact metrics nothing. One stream, one thread.
# Usage: bash benchmarks/eval_implied.sh DATA.json [OUT_DIR]
set -euo pipefail
data=${1:?usage: eval_implied.sh DATA.json [OUT_DIR]}
out=${2:-benchmarks/results/eval-implied-2000-2040}
records=${RECORDS:-2000:2040}
mkdir -p "$out"
for name in ${NAMES:-sake sake-implied}; do
    extra=()
    [ "$name" = sake-implied ] && extra=(--implications)
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 sake-lens eval --data "$data" --records "$records" \
        --mode all --method sake "${extra[@]}" --seed 0 --no-progress --out "$out/$name.json" \
        > "$out/$name.md" 2> "$out/$name.log" || echo "$name failed (see $out/$name.log)"
    gzip -kf "$out/$name.json"
done
sake-lens compare "$out/sake.json" "$out/sake-implied.json" > "$out/compare.md"
