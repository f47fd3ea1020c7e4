"""Tests for beadseg.inference (stitched sliding-window prediction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from beadseg.errors import ConfigError, DataError
from beadseg.inference import blend_window, predict_full


class PointwiseLogit(nn.Module):
    """logit = 10 * (x - 0.5), pixel by pixel; optionally only accepts sizes divisible by ``multiple``."""

    def __init__(self, multiple: int = 1) -> None:
        super().__init__()
        self.multiple = multiple
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.seen_training: list[bool] = []
        self.seen_inference_mode: list[bool] = []
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 1 and x.dtype == torch.float32
        height, width = x.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise RuntimeError(f"input size {height}x{width} not divisible by {self.multiple}")
        self.seen_training.append(self.training)
        self.seen_inference_mode.append(torch.is_inference_mode_enabled())
        self.batch_sizes.append(x.shape[0])
        return self.scale * (x - 0.5)


class DownUp(nn.Module):
    """A stride-8 encoder/decoder: pools by 8 then upsamples, so it needs sizes divisible by 8."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise RuntimeError("size must be divisible by 8")
        pooled = nn.functional.avg_pool2d(x, 8)
        return nn.functional.interpolate(pooled, scale_factor=8, mode="nearest")


def _expected(image: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-10.0 * (image.astype(np.float64) - 0.5)))


@pytest.fixture
def odd_image() -> np.ndarray:
    return np.random.default_rng(0).random((157, 203)).astype(np.float32)


@pytest.mark.parametrize("tile", [8, 32, 64])
def test_blend_window_positive_and_peaked(tile: int) -> None:
    window = blend_window(tile)
    assert window.shape == (tile, tile) and window.dtype == np.float32
    assert (window > 0).all()
    centre = window[tile // 2, tile // 2]
    assert centre == pytest.approx(window.max())
    assert window[0, 0] < centre and window[0, tile // 2] < centre
    np.testing.assert_allclose(window, window.T)  # separable and symmetric
    np.testing.assert_allclose(window, window[::-1, ::-1])


def test_blend_window_uniform_and_unknown() -> None:
    np.testing.assert_array_equal(blend_window(16, "uniform"), np.ones((16, 16), dtype=np.float32))
    with pytest.raises(ConfigError, match="gaussian"):
        blend_window(16, "gaussian")


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9])
def test_predict_full_exact_on_odd_size(odd_image: np.ndarray, overlap: float) -> None:
    model = PointwiseLogit()
    probs = predict_full(model, odd_image, tile=64, overlap=overlap, batch_size=3)
    assert probs.shape == odd_image.shape and probs.dtype == np.float32
    np.testing.assert_allclose(probs, _expected(odd_image), atol=1e-5, rtol=0)


def test_predict_full_divisible_by_8_model_on_odd_sizes() -> None:
    rng = np.random.default_rng(1)
    for shape in [(157, 203), (20, 30), (1, 1), (64, 65), (3, 200)]:
        image = rng.random(shape).astype(np.float32)
        probs = predict_full(PointwiseLogit(multiple=8), image, tile=32, overlap=0.25)
        assert probs.shape == shape
        np.testing.assert_allclose(probs, _expected(image), atol=1e-5, rtol=0)
        out = predict_full(DownUp(), image, tile=32, overlap=0.5)
        assert out.shape == shape and np.isfinite(out).all() and ((out > 0) & (out < 1)).all()


def test_predict_full_constant_model_gives_constant_map() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, 1.5)

    probs = predict_full(Constant(), np.zeros((101, 77), dtype=np.float32), tile=32, overlap=0.5)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-1.5)), atol=1e-6)


