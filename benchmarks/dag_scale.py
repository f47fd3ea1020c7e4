"""How the DAG scales with the run table: wall time of `snakemake -n`, `dvc status` and `dvc repro --dry`
for 50 / 200 / 500 runs (a grid expanded with beadseg.plan.expand_grid) in a temporary copy of the project.

    python benchmarks/dag_scale.py [--sizes 50 200 500] [--json benchmarks/dag_scale.json]

Nothing is trained: the data steps run once (tiny), then the commands only build and check the DAG
(every training job is pending).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def grid_for(n: int) -> dict:
    """A grid with exactly ``n`` points: lr x seed (x tile size), plain run-table material."""
    lrs = [round(1e-4 * (1 + i), 6) for i in range(n // 10)]
    return {"grid": {"lr": lrs, "seed": list(range(10))}}


def project(dest: Path, n: int) -> Path:
    """A throw-away git + DVC project with this checkout's pipeline, tiny data and ``n`` runs."""
    import yaml

    from beadseg.plan import expand_grid
    from beadseg.workflow import copy_pipeline

    table = expand_grid(grid_for(n))
    assert len(table) == n, len(table)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["synthetic"] = {"n_images": 4, "size": 128, "seed": 1}
    params["tiling"]["sizes"] = [64, 128]
    params["train"].update(depth=3, base_channels=4, max_epochs=2, patience=2, steps_per_epoch=3, tile_size=64)
    params["runs"] = table
    root = copy_pipeline(dest)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    # Data steps only (seconds), so `dvc repro --dry` can walk the whole graph; no training.
    subprocess.run(["snakemake", "--cores", "2", "--until", "tile", "--quiet"], cwd=root, check=True,
                   capture_output=True)
    return root


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


COMMANDS = {
    "snakemake -n": ["snakemake", "-n", "--cores", "8", "--resources", "gpu=2", "--quiet"],
    "dvc status": ["dvc", "status"],
    "dvc repro --dry train": ["dvc", "repro", "--dry", "train"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "dag_scale.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="beadseg-dag-") as tmp:
        for n in args.sizes:
            root = project(Path(tmp) / f"runs{n}", n)
            row = {"runs": n}
            for name, cmd in COMMANDS.items():
                row[name] = round(timed(cmd, root), 2)
            results.append(row)
            print(f"{n:>5} runs: " + ", ".join(f"{k} {v:.1f} s" for k, v in row.items() if k != "runs"), flush=True)
            shutil.rmtree(root)
    header = "| runs | " + " | ".join(COMMANDS) + " |"
    print("\n" + header + "\n|" + "---|" * (len(COMMANDS) + 1))
    for row in results:
        print(f"| {row['runs']} | " + " | ".join(f"{row[k]:.1f} s" for k in COMMANDS) + " |")
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
