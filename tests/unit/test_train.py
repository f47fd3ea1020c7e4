"""The training loop on tiny real data: outputs, determinism, resume, divergence, accumulation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from beadseg import paths
from beadseg.config import validate
from beadseg.evaluate import evaluate_run
from beadseg.train import Trainer, augment, load_checkpoint, lr_factor, train_run
from tests.helpers.tiny import make_tiny_project, tiny_params

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_project(root)
    return root


def config(**train):
    return validate(tiny_params(**train))


def history(root: Path, run: str = "a") -> pd.DataFrame:
    return pd.read_csv(root / paths.history_file(run))


def train_and_evaluate(cfg, root: Path, run: str = "a") -> dict:
    """Train then score one run, as the train and evaluate steps do; metrics.json's content."""
    train_run(cfg, run, root=root, progress=False)
    return evaluate_run(cfg, run, root=root, progress=False)


def test_run_writes_model_history_and_train_info_and_evaluate_writes_scores(project):
    (project / paths.metrics_file("a")).unlink(missing_ok=True)
    info = train_run(config(), "a", root=project, progress=False)
    assert info["stop_reason"] in {"completed", "early_stopped"}
    assert info["epochs_run"] == len(history(project)) == 3
    on_disk = json.loads((project / paths.train_info_file("a")).read_text())
    for key in ("best_val_jaccard", "final_val_jaccard", "best_epoch", "device", "wall_seconds", "peak_memory_mb",
                "optimizer_steps", "normalization", "params"):
        assert key in on_disk, key
    assert "full_val_jaccard" not in on_disk and not (project / paths.metrics_file("a")).exists()
    assert list(history(project).columns) == ["epoch", "train_loss", "val_loss", "train_jaccard", "val_jaccard", "val_dice", "lr",
                                              "seconds", "optimizer_steps"]
    model = load_checkpoint(project / paths.model_file("a"))  # weights_only=True inside
    assert {"state_dict", "config", "run_id", "epoch", "version", "normalization", "tile_size", "threshold",
            "beadseg_version"} <= set(model)
    assert model["run_id"] == "a" and model["epoch"] == on_disk["best_epoch"]
    assert model["normalization"] == on_disk["normalization"] == {"method": "percentile", "low_pct": 1.0,
                                                                 "high_pct": 99.8}
    assert not (project / paths.checkpoint_file("a")).exists()  # removed once complete

    metrics = evaluate_run(config(), "a", root=project, progress=False)
    scores = json.loads((project / paths.metrics_file("a")).read_text())
    run_info = json.loads((project / paths.evaluation_info_file("a")).read_text())
    assert {**run_info, **scores} == json.loads(json.dumps(metrics))
    # metrics.json holds scores only (what `dvc metrics diff` compares); the rest goes to evaluation.json
    assert all(isinstance(v, (int, float)) or v is None for v in scores.values()), scores
    assert {"status", "degenerate_reasons", "evaluation", "n_val_images"} <= set(run_info)
    on_disk = {**run_info, **scores}
    for key in ("full_val_jaccard", "full_val_dice", "bead_f1", "bead_count_error", "bead_precision", "bead_recall",
                "bead_mean_diameter_error_px", "ap_50", "ap_90", "test_jaccard", "test_bead_f1", "test_ap_50"):
        assert key in on_disk, key
    assert on_disk["n_val_images"] == 1 and on_disk["n_test_images"] == 1
    assert 0.0 <= on_disk["full_val_jaccard"] <= 1.0 and 0.0 <= on_disk["test_jaccard"] <= 1.0
    assert on_disk["status"] in {"completed", "early_stopped", "degenerate"}  # 9 steps may learn nothing
    rows = pd.read_csv(project / paths.per_image_file("a"))
    assert sorted(rows["split"]) == ["test", "val"]


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["seconds"])


def test_same_seed_gives_identical_history_and_other_seed_differs(project):
    train_run(config(), "a", root=project, progress=False)
    first = _comparable(history(project))
    train_run(config(), "a", root=project, progress=False)
    pd.testing.assert_frame_equal(first, _comparable(history(project)))
    train_run(config(seed=5), "a", root=project, progress=False)
    assert not first.equals(_comparable(history(project)))


