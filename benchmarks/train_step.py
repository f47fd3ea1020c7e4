"""Training-step benchmark: beadseg's U-Net vs a plain reference U-Net, epoch overhead, conv ceiling.

Usage:  python benchmarks/train_step.py [--tile 256] [--batch 8] [--depth 3] [--channels 8] [--threads 1]
                                      [--device cpu|cuda]

On --device cuda every step runs under the same autocast (bf16 where supported) as training does, and
timings synchronize the device before reading the clock.

Prints, side by side from one process run:
  * tiles/s of one training step (forward + backward + Adam) for beadseg's U-Net and for a plain U-Net
    written below with the same depth and channels, and their ratio (beadseg / reference);
  * the fraction of a real beadseg epoch (train + validation) spent outside forward/backward/step
    (input pipeline, augmentation, metrics);
  * achieved GFLOP/s of the beadseg step against a measured 3x3-convolution ceiling on this machine.
Writes the same figures as JSON to benchmarks/out/train_step.json.

This times the step and the epoch in isolation (no start-up, no checkpoints, no whole job). For what a
pipeline job does on a GPU (busy fraction from the profiler, syncs per step, TFLOP/s against the card's
peak, packed concurrent jobs, the demo search) use benchmarks/gpu_bench.py (scripts/gpu-bench.sh): on a
GPU this script's "compute" baseline is itself launch-bound, so its overhead target can pass with the card
mostly idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from beadseg.config import validate
from beadseg.data.build import build_dataset
from beadseg.devices import DeviceLease, amp_dtype
from beadseg.losses import build_loss
from beadseg.models import build_model
from beadseg.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


class RefBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class ReferenceUNet(nn.Module):
    """The textbook U-Net, nothing tuned: the yardstick beadseg's model must not fall behind."""

    def __init__(self, depth: int, base: int) -> None:
        super().__init__()
        chans = [base * 2**i for i in range(depth)]
        self.down = nn.ModuleList([RefBlock(1 if i == 0 else chans[i - 1], c) for i, c in enumerate(chans)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i], chans[i - 1], 2, stride=2) for i in range(depth - 1, 0, -1)])
        self.dec = nn.ModuleList([RefBlock(chans[i - 1] * 2, chans[i - 1]) for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], 1))
        return self.head(x)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """The mixed precision training uses on this device (none on the CPU)."""
    dtype = amp_dtype(device)
    return torch.autocast(device_type="cuda", dtype=dtype) if dtype else contextlib.nullcontext()


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int = 2) -> float:
    """Seconds per training step (best of the measured steps' mean over 2 rounds)."""
    loss_fn = build_loss("combined")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(x.device):
            logits = model(x)
        loss_fn(logits.float(), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(2):
        sync(x.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(x.device)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    loss_fn = build_loss("combined")
    with FlopCounterMode(display=False) as counter, autocast(x.device):
        loss_fn(model(x).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def conv_ceiling(batch: int, tile: int, channels_last: bool, device: torch.device) -> tuple[float, str]:
    """Best measured GFLOP/s of a bare 3x3 convolution (forward + backward) over a few typical shapes."""
    best, best_shape = 0.0, ""
    for cin, size in ((16, tile), (32, tile // 2), (64, tile // 4)):
        conv = nn.Conv2d(cin, cin, 3, padding=1, bias=False).to(device)
        x = torch.randn(batch, cin, size, size, device=device, requires_grad=True)
        if channels_last:
            conv = conv.to(memory_format=torch.channels_last)
            x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

        def run(conv: nn.Module = conv, x: torch.Tensor = x) -> None:
            with autocast(device):
                out = conv(x)
            out.float().sum().backward()

        with FlopCounterMode(display=False) as counter:
            run()
        flops = counter.get_total_flops()
        for _ in range(2):
            run()
        n = 5 if device.type == "cpu" else 50
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        sync(device)
        gflops = flops * n / (time.perf_counter() - t0) / 1e9
        if gflops > best:
            best, best_shape = gflops, f"{cin}->{cin} @ {size}x{size}"
    return best, best_shape


def epoch_overhead(depth: int, base: int, tile: int, batch: int, device: torch.device) -> dict[str, float]:
    """Time one real beadseg epoch (train + validate) and the pure compute of the same batches."""
    from beadseg.config import validate

    params = {
        "data": {"source": "synthetic", "synthetic": {"n_images": 8, "size": 2 * tile, "seed": 0}},
        "tiling": {"sizes": [tile], "stride_fraction": 1.0},
        "train": {"depth": depth, "base_channels": base, "batch_size": batch, "tile_size": tile, "max_epochs": 1},
        "runs": {"bench": {}},
        "finetune": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = build_dataset(validate(params), root)
        trainer = Trainer("bench", cfg.run("bench"), DeviceLease(device, None, str(device)), root, False)
        trainer.train_epoch(0)  # warm-up: cudnn autotunes every training and validation shape here, not below
        trainer.validate()
        sync(device)
        t0 = time.perf_counter()
        trainer.train_epoch(1)
        trainer.validate()
        sync(device)
        epoch_s = time.perf_counter() - t0
        steps = trainer.cfg.steps_per_epoch * trainer.cfg.accumulation_steps  # micro-batches of `batch` crops
        n_train, n_val = steps * batch, len(trainer.val_set)
        x = torch.rand(batch, 1, tile, tile, device=device).contiguous(memory_format=torch.channels_last)
        y = (torch.rand(batch, 1, tile, tile, device=device) > 0.85).float()
        model = trainer.model
        step_s = time_steps(model, x, y, steps=3, warmup=1)
        model.eval()
        with torch.inference_mode(), autocast(device):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(3):
                model(x)
            sync(device)
            fwd_s = (time.perf_counter() - t0) / 3
        compute_s = step_s * steps + fwd_s * math.ceil(n_val / batch)
    return {"epoch_seconds": epoch_s, "compute_seconds": compute_s,
            "overhead_fraction": max(0.0, 1 - compute_s / epoch_s), "train_crops": n_train, "val_tiles": n_val}


def compile_comparison(depth: int, base: int, tile: int, batch: int, device: torch.device, steps: int,
                       run_steps: int) -> dict[str, float]:
    """Eager vs ``torch.compile`` for one whole run of ``run_steps`` optimizer steps, compile time included.

    Each variant gets a fresh model with the same seed. The first training step and the first eval-mode
    forward (the validation graph) are timed separately, since that is where compilation happens; the
    steady step time is the best mean of ``steps`` steps after that. A run is then
    first step + first eval forward + (run_steps - 1) x steady step.

    ``compiled`` starts from an empty compile cache (a fresh TORCHINDUCTOR_CACHE_DIR): what the first run of a
    network shape pays on a machine. ``compiled_warm`` compiles a fresh model again after resetting dynamo,
    with that cache filled: what later runs of the same shape pay (inductor keeps its cache on disk between
    processes), e.g. the other seeds or learning rates of a search."""
    import os
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="beadseg-inductor-")
    out: dict[str, float] = {}
    x = torch.rand(batch, 1, tile, tile, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, tile, tile, device=device) > 0.85).float()
    for name in ("eager", "compiled", "compiled_warm"):
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = build_model("unet", depth=depth, base_channels=base, dropout=0.1, norm="batch").to(device)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        runner = model if name == "eager" else torch.compile(model)
        loss_fn, opt = build_loss("combined"), torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(runner: nn.Module = runner, opt: torch.optim.Optimizer = opt, loss_fn: nn.Module = loss_fn) -> None:
            opt.zero_grad(set_to_none=True)
            with autocast(device):
                logits = runner(x)
            loss_fn(logits.float(), y).backward()
            opt.step()

        runner.train()
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        first = time.perf_counter() - t0
        runner.eval()
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(device):
            runner(x)
        sync(device)
        first_eval = time.perf_counter() - t0
        runner.train()
        steady = time_steps(runner, x, y, steps, warmup=1) if name == "eager" else _steady(step, steps, device)
        out[f"{name}_first_step_s"], out[f"{name}_first_eval_s"], out[f"{name}_step_s"] = first, first_eval, steady
        out[f"{name}_run_s"] = first + first_eval + (run_steps - 1) * steady
    out["run_steps"] = run_steps
    out["steady_speedup"] = out["eager_step_s"] / out["compiled_step_s"]
    out["run_speedup"] = out["eager_run_s"] / out["compiled_run_s"]
    out["run_speedup_warm"] = out["eager_run_s"] / out["compiled_warm_run_s"]
    return out


def _steady(step: Callable[[], None], steps: int, device: torch.device) -> float:
    step()  # one more warm-up after compilation
    best = float("inf")
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: autocast as in training)")
    ap.add_argument("--compile", action="store_true",
                    help="also compare eager with torch.compile over one whole run, compile time included")
    ap.add_argument("--run-steps", type=int, default=300, help="optimizer steps of the run --compile compares")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("benchmark: --device cuda, but torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = torch.rand(args.batch, 1, args.tile, args.tile, device=device)
    y = (torch.rand_like(x) > 0.85).float()
    ours = build_model("unet", depth=args.depth, base_channels=args.channels, dropout=0.0, norm="batch").to(device)
    ref = ReferenceUNet(args.depth, args.channels).to(device)
    cfg = validate({"data": {}, "runs": {"a": {}}, "finetune": {}}).run("a")
    x_ours = x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x
    if cfg.channels_last:
        ours = ours.to(memory_format=torch.channels_last)

    ref_s = time_steps(ref, x, y, args.steps)
    ours_s = time_steps(ours, x_ours, y, args.steps)
    flops = step_flops(ours, x_ours, y)
    ceiling, ceiling_shape = conv_ceiling(args.batch, args.tile, cfg.channels_last, device)
    achieved = flops / ours_s / 1e9
    overhead = epoch_overhead(args.depth, args.channels, args.tile, args.batch, device)
    compiled = (compile_comparison(args.depth, args.channels, args.tile, args.batch, device, args.steps,
                                   args.run_steps) if args.compile else {})

    result = {
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "threads": args.threads,
        "tile": args.tile, "batch": args.batch, "depth": args.depth, "base_channels": args.channels,
        "reference_tiles_per_s": args.batch / ref_s, "beadseg_tiles_per_s": args.batch / ours_s,
        "ratio_beadseg_over_reference": ref_s / ours_s,
        "step_gflop": flops / 1e9, "achieved_gflops": achieved, "conv_ceiling_gflops": ceiling,
        "conv_ceiling_shape": ceiling_shape, "fraction_of_ceiling": achieved / ceiling, **overhead,
        **{f"compile_{k}": v for k, v in compiled.items()},
    }
    rows = [
        ("reference U-Net (NCHW, textbook)", f"{result['reference_tiles_per_s']:.2f} tiles/s"),
        ("beadseg U-Net (as trained)", f"{result['beadseg_tiles_per_s']:.2f} tiles/s"),
        ("ratio beadseg / reference", f"{result['ratio_beadseg_over_reference']:.2f}x   (target >= 1.0)"),
        ("epoch time outside fwd/bwd/step", f"{100 * result['overhead_fraction']:.1f} %   (target <= 5 %; "
                                             f"epoch {overhead['epoch_seconds']:.2f} s, "
                                             f"compute {overhead['compute_seconds']:.2f} s)"),
        ("achieved (beadseg step)", f"{achieved:.1f} GFLOP/s ({result['step_gflop']:.2f} GFLOP per step)"),
        ("3x3 conv ceiling", f"{ceiling:.1f} GFLOP/s ({ceiling_shape})"),
        ("fraction of ceiling", f"{100 * result['fraction_of_ceiling']:.0f} %   (target >= 50 %)"),
    ]
    if compiled:
        rows += [
            ("torch.compile: first step / eval", f"{compiled['compiled_first_step_s']:.1f} s / "
                                                 f"{compiled['compiled_first_eval_s']:.1f} s (eager "
                                                 f"{compiled['eager_first_step_s']:.2f} s / "
                                                 f"{compiled['eager_first_eval_s']:.2f} s)"),
            ("torch.compile: steady step", f"{compiled['compiled_step_s'] * 1e3:.0f} ms vs eager "
                                           f"{compiled['eager_step_s'] * 1e3:.0f} ms "
                                           f"({compiled['steady_speedup']:.2f}x)"),
            (f"torch.compile: whole {args.run_steps}-step run", f"{compiled['compiled_run_s']:.0f} s vs eager "
                                                             f"{compiled['eager_run_s']:.0f} s "
                                                             f"({compiled['run_speedup']:.2f}x; keep if >= 1.2x)"),
            ("  ... with a warm compile cache", f"first step / eval {compiled['compiled_warm_first_step_s']:.1f} s / "
                                               f"{compiled['compiled_warm_first_eval_s']:.1f} s; run "
                                               f"{compiled['compiled_warm_run_s']:.0f} s "
                                               f"({compiled['run_speedup_warm']:.2f}x)"),
        ]
    print(f"beadseg training-step benchmark: tile {args.tile}, batch {args.batch}, depth {args.depth}, "
          f"base channels {args.channels}, {args.threads} thread(s), {result['device_name']}, torch {torch.__version__}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    out = ROOT / "benchmarks" / "out" / f"train_step{'' if device.type == 'cpu' else '_' + device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
