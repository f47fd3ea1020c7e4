"""Which sampler should be the default? Random-offset crops (with and without foreground oversampling)
vs the stored tiles drawn with replacement, at the same optimizer-step budget, side by side.

Usage:  python benchmarks/sampler_choice.py [--data demo hard] [--steps 20] [--epochs 15] [--threads 1]

For each data set (the demo: 12 images of 768², 9 for training; the hard benchmark: 8 images of 512²,
6 for training) it trains the same run (tile 256, combined loss, lr 3e-3, the shipped params.yaml's
training defaults) three times — ``random_crop`` with ``foreground_oversample`` 0.33 and 0.0, and
``tiles`` — and prints full-image validation Jaccard, bead F1 and seconds. Writes
benchmarks/out/sampler_choice.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from beadseg.config import validate
from beadseg.data.prepare import run_split, run_tile
from beadseg.data.synth import write_dataset
from beadseg.train import train_run

ROOT = Path(__file__).resolve().parents[1]

DATA = {"demo": {"n_images": 12, "size": 768, "seed": 7, "difficulty": "demo"},
        "hard": {"n_images": 8, "size": 512, "seed": 11, "difficulty": "hard"}}
VARIANTS = {"random_crop fg 0.33": {"sampler": "random_crop", "foreground_oversample": 0.33},
            "random_crop fg 0": {"sampler": "random_crop", "foreground_oversample": 0.0},
            "tiles": {"sampler": "tiles"}}


def params_for(data: str, steps: int, epochs: int) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["synthetic"] = dict(DATA[data])
    params["tiling"]["sizes"] = [256]
    params["train"].update(steps_per_epoch=steps, max_epochs=epochs, tile_size=256, loss="combined", lr=3e-3)
    params["runs"] = {name.replace(" ", "_").replace(".", "p"): over for name, over in VARIANTS.items()}
    params["finetune"] = {}
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for data in args.data:
        cfg = validate(params_for(data, args.steps, args.epochs))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            s = cfg.data.synthetic
            write_dataset(root / cfg.data.images, root / cfg.data.masks, n_images=s.n_images, size=s.size,
                          seed=s.seed, progress=False, difficulty=s.difficulty)
            run_split(cfg.data, root=root, progress=False)
            run_tile(cfg.tiling, 256, root=root, progress=False)
            for (name, _), run_id in zip(VARIANTS.items(), cfg.run_ids):
                t0 = time.perf_counter()
                m = train_run(cfg, run_id, threads=args.threads, root=root, progress=False)
                row = {"data": data, "variant": name, "status": m["status"], "optimizer_steps": m["optimizer_steps"],
                       "full_val_jaccard": m.get("full_val_jaccard"), "bead_f1": m.get("bead_f1"),
                       "seconds": time.perf_counter() - t0}
                results.append(row)
                print(f"{data:<5} {name:<20} {row['status']:<13} steps {row['optimizer_steps']:>4}  full-image "
                      f"Jaccard {row['full_val_jaccard']:.3f}  bead F1 {row['bead_f1']:.3f}  {row['seconds']:.0f} s",
                      flush=True)
    out = ROOT / "benchmarks" / "out" / "sampler_choice.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
