#!/usr/bin/env bash
# Issue 29's GPU check in one go, within BUDGET_S seconds (default 540) on one H100 or H200, in two parts (PARTS,
# default "train decode"; a part's steps that would start past the budget are skipped and the summary says so).
#
# train: `wse bench` training rows of 1.3B at 8 x 2048 in bfloat16 (TRAIN_MODEL/TRAIN_BATCH/TRAIN_SEQ): data mode
# with the plan's layer loop (unrolled on a GPU), streaming and pipelined beside PyTorch eager and torch.compile
# (one run); then data mode with the layers scanned, and data mode with the XLA:GPU flags off
# (runtime/platform/gpu_flags.py), each in its own process (XLA reads its flags once per process).
#
# decode: batch-1 and batch-8 decoding of 1.3B in
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
# Overridable to try the check where there is no GPU (a dry run: 4.6 minutes on 2 busy cores, load average ~7):
#   GEN_MODEL=tiny TRAIN_MODEL=tiny TRAIN_BATCH=2 TRAIN_SEQ=64 PLATFORM=cpu DTYPE=float32 bash benchmarks/gpu_check.sh
GEN_MODEL=${GEN_MODEL:-1.3B} PLATFORM=${PLATFORM:-gpu} DTYPE=${DTYPE:-bfloat16}
TRAIN_MODEL=${TRAIN_MODEL:-1.3B} TRAIN_BATCH=${TRAIN_BATCH:-8} TRAIN_SEQ=${TRAIN_SEQ:-2048}
PARTS=${PARTS:-train decode} BUDGET_S=${BUDGET_S:-540}

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

SKIPPED="$OUT/skipped.txt"
: > "$SKIPPED"
# budget LIMIT: the seconds a step may take, LIMIT or what is left of BUDGET_S (less 20 s for the summary); 0 (and
# the step is recorded as skipped) when under 30 s are left
budget() {
    local left=$((BUDGET_S - SECONDS - 20))  # SECONDS: since the script started
    if [ "$left" -lt 30 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

train_row() {  # train_row LABEL LIMIT_S -- wse bench options
    local label=$1 limit; limit=$(budget "$2"); shift 3
    if [ "$limit" = 0 ]; then echo "train $label" >> "$SKIPPED"; step "skipped (time budget): train $label"; return; fi
    step "train $label (timeout ${limit}s): wse bench $*"
    timeout "$limit" $PY -m runtime.cli bench --platform "$PLATFORM" --dtype "$DTYPE" --models "$TRAIN_MODEL" \
        --batch-size "$TRAIN_BATCH" --seq-len "$TRAIN_SEQ" --no-generation --overwrite --out "$OUT/train-$label" \
        --steps 2 "$@" --json >> "$LOG" 2>&1 || step "train $label failed or timed out (see check.log)"
}

train_part() {
    train_row main 300 -- --modes data,streaming,pipelined
    train_row scan 120 -- --modes data --layer-loop scan --no-baseline
    train_row flags-off 150 -- --modes data --xla-gpu-flags off --no-baseline
}

decode_part() {
    local limit; limit=$(budget 300)
    if [ "$limit" = 0 ]; then echo "decode wse bench" >> "$SKIPPED"; step "skipped (time budget): decode bench";
    else
        step "wse bench --no-training --gen-model $GEN_MODEL ($DTYPE): decode rows, roofline, busy/overhead, transformers"
        timeout "$limit" $PY -m runtime.cli bench --platform "$PLATFORM" --no-training --gen-model "$GEN_MODEL" \
            --dtype "$DTYPE" --out "$OUT/bench" --overwrite --json >> "$LOG" 2>&1 \
            || step "bench failed or timed out (see check.log)"
    fi
    variant "unroll (cold compile)" --
    variant "unroll (compile from the persistent cache)" --
    variant "scan" -- --layer-loop scan
    variant "unroll, command buffers +WHILE,+CONDITIONAL" XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL -- --layer-loop unroll
    variant "scan, command buffers +WHILE,+CONDITIONAL" XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL -- --layer-loop scan
}

variant() {  # variant LABEL [ENV=VALUE ...] -- decode_check options
    local label=$1 limit; shift
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    limit=$(budget 150)
    if [ "$limit" = 0 ]; then echo "decode $label" >> "$SKIPPED"; step "skipped (time budget): $label"; return; fi
    step "variant $label: ${envs[*]:-} $*"
    env ${envs[@]+"${envs[@]}"} timeout "$limit" $PY -m benchmarks.decode_check --label "$label" --model "$GEN_MODEL" \
        --dtype "$DTYPE" --batches 1 "$@" 2>> "$LOG" | tail -n 1 >> "$VARIANTS" || step "variant $label failed"
}

for part in $PARTS; do
    case $part in
        train) train_part ;;
        decode) decode_part ;;
        *) step "unknown part '$part' in PARTS (use train and/or decode)" ;;
    esac
done

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
    print("bench roofline bandwidth " + ", ".join(f"{g['model']} {g.get('bandwidth_bytes_per_s', 0) / 1e9:,.0f} GB/s"
                                              for g in gen.get("per_model", [])) + f"; device {res.get('device')}")
def train_table():
    runs = sorted(out.glob("train-*/bench.json"), key=lambda p: p.stat().st_mtime)  # in the order they ran
    if not runs:
        return
    print(f"\n{'training run':12s} {'mode / baseline':24s} {'loop':6s} {'flags':>5s} {'step s':>7s} {'tokens/s':>9s} "
          f"{'MFU 6N':>6s} {'peak GB':>7s} {'compile s':>9s}")
    for path in runs:
        res, label = json.loads(path.read_text()), path.parent.name.removeprefix("train-")
        for r in res.get("runs", []):
            if r.get("error"):
                print(f"{label:12s} {r['mode']:24s} error: {r['error'][:80]}")
                continue
            peak = (r.get("memory") or {}).get("device_peak_bytes_in_use") or (r.get("memory") or {}).get("peak_estimate", 0)
            print(f"{label:12s} {r['mode']:24s} {r.get('layer_loop', '?'):6s} {r.get('xla_gpu_flags', '?'):>5} "
                  f"{r['step_time_s']:7.3f} {r['tokens_per_s']:9,.0f} {r['mfu']:6.1%} {peak / 1e9:7.1f} "
                  f"{r.get('compile_s', 0):9.1f}")
        for b in (res.get("baseline") or {}).get("rows", []):
            name = f"torch {b.get('variant', 'eager')}"
            if not b.get("tokens_per_s"):
                print(f"{label:12s} {name:24s} error: {str(b.get('error'))[:80]}")
                continue
            ratio = b.get("ratio")
            peak = b.get("peak_memory_bytes") or 0
            print(f"{label:12s} {name:24s} {'':6s} {'':>5s} {'':>7s} {b['tokens_per_s']:9,.0f} {'':>6s} "
                  f"{peak / 1e9:7.1f} {b.get('compile_s') or 0:9.1f}  ours (data) / this: "
                  f"{ratio if ratio is not None else float('nan'):.2f}x")
        print(f"{label:12s} device {res.get('device')}, jax {res.get('environment', {}).get('jax')}, XLA:GPU flags "
              f"{res.get('xla_gpu_flags', {}).get('reason', '?')}")
train_table()
skipped = (out / "skipped.txt").read_text().split("\n") if (out / "skipped.txt").is_file() else []
for s in filter(None, skipped):
    print(f"skipped for the time budget: {s}")
print()
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
