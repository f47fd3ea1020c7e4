"""Small-data benchmark: do the shipped defaults train a handful of annotated images of other looks?

Usage:  python benchmarks/small_data.py [--looks blobs disks touching hard demo] [--n-images 4] [--size 256]
                                        [--cores 2] [--target mask|mask_distance] [--keep DIR]

For each look it writes a folder of ``--n-images`` images with instance-label masks, copies the pipeline
(Snakefile, workflow/, dvc.yaml) and the repository's params.yaml with only ``data.*`` changed (source:
folder), runs the real ``snakemake --cores N`` end to end, and prints per run: status, optimizer steps,
full-image Jaccard and bead F1, next to the threshold baseline and the wall time. Looks:

* ``blobs``: scikit-image ``binary_blobs`` under our own blur / background / noise model, 8-bit;
* ``disks``: drawn ellipses with an Airy-like blur, a ramp and Poisson noise, float32;
* ``touching``: clumps of touching irregular objects (ellipses and beans, no gap between neighbours), uint16;
* ``hard``:  the embedded generator's hard difficulty (small, dense, dim beads, debris);
* ``demo``:  the embedded generator's demo look at this size.

For the best run it also prints bead AP@0.5 on the test images (val where there is none) three ways, on the
same predictions: the post-processing the evaluate step chose on the run's validation predictions, plain
connected components, and the watershed at its default seed distance.

Writes the same figures as JSON to benchmarks/out/small_data.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from beadseg.data.lookalikes import write_folder
from beadseg.data.synth import write_dataset
from beadseg.workflow import copy_pipeline

ROOT = Path(__file__).resolve().parents[1]

LOOKS = ("blobs", "disks", "touching", "hard", "demo")


def write_look(look: str, images: Path, masks: Path, n_images: int, size: int, seed: int) -> None:
    if look == "demo":
        write_dataset(images, masks, n_images=n_images, size=size, seed=seed, progress=False, instance_labels=True)
    else:
        write_folder(images, masks, look, n_images, size, seed)


def make_project(dest: Path, look: str, n_images: int, size: int, seed: int, target: str | None = None) -> None:
    copy_pipeline(dest)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if target is not None:  # every run learns this target (train.target); nothing else changes
        params["train"] = {**params["train"], "target": target}
    params["data"] = {**params["data"], "source": "folder", "images": "data/raw/mine/images",
                      "masks": "data/raw/mine/masks"}
    params["data"].pop("synthetic", None)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_look(look, dest / "data/raw/mine/images", dest / "data/raw/mine/masks", n_images, size, seed)


def run_look(look: str, workdir: Path, n_images: int, size: int, cores: int, seed: int,
             target: str | None = None) -> dict:
    project = workdir / (look if target is None else f"{look}-{target}")
    make_project(project, look, n_images, size, seed, target)
    t0 = time.perf_counter()
    proc = subprocess.run(["snakemake", "--cores", str(cores)], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "BEADSEG_DEVICE": os.environ.get("BEADSEG_DEVICE", "cpu")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{look}: snakemake failed ({proc.returncode}); see {project}\n{proc.stderr[-3000:]}")
    runs = pd.read_csv(project / "results/summary/runs.csv")
    baseline = json.loads((project / "results/summary/baseline.json").read_text())
    fingerprint = json.loads((project / "results/summary/fingerprint.json").read_text())
    summary = json.loads((project / "results/summary/summary.json").read_text())
    cols = ["run_id", "status", "optimizer_steps", "full_val_jaccard", "bead_f1", "ap_50", "tile_size"]
    return {
        "look": look, "wall_seconds": wall, "runs": runs[cols].to_dict(orient="records"),
        "baseline_method": baseline["method"], "baseline_full_val_jaccard": baseline["full_val_jaccard"],
        "baseline_bead_f1": baseline["bead_f1"], "best_run_id": summary.get("best_run_id"),
        "best_full_val_jaccard": summary.get("best_full_val_jaccard"), "warnings": fingerprint["warnings"],
        "objects": object_methods(project, summary.get("best_run_id")),
    }


def object_methods(project: Path, run_id: str | None) -> dict:
    """Bead AP@0.5 of one run's predictions on the test images (val without a test split): chosen on its val
    predictions (what evaluate recorded) vs plain components vs the default watershed."""
    if not run_id:
        return {}
    from beadseg import paths
    from beadseg.checkpoint import load_model_file
    from beadseg.config import EvaluationConfig
    from beadseg.data.prepare import load_split, load_split_objects
    from beadseg.evaluate import predict_images, score_images
    from beadseg.scoring import from_record

    model = load_model_file(project / paths.model_file(run_id))
    record = from_record(json.loads((project / paths.evaluation_info_file(run_id)).read_text()), run_id)
    split = "test" if load_split("test", project) else "val"
    pairs = load_split(split, project)
    probs = predict_images(model.build(), {s: im for s, (im, _) in pairs.items()}, model.tile_size, 0.25,
                           model.config.batch_size, __import__("torch").device("cpu"))
    truths = load_split_objects(split, project)
    base = EvaluationConfig(threshold=model.threshold, iou_thresholds=(0.5,))
    ways = {"chosen": record.scoring(base), "components": dataclasses.replace(base, objects="components"),
            "watershed": dataclasses.replace(base, objects="watershed")}
    out = {"split": split, "chosen_as": record.to_dict()}
    for name, evaluation in ways.items():
        out[name] = score_images(probs, truths, evaluation)[0]["ap_50"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--looks", nargs="+", default=list(LOOKS), choices=LOOKS)
    ap.add_argument("--n-images", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--target", choices=("mask", "mask_distance"), default=None,
                    help="train.target for every run (default: params.yaml's)")
    ap.add_argument("--keep", help="keep the projects in this folder (default: a temporary folder, removed)")
    args = ap.parse_args()
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="beadseg-small-"))
    results = []
    try:
        for look in args.looks:
            r = run_look(look, workdir, args.n_images, args.size, args.cores, args.seed, args.target)
            results.append(r)
            print(f"\n{look}: {args.n_images} images of {args.size}^2, snakemake --cores {args.cores}: "
                  f"{r['wall_seconds'] / 60:.1f} min; threshold baseline ({r['baseline_method']}) full-image "
                  f"Jaccard {r['baseline_full_val_jaccard']:.3f}, bead F1 {r['baseline_bead_f1']:.3f}", flush=True)
            for run in r["runs"]:
                print(f"  {run['run_id']:<28} {run['status']:<13} steps {run['optimizer_steps']:>4}  "
                      f"full-image Jaccard {run['full_val_jaccard']:.3f}  bead F1 {run['bead_f1']:.3f}", flush=True)
            if r["objects"]:
                o = r["objects"]
                how = o["chosen_as"]
                detail = (f"core {how['core']:g}" if how["objects"] == "distance" else
                          f"seeds {how['seed_distance']} px" if how["objects"] == "watershed" else "")
                print(f"  bead AP@0.5 of the best run on {o['split']}: chosen on val {o['chosen']:.3f} "
                      f"({how['objects']}{', ' + detail if detail else ''}, threshold {how['threshold']:g}) | "
                      f"components {o['components']:.3f} | watershed {o['watershed']:.3f}", flush=True)
            best = r["best_full_val_jaccard"]
            print(f"  best: {r['best_run_id']} ({best:.3f})" if best is not None else "  best: none (search failed)")
            for w in r["warnings"]:
                print(f"  fingerprint warning: {w}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / "benchmarks" / "out" / f"small_data{'' if args.target is None else '_' + args.target}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n_images": args.n_images, "size": args.size, "cores": args.cores,
                               "results": results}, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
