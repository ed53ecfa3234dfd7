#!/usr/bin/env bash
# GPU checks of dfk on a CUDA machine, in under 10 minutes; one JSON line per figure on stdout.
#
#   scripts/gpu_check.sh                  # PYTHON=... to pick the interpreter (default: python)
#
# 1. pytest -m gpu: the GPU-only tests (with 2+ GPUs also the NCCL gradient-averaging test)
# 2. with 2+ GPUs: torchrun --nproc_per_node=2 -m deepfake_cli train-swap (tiny-gan in fp16, so
#    NCCL, DistributedDataParallel and both grad scalers run), then that model resumed on 1 GPU
# 3. scripts/bench_train_swap.py, bench_convert.py and bench_detect.py with --device cuda
#
# Each step has its own time limit (together 9.5 minutes at most). Without CUDA it says so and
# exits 0; otherwise it exits 1 if any check failed. Logs of each step are printed on failure.
set -u
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check" >&2
    exit 0
fi
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=0

# step NAME LIMIT_S COMMAND...: run COMMAND with a time limit, stdout to $WORK/NAME.out, stderr to
# $WORK/NAME.err; sets RC and TOOK (seconds).
step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    RC=$?
    TOOK=$((SECONDS - start))
    if [ "$RC" -ne 0 ]; then
        FAILED=1
        local why="exit $RC"
        [ "$RC" -eq 124 ] && why="time limit of $limit s"
        echo "gpu_check: $name failed ($why); last lines:" >&2
        tail -n 30 "$WORK/$name.err" >&2
    fi
}

# line NAME [KEY=VALUE...]: one JSON line {"check": NAME, "ok", "rc", "seconds", KEY: VALUE...}
line() {
    "$PY" - "$RC" "$TOOK" "$@" <<'EOF'
import json, sys
rc, took, name, *pairs = sys.argv[1:]
record = {"check": name, "ok": rc == "0", "rc": int(rc), "seconds": int(took)}
record.update(pair.split("=", 1) for pair in pairs)
print(json.dumps(record))
EOF
}

# bench NAME LIMIT_S SCRIPT ARGS...: a benchmark prints its own JSON line; a failed one gets a line here.
bench() {
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" "$@"
    if [ "$RC" -eq 0 ]; then tail -n 1 "$WORK/$name.out"; else line "$name"; fi
}

# 1. the GPU-only tests
step pytest_gpu 170 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests
line "pytest -m gpu" "summary=$(tail -n 1 "$WORK/pytest_gpu.out")"

# 2. two ranks on two GPUs, then a resume on one
if [ "$GPUS" -ge 2 ]; then
    "$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path
from deepfake_cli.media.images import write_image
from deepfake_cli.media.synthetic import make_clip
for side, (still, seed) in {"a": ("astronaut", 1), "b": ("grace_hopper", 2)}.items():
    for index, frame in enumerate(make_clip(still, 16, (128, 128), seed=seed).frames):
        write_image(Path(sys.argv[1]) / f"faces_{side}" / f"{index:03d}.png", frame)
EOF
    MODEL="$WORK/model"
    TRAIN=(train-swap -A "$WORK/faces_a" -B "$WORK/faces_b" -o "$MODEL" --device cuda)
    step torchrun 80 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 -m deepfake_cli -q \
        "${TRAIN[@]}" --preset tiny-gan --set train.precision=fp16 --iterations 20 --save-every 10
    CHECK=$("$PY" - "$MODEL" "$WORK/torchrun.out" <<'EOF'
import csv, json, re, sys
from pathlib import Path
model, out = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
try:
    state = json.loads((model / "state.json").read_text())
    steps = [row["step"] for row in csv.DictReader((model / "log.csv").open())]
except OSError:
    state, steps = {}, []
speed = re.search(r"\(([\d.]+) faces/s\)", out)
print(f"world_size={state.get('world_size')} step={state.get('step')} summary_lines={out.count('trained steps')} "
      f"log_rows_unique={len(steps) == len(set(steps)) > 0} faces_per_s={speed.group(1) if speed else None}")
EOF
)
    # shellcheck disable=SC2086  # CHECK is KEY=VALUE words
    line "torchrun --nproc_per_node=2 train-swap (tiny-gan, fp16, 2 GPUs)" $CHECK
    case "$CHECK" in *"world_size=2 step=20 summary_lines=1 log_rows_unique=True"*) ;; *) FAILED=1 ;; esac
    step resume 40 "$PY" -m deepfake_cli -q "${TRAIN[@]}" --iterations 25
    line "resume the 2-rank model on 1 GPU" "summary=$(tail -n 1 "$WORK/resume.out")"
else
    RC=0
    TOOK=0
    line "torchrun train-swap on 2 GPUs" "skipped=only $GPUS GPU"
fi

# 3. benchmarks on the GPU
bench bench_train_swap 80 scripts/bench_train_swap.py --device cuda --preset original --batch-size 16
bench bench_convert 130 scripts/bench_convert.py --device cuda --frames 50 --repeats 1
bench bench_detect 80 scripts/bench_detect.py --device cuda --repeats 3

exit "$FAILED"
