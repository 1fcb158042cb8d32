#!/usr/bin/env bash
# The ripple suite's table: every method on the first N edits of the suite's test half (in the
# suite's hashed order, a random sample of it; nothing was tuned on them), every edit active at
# once (--mode all), seed 0, without the 20-token generations. Two streams of runs side by side,
# one thread each; then gzipped copies of the results and the docs page.
# Usage: bash benchmarks/ripple_eval.sh [N] [OUT_DIR]
set -euo pipefail
n=${1:-60}
out=${2:-benchmarks/results/ripple-test}
suite=${SUITE:-benchmarks/data/ripple-suite.json}
mkdir -p "$out"
run() {  # name, then sake-lens eval arguments
    local name=$1
    shift
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 sake-lens eval --data "$suite" --split test --n "$n" \
        --mode all --seed 0 --no-generation --no-progress --out "$out/$name.json" "$@" \
        > "$out/$name.md" 2> "$out/$name.log" || echo "$name failed (see $out/$name.log)"
}
{
    run none --method none
    run in-context --method in-context
    run sake --method sake
    run sake-implied --method sake --implications
} &
{
    run mean-shift --method mean-shift
    run mean-shift-implied --method mean-shift --implications
    run diagonal-implied --method sake --implications --edit-config '{"map_kind": "diagonal"}'
} &
wait
names=(none in-context mean-shift sake mean-shift-implied diagonal-implied sake-implied)
files=()
for name in "${names[@]}"; do
    gzip -kf "$out/$name.json"  # the copies kept in the repository
    files+=("$out/$name.json.gz")
done
python benchmarks/ripple_effects.py --suite "$suite" --split test --n 12 --runs "${files[@]}" \
    --docs docs/analyses/ripple-effects.md --out "$out/readings.json"
