"""What a pipeline training job really does on this machine's GPU (or CPU): one card kept busy or not.

Usage:  python benchmarks/gpu_bench.py [--device cuda|cpu] [--quick] [--out DIR]

Every figure comes from the real entry point (``beadseg train --run ID``: start-up, data loading, fit with
validation and checkpoints, writing the outputs), printed side by side and written as JSON to
``DIR/gpu_bench_<device>.json`` (``$OUT`` if set, else ``benchmarks/out``):

1. per job, for the demo-size job (params.yaml: depth 3, 8 channels, batch 4, tiles of 256) and the
   32-channel job on tiles of 512, each with the CUDA graph setting off and on (CUDA only):
   * busy fraction: kernel time from the profiler / wall time of the job's training (CUDA), or the share
     of the job's wall time spent training (CPU);
   * host syncs per optimizer step: ``torch.cuda.set_sync_debug_mode`` warnings (CUDA) and the aten
     host-sync ops the dispatch counter sees (both devices);
   * achieved TFLOP/s (FlopCounterMode on one training step x steps / training time) and its fraction of
     the card's bf16 dense peak (table by card name; CPU: of a measured fp32 matmul);
   * time to the first optimizer step and job wall / training time (a separate process, as Snakemake runs it);
2. N = 1, 4, 8 concurrent ``beadseg train`` processes of demo-size jobs on one card
   (``BEADSEG_JOBS_PER_GPU=auto``, ``BEADSEG_GPU_FALLBACK=cpu``): aggregate optimizer steps/s and how many
   jobs fell back to the CPU (CPU: N = 1, 2);
3. the demo search (params.yaml's 6 runs) on one card, before vs after in this same call: one job at a
   time, eager (what the pipeline did before: 1 slot per card) vs all jobs at once on auto slots with the
   CUDA graph on.

``--quick`` shrinks every job (fewer steps and epochs, smaller data) to check the script in a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: bf16 dense tensor-core peak (TFLOP/s, no sparsity) by a part of the card's name; SXM figures.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0,
                    "L40": 181.0, "A10": 125.0, "L4": 121.0, "RTX 4090": 165.0, "A6000": 155.0}


def demo_params(quick: bool) -> dict[str, Any]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if quick:
        params["data"]["synthetic"].update(n_images=6, size=512)
        params["train"].update(max_epochs=2, steps_per_epoch=5)
    return params


JOBS = {  # name -> run settings over params.yaml's train section
    "demo-size (8 ch, tile 256, batch 4)": {"tile_size": 256},
    "32 ch, tile 512, batch 8": {"tile_size": 512, "base_channels": 32, "batch_size": 8},
}


def write_project(root: Path, params: dict[str, Any]) -> None:
    from beadseg.config import validate
    from beadseg.data.build import build_dataset

    build_dataset(validate(params), root)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_runs(root: Path, runs: dict[str, dict[str, Any]]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["runs"] = runs
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def train_info(root: Path, run: str) -> dict[str, Any]:
    return json.loads((root / "results" / "runs" / run / "train.json").read_text())


def beadseg_train(root: Path, run: str, env: dict[str, str], threads: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "beadseg", "-q", "train", "--run", run, "--threads", str(threads)],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"gpu_bench: a training job failed:\n{err[-2000:]}")


def step_flops(root: Path, run: str, device: torch.device) -> float:
    """FLOPs of one optimizer step (forward + backward of one effective batch) of the run's network."""
    from torch.utils.flop_counter import FlopCounterMode

    from beadseg.config import load_config
    from beadseg.train import make_loss, make_model

    cfg = load_config(root / "params.yaml").run(run)
    model = make_model(cfg).to(device)
    x = torch.rand(cfg.batch_size, 1, cfg.tile_size, cfg.tile_size, device=device)
    y = (torch.rand_like(x) > 0.85).float()
    with FlopCounterMode(display=False) as counter:
        make_loss(cfg)(model(x).float(), y).backward()
    return float(counter.get_total_flops() * cfg.accumulation_steps)


