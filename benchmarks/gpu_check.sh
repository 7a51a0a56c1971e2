#!/usr/bin/env bash
# Issue 29's GPU check in one go (about 5 minutes on one H100 or H200): batch-1 and batch-8 decoding of 1.3B in
# bfloat16 against the bandwidth roofline and transformers (`wse bench --no-training`), the compile cost cold and from
# the persistent compilation cache, and the decode step built other ways: the layer loop scanned instead of unrolled,
# and XLA command buffers that also capture WHILE and CONDITIONAL (both need their own process: XLA_FLAGS). Results
# go to $OUT (default ./gpu-check-out); the last lines printed are a summary table.
#
# 1. Where the repository is and PyPI can be reached, once:   bash benchmarks/gpu_check.sh --wheels
#    (builds .whl/: this project's wheel, for the `wse` entry points, and the pinned packages the GPU image lacks;
#    .gitignore keeps .whl/ and gpu-check-out/ out of git).
# 2. On the GPU machine, from the repository root:             bash benchmarks/gpu_check.sh
#    With this workplace's device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600).
set -u -o pipefail
cd "$(dirname "$0")/.."
# Overridable to try the check where there is no GPU: GEN_MODEL=small PLATFORM=cpu DTYPE=float32 bash ...
GEN_MODEL=${GEN_MODEL:-1.3B} PLATFORM=${PLATFORM:-gpu} DTYPE=${DTYPE:-bfloat16}

# Packages the GPU image lacks (its list: /work/.library/device/KINDS.md), pinned to what the CPU tests ran with.
WHEELS="flax==0.12.8 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
typing-extensions==4.16.0"

if [ "${1:-}" = "--wheels" ]; then
    rm -rf .whl && mkdir -p .whl
    python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl . || exit 1
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $WHEELS || exit 1
    ls -l .whl
    exit 0
fi

OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT/bench"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/wse-site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH="$PWD:/tmp/wse-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/wse-gpu-check-cache
rm -rf "$JAX_COMPILATION_CACHE_DIR"
LOG="$OUT/check.log"
VARIANTS="$OUT/variants.jsonl"
: > "$VARIANTS"
step() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  $PY -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
  cat /proc/loadavg; } > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

step "wse bench --no-training --gen-model $GEN_MODEL ($DTYPE): decode rows, roofline, busy/overhead, transformers"
timeout 300 $PY -m runtime.cli bench --platform "$PLATFORM" --no-training --gen-model "$GEN_MODEL" --dtype "$DTYPE" \
    --out "$OUT/bench" --json >> "$LOG" 2>&1 || step "bench failed or timed out (see check.log)"

variant() {  # variant LABEL [ENV=VALUE ...] -- decode_check options
    local label=$1; shift
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    step "variant $label: ${envs[*]:-} $*"
    env ${envs[@]+"${envs[@]}"} timeout 150 $PY -m benchmarks.decode_check --label "$label" --model "$GEN_MODEL" \
        --dtype "$DTYPE" --batches 1 "$@" 2>> "$LOG" | tail -n 1 >> "$VARIANTS" || step "variant $label failed"
}
variant "unroll (cold compile)" --
variant "unroll (compile from the persistent cache)" --
variant "scan" -- --layer-loop scan
variant "unroll, command buffers +WHILE,+CONDITIONAL" XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL -- --layer-loop unroll
variant "scan, command buffers +WHILE,+CONDITIONAL" XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL -- --layer-loop scan

step "summary"
$PY - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"{'what':58s} {'batch':>5s} {'step ms':>8s} {'roofline ms':>11s} {'of roof':>7s} {'busy/overhead ms':>17s} {'compile s':>9s}")
def show(label, r):
    split = f"{r['busy_s'] * 1e3:.3f}/{r['overhead_s'] * 1e3:.3f}" if "busy_s" in r else r.get("profile_error", "-")[:17]
    print(f"{label[:58]:58s} {r['batch']:5d} {r['step_s'] * 1e3:8.3f} {r['roofline_step_s'] * 1e3:11.3f} "
          f"{r['roofline_fraction']:7.1%} {split:>17s} {r['compile_s']:9.1f}")
bench = out / "bench" / "bench.json"
if bench.is_file():
    res = json.loads(bench.read_text())
    gen = res.get("generation") or {}
    for r in gen.get("rows", []):
        show(f"wse bench {r['model']} (vs transformers {r.get('ratio', float('nan')):.2f}x)", r)
    for t in res.get("targets", []):
        if "decode" in t["target"]:
            print(f"target: {t['target']}: {t['value']} met={t['met']} ({t['note']})")
    print(f"bench bandwidth {gen.get('bandwidth_bytes_per_s', 0) / 1e9:,.0f} GB/s; device {res.get('device')}")
for line in (out / "variants.jsonl").read_text().splitlines():
    try:
        v = json.loads(line)
    except json.JSONDecodeError:
        print(f"(not a result: {line[:100]})")
        continue
    if "error" in v:
        print(f"{v['label'][:58]:58s} error: {v['error'][:120]}")
    for r in v.get("rows", []):
        show(v["label"], r)
EOF
