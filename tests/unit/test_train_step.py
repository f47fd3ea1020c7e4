"""The sync-free training step: what a real `beadseg train` asks of the device, counted on the CPU, and the
pieces that make it so (device-side augmentation, validation batches, threshold, per-epoch history)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from beadseg import cli, paths
from beadseg.checkpoint import load_model_file
from beadseg.config import validate
from beadseg.profiling import OpCounter
from beadseg.train import Trainer, augment, logit_threshold, train_run, val_batches
from tests.helpers.tiny import make_tiny_project, tiny_params

torch.set_num_threads(1)

# Budgets per optimizer step of a demo-size run (counted before the sync-free step: 45 host syncs, 734 ops).
MAX_SYNCS_PER_STEP = 0.5
MAX_OPS_PER_STEP = 400


def demo_size_params() -> dict:
    """The demo's training settings (params.yaml: depth 3, 8 channels, batch 4, combined loss, flips, rotations
    and intensity jitter), 2 epochs of 20 steps, on the tiny data set. Ops per step do not depend on the tile
    size or the number of images, so this counts what a demo job dispatches in a few seconds."""
    params = tiny_params(depth=3, base_channels=8, batch_size=4, steps_per_epoch=20, max_epochs=2, patience=9,
                         loss="combined", lr=3e-3, dropout=0.1)
    params["tiling"]["sizes"] = [64]
    return params


def test_a_demo_size_train_job_is_sync_free_and_launches_few_ops(tmp_path, monkeypatch):
    """CPU proxy of a GPU job: every aten op is a kernel launch there, every host read a wait for the card."""
    params = demo_size_params()
    make_tiny_project(tmp_path, params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    checkpoints = []
    real_save = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint", lambda self: (checkpoints.append(1), real_save(self)))
    with OpCounter() as counter:
        assert cli.main(["-q", "train", "--run", "a", "--threads", "1"]) == 0
    steps = int(pd.read_csv(tmp_path / paths.history_file("a"))["optimizer_steps"].iloc[-1])
    info = json.loads((tmp_path / paths.train_info_file("a")).read_text())
    assert steps == info["optimizer_steps"] == 40 and info["epochs_run"] == 2 and len(checkpoints) == 2
    syncs, ops = counter.syncs / steps, counter.total / steps
    detail = f"syncs {counter.sync_counts()}; most dispatched {counter.counts.most_common(12)}"
    assert syncs <= MAX_SYNCS_PER_STEP, f"{syncs:.2f} host syncs per optimizer step: {detail}"
    assert ops <= MAX_OPS_PER_STEP, f"{ops:.0f} aten ops per optimizer step: {detail}"
    assert counter.sync_counts().get("host_read", 0) >= 2  # the per-epoch reads are counted, not hidden


def test_the_op_counter_sees_host_syncs():
    """The counter can fail the test above: a per-step float() or nonzero() is counted."""
    x = torch.rand(8)
    with OpCounter() as counter:
        float(x.sum())
        x.nonzero()
        torch.where(x > 0.5, x, 0.0)
    assert counter.sync_counts() == {"_local_scalar_dense": 1, "nonzero": 1}
    assert counter.total >= 5


def test_logit_threshold_known_values():
    assert logit_threshold(0.5) == 0.0
    assert logit_threshold(0.9) == pytest.approx(math.log(9))
    assert logit_threshold(0.2) == pytest.approx(-math.log(4))
    logits = torch.linspace(-5, 5, 101)
    for t in (0.1, 0.5, 0.73):
        assert torch.equal(logits > logit_threshold(t), torch.sigmoid(logits.double()) > t)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        logit_threshold(1.0)


@pytest.mark.parametrize(("n", "tile", "batch", "expected"), [
    (27, 256, 4, [(0, 27)]),  # the demo's val tiles: one batch of 27 (32 fit the pixel budget)
    (40, 256, 4, [(0, 20), (20, 40)]),  # two near-equal batches, not 32 + 8
    (10, 512, 1, [(0, 5), (5, 10)]),  # 8 tiles of 512 fit; batch 1 of training does not matter
    (3, 1024, 4, [(0, 3)]),  # never fewer than the training batch
    (0, 256, 4, []),
])
def test_validation_batches_known_answers(n, tile, batch, expected):
    assert val_batches(n, tile, batch) == expected


def test_validation_batches_on_the_cpu_are_of_the_training_size_and_near_equal():
    assert val_batches(27, 256, 4, budget=0) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24), (24, 27)]
    assert val_batches(10, 256, 4, budget=0) == [(0, 4), (4, 8), (8, 10)]


def test_augmentation_is_one_symmetry_of_the_square_per_sample():
    cfg = validate(tiny_params(augment_intensity=0.0, augment_gamma=0.0)).run("a")
    x = torch.rand(64, 1, 8, 8)
    xa, _ = augment(x, x.clone(), cfg, torch.Generator().manual_seed(1))
    group = [x.transpose(-2, -1) if t else x for t in (0, 1)]
    group = [g.flip(-2) if v else g for g in group for v in (0, 1)]
    group = [g.flip(-1) if h else g for g in group for h in (0, 1)]
    seen = set()
    for k in range(64):
        matches = [i for i, g in enumerate(group) if torch.equal(xa[k], g[k])]
        assert matches, k
        seen.add(matches[0])
    assert len(seen) == 8  # all eight drawn


def test_intensity_jitter_stays_in_its_range():
    cfg = validate(tiny_params(augment_flips=False, augment_rot90=False, augment_intensity=0.2)).run("a")
    x = torch.ones(500, 1, 4, 4)
    xa, ya = augment(x, torch.zeros_like(x), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(ya, torch.zeros_like(x))  # masks are never jittered
    values = xa[:, 0, 0, 0]  # scale in [0.8, 1.2) plus offset in [-0.1, 0.1)
    assert values.min() >= 0.7 - 1e-6 and values.max() < 1.3 and values.std() > 0.05


def test_validation_threshold_is_used_recorded_and_carried_by_the_model_file(tmp_path):
    params = tiny_params(max_epochs=2, steps_per_epoch=4)
    cfg = make_tiny_project(tmp_path, params)
    train_run(cfg, "a", root=tmp_path, progress=False)
    at_half = pd.read_csv(tmp_path / paths.history_file("a"))
    assert json.loads((tmp_path / paths.train_info_file("a")).read_text())["val_threshold"] == 0.5
    params["evaluation"] = {"threshold": 0.9}
    info = train_run(validate(params), "a", root=tmp_path, progress=False)
    at_high = pd.read_csv(tmp_path / paths.history_file("a"))
    assert info["val_threshold"] == 0.9 and load_model_file(tmp_path / paths.model_file("a")).threshold == 0.9
    pd.testing.assert_series_equal(at_half["train_loss"], at_high["train_loss"])  # same training
    assert not at_half["val_jaccard"].equals(at_high["val_jaccard"])  # other pixels counted as bead


def test_history_is_on_disk_after_every_epoch(tmp_path, monkeypatch):
    """A status view or `dvc plots show` sees the curve while the run trains."""
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=3, patience=5))
    real_epoch = Trainer.train_epoch
    seen = []

    def look_then_train(self, epoch):
        self.writer.wait()  # written off the training thread: done by now on any but a contrived disk
        history = tmp_path / paths.history_file("a")
        seen.append(len(pd.read_csv(history)) if history.exists() else 0)
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", look_then_train)
    train_run(cfg, "a", root=tmp_path, progress=False)
    assert seen == [0, 1, 2]
    assert len(pd.read_csv(tmp_path / paths.history_file("a"))) == 3


def test_a_diverged_run_names_its_epoch(tmp_path, capsys):
    cfg = make_tiny_project(tmp_path, tiny_params(lr=1e30, max_epochs=3, steps_per_epoch=3))
    info = train_run(cfg, "a", root=tmp_path, progress=False)
    assert info["stop_reason"] == "diverged" and info["epochs_run"] == 0
    assert "loss became NaN/inf in epoch 1: run diverged" in capsys.readouterr().err


def test_the_best_weights_are_those_of_the_best_epoch(tmp_path, monkeypatch):
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=3, patience=5))
    scores = iter([(0.5, 0.2, 0.3), (0.4, 0.6, 0.7), (0.45, 0.4, 0.5)])
    kept = {}
    real_validate = Trainer.validate

    def scripted(self):
        real_validate(self)
        score = next(scores)
        kept[len(self.history) + 1] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return score

    monkeypatch.setattr(Trainer, "validate", scripted)
    info = train_run(cfg, "a", root=tmp_path, progress=False)
    assert info["best_epoch"] == 2
    saved = load_model_file(tmp_path / paths.model_file("a")).state_dict
    assert all(torch.equal(saved[k], v) for k, v in kept[2].items())
    assert not all(torch.equal(saved[k], v) for k, v in kept[3].items())


def test_graph_setting_off_the_gpu_trains_eagerly(tmp_path):
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=1, cuda_graph=True))
    info = train_run(cfg, "a", root=tmp_path, progress=False)
    assert info["cuda_graph"].startswith("eager: CUDA graphs need a CUDA device")
    assert Path(tmp_path / paths.model_file("a")).is_file()


def test_packed_jobs_lease_slots_by_measured_else_estimated_memory(tmp_path, monkeypatch):
    from beadseg.train import estimated_peak_mb, job_memory_mb, memory_signature

    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1x8000")  # 16 slots of 450 MB
    monkeypatch.setenv("BEADSEG_JOBS_PER_GPU", "auto")
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=1))
    run = cfg.run("a")
    estimate = estimated_peak_mb(run)
    assert job_memory_mb(run, tmp_path) == (estimate, "estimated")
    assert 600 < estimate < 700  # the CUDA context and a few MB for this tiny net
    info = train_run(cfg, "a", root=tmp_path, progress=False)
    assert (info["gpu_slots"], info["job_memory_mb"], info["memory_signature"]) == (2, estimate, memory_signature(run))
    # a CUDA run of the same shape measured its peak: later jobs of that shape use it, other shapes do not
    (tmp_path / paths.train_info_file("a")).write_text(json.dumps(
        {**info, "device": "cuda", "peak_reserved_mb": 1500.0}))
    assert job_memory_mb(run, tmp_path) == (2100.0, "measured")
    other = validate(tiny_params(batch_size=8)).run("a")
    assert job_memory_mb(other, tmp_path)[1] == "estimated"
