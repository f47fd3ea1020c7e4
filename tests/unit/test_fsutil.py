"""Atomic writes and strict-JSON cleaning (known answers)."""

from __future__ import annotations

import json
import math

import numpy as np

from beadseg.fsutil import json_safe, write_json


def test_json_safe_known_answers():
    value = {"a": float("nan"), 1: [np.float32(0.5), np.int64(3), (math.inf, -math.inf)],
             "arr": np.array([[1.0, np.nan]]), "flag": np.bool_(True), "s": "x", "none": None}
    assert json_safe(value) == {"a": None, "1": [0.5, 3, [None, None]], "arr": [[1.0, None]], "flag": True,
                                "s": "x", "none": None}


def test_write_json_is_strict_json_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out" / "m.json"
    write_json(target, json_safe({"x": float("nan"), "y": np.float64(2.0)}))
    assert json.loads(target.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c))) == {
        "x": None, "y": 2.0}
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]
