"""The training step as one CUDA graph: when it applies (everywhere), and that it equals the eager step (GPU only)."""

from __future__ import annotations

import pytest
import torch

from beadseg.config import validate
from beadseg.cudagraph import WARMUP_STEPS, graph_problem
from beadseg.devices import DeviceLease
from beadseg.train import Trainer
from tests.helpers.tiny import make_tiny_project, tiny_params

CUDA = torch.device("cuda")


@pytest.mark.parametrize(("device", "amp", "sizes", "problem"), [
    (CUDA, torch.bfloat16, (256,), None),
    (CUDA, None, (256,), None),  # fp32 graphs too
    (CUDA, torch.float16, (256,), "GradScaler"),
    (CUDA, torch.bfloat16, (256, 512), "multi-scale"),
    (torch.device("cpu"), None, (256,), "need a CUDA device"),
])
def test_graph_problem_known_answers(device, amp, sizes, problem):
    found = graph_problem(device, amp, sizes)
    assert found is None if problem is None else problem in found


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_step_equals_the_eager_step_within_bf16_tolerance(tmp_path):
    """Same seed, same batches (drawn on the card), dropout off: WARMUP_STEPS eager steps, one captured step and
    replays give the losses and weights of the eager run, to bf16 precision; the epoch's sums are replayed into."""
    steps = WARMUP_STEPS + 5
    params = tiny_params(max_epochs=2, steps_per_epoch=steps, dropout=0.0, base_channels=8, lr=1e-3)
    make_tiny_project(tmp_path, params)
    lease = DeviceLease(torch.device("cuda:0"), 0, torch.cuda.get_device_name(0))
    results = {}
    for graph in (False, True):
        run = validate({**params, "train": {**params["train"], "cuda_graph": graph}}).run("a")
        trainer = Trainer("a", run, lease, tmp_path, False)
        losses = [trainer.train_epoch(epoch) for epoch in range(2)]
        val = trainer.validate()
        results[graph] = (losses, val, {k: v.float().cpu() for k, v in trainer.model.state_dict().items()}, trainer)
    eager, graphed = results[False], results[True]
    assert graphed[3]._graphed is not None and graphed[3]._graphed.captured, graphed[3].graph_status()
    assert graphed[3].optimizer_steps == eager[3].optimizer_steps == 2 * steps
    assert graphed[0] == pytest.approx(eager[0], rel=2e-2)  # mean training loss per epoch
    assert graphed[1][1] == pytest.approx(eager[1][1], abs=2e-2)  # val Jaccard
    for key, value in eager[2].items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(graphed[2][key], value, rtol=5e-2, atol=5e-3, msg=key)
