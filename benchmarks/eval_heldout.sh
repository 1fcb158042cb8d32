#!/usr/bin/env bash
# The held-out evaluation of the README's results table: every method on dev records
# 2000-2079 (positions in the data file; nothing was tuned on them), every edit active at
# once (--mode all), seed 0. Two streams of methods run side by side, one thread each; then
# gzipped copies of the results and the paired comparison (compare.md).
# Usage: bash benchmarks/eval_heldout.sh DATA.json [OUT_DIR]
set -euo pipefail
data=${1:?usage: eval_heldout.sh DATA.json [OUT_DIR]}
out=${2:-benchmarks/results/eval-2000-2080}
records=${RECORDS:-2000:2080}
mkdir -p "$out"
run() {
    for m in "$@"; do
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 sake-lens eval --data "$data" --records "$records" \
            --mode all --method "$m" --seed 0 --no-progress --out "$out/$m.json" \
            > "$out/$m.md" 2> "$out/$m.log" || echo "$m failed (see $out/$m.log)"
    done
}
run sake in-context none &
run mean-shift sake-reference &
wait
methods=(none in-context mean-shift sake sake-reference)
files=()
for m in "${methods[@]}"; do
    gzip -kf "$out/$m.json"  # the copies kept in the repository
    files+=("$out/$m.json")
done
sake-lens compare "${files[@]}" --reference none > "$out/compare.md"
