"""Which object method should evaluation use by default? ``components`` vs ``watershed`` (beadseg.instances).

Usage:  python benchmarks/instance_objects.py [--seed 5] [--n-images 6] [--pair-images 12] [--size 256]
                                              [--repeats 3] [--json PATH]

There is no trained model here, so each method labels (a) the ground-truth BINARY mask (the best a
perfect semantic segmentation could give) and (b) a stand-in probability map thresholded at 0.5:
``gaussian_blur_sigma1(mask + N(0, 0.5^2) white noise)``, i.e. the blurred mask plus spatially
correlated noise of std ~0.14, which gives ragged edges, thinned necks and the odd hole or blob the way
a network's smooth probability map does (white per-pixel noise would mostly add specks that
``min_area`` removes). Objects are scored against the TRUE instance labels with
``object_scores`` / ``pool_scores`` (pooled over images, StarDist style).

Data sets (all instance-labelled, touching beads have distinct ids):

* ``synth-hard``: ``beadseg.data.synth.write_dataset(..., difficulty="hard", instance_labels=True)``:
  small dense beads (radius 2.5-14 px) in touching clusters of 2-8;
* ``synth-demo``: the demo generator at twice the size (larger beads, mostly apart);
* ``blobs``: irregular separate objects of the look-alike set (not our generator);
* ``pairs``: our own drawn pairs of overlapping/touching disks, radii uniform 4-12 px, centres
  (r1 + r2) * U(0.75, 1.0) apart at a random angle, one pair per 64x64 cell; the overlap lens goes
  to the disk that reaches deeper into it (r - distance to its centre); ``--pair-images`` images of
  16 pairs each.

Rows: the two ``OBJECT_METHODS`` plus, as a sensitivity check of the seed rule, watershed with
``min_distance`` 2 and 4 instead of ``WATERSHED_MIN_DISTANCE_PX`` = 3. Time is the best of
``--repeats`` runs of labelling all images, per megapixel (labelling only, not scoring).
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from beadseg import instances
from beadseg.data.io import read_labels
from beadseg.data.lookalikes import write_folder
from beadseg.data.synth import write_dataset
from beadseg.instances import label_objects, object_scores, pool_scores, true_objects

THRESHOLDS = (0.5, 0.75)
MIN_AREA = 4
Labeller = Callable[[np.ndarray], np.ndarray]


def synth(n_images: int, size: int, seed: int, difficulty: str = "hard") -> list[np.ndarray]:
    """Instance labels of a synthetic data set (written to a temp folder, read back)."""
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = Path(tmp, "images"), Path(tmp, "masks")
        stems = write_dataset(images, masks, n_images=n_images, size=size, seed=seed, progress=False,
                              difficulty=difficulty, instance_labels=True)
        return [true_objects(read_labels(masks / f"{stem}.tif")) for stem in stems]


def blobs(n_images: int, size: int, seed: int) -> list[np.ndarray]:
    """Irregular, mostly separate objects not made by our generator (scikit-image binary_blobs look-alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = Path(tmp, "images"), Path(tmp, "masks")
        write_folder(images, masks, "blobs", n_images=n_images, size=size, seed=seed)
        return [true_objects(read_labels(p)) for p in sorted(masks.glob("*.tif"))]


def _pair_cell(rng: np.random.Generator, cell: int, first_id: int) -> np.ndarray:
    """One cell with two overlapping/touching disks, ids first_id and first_id + 1."""
    r1, r2 = rng.uniform(4.0, 12.0, 2)
    d = (r1 + r2) * rng.uniform(0.75, 1.0)
    angle = rng.uniform(0.0, np.pi)
    c = cell / 2.0
    dy, dx = 0.5 * d * np.sin(angle), 0.5 * d * np.cos(angle)
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float64)
    depth1 = r1 - np.hypot(yy - (c - dy), xx - (c - dx))  # >= 0 inside disk 1
    depth2 = r2 - np.hypot(yy - (c + dy), xx - (c + dx))
    out = np.zeros((cell, cell), np.int32)
    out[(depth1 >= 0) & (depth1 >= depth2)] = first_id
    out[(depth2 >= 0) & (depth2 > depth1)] = first_id + 1
    return out


