#!/usr/bin/env bash
# Every GPU measurement of saekit in one run of at most ~8 minutes (see docs/kernels.md).
#   usage: benchmarks/gpu/run.sh OUTDIR        (from the repository root, on the GPU machine)
#   SAEKIT_GPU_DRYRUN=1 benchmarks/gpu/run.sh OUTDIR   CPU rehearsal: tiny sizes, no installs, no peers
# Writes OUTDIR/results.jsonl (one JSON line per measurement, each with "stage"), OUTDIR/summary.md
# (the tables) and OUTDIR/run.log. Each stage runs under its own `timeout`, so one slow stage
# loses only its own figures.
set -u
OUT=${1:?usage: benchmarks/gpu/run.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
DRY=${SAEKIT_GPU_DRYRUN:-0}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 SAEKIT_NO_PROGRESS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG=$OUT/run.log
: >"$OUT/results.jsonl"
: >"$LOG"
T_ALL=$(date +%s)

note() { echo "$*" | tee -a "$LOG"; }
emit() { printf '%s\n' "$1" >>"$OUT/results.jsonl"; }

stage() {  # stage NAME CAP_S CMD...: run under its cap, record how it ended
  local name=$1 cap=$2 t0 rc
  shift 2
  note "== $name (cap ${cap}s) $(date -u +%H:%M:%S)"
  t0=$(date +%s)
  timeout -k 5 "$cap" "$@" >>"$LOG" 2>&1
  rc=$?
  "$PY" benchmarks/gpu/stages.py mark --out "$OUT" --name "$name" --rc "$rc" --seconds $(($(date +%s) - t0)) --cap "$cap" >>"$LOG" 2>&1
  note "   $name: rc=$rc after $(($(date +%s) - t0)) s"
}

install() {  # saekit without network, plus the carried wheels (.whl/, see fetch_wheels.sh)
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/saekit-site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/saekit-site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "no .whl/ folder: peers and transformer-lens may be missing (run benchmarks/gpu/fetch_wheels.sh, carry .whl)"
  fi
  if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . ; then
    # no editable install: a copy laid out as installed (kernels/ imports as saekit.kernels)
    rm -rf /tmp/saekit-src && mkdir -p /tmp/saekit-src && cp -r saekit /tmp/saekit-src/ && cp -r kernels /tmp/saekit-src/saekit/kernels
    export PYTHONPATH=/tmp/saekit-src:$PYTHONPATH
  fi
  "$PY" -c "import saekit.kernels, transformer_lens; print('saekit', saekit.__file__)"
}

if [ "$DRY" = 1 ]; then
  emit '{"stage": "install", "status": "skipped: dry run (no installs)"}'
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  note "== install $(date -u +%H:%M:%S)"
  if install >>"$LOG" 2>&1; then emit '{"stage": "install", "status": "ok"}'; else emit '{"stage": "install", "status": "failed (see run.log)"}'; fi
  nvidia-smi >>"$LOG" 2>&1
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$ROOT  # benchmarks import tests/ helpers; installed saekit first
fi

S="$PY benchmarks/gpu/stages.py"
if [ "$DRY" = 1 ]; then
  # The rehearsal checks that every stage runs, not how fast: caps with room for a busy CPU
  # (the test suite runs it beside another test worker).
  stage tests 180 $S tests --out "$OUT"
  stage decode 180 $S decode --out "$OUT"
  stage encode 180 $S encode --out "$OUT"
  stage train_step 180 $S train_step --out "$OUT"
  stage e2e 180 $S e2e --out "$OUT"
  stage nccl 90 $S nccl --out "$OUT"
else
  stage tests 80 $S tests --out "$OUT"
  stage decode_bf16 90 $S decode --out "$OUT" --dtype bfloat16
  stage decode_fp32 70 $S decode --out "$OUT" --dtype float32
  stage encode_bf16 60 $S encode --out "$OUT" --dtype bfloat16
  stage train_step 70 $S train_step --out "$OUT"
  stage e2e 40 $S e2e --out "$OUT"
  stage nccl 40 $S nccl --out "$OUT"
fi
$PY benchmarks/gpu/stages.py summary --out "$OUT" >>"$LOG" 2>&1 || note "summary failed (see run.log)"
note "== done in $(($(date +%s) - T_ALL)) s; $OUT/summary.md"