def test_accumulation_keeps_the_optimizer_steps_and_multiplies_the_batch(project):
    m1 = train_run(config(max_epochs=2, steps_per_epoch=3), "a", root=project, progress=False)
    m2 = train_run(config(max_epochs=2, steps_per_epoch=3, accumulation_steps=2), "a", root=project, progress=False)
    assert m1["optimizer_steps"] == m2["optimizer_steps"] == 6
    assert m1["effective_batch_size"] == 4 and m2["effective_batch_size"] == 8
    assert list(history(project)["optimizer_steps"]) == [3, 6]


@pytest.mark.parametrize("sampler", ["random_crop", "tiles"])
def test_training_length_does_not_depend_on_the_number_of_images(tmp_path, sampler):
    steps = []
    for n_images in (2, 6):
        params = tiny_params(max_epochs=2, patience=5, steps_per_epoch=4, sampler=sampler)
        params["data"]["synthetic"]["n_images"] = n_images
        params["data"]["val_fraction"] = 0.5
        root = tmp_path / f"n{n_images}"
        cfg = make_tiny_project(root, params)
        metrics = train_run(cfg, "a", root=root, progress=False)
        assert metrics["epochs_run"] == 2
        steps.append(metrics["optimizer_steps"])
    assert steps == [8, 8]


def test_a_run_forced_to_learn_nothing_is_marked_degenerate(project):
    metrics = train_and_evaluate(config(lr=1e-9, max_epochs=1, steps_per_epoch=1), project)
    assert metrics["status"] == "degenerate"
    assert metrics["stop_reason"] == "completed"
    assert metrics["degenerate_reasons"], metrics
    assert any("optimizer steps" in c for c in metrics["likely_causes"])
    assert any("learning rate" in c for c in metrics["likely_causes"])
    on_disk = json.loads((project / paths.evaluation_info_file("a")).read_text())
    assert on_disk["status"] == "degenerate" and on_disk["degenerate_reasons"] == metrics["degenerate_reasons"]


def test_a_run_that_learned_is_not_degenerate(tmp_path):
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=4, steps_per_epoch=15, patience=4, base_channels=8))
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["status"] in {"completed", "early_stopped"}, metrics["degenerate_reasons"]
    assert metrics["degenerate_reasons"] == [] and metrics["full_val_jaccard"] > 0.5
    train_j = history(tmp_path)["train_jaccard"]  # the training batches' own Jaccard climbs as it learns
    assert train_j.between(0, 1).all() and train_j.iloc[-1] > train_j.iloc[0] + 0.2, list(train_j)


def test_absurd_learning_rate_is_reported_as_diverged(project):
    metrics = train_and_evaluate(config(lr=1e30, max_epochs=3, steps_per_epoch=3), project)
    assert metrics["status"] == "diverged" and metrics.get("full_val_jaccard") is None
    assert json.loads((project / paths.evaluation_info_file("a")).read_text())["status"] == "diverged"
    assert (project / paths.model_file("a")).is_file()


