"""How a model's probabilities become beads: one record, written by the evaluate step, read by predict.

The **decision threshold** is chosen once, in params.yaml (``evaluation.threshold``): training's per-epoch
validation picks the best epoch at it and writes it into the model file; the evaluate step scores at the
threshold the model file records (refusing a model picked at another one); the **object method** is
``evaluation.objects`` (``auto``: the method the split chose on the training masks, also in the model file);
``min_area`` is ``evaluation.min_bead_area``. The evaluate step records the three in the run's
``evaluation.json`` (``postprocessing``), and ``beadseg predict`` reads them from there, so a prediction
is made exactly the way the run was scored. A model file with no evaluation record beside it (not yet
evaluated, or copied elsewhere alone) falls back to the model file's threshold and object method.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beadseg.checkpoint import ModelFile
from beadseg.config import EvaluationConfig
from beadseg.errors import DataError

#: The key of evaluation.json that holds the record.
RECORD_KEY = "postprocessing"
#: The file beside model.pt that carries the record (paths.evaluation_info_file's name).
RECORD_FILE = "evaluation.json"
#: Smallest bead kept when nothing says otherwise (EvaluationConfig's default).
DEFAULT_MIN_AREA = EvaluationConfig.min_bead_area
OBJECT_METHODS = ("components", "watershed")


@dataclass(frozen=True)
class Postprocessing:
    """Threshold, object method and smallest bead that turn a probability map into labelled beads."""

    threshold: float
    objects: str
    min_area: int
    source: str  # where it was read from (shown to the user)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "objects": self.objects, "min_area": int(self.min_area)}


def for_evaluation(evaluation: EvaluationConfig, model: ModelFile) -> Postprocessing:
    """What the evaluate step scores ``model`` with (and records).

    The threshold must be the one training's validation picked the best epoch at (the model file's): a
    model picked at another threshold is refused with one line saying to retrain it."""
    if not math.isclose(float(model.threshold), float(evaluation.threshold), rel_tol=0, abs_tol=1e-12):
        raise DataError(f"'{model.path}' picked its best epoch at threshold {model.threshold:g}, but "
                        f"evaluation.threshold is now {evaluation.threshold:g}: retrain run '{model.run_id}' "
                        f"(beadseg train --run {model.run_id}; snakemake and dvc repro do this by themselves)")
    objects = model.objects if evaluation.objects == "auto" else evaluation.objects
    return Postprocessing(threshold=float(evaluation.threshold), objects=objects,
                          min_area=int(evaluation.min_bead_area), source="params.yaml evaluation")


def record_path(model_path: Path) -> Path:
    """The evaluation record beside a model file (``results/runs/<id>/evaluation.json``)."""
    return Path(model_path).with_name(RECORD_FILE)


def from_record(record: Any, where: str) -> Postprocessing:
    """Read the ``postprocessing`` block of an evaluation record; a malformed block is one DataError."""
    block: Any = record.get(RECORD_KEY) if isinstance(record, dict) else None
    try:
        threshold, objects, min_area = float(block["threshold"]), str(block["objects"]), int(block["min_area"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"'{where}' has no readable {RECORD_KEY} record (threshold, objects, min_area): "
                        "re-run the evaluate step (beadseg evaluate --run ID)") from None
    if not 0 < threshold < 1 or objects not in OBJECT_METHODS or min_area < 0:
        raise DataError(f"'{where}': {RECORD_KEY} {block!r} is out of range: re-run the evaluate step")
    return Postprocessing(threshold=threshold, objects=objects, min_area=min_area, source=where)


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
