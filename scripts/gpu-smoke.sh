#!/usr/bin/env bash
# GPU smoke check for a machine with CUDA (a few minutes): the AMP/cudnn training path, per-GPU leasing with
# two concurrent jobs, and the real-GPU unit test. Prints what each job leased; exits non-zero on failure.
#   usage: scripts/gpu-smoke.sh            (from the project root, after `make install`)
set -euo pipefail
BIN="${VENV:-.venv}/bin"
export PATH="$(cd "$BIN" && pwd):$PATH"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('cuda', torch.cuda.device_count(), torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
python -m pytest -q tests/unit/test_devices.py tests/unit/test_cudagraph.py
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python - "$work" "$root" <<'PY'
import sys, yaml
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.helpers.tiny import make_tiny_project, tiny_params
root = Path(sys.argv[1])
params = tiny_params(max_epochs=3, base_channels=16)
params["runs"] = {"g1": {}, "g2": {"loss": "dice"}}
make_tiny_project(root, params)
(root / "params.yaml").write_text(yaml.safe_dump(params))
PY
cd "$work"
export BEADSEG_LOCK_DIR="$work/locks"
echo "--- two training jobs at once (one card: one leases it, the other waits or falls back)"
BEADSEG_GPU_WAIT=0 BEADSEG_GPU_FALLBACK=cpu beadseg -q train --run g1 --threads 2 & p1=$!
BEADSEG_GPU_WAIT=0 BEADSEG_GPU_FALLBACK=cpu beadseg -q train --run g2 --threads 2 & p2=$!
wait $p1 $p2
echo "--- the same with two slots per card (BEADSEG_JOBS_PER_GPU=2): both on the card"
rm -rf results/runs
BEADSEG_JOBS_PER_GPU=2 BEADSEG_GPU_WAIT=0 beadseg -q train --run g1 --threads 2 & p1=$!
BEADSEG_JOBS_PER_GPU=2 BEADSEG_GPU_WAIT=0 beadseg -q train --run g2 --threads 2 & p2=$!
wait $p1 $p2
python - <<'PY'
import json
m = [json.load(open(f"results/runs/{r}/train.json")) for r in ("g1", "g2")]
for x in m:
    print(x["run_id"], x["device"], x["device_name"], "gpu", x["gpu_id"], f"peak {x['peak_memory_mb']:.0f} MB",
          f"tile val jaccard {x['best_val_jaccard']:.3f}", "oom retries", x.get("oom_retries"))
assert all(x["device"] == "cuda" for x in m), "a job did not run on CUDA with two slots per card"
PY
echo "--- evaluate both runs on CUDA (full val + test images), then predict a raw image"
beadseg evaluate --run g1 --threads 2
beadseg evaluate --run g2 --threads 2
img=$(ls data/raw/demo/images/*.tif | head -1)
beadseg predict --run g1 --out pred "$img"
python - "$img" <<'PY'
import json, sys
import numpy as np, tifffile
from pathlib import Path
stem = Path(sys.argv[1]).stem
lab = tifffile.imread(f"pred/{stem}_labels.tif")
print("labels", lab.dtype, lab.shape, "beads", int(lab.max()))
for r in ("g1", "g2"):
    m = json.load(open(f"results/runs/{r}/metrics.json"))
    print(r, m["status"], "val J", m.get("full_val_jaccard"), "test J", m.get("test_jaccard"), "AP50", m.get("ap_50"))
assert lab.dtype == np.uint16
PY
echo "gpu-smoke: OK"