def peak_tflops(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in BF16_PEAK_TFLOPS.items():
            if key in name:
                return value, f"bf16 dense peak of {key} (table)"
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        kind = "measured bf16 matmul (card not in the table)"
    else:
        a = torch.randn(1024, 1024)
        kind = "measured fp32 matmul"
    for _ in range(2):
        a @ a
    n = 20 if device.type == "cuda" else 5
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        a @ a
    sync(device)
    return 2 * a.shape[0] ** 3 * n / (time.perf_counter() - t0) / 1e12, kind


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def in_process(root: Path, run: str, device: torch.device) -> dict[str, Any]:
    """The job in this process under the profiler and the sync counters: busy fraction and syncs."""
    from beadseg import cli
    from beadseg.profiling import OpCounter

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.set_sync_debug_mode("warn")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with warnings.catch_warnings(record=True) as caught, OpCounter() as ops, \
                torch.profiler.profile(activities=activities) as prof:
            warnings.simplefilter("always")
            if cli.main(["-q", "train", "--run", run, "--threads", str(torch.get_num_threads())]) != 0:
                raise SystemExit(f"gpu_bench: beadseg train --run {run} failed")
    finally:
        os.chdir(cwd)
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    info = train_info(root, run)
    steps = max(1, int(info["optimizer_steps"]))
    cuda_syncs = sum("synchroniz" in str(w.message) for w in caught)
    out: dict[str, Any] = {"syncs_per_step_aten": ops.syncs / steps, "aten_ops_per_step": ops.total / steps,
                           "syncs_per_step_cuda": cuda_syncs / steps if device.type == "cuda" else None,
                           "cuda_graph": info.get("cuda_graph")}
    if device.type == "cuda":
        kernel_us = sum(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
                        for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
        out["busy_fraction"] = kernel_us / 1e6 / info["train_seconds"]
    return out


def job_figures(root: Path, run: str, device: torch.device, env: dict[str, str], threads: int,
                peak: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    finish(beadseg_train(root, run, env, threads))
    wall = time.perf_counter() - t0
    info = train_info(root, run)
    train_s, steps = float(info["train_seconds"]), int(info["optimizer_steps"])
    tflops = step_flops(root, run, device) * steps / train_s / 1e12
    out = {"job_wall_s": wall, "train_s": train_s, "wall_over_train": wall / train_s,
           "first_step_s": info.get("first_step_seconds"), "optimizer_steps": steps, "steps_per_s": steps / train_s,
           "achieved_tflops": tflops, "fraction_of_peak": tflops / peak, "device_name": info.get("device_name"),
           "peak_memory_mb": info.get("peak_reserved_mb") or info.get("peak_memory_mb")}
    out.update(in_process(root, run, device))
    if device.type == "cpu":
        out["busy_fraction"] = train_s / wall  # no kernel timeline: the share of the job spent training
    return out


def concurrent(root: Path, n: int, env: dict[str, str], threads: int) -> dict[str, Any]:
    runs = {f"c{n}_{i}": {"tile_size": 256, "seed": i} for i in range(n)}
    set_runs(root, runs)
    t0 = time.perf_counter()
    procs = [beadseg_train(root, run, env, threads) for run in runs]
    for proc in procs:
        finish(proc)
    wall = time.perf_counter() - t0
    infos = [train_info(root, run) for run in runs]
    steps = sum(int(i["optimizer_steps"]) for i in infos)
    return {"jobs": n, "wall_s": wall, "aggregate_steps_per_s": steps / wall,
            "cpu_fallbacks": sum(i["device"] == "cpu" and device_is_cuda(env) for i in infos)}


def device_is_cuda(env: dict[str, str]) -> bool:
    return env.get("BEADSEG_DEVICE", "") != "cpu"


def search(root: Path, params: dict[str, Any], env: dict[str, str], threads: int, at_once: bool,
           graph: bool) -> dict[str, Any]:
    runs = {f"{run}_{'new' if at_once else 'old'}": {**settings, "cuda_graph": graph} if graph else dict(settings)
            for run, settings in params["runs"].items()}
    set_runs(root, runs)
    t0 = time.perf_counter()
    if at_once:
        procs = [beadseg_train(root, run, env, threads) for run in runs]
        for proc in procs:
            finish(proc)
    else:
        for run in runs:
            finish(beadseg_train(root, run, env, threads))
    wall = time.perf_counter() - t0
    infos = [train_info(root, run) for run in runs]
    return {"runs": len(runs), "wall_s": wall, "best_val_jaccard": max(i["best_val_jaccard"] for i in infos),
            "optimizer_steps": sum(int(i["optimizer_steps"]) for i in infos)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small jobs: check the script in about a minute")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per job")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "out"))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_bench: --device cuda, but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    env = {**os.environ, "BEADSEG_GPU_FALLBACK": "cpu", "BEADSEG_GPU_WAIT": "0",
           "BEADSEG_LOCK_DIR": tempfile.mkdtemp(prefix="beadseg-bench-locks-")}
    env.pop("BEADSEG_JOBS_PER_GPU", None)
    if device.type == "cpu":
        env["BEADSEG_DEVICE"] = "cpu"
        os.environ["BEADSEG_DEVICE"] = "cpu"
    os.environ["BEADSEG_LOCK_DIR"] = env["BEADSEG_LOCK_DIR"]
    params = demo_params(args.quick)
    peak, peak_kind = peak_tflops(device)
    result: dict[str, Any] = {"device": str(device), "device_name": torch.cuda.get_device_name(device)
                              if device.type == "cuda" else platform.processor() or platform.machine(),
                              "torch": torch.__version__, "quick": args.quick, "peak_tflops": peak,
                              "peak_kind": peak_kind, "jobs": {}, "concurrent": [], "search": {}}
    graphs = (False, True) if device.type == "cuda" else (False,)
    with tempfile.TemporaryDirectory(prefix="beadseg-bench-") as tmp:
        root = Path(tmp)
        write_project(root, params)
        for name, settings in JOBS.items():
            for graph in graphs:
                run = f"j{len(result['jobs'])}"
                extra = {"base_channels": 16, "batch_size": 2} if args.quick and "32" in name else {}
                set_runs(root, {run: {**settings, **extra, **({"cuda_graph": True} if graph else {})}})
                label = f"{name}{' (quick: 16 ch, batch 2)' if extra else ''}{', cuda graph' if graph else ''}"
                result["jobs"][label] = job_figures(root, run, device, env, args.threads, peak)
                print_job(label, result["jobs"][label], device)
        counts = (1, 4, 8) if device.type == "cuda" else (1, 2)
        auto = {**env, "BEADSEG_JOBS_PER_GPU": "auto"}
        for n in counts:
            result["concurrent"].append(concurrent(root, n, auto, args.threads))
            c = result["concurrent"][-1]
            print(f"  {n} concurrent demo-size jobs: {c['aggregate_steps_per_s']:.1f} optimizer steps/s in all "
                  f"({c['aggregate_steps_per_s'] / result['concurrent'][0]['aggregate_steps_per_s']:.2f}x one job), "
                  f"{c['cpu_fallbacks']} fell back to the CPU, {c['wall_s']:.1f} s", flush=True)
        before = search(root, params, env, args.threads, at_once=False, graph=False)
        after = search(root, params, auto if device.type == "cuda" else env, args.threads,
                       at_once=device.type == "cuda", graph=device.type == "cuda")
        result["search"] = {"before": before, "after": after, "speedup": before["wall_s"] / after["wall_s"]}
        how = "all at once, auto slots, cuda graph" if device.type == "cuda" else "the same again: run-to-run noise"
        print(f"  demo search ({before['runs']} runs) before (one job at a time, eager): {before['wall_s']:.1f} s, "
              f"best val J {before['best_val_jaccard']:.3f}; after ({how}): {after['wall_s']:.1f} s, "
              f"best val J {after['best_val_jaccard']:.3f} ({result['search']['speedup']:.2f}x)")
    out = Path(args.out) / f"gpu_bench_{device.type}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  written: {out}")


def print_job(label: str, r: dict[str, Any], device: torch.device) -> None:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def num(v: float | None, fmt: str = ".2f") -> str:
        return "n/a" if v is None else format(v, fmt)

    busy = "GPU busy (kernels / train time)" if device.type == "cuda" else "share of job wall spent training"
    print(f"{label}  [{r['device_name']}, {r['optimizer_steps']} steps, graph: {r.get('cuda_graph')}]")
    rows = [(busy, pct(r.get("busy_fraction"))),
            ("host syncs per step (cuda sync debug / aten)", f"{num(r.get('syncs_per_step_cuda'))} / "
                                                            f"{num(r['syncs_per_step_aten'])}"),
            ("aten ops per step", num(r["aten_ops_per_step"], ".0f")),
            ("achieved TFLOP/s (fraction of peak)", f"{r['achieved_tflops']:.3f} ({pct(r['fraction_of_peak'])})"),
            ("time to first step", f"{num(r['first_step_s'])} s"),
            ("job wall / training time", f"{r['job_wall_s']:.1f} s / {r['train_s']:.1f} s = {r['wall_over_train']:.2f}"),
            ("optimizer steps/s", f"{r['steps_per_s']:.1f}")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", flush=True)


if __name__ == "__main__":
    main()
