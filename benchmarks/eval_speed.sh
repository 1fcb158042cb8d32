#!/usr/bin/env bash
# Wall time of a full-harness evaluation (every metric, --mode all, method sake) on one
# process and on two data-parallel processes (torchrun, one thread each), side by side in one
# run on a quiet machine; then whether their record-level outcomes agree (timings aside,
# floats within 1e-5). Writes OUT_DIR/speed.md and OUT_DIR/speed.json.
# Usage: bash benchmarks/eval_speed.sh DATA.json [OUT_DIR]   (RECORDS=A:B, default 2000:2200)
set -euo pipefail
data=${1:?usage: eval_speed.sh DATA.json [OUT_DIR]}
out=${2:-benchmarks/results/eval-speed}
records=${RECORDS:-2000:2200}
mkdir -p "$out"
rm -rf "$out"/one.json* "$out"/two.json*
args=(eval --data "$data" --records "$records" --mode all --method sake --seed 0 --no-progress)

t0=$EPOCHREALTIME
sake-lens "${args[@]}" --out "$out/one.json" > "$out/one.md"
t1=$EPOCHREALTIME

OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m sake_lens.cli.main "${args[@]}" --out "$out/two.json" > "$out/two.md" 2> "$out/two.log"
t2=$EPOCHREALTIME

python - "$out" "$records" "$t0" "$t1" "$t2" <<'EOF'
import json, platform, sys
from pathlib import Path

out, records = Path(sys.argv[1]), sys.argv[2]
t0, t1, t2 = map(float, sys.argv[3:6])
one, two = t1 - t0, t2 - t1
a = json.loads((out / "one.json").read_text())
b = json.loads((out / "two.json").read_text())
worst, differ = 0.0, []

def walk(x, y, where):
    global worst
    if isinstance(x, dict):
        if set(x) != set(y):
            differ.append(where)
        for k in set(x) & set(y):
            walk(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list):
        if len(x) != len(y):
            differ.append(where)
        for i, (u, v) in enumerate(zip(x, y)):
            walk(u, v, f"{where}[{i}]")
    elif isinstance(x, float) and isinstance(y, float):
        worst = max(worst, abs(x - y) / max(1.0, abs(x)))
    elif x != y:
        differ.append(where)

walk(a["records"], b["records"], "records")
n = len(a["records"])
summary = {
    "records": records,
    "n": n,
    "one_process_s": round(one, 1),
    "two_processes_s": round(two, 1),
    "ratio": round(two / one, 3),
    "outcomes_differ_at": differ[:20],
    "n_differences": len(differ),
    "max_relative_float_difference": worst,
    "cpus": __import__("os").cpu_count(),
    "machine": platform.machine(),
}
(out / "speed.json").write_text(json.dumps(summary, indent=1) + "\n")
md = (
    f"Full harness, `sake`, every edit active at once, records {records} ({n} records), seed 0.\n\n"
    "| run | wall time |\n|---|---|\n"
    f"| one process | {one / 60:.1f} min |\n"
    f"| torchrun, 2 processes x 1 thread | {two / 60:.1f} min ({two / one:.2f} x) |\n\n"
    f"Record-level outcomes: {len(differ)} differences (timings aside); largest relative float "
    f"difference {worst:.1e}.\n"
)
(out / "speed.md").write_text(md)
print(md)
EOF
rm -rf "$out"/one.json.edits "$out"/two.json.edits