def test_predict_full_blends_disagreeing_tiles() -> None:
    """Where windows overlap, the result is a weighted mean of their predictions (between their values)."""

    class PerTileConstant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = []
            for _ in range(x.shape[0]):
                logits.append(torch.full(x.shape[1:], -2.0 if self.calls % 2 == 0 else 2.0))
                self.calls += 1
            return torch.stack(logits)

    # One row of windows: origins 0 and 16 along x (tile 32, width 48, overlap 0.5).
    probs = predict_full(PerTileConstant(), np.zeros((32, 48), dtype=np.float32), tile=32, overlap=0.5, batch_size=1)
    low, high = 1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(probs[:, :16], low, atol=1e-6)
    np.testing.assert_allclose(probs[:, 32:], high, atol=1e-6)
    middle = probs[:, 16:32]
    assert ((middle > low) & (middle < high)).all()
    assert (np.diff(middle[0]) > 0).all(), "blend should move smoothly from the left tile to the right tile"


def test_predict_full_restores_training_mode_and_uses_inference_mode(odd_image: np.ndarray) -> None:
    model = PointwiseLogit()
    model.train()
    predict_full(model, odd_image, tile=64)
    assert model.training is True
    assert model.seen_training and not any(model.seen_training)
    assert all(model.seen_inference_mode)
    model.eval()
    predict_full(model, odd_image, tile=64)
    assert model.training is False


def test_predict_full_restores_training_mode_on_error(odd_image: np.ndarray) -> None:
    model = PointwiseLogit(multiple=7)
    model.train()
    with pytest.raises(RuntimeError):
        predict_full(model, odd_image, tile=64)
    assert model.training is True


def test_predict_full_batches(odd_image: np.ndarray) -> None:
    model = PointwiseLogit()
    one = predict_full(model, odd_image, tile=64, overlap=0.25, batch_size=1)
    assert set(model.batch_sizes) == {1}
    n_windows = len(model.batch_sizes)
    model = PointwiseLogit()
    many = predict_full(model, odd_image, tile=64, overlap=0.25, batch_size=5)
    assert sum(model.batch_sizes) == n_windows and max(model.batch_sizes) == 5
    np.testing.assert_allclose(one, many, atol=1e-7)


def test_predict_full_channels_last_and_cpu_amp_ignored(odd_image: np.ndarray) -> None:
    probs = predict_full(
        PointwiseLogit(), odd_image, tile=64, channels_last=True, amp_dtype=torch.bfloat16, device=torch.device("cpu")
    )
    np.testing.assert_allclose(probs, _expected(odd_image), atol=1e-5, rtol=0)


def test_predict_full_accepts_bchw_or_bhw_output(odd_image: np.ndarray) -> None:
    class Squeezed(PointwiseLogit):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x)[:, 0]

    probs = predict_full(Squeezed(), odd_image, tile=64)
    np.testing.assert_allclose(probs, _expected(odd_image), atol=1e-5, rtol=0)


def test_predict_full_rejects_wrong_output_shape(odd_image: np.ndarray) -> None:
    class Shrinks(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[..., :-1, :-1]

    with pytest.raises(ValueError, match="model returned shape"):
        predict_full(Shrinks(), odd_image, tile=64)


@pytest.mark.parametrize("overlap", [-0.1, 0.95, 1.0, float("nan"), "a"])
def test_predict_full_bad_overlap(odd_image: np.ndarray, overlap: object) -> None:
    with pytest.raises(ConfigError, match="overlap"):
        predict_full(PointwiseLogit(), odd_image, tile=64, overlap=overlap)  # type: ignore[arg-type]


def test_predict_full_bad_inputs(odd_image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="batch size"):
        predict_full(PointwiseLogit(), odd_image, tile=64, batch_size=0)
    with pytest.raises(ConfigError, match="tile size"):
        predict_full(PointwiseLogit(), odd_image, tile=0)
    with pytest.raises(DataError, match="2-D"):
        predict_full(PointwiseLogit(), np.zeros((3, 32, 32), dtype=np.float32), tile=32)


def test_predict_full_reflect_pads_small_images() -> None:
    """The model sees the image reflect-padded (not zero/edge padded) up to the tile size."""

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inputs: list[np.ndarray] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inputs.append(x.clone().numpy())
            return x

    image = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    model = Recorder()
    predict_full(model, image, tile=32, overlap=0.25)
    assert len(model.inputs) == 1
    expected = np.pad(image, ((0, 12), (0, 2)), mode="reflect")
    np.testing.assert_array_equal(model.inputs[0][0, 0], expected)
