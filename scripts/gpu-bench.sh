#!/usr/bin/env bash
# GPU benchmark of what a pipeline training job really does (one prepared script, under 8 minutes on one card).
#   usage: scripts/gpu-bench.sh            on a machine with CUDA (after `make install`)
#          scripts/gpu-bench.sh --cpu      the same figures on the CPU (add --quick for a one-minute check)
# Prints, side by side: GPU busy fraction, host syncs per optimizer step, achieved TFLOP/s and fraction of the
# card's bf16 dense peak, time to the first step, job wall / training time (demo-size job and the 32-channel
# 512 job, CUDA graph off and on); 1, 4, 8 concurrent jobs on one card; the demo search before vs after.
# First runs the GPU-only test that compares the graphed step with the eager one. JSON goes to $OUT if set,
# else benchmarks/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
export PATH="$(cd "$BIN" && pwd):$PATH"
device=cuda
quick=""
for arg in "$@"; do
  case "$arg" in
    --cpu) device=cpu ;;
    --quick) quick=--quick ;;
    *) echo "gpu-bench: unknown argument $arg (use --cpu, --quick)" >&2; exit 2 ;;
  esac
done
if [ "$device" = cuda ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu-bench: torch sees no CUDA device; running the CPU figures instead (--cpu)" >&2
  device=cpu
fi
python -c "import torch, platform; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine())"
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "--- graphed step vs eager step (GPU-only test)"
  timeout 120 python -m pytest -q -p no:cacheprovider tests/unit/test_cudagraph.py
fi
echo "--- benchmark ($device${quick:+, quick})"
# shellcheck disable=SC2086  # $quick: empty or one flag
timeout 450 python benchmarks/gpu_bench.py --device "$device" $quick
