"""What the network learns besides the bead mask, and how beads are cut apart with it (pure numpy).

``train.target`` picks the network's outputs:

* ``mask`` (one channel): bead vs background. Touching beads are separated afterwards from the probability
  map alone (connected components or a distance-transform watershed), which fails where the predicted gap
  between two beads blurs shut.
* ``mask_distance`` (two channels): the bead mask, and each bead's **own normalised distance map**: for a
  bead pixel, its distance to the nearest pixel that is not this bead (background *or another bead*),
  divided by the largest such distance in the bead, so every bead peaks at 1 in its middle and falls to 0
  at its outline, also where it presses against a neighbour (StarDist and Cellpose learn related maps).
  It is made from the instance labels the split keeps, so it needs masks with one id per bead: with 0/1
  masks touching beads are one object and the map would teach the network to merge them, so the target is
  refused with one line. Beads are then :func:`instances_from_distance`: seeds are the connected **cores**
  of the predicted mask (predicted distance above ``core``), and every mask pixel joins the core it is
  reached from by a watershed on the negated predicted distance.

Measured before it was built, on the ground truth of the touching look-alike set and the hard synthetic set
(256², AP@0.5 with the maps blurred like a prediction, Gaussian sigma 1.5 for the mask and 1 for the second
channel): the distance target's cores gave 0.91 and 1.00, a touching-border class (the pixels of a bead next to
another bead, 2 px) 0.57 and 0.64, the best watershed on the mask alone 0.27 and 0.63, components 0.04 and 0.25.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TARGETS: tuple[str, ...] = ("mask", "mask_distance")
#: Channels the network outputs for each target (channel 0 is always the bead mask).
CHANNELS = {"mask": 1, "mask_distance": 2}
#: Predicted distance (0 at a bead's outline, 1 in its middle) above which a pixel belongs to a bead's core.
DEFAULT_CORE = 0.5


def channels(target: str) -> int:
    """Output channels of the network for ``target`` (a ValueError names the valid targets)."""
    if target not in CHANNELS:
        raise ValueError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    return CHANNELS[target]


def touching_border(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Bool map of the pixels of a bead within ``width`` px (4-neighbourhood steps) of a *different* bead.

    Background never counts, so an isolated bead has no border and two touching beads get a band of
    ``2 * width`` px along the line where they meet (``width`` on each side)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"touching_border needs a 2-D label image, got shape {lab.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    big = np.iinfo(np.int64).max
    ids = lab.astype(np.int64)
    cross = ndimage.generate_binary_structure(2, 1)
    high = ndimage.grey_dilation(ids, footprint=cross)  # the largest id next to each pixel
    low = ndimage.grey_erosion(np.where(ids > 0, ids, big), footprint=cross)  # the smallest bead id next to it
    border = (ids > 0) & ((high != ids) & (high > 0) | (low != ids) & (low != big))
    if width > 1:
        border = ndimage.binary_dilation(border, structure=cross, iterations=width - 1) & (ids > 0)
    return np.asarray(border)


def instance_distance(labels: np.ndarray) -> np.ndarray:
    """float32 map of each bead's own normalised distance: 0 outside beads, in (0, 1] inside, 1 at the pixels of
    a bead farthest from everything that is not that bead (background and other beads alike)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"instance_distance needs a 2-D label image, got shape {lab.shape}")
    inside = (lab > 0) & ~touching_border(lab)
    dist = ndimage.distance_transform_edt(inside) + (lab > 0)  # 1 at the outline, as if from just outside
    ids = np.unique(lab[lab > 0])
    if ids.size == 0:
        return np.zeros(lab.shape, np.float32)
    peak = np.zeros(int(ids.max()) + 1, np.float64)
    peak[ids] = ndimage.maximum(dist, lab, ids)
    return np.where(lab > 0, dist / np.maximum(peak[lab], 1.0), 0.0).astype(np.float32)


def instances_from_distance(mask_prob: np.ndarray, distance: np.ndarray, threshold: float = 0.5,
                            min_area: int = 4, core: float = DEFAULT_CORE) -> np.ndarray:
    """Instance labels (int32, 0 background, 1..n) from a predicted mask and predicted normalised distance.

    Seeds: 4-connected components of ``mask_prob > threshold`` where ``distance > core``. Every bead pixel
    then joins a seed by a watershed on ``-distance`` restricted to the mask; a mask component without a core
    (a bead thinner than the network could resolve) stays one object. Objects under ``min_area`` px are dropped
    and the rest renumbered."""
    from skimage.segmentation import watershed

    from beadseg.instances import relabel

    mask_prob, distance = np.asarray(mask_prob, np.float32), np.asarray(distance, np.float32)
    if mask_prob.shape != distance.shape or mask_prob.ndim != 2:
        raise ValueError(f"mask and distance maps must be 2-D and of one shape, got {mask_prob.shape} and "
                         f"{distance.shape}")
    if not 0 < core < 1:
        raise ValueError(f"core must be between 0 and 1, got {core!r}")
    mask = mask_prob > threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    cross = ndimage.generate_binary_structure(2, 1)
    seeds, _ = ndimage.label(mask & (distance > core), structure=cross)
    labels = watershed(-distance, seeds, mask=mask, connectivity=1).astype(np.int64)
    orphans = mask & (labels == 0)
    if orphans.any():
        parts, _ = ndimage.label(orphans, structure=cross)
        labels[orphans] = int(labels.max()) + parts[orphans]
    if min_area > 1:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel(labels)
