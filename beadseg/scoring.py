"""How a model's probabilities become beads: one record, written by the evaluate step, read by predict.

* **Threshold.** ``evaluation.threshold`` is the one training's per-epoch validation picks the best epoch at;
  the model file records it, and the evaluate step refuses a model picked at another one.
* **Post-processing.** With ``evaluation.objects`` set (``components`` / ``watershed``), the evaluate step
  uses evaluation's threshold, ``min_bead_area`` and ``seed_distance`` as they are. With ``auto`` it tries a
  small set of candidates (:func:`candidates`: both object methods, watershed seed distances, and any extra
  thresholds / minimum areas listed under ``evaluation.auto``) on the run's **own validation predictions**
  and keeps the one with the best AP (nnU-Net's post-processing determination, in spirit): a choice made on
  perfect training masks does not predict how the methods behave on blurred predicted gaps between touching
  beads. The test split chooses nothing.
* **One home.** The evaluate step records the choice in the run's ``evaluation.json`` (``postprocessing``)
  and ``beadseg predict`` reads it from there, so a prediction is made exactly the way the run was scored. A
  model file with no evaluation record beside it (not yet evaluated, or copied elsewhere alone) falls back
  to the model file's threshold and object method (chosen on the training masks).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from beadseg.config import EvaluationConfig
from beadseg.errors import DataError
from beadseg.instances import WATERSHED_MIN_DISTANCE_PX
from beadseg.targets import DEFAULT_CORE, instances_from_distance

if TYPE_CHECKING:  # the model file needs torch; describing a record must not
    from beadseg.checkpoint import ModelFile

#: The key of evaluation.json that holds the record.
RECORD_KEY = "postprocessing"
#: The file beside model.pt that carries the record (paths.evaluation_info_file's name).
RECORD_FILE = "evaluation.json"
#: Smallest bead kept when nothing says otherwise (EvaluationConfig's default).
DEFAULT_MIN_AREA = EvaluationConfig.min_bead_area
OBJECT_METHODS: tuple[str, ...] = ("components", "watershed", "distance")


@dataclass(frozen=True)
class Postprocessing:
    """Threshold, object method, smallest bead and watershed seed distance that turn a probability map into
    labelled beads."""

    threshold: float
    objects: str
    min_area: int
    seed_distance: int = WATERSHED_MIN_DISTANCE_PX
    core: float = DEFAULT_CORE
    source: str = ""  # where it was read from or how it was chosen (shown to the user)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "objects": self.objects, "min_area": int(self.min_area),
                "seed_distance": int(self.seed_distance), "core": float(self.core)}

    def label(self, prediction: np.ndarray) -> np.ndarray:
        """The instance labels of one prediction: a probability map (H, W), or every output channel (C, H, W)
        of a network with more outputs (``objects: distance`` needs its distance channel)."""
        return label_prediction(prediction, self.threshold, self.objects, self.min_area, self.seed_distance,
                                self.core)

    def scoring(self, evaluation: EvaluationConfig) -> EvaluationConfig:
        """``evaluation`` with this post-processing in place of its own."""
        return dataclasses.replace(evaluation, threshold=self.threshold, objects=self.objects,
                                   min_bead_area=self.min_area, seed_distance=self.seed_distance, core=self.core)


def mask_probability(prediction: np.ndarray) -> np.ndarray:
    """The bead probability map (H, W) of a prediction (H, W) or (C, H, W)."""
    p = np.asarray(prediction)
    return p if p.ndim == 2 else p[0]


def has_distance(prediction: np.ndarray) -> bool:
    """Whether a prediction carries a distance channel (a ``mask_distance`` network's)."""
    return np.asarray(prediction).ndim == 3 and np.asarray(prediction).shape[0] >= 2


def label_prediction(prediction: np.ndarray, threshold: float, objects: str, min_area: int,
                     seed_distance: int = WATERSHED_MIN_DISTANCE_PX, core: float = DEFAULT_CORE) -> np.ndarray:
    """Instance labels of one prediction by one post-processing (see :class:`Postprocessing`)."""
    from beadseg.instances import label_objects

    if objects == "distance":
        if not has_distance(prediction):
            raise DataError("objects 'distance' needs a network trained with target mask_distance (its prediction "
                            "has no distance channel): use components or watershed, or retrain with that target")
        return instances_from_distance(prediction[0], prediction[1], threshold=threshold, min_area=min_area,
                                       core=core)
    return label_objects(mask_probability(prediction), threshold=threshold, method=objects, min_area=min_area,
                         seed_distance=seed_distance)


def check_threshold(evaluation: EvaluationConfig, model: ModelFile) -> None:
    """The model must have been picked (best epoch) at ``evaluation.threshold``; else one line: retrain it."""
    if not math.isclose(float(model.threshold), float(evaluation.threshold), rel_tol=0, abs_tol=1e-12):
        raise DataError(f"'{model.path}' picked its best epoch at threshold {model.threshold:g}, but "
                        f"evaluation.threshold is now {evaluation.threshold:g}: retrain run '{model.run_id}' "
                        f"(beadseg train --run {model.run_id}; snakemake and dvc repro do this by themselves)")


def candidates(evaluation: EvaluationConfig, prior: str = "components", distance: bool = False) -> list[Postprocessing]:
    """What ``objects: auto`` tries, the configured settings first: ``prior`` (``distance`` for a network with a
    distance output, else the method chosen on the training masks) at evaluation.threshold / min_bead_area /
    seed_distance / core, then the other methods, then every combination with ``evaluation.auto_*``. Earlier
    candidates win ties. ``distance``: the prediction has a distance channel (else that method is left out)."""
    thresholds = _unique([evaluation.threshold, *evaluation.auto_thresholds])
    areas = _unique([evaluation.min_bead_area, *evaluation.auto_min_bead_areas])
    seeds = _unique([evaluation.seed_distance, *evaluation.auto_seed_distances])
    cores = _unique([evaluation.core, *evaluation.auto_cores])
    methods = _unique(["distance", prior, *OBJECT_METHODS] if distance else [prior, *OBJECT_METHODS])
    if not distance:
        methods = [m for m in methods if m != "distance"]
    out = []
    for threshold in thresholds:
        for area in areas:
            for method in methods:
                for seed in (seeds if method == "watershed" else seeds[:1]):
                    for core in (cores if method == "distance" else cores[:1]):
                        out.append(Postprocessing(threshold=float(threshold), objects=method, min_area=int(area),
                                                  seed_distance=int(seed), core=float(core)))
    return out


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def choose(probabilities: Mapping[str, np.ndarray], truths: Mapping[str, np.ndarray],
           options: Sequence[Postprocessing], iou_threshold: float = 0.5) -> tuple[Postprocessing, list[dict[str, Any]]]:
    """The candidate with the highest pooled AP at ``iou_threshold`` on these images (their own predictions
    against their true beads), and every candidate's AP. Ties and images without beads (no AP) go to the
    earlier candidate. Pure: pass the validation split only; the test split must choose nothing."""
    from beadseg.instances import object_scores, pool_scores, threshold_key, true_objects

    if not options:
        raise ValueError("choose needs at least one candidate")
    key = f"ap_{threshold_key(iou_threshold)}"
    objects = {stem: true_objects(truths[stem]) for stem in sorted(probabilities)}
    table: list[dict[str, Any]] = []
    best, best_ap = options[0], -math.inf
    for option in options:
        rows = [object_scores(objects[stem], option.label(probabilities[stem]), (iou_threshold,))
                for stem in sorted(probabilities)]
        ap = float(pool_scores(rows, (iou_threshold,))[key]) if rows else math.nan
        table.append({**option.to_dict(), key: ap})
        if math.isfinite(ap) and ap > best_ap:
            best, best_ap = option, ap
    return dataclasses.replace(best, source=f"chosen on the validation predictions ({key})"), table


def for_evaluation(evaluation: EvaluationConfig, model: ModelFile, val_probabilities: Mapping[str, np.ndarray],
                   val_truths: Mapping[str, np.ndarray]) -> tuple[Postprocessing, list[dict[str, Any]]]:
    """What the evaluate step scores ``model`` with (and records), and the candidates it tried (none when set).

    ``objects: auto`` chooses among :func:`candidates` on the run's own validation predictions; a set method
    uses evaluation's settings as they are. Refuses a model picked at another threshold (:func:`check_threshold`)."""
    check_threshold(evaluation, model)
    distance = model.config.target == "mask_distance"
    if evaluation.objects != "auto":
        if evaluation.objects == "distance" and not distance:
            raise DataError(f"evaluation.objects is distance, but run '{model.run_id}' was trained with target "
                            f"{model.config.target} (no distance output): set objects to auto, components or "
                            "watershed, or train the run with target mask_distance")
        return Postprocessing(threshold=float(evaluation.threshold), objects=evaluation.objects,
                              min_area=int(evaluation.min_bead_area), seed_distance=int(evaluation.seed_distance),
                              core=float(evaluation.core), source="set in params.yaml evaluation"), []
    return choose(val_probabilities, val_truths, candidates(evaluation, prior=model.objects, distance=distance),
                  evaluation.iou_thresholds[0])


def record_path(model_path: Path) -> Path:
    """The evaluation record beside a model file (``results/runs/<id>/evaluation.json``)."""
    return Path(model_path).with_name(RECORD_FILE)


def from_record(record: Any, where: str) -> Postprocessing:
    """Read the ``postprocessing`` block of an evaluation record; a malformed block is one DataError."""
    block: Any = record.get(RECORD_KEY) if isinstance(record, dict) else None
    try:
        threshold, objects, min_area = float(block["threshold"]), str(block["objects"]), int(block["min_area"])
        seed_distance = int(block.get("seed_distance", WATERSHED_MIN_DISTANCE_PX))
        core = float(block.get("core", DEFAULT_CORE))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise DataError(f"'{where}' has no readable {RECORD_KEY} record (threshold, objects, min_area): "
                        "re-run the evaluate step (beadseg evaluate --run ID)") from None
    if not 0 < threshold < 1 or objects not in OBJECT_METHODS or min_area < 0 or seed_distance < 1 or not 0 < core < 1:
        raise DataError(f"'{where}': {RECORD_KEY} {block!r} is out of range: re-run the evaluate step")
    return Postprocessing(threshold=threshold, objects=objects, min_area=min_area, seed_distance=seed_distance,
                          core=core, source=where)


def for_prediction(model: ModelFile) -> Postprocessing:
    """What predict uses by default: the run's evaluation record beside the model file (same run id), else the
    model file's own threshold and object method."""
    path = record_path(model.path)
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"'{path}' is not readable JSON ({exc}): re-run the evaluate step") from None
        if isinstance(record, dict) and record.get("run_id") == model.run_id and RECORD_KEY in record:
            return from_record(record, str(path))
    return Postprocessing(threshold=float(model.threshold), objects=model.objects, min_area=DEFAULT_MIN_AREA,
                          source=f"{model.path} (not evaluated yet)")


def describe(record: Any) -> str:
    """One phrase for a run's ``postprocessing`` record (as evaluation.json holds it), for runs.csv and the
    report: ``watershed (seeds 5 px apart), threshold 0.5, beads >= 4 px; chosen on the validation predictions
    from 4 candidates``. Empty for a run that was not scored (no record)."""
    if not isinstance(record, dict) or "objects" not in record:
        return ""
    method = str(record["objects"])
    if method == "watershed" and record.get("seed_distance") is not None:
        method += f" (seeds {int(record['seed_distance'])} px apart)"
    elif method == "distance":
        method = f"the predicted distance (cores above {float(record.get('core', DEFAULT_CORE)):g})"
    text = f"{method}, threshold {float(record['threshold']):g}, beads >= {int(record['min_area'])} px"
    tried = record.get("candidates") or []
    if tried:
        text += f"; chosen on the validation predictions from {len(tried)} candidates"
    return text