def test_interrupted_run_resumes_from_its_last_epoch(project, monkeypatch):
    cfg = config(max_epochs=3, patience=10)
    train_run(cfg, "a", root=project, progress=False)
    uninterrupted = _comparable(history(project))

    real_epoch = Trainer.train_epoch

    def crash_in_third_epoch(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # stands in for a kill in the middle of epoch 3
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, "a", root=project, progress=False)
    assert (project / paths.checkpoint_file("a")).is_file()
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    metrics = train_run(cfg, "a", root=project, progress=False)
    assert metrics["resumed"] is True
    resumed = _comparable(history(project))
    assert list(resumed["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(uninterrupted, resumed)


def _interrupt_after_first_epoch(monkeypatch, cfg, root: Path) -> None:
    real_epoch = Trainer.train_epoch

    def crash(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, "a", root=root, progress=False)
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    assert (root / paths.checkpoint_file("a")).is_file()


def test_checkpoint_of_other_settings_is_not_resumed(project, monkeypatch):
    _interrupt_after_first_epoch(monkeypatch, config(max_epochs=2), project)
    metrics = train_run(config(max_epochs=2, lr=1e-3), "a", root=project, progress=False)
    assert metrics["resumed"] is False


def test_rebuilt_data_with_the_same_counts_is_not_resumed(tmp_path, monkeypatch, capsys):
    """New normalisation percentiles: same images, same tile counts, other pixels: a resume would be wrong."""
    cfg = make_tiny_project(tmp_path, tiny_params(max_epochs=2))
    _interrupt_after_first_epoch(monkeypatch, cfg, tmp_path)
    params = tiny_params(max_epochs=2)
    params["data"]["normalize_high_pct"] = 95.0
    cfg = make_tiny_project(tmp_path, params)  # same files and counts, re-split and re-tiled
    info = train_run(cfg, "a", root=tmp_path, progress=False)
    assert info["resumed"] is False
    assert "changed since" in capsys.readouterr().err


def test_a_damaged_checkpoint_starts_fresh_with_a_message(project, monkeypatch, capsys):
    cfg = config(max_epochs=2)
    _interrupt_after_first_epoch(monkeypatch, cfg, project)
    ckpt = project / paths.checkpoint_file("a")
    state = load_checkpoint(ckpt)
    state["model_state"] = {"nonsense": torch.zeros(1)}  # right identity, wrong content
    torch.save(state, ckpt)
    info = train_run(cfg, "a", root=project, progress=False)
    assert info["resumed"] is False and info["epochs_run"] == 2
    assert "ignoring damaged checkpoint" in capsys.readouterr().err
    _interrupt_after_first_epoch(monkeypatch, cfg, project)
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    assert train_run(cfg, "a", root=project, progress=False)["resumed"] is False
    assert "ignoring unreadable checkpoint" in capsys.readouterr().err


def test_finetune_starts_from_the_other_runs_best_weights(project):
    params = tiny_params(max_epochs=1)
    params["finetune"] = {"b": {"init_from": "a", "tile_size": 128}}
    cfg = validate(params)
    train_run(cfg, "a", root=project, progress=False)
    from beadseg.devices import DeviceLease

    trainer = Trainer("b", cfg.run("b"), DeviceLease(torch.device("cpu"), None, "cpu"), project, False)
    source = load_checkpoint(project / paths.model_file("a"))["state_dict"]
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value.cpu(), source[key]), key


def test_multiscale_run_trains_on_both_tile_sizes(project):
    from beadseg.devices import DeviceLease

    cfg = config(extra_tile_sizes=[128])
    trainer = Trainer("a", cfg.run("a"), DeviceLease(torch.device("cpu"), None, "cpu"), project, False)
    assert set(trainer.samplers) == {64, 128}
    gen = torch.Generator().manual_seed(0)
    assert {trainer.samplers[s].draw(2, gen)[0].shape[-1] for s in (64, 128)} == {64, 128}


def test_lr_schedule_known_values():
    cfg = config(max_epochs=10, warmup_epochs=1, schedule="cosine").run("a")
    assert lr_factor(0, cfg) == pytest.approx(0.5)
    assert lr_factor(1, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(0.01)
    assert lr_factor(5, config().run("a")) == 1.0
    floor = config(max_epochs=10, warmup_epochs=1, schedule="cosine", cosine_floor=0.1).run("a")
    assert lr_factor(10, floor) == pytest.approx(0.1) and lr_factor(1, floor) == pytest.approx(1.0)
    assert lr_factor(5, floor) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 9)))