def drawn_pairs(n_images: int, size: int, seed: int, cell: int = 64) -> list[np.ndarray]:
    """Instance labels of touching disk pairs, one pair per ``cell`` x ``cell`` block."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        lab = np.zeros((size, size), np.int32)
        next_id = 1
        for y in range(0, size - cell + 1, cell):
            for x in range(0, size - cell + 1, cell):
                lab[y:y + cell, x:x + cell] = _pair_cell(rng, cell, next_id)
                next_id += 2
        out.append(true_objects(lab))
    return out


def stand_in_prob(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blurred (sigma 1) binary mask plus correlated noise: blur(mask + N(0, 0.5^2))."""
    noisy = (labels > 0).astype(np.float64) + rng.normal(0.0, 0.5, labels.shape)
    return ndimage.gaussian_filter(noisy, 1.0)


def _watershed_md(prob: np.ndarray, min_distance: int) -> np.ndarray:
    """The watershed method with another seed ``min_distance`` (sensitivity rows only)."""
    return instances._watershed(prob > 0.5, MIN_AREA, min_distance)


def labellers() -> dict[str, Labeller]:
    """Row name -> labeller of a probability map (threshold 0.5, min_area 4)."""
    rows: dict[str, Labeller] = {
        m: partial(label_objects, threshold=0.5, method=m, min_area=MIN_AREA) for m in instances.OBJECT_METHODS
    }
    for md in (2, 4):
        rows[f"watershed md={md}"] = partial(_watershed_md, min_distance=md)
    return rows


def measure(truth: list[np.ndarray], inputs: list[np.ndarray], fn: Labeller, repeats: int) -> dict:
    best = float("inf")
    preds: list[np.ndarray] = []
    for _ in range(repeats):
        start = time.perf_counter()
        preds = [fn(x) for x in inputs]
        best = min(best, time.perf_counter() - start)
    pooled = pool_scores([object_scores(t, p, THRESHOLDS) for t, p in zip(truth, preds, strict=True)], THRESHOLDS)
    mpx = sum(x.size for x in inputs) / 1e6
    pooled["ms_per_mpx"] = 1000.0 * best / mpx
    return pooled


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--n-images", type=int, default=6)
    ap.add_argument("--pair-images", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = {"synth-hard": synth(args.n_images, args.size, args.seed),
            "pairs": drawn_pairs(args.pair_images, args.size, args.seed),
            "synth-demo": synth(args.n_images, 2 * args.size, args.seed, "demo"),  # larger, mostly separate beads
            "blobs": blobs(args.n_images, args.size, args.seed)}
    rng = np.random.default_rng(args.seed + 1000)
    print(f"synth-hard: {args.n_images} images, pairs: {args.pair_images} images, of {args.size}^2; "
          f"thresholds {THRESHOLDS}; min_area {MIN_AREA}; AP = TP/(TP+FP+FN) pooled over images; F1 at IoU 0.5")
    header = (f"{'data':<11}{'input':<8}{'method':<18}{'AP@0.5':>7}{'AP@0.75':>8}{'F1':>7}{'merges':>7}"
              f"{'splits':>7}{'n_pred':>7}{'n_true':>7}{'IoU':>6}{'ms/MPx':>8}")
    print(header)
    print("-" * len(header))
    results = []
    for dname, truth in data.items():
        inputs = {"binary": [t > 0 for t in truth], "noisy": [stand_in_prob(t, rng) for t in truth]}
        for iname, xs in inputs.items():
            for mname, fn in labellers().items():
                r = measure(truth, xs, fn, args.repeats)
                results.append({"data": dname, "input": iname, "method": mname, **r})
                print(f"{dname:<11}{iname:<8}{mname:<18}{r['ap_50']:>7.3f}{r['ap_75']:>8.3f}{r['f1']:>7.3f}"
                      f"{r['merges']:>7d}{r['splits']:>7d}{r['n_pred']:>7d}{r['n_true']:>7d}"
                      f"{r['mean_matched_iou']:>6.3f}{r['ms_per_mpx']:>8.1f}")
        print()
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
