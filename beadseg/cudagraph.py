"""The whole optimizer step as one CUDA graph: forward, loss, backward, optimizer and the epoch's sums.

A small U-Net's step is a few hundred tiny kernels, and on a fast card the host cannot launch them as fast
as the card runs them. Captured once in a CUDA graph, a step is one launch (``graph.replay()``). What the
graph needs, and the trainer provides (:meth:`beadseg.train.Trainer.step_fn`):

* static inputs: every step copies its batch into the same buffers (:attr:`GraphedStep.inputs`);
* static outputs: loss and pixel counts are added in place into tensors that live across steps;
* an optimizer whose step counter and learning rate live on the card (``capturable=True``; the trainer
  changes the rate in place, never by assigning a float);
* no host reads and no data-dependent shapes inside the step (the training step has none);
* autocast without its weight cache (``cache_enabled=False``) and no fp16 GradScaler (bf16 or fp32 only).

:func:`graph_problem` says why a run cannot be graphed (then it trains eagerly, as on the CPU). The first
``warmup`` steps run eagerly on a side stream (cudnn picks its algorithms, Adam creates its state), the
next is captured and replayed. If capture fails for any reason the step falls back to eager, with one line
on stderr, and the run goes on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch

WARMUP_STEPS = 3


def graph_problem(device: torch.device, amp: torch.dtype | None, tile_sizes: Sequence[int]) -> str | None:
    """Why the training step cannot be one CUDA graph on ``device`` (None: it can)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, not {device.type}"
    if amp == torch.float16:
        return "fp16 mixed precision needs a GradScaler, which reads the host every step"
    if len(tile_sizes) > 1:
        return "multi-scale training changes the batch shape from step to step"
    return None


class GraphedStep:
    """Runs ``step(xs, ys)`` eagerly for ``warmup`` calls, then captures it once and replays it.

    ``shapes``: the shape of one micro-batch of images and of masks; ``micro_batches``: how many make a
    step. :meth:`__call__` takes the step's micro-batches (tensors on the device)."""

    def __init__(self, step: Callable[[list[torch.Tensor], list[torch.Tensor]], None],
                 x_shape: Sequence[int], y_shape: Sequence[int], micro_batches: int, device: torch.device,
                 before_capture: Callable[[], None], warmup: int = WARMUP_STEPS,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.step, self.device, self.warmup, self.before_capture = step, device, warmup, before_capture
        self.xs = [torch.zeros(*x_shape, device=device).contiguous(memory_format=memory_format)
                   for _ in range(micro_batches)]
        self.ys = [torch.zeros(*y_shape, device=device) for _ in range(micro_batches)]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.failed: str | None = None
        self.side = torch.cuda.Stream(device)

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        if self.failed is not None:
            self.step(xs, ys)
            return
        for static, new in zip(self.xs, xs):
            static.copy_(new)
        for static, new in zip(self.ys, ys):
            static.copy_(new)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                self.step(self.xs, self.ys)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
        else:
            self._capture()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.before_capture()  # e.g. gradients to None: backward allocates them from the graph's pool
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self.step(self.xs, self.ys)
        except Exception as exc:  # any capture problem: train on eagerly, this step included
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"beadseg: the training step could not be captured as a CUDA graph ({self.failed}); "
                  "training on without it", file=sys.stderr)
            torch.cuda.synchronize(self.device)
            self.before_capture()
            self.step(self.xs, self.ys)
            return
        self.graph = graph
        graph.replay()  # capture records the step; this runs it
