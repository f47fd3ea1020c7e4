"""The touching-border target and the instances cut along it, on label images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from beadseg.targets import channels, instance_distance, instances_from_distance, touching_border


def _two_touching() -> np.ndarray:
    """Two 6x6 beads side by side (columns 2-7 and 8-13) and one isolated bead."""
    lab = np.zeros((12, 24), np.int32)
    lab[3:9, 2:8] = 1
    lab[3:9, 8:14] = 2
    lab[3:9, 17:22] = 3
    return lab


def test_touching_border_is_the_band_where_two_beads_meet_and_nothing_else() -> None:
    lab = _two_touching()
    border = touching_border(lab)
    expected = np.zeros_like(border)
    expected[3:9, 7:9] = True  # column 7 of bead 1 and column 8 of bead 2
    np.testing.assert_array_equal(border, expected)
    assert not border[lab == 3].any()  # an isolated bead has no touching border
    wide = touching_border(lab, width=2)
    assert wide[3:9, 6:10].all() and wide.sum() == 4 * 6


def test_touching_border_of_a_binary_mask_is_empty() -> None:
    assert not touching_border((_two_touching() > 0).astype(np.uint8)).any()


def test_instance_distance_peaks_at_one_in_each_bead_and_falls_where_beads_touch() -> None:
    lab = _two_touching()
    dist = instance_distance(lab)
    assert dist[lab == 0].max() == 0
    for i in (1, 2, 3):
        assert dist[lab == i].max() == pytest.approx(1.0) and dist[lab == i].min() > 0
    assert dist[5, 7] < dist[5, 5] and dist[5, 8] < dist[5, 10]  # low on both sides of the shared outline
    binary = instance_distance((lab > 0).astype(np.int32))
    assert binary[5, 7] > dist[5, 7]  # a 0/1 mask would make the touching pair one bead, its peak at the seam


def test_instances_are_cut_at_the_valley_of_the_predicted_distance() -> None:
    from scipy import ndimage

    lab = _two_touching()
    mask_prob = ndimage.gaussian_filter((lab > 0).astype(np.float32), 1.0)  # the seam blurred shut
    distance = ndimage.gaussian_filter(instance_distance(lab), 0.7)
    got = instances_from_distance(mask_prob, distance, threshold=0.5, min_area=1)
    assert got.max() == 3
    for i in (1, 2, 3):  # each true bead is mostly one predicted object
        ids, counts = np.unique(got[lab == i], return_counts=True)
        assert counts.max() >= 0.8 * (lab == i).sum() and ids[np.argmax(counts)] > 0
    assert instances_from_distance(mask_prob, np.zeros_like(distance), min_area=1).max() == 2  # no cores: merged


def test_a_bead_without_a_core_stays_one_object_and_small_ones_go() -> None:
    mask_prob = np.zeros((8, 8), np.float32)
    mask_prob[2:4, 2:4] = 0.9
    assert instances_from_distance(mask_prob, np.zeros_like(mask_prob), min_area=1).max() == 1
    assert instances_from_distance(mask_prob, np.zeros_like(mask_prob), min_area=5).max() == 0


def test_channels_and_bad_input() -> None:
    assert channels("mask") == 1 and channels("mask_distance") == 2
    with pytest.raises(ValueError, match="unknown target"):
        channels("boundary")
    with pytest.raises(ValueError, match="one shape"):
        instances_from_distance(np.zeros((4, 4)), np.zeros((4, 5)))


def test_the_target_loss_adds_the_distance_term_on_the_second_channel_only() -> None:
    import torch

    from beadseg.losses import build_loss, build_target_loss, distance_bce_loss

    mask_loss = build_loss("dice")
    logits = torch.tensor([[[[2.0, -1.0]], [[0.5, -3.0]]]])  # (1, 2, 1, 2): mask and distance logits
    target = torch.tensor([[[[1.0, 0.0]], [[0.7, 0.0]]]])
    combined = build_target_loss("mask_distance", mask_loss, weight=2.0)(logits, target)
    expected = mask_loss(logits[:, :1], target[:, :1]) + 2.0 * distance_bce_loss(logits[:, 1:], target[:, 1:])
    assert float(combined) == pytest.approx(float(expected))
    assert build_target_loss("mask", mask_loss) is mask_loss
    # the distance term is smallest where the prediction equals the soft target
    y = torch.full((1, 1, 1, 1), 0.7)
    best = distance_bce_loss(torch.logit(y), y)
    assert all(float(distance_bce_loss(torch.logit(y) + d, y)) > float(best) for d in (-0.5, 0.5))


def test_the_crop_sampler_gathers_the_extra_map_with_the_mask() -> None:
    import torch

    from beadseg.sampling import CropSampler, symmetry_coefficients, symmetry_table

    rng = np.random.default_rng(0)
    images = [rng.random(shape).astype(np.float16).astype(np.float32) for shape in ((40, 50), (30, 30))]
    masks = [(im > 0.6).astype(np.uint8) for im in images]
    extra = [m * 0.5 + 0.25 * (im > 0.9) for m, im in zip(masks, images)]
    sampler = CropSampler(images, masks, 16, 0.5, torch.device("cpu"), seed=1, extra=extra)
    symmetries = symmetry_coefficients(symmetry_table(True, True, torch.device("cpu")), 16)
    x, y = sampler.draw(8, torch.Generator().manual_seed(3), symmetries)
    assert x.shape == (8, 1, 16, 16) and y.shape == (8, 2, 16, 16) and y.dtype == torch.float16
    image = x[:, 0].float()
    expected = 0.5 * (image > 0.6).float() + 0.25 * (image > 0.9).float()  # the same pixels, the same symmetry
    assert torch.allclose(y[:, 1].float(), expected, atol=1e-3)
    assert torch.equal(y[:, 0] > 0.5, image > 0.6)


def _tiny_distance_project(root, instance_labels: bool):  # noqa: ANN001, ANN202
    import yaml

    from tests.helpers.tiny import make_tiny_project, tiny_params

    params = tiny_params(max_epochs=2, target="mask_distance")
    params["data"]["synthetic"]["instance_labels"] = instance_labels
    make_tiny_project(root, params)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_a_distance_run_trains_evaluates_and_predicts_through_the_cli(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    import tifffile

    from beadseg import cli
    from beadseg.checkpoint import load_model_file
    from beadseg.data.prepare import load_split

    monkeypatch.chdir(tmp_path)
    _tiny_distance_project(tmp_path, instance_labels=True)
    assert cli.main(["-q", "train", "--run", "a", "--threads", "1"]) == 0
    model = load_model_file(tmp_path / "results/runs/a/model.pt")
    assert model.config.target == "mask_distance" and model.state_dict["head.weight"].shape[0] == 2
    assert cli.main(["-q", "evaluate", "--run", "a", "--threads", "1"]) == 0
    record = json.loads((tmp_path / "results/runs/a/evaluation.json").read_text())["postprocessing"]
    tried = {c["objects"] for c in record["candidates"]}
    assert tried == {"distance", "components", "watershed"} and record["candidates"][0]["objects"] == "distance"
    image, _ = next(iter(load_split("val", tmp_path).values()))
    tifffile.imwrite(tmp_path / "x.tif", (image * 1000).astype(np.uint16))
    assert cli.main(["-q", "predict", "--run", "a", "--out", "pred", str(tmp_path / "x.tif")]) == 0
    assert f",{record['objects']}," in (tmp_path / "pred/summary.csv").read_text()


def test_a_distance_target_on_binary_masks_is_made_from_components_and_says_so(tmp_path, monkeypatch,  # noqa: ANN001
                                                                              capsys) -> None:  # noqa: ANN001
    """0/1 masks define beads as connected components (that is what every bead score counts), so the distance
    map is made from them: honest, and one line says touching beads stay one object."""
    from beadseg.config import load_config
    from beadseg.data.prepare import load_split_objects
    from beadseg.instances import true_objects
    from beadseg.targets import instance_distance
    from beadseg.train import distance_targets

    monkeypatch.chdir(tmp_path)
    _tiny_distance_project(tmp_path, instance_labels=False)
    cfg = load_config("params.yaml").run("a")
    maps = distance_targets(cfg, tmp_path)
    masks = load_split_objects("train", tmp_path)
    for got, stem in zip(maps, sorted(masks)):
        np.testing.assert_array_equal(got, instance_distance(true_objects(masks[stem])))
        assert got.max() == pytest.approx(1.0)
    err = capsys.readouterr().err
    assert "on 0/1 masks: each connected component is one bead" in err
