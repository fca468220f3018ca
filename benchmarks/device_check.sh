#!/usr/bin/env bash
# Accelerator check (issue 13, item 9): the CUDA tests and every benchmark on CUDA, in at most 8 minutes.
#
# Run from anywhere, on a machine with an NVIDIA GPU and a CUDA build of PyTorch:
#
#     bash benchmarks/device_check.sh                  # results under benchmarks/results/cuda/
#     OUT=/tmp/run bash benchmarks/device_check.sh     # results under /tmp/run/cuda/
#     PYTHON=python3 bash benchmarks/device_check.sh   # another interpreter (default: .venv/bin/python, else python3)
#
# It installs nothing.  It assumes an environment set up with
#     pip install -c constraints.txt -e ".[test]"
# (on a GPU machine, with a CUDA wheel of torch).  Where flowlearn is not installed in that
# interpreter, it falls back to PYTHONPATH=src (the package's own dependencies must be present).
#
# Steps, each under `timeout` and within an overall deadline of DEVICE_CHECK_SECONDS (default 480):
#   1. nvidia-smi, torch / CUDA versions;
#   2. python -m pytest -q tests/test_cuda.py tests/test_geometry.py tests/test_data_features.py
#      tests/test_batched_layer.py (the batched layers and the head on CUDA);
#   3. benchmarks/linearized_forward.py, gradient.py, randomized_scaling.py with --quick --device cuda, the
#      float32/float64 comparison of gradient.py at 512^2 on CUDA, benchmarks/batched_layer.py --quick on
#      CUDA (batched layers against a loop, BasicUNet with and without the head, 3-D stacks), and
#      benchmarks/gfe.py --quick (which
#      has no --device: it runs on the CPU).
# Output: ${OUT:-benchmarks/results}/cuda/{*.json, device_check.log, summary.txt}.  Exit status: 0 when
# every step passed, 1 when one failed or timed out (the others still run), 2 when CUDA is unavailable.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || { echo "device_check: python interpreter '$PYTHON' not found (set PYTHON=...)" >&2; exit 2; }

# fail fast, one line, when there is no GPU
if ! cuda_line="$("$PYTHON" -c '
import torch
build = "CUDA " + torch.version.cuda if torch.version.cuda else "a CPU-only build"
if not torch.cuda.is_available():
    raise SystemExit(f"device_check: CUDA is not available (torch {torch.__version__}, {build}); "
                     "run this on a machine with an NVIDIA GPU and a CUDA build of torch")
print(f"torch {torch.__version__}, {build}, {torch.cuda.get_device_name(0)}")
' 2>&1)"; then
    echo "${cuda_line##*$'\n'}" >&2
    exit 2
fi

if ! "$PYTHON" -c 'import flowlearn' >/dev/null 2>&1; then
    export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" -c 'import flowlearn' || { echo "device_check: cannot import flowlearn (install it: pip install -c constraints.txt -e '.[test]')" >&2; exit 2; }
fi

RESULTS="${OUT:-benchmarks/results}/cuda"
mkdir -p "$RESULTS"
LOG="$RESULTS/device_check.log"
SUMMARY="$RESULTS/summary.txt"
: >"$LOG"
: >"$SUMMARY"
exec > >(tee -a "$LOG") 2>&1

export FLOWLEARN_NO_PROGRESS=1 PYTHONUNBUFFERED=1
DEADLINE=$((SECONDS + ${DEVICE_CHECK_SECONDS:-480}))
failed=0

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND under timeout (capped by the overall deadline)
step() {
    local name=$1 limit=$2 left rc start
    shift 2
    left=$((DEADLINE - SECONDS - 5))
    if ((left < 10)); then
        echo "== $name: SKIPPED (overall deadline reached)"
        echo "$name: skipped (deadline)" >>"$SUMMARY"
        failed=1
        return 0
    fi
    ((limit > left)) && limit=$left
    echo
    echo "== $name (timeout ${limit} s): $*"
    start=$SECONDS
    set +e
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    set -e
    if ((rc == 0)); then
        echo "$name: ok in $((SECONDS - start)) s" >>"$SUMMARY"
    else
        [[ $rc -eq 124 || $rc -eq 137 ]] && what="timed out" || what="failed (exit $rc)"
        echo "== $name: $what"
        echo "$name: $what after $((SECONDS - start)) s" >>"$SUMMARY"
        failed=1
    fi
}

echo "== device"
nvidia-smi || echo "(nvidia-smi not available)"
echo "$cuda_line"
"$PYTHON" -c 'import sys, torch, flowlearn; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, devices {torch.cuda.device_count()}, flowlearn at {flowlearn.__file__}")'

step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_geometry.py tests/test_data_features.py tests/test_batched_layer.py
step linearized_forward 100 "$PYTHON" -m benchmarks.linearized_forward --quick --device cuda --out "$RESULTS/linearized_forward.json"
step gradient 130 "$PYTHON" -m benchmarks.gradient --quick --device cuda --out "$RESULTS/gradient.json"
step gradient_dtypes 90 "$PYTHON" -m benchmarks.gradient --compare-dtypes --compare-size 512 --compare-threads 1 --device cuda --repeat 3 --out "$RESULTS/gradient_dtypes.json"
step randomized 60 "$PYTHON" -m benchmarks.randomized_scaling --quick --device cuda --out "$RESULTS/randomized.json"
step batched_layer 120 "$PYTHON" -m benchmarks.batched_layer --quick --threads 1 --device cuda --out "$RESULTS/batched_layer.json"
step gfe 120 "$PYTHON" -m benchmarks.gfe --quick --out "$RESULTS/gfe.json"

echo
echo "== summary ($SECONDS s in all; results in $RESULTS)"
cat "$SUMMARY"
exit "$failed"