def test_augmentation_moves_image_and_mask_together():
    cfg = config(augment_intensity=0.0, augment_gamma=0.0).run("a")
    x = torch.rand(16, 1, 32, 32)
    xa, ya = augment(x.clone(), x.clone(), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(xa, ya)
    assert not torch.equal(xa, x)  # something was flipped / rotated
    xb, _ = augment(x.clone(), x.clone(), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(xa, xb)  # seeded


@pytest.mark.parametrize(
    ("settings", "check"),
    [
        ({"norm": "group", "groups": 2}, lambda m: any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
         and not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())),
        ({"norm": "instance"}, lambda m: any(isinstance(x, torch.nn.InstanceNorm2d) for x in m.modules())),
        ({"dropout": 0.0}, lambda m: not any(isinstance(x, torch.nn.Dropout2d) for x in m.modules())),
        ({"dropout": 0.4}, lambda m: any(isinstance(x, torch.nn.Dropout2d) and x.p == 0.4 for x in m.modules())),
        ({"depth": 4}, lambda m: sum(isinstance(x, torch.nn.ConvTranspose2d) for x in m.modules()) == 3),
        ({"model": "attention_unet"}, lambda m: "Attention" in "".join(type(x).__name__ for x in m.modules())),
        ({"base_channels": 6}, lambda m: next(x for x in m.modules() if isinstance(x, torch.nn.Conv2d)).out_channels == 6),
    ],
)
def test_model_settings_from_params_reach_the_model(settings, check):
    from beadseg.train import make_model

    assert check(make_model(config(**settings).run("a")))


def test_optimizer_settings_reach_the_optimizer():
    from beadseg.train import make_model, make_optimizer

    cfg = config(optimizer="adamw", weight_decay=0.05, lr=2e-3).run("a")
    opt = make_optimizer(make_model(cfg), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[0]["lr"] == 2e-3


def test_plateau_schedule_lowers_the_learning_rate(project):
    from beadseg.devices import DeviceLease

    cfg = config(schedule="plateau", patience=3, max_epochs=6, lr=1e-3)
    trainer = Trainer("a", cfg.run("a"), DeviceLease(torch.device("cpu"), None, "cpu"), project, False)
    trainer.validate = lambda: (0.5, 0.3, 0.4)  # val Jaccard never improves
    trainer.fit()
    lrs = [row["lr"] for row in trainer.history]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] < lrs[0]
    # the settings: a factor of 0.1 once more than plateau_patience=1 epochs passed without improvement
    # (epoch 1 is the best, epochs 2 and 3 are not: the rate drops for epoch 4, then again for epoch 6)
    cfg = config(schedule="plateau", patience=9, max_epochs=6, lr=1e-3, plateau_factor=0.1, plateau_patience=1)
    trainer = Trainer("a", cfg.run("a"), DeviceLease(torch.device("cpu"), None, "cpu"), project, False)
    trainer.validate = lambda: (0.5, 0.3, 0.4)
    trainer.fit()
    assert [row["lr"] for row in trainer.history] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5])


def test_loss_setting_selects_the_loss():
    from beadseg.train import make_loss

    logits = torch.randn(2, 1, 16, 16)
    target = (torch.rand(2, 1, 16, 16) > 0.7).float()
    values = {name: float(make_loss(config(loss=name).run("a"))(logits, target))
              for name in ("dice", "focal", "combined", "tversky", "bce", "dice_bce", "boundary")}
    assert len({round(v, 6) for v in values.values()}) == len(values)


def test_out_of_memory_retries_with_half_the_micro_batch_and_the_same_effective_batch(project, monkeypatch):
    real_fit = Trainer.fit
    seen = []

    def fit_that_runs_out_of_memory_at_batch_4(self):
        seen.append((self.cfg.batch_size, self.cfg.accumulation_steps))
        if self.cfg.batch_size == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_that_runs_out_of_memory_at_batch_4)
    info = train_run(config(max_epochs=1), "a", root=project, progress=False)
    assert seen == [(4, 1), (2, 2)]
    assert info["oom_retries"] == [{"batch_size": 4, "accumulation_steps": 1}]
    assert (info["micro_batch_size"], info["accumulation_steps"], info["effective_batch_size"]) == (2, 2, 4)
    assert info["params"]["batch_size"] == 4  # the run's settings as params.yaml has them


def test_out_of_memory_at_batch_1_is_one_clear_error(project, monkeypatch):
    from beadseg.errors import TrainingError

    def always_out_of_memory(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(Trainer, "fit", always_out_of_memory)
    with pytest.raises(TrainingError, match="even with batch_size 1 at tile size 64"):
        train_run(config(max_epochs=1, batch_size=3), "a", root=project, progress=False)


def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(project):
    from beadseg.errors import TrainingError
    from beadseg.runlock import lock_path

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from beadseg.runlock import run_lock\n"
         "with run_lock('a', 'beadseg train --run a', Path(sys.argv[1])):\n"
         "    print('held', flush=True); time.sleep(120)", str(project)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the lock is taken before we try
        with pytest.raises(TrainingError, match=rf"run 'a' is busy: beadseg train --run a \(pid {holder.pid} "):
            train_run(config(max_epochs=1), "a", root=project, progress=False)
        with pytest.raises(TrainingError, match="is busy"):
            evaluate_run(config(), "a", root=project, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert lock_path("a", project).exists()
    train_run(config(max_epochs=1), "a", root=project, progress=False)  # the kernel dropped the dead holder's lock
