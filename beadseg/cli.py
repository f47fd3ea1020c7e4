"""The one command-line interface that every Snakemake rule and every DVC stage calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from beadseg import __version__
from beadseg.errors import BeadsegError
from beadseg.system import available_cores


def _config(args: argparse.Namespace):  # noqa: ANN202 - Config, imported lazily for a fast --help
    import os

    from beadseg.config import read_params, validate

    raw = read_params(args.params)  # read once: validated here, and checked against dvc.yaml under DVC
    cfg = validate(raw, source=str(args.params))
    if os.environ.get("DVC_STAGE"):  # a step of `dvc repro`: stop at its first stage if a later one would
        from beadseg.dvc_params import check_params_for_dvc

        check_params_for_dvc(raw, args.params)
    return cfg


def cmd_validate(args: argparse.Namespace) -> None:
    from beadseg.config import read_params
    from beadseg.dvc_params import check_params_for_dvc

    cfg = _config(args)
    print(f"{args.params}: valid; {len(cfg.runs)} run(s), tile sizes {list(cfg.tiling.sizes)}, data from "
          f"{cfg.data.source} ({cfg.data.images})")
    try:
        check_params_for_dvc(read_params(args.params), args.params)
    except BeadsegError as exc:
        print(f"warning: Snakemake runs it, but `dvc repro` would stop: {exc}", file=sys.stderr)
    from beadseg.data.ingest import missing_data_line

    missing = missing_data_line(cfg.data, args.params)
    if missing is not None:  # the settings are valid, but neither engine can start on them yet
        print(f"warning: {missing}", file=sys.stderr)


def cmd_runs(args: argparse.Namespace) -> None:
    for run_id in _config(args).run_ids:
        print(run_id)


def cmd_synth(args: argparse.Namespace) -> None:
    from beadseg.config import DEMO_IMAGES, DEMO_MASKS
    from beadseg.data.synth import write_dataset

    cfg = _config(args).data
    s = cfg.synthetic
    # Always the demo folders: with data.source folder, data.images is the user's folder and must never be
    # written to (DVC runs this stage whatever the source; its output is data/raw/demo).
    stems = write_dataset(Path(DEMO_IMAGES), Path(DEMO_MASKS), n_images=s.n_images, size=s.size, seed=s.seed,
                          progress=not args.quiet, difficulty=s.difficulty, instance_labels=s.instance_labels)
    print(f"synth: wrote {len(stems)} {s.difficulty} image/mask pairs ({s.size}x{s.size}, seed {s.seed}) to "
          f"{DEMO_IMAGES} and {DEMO_MASKS}" + ("" if cfg.source == "synthetic" else
                                               f" (the search reads {cfg.images}: data.source is folder)"),
          file=sys.stderr)


def cmd_split(args: argparse.Namespace) -> None:
    from beadseg.data.prepare import run_split

    assignment = run_split(_config(args).data, progress=not args.quiet)
    print(f"split: {len(assignment['train'])} train and {len(assignment['val'])} val source images",
          file=sys.stderr)


def cmd_tile(args: argparse.Namespace) -> None:
    from beadseg.data.prepare import run_tile
    from beadseg.data.provenance import check_split

    cfg = _config(args)
    check_split(cfg.data, step=f"tile t{args.size}")
    run_tile(cfg.tiling, args.size, progress=not args.quiet)


def cmd_fingerprint(args: argparse.Namespace) -> None:
    from beadseg.data.fingerprint import write_fingerprint

    write_fingerprint(_config(args), progress=not args.quiet)


def cmd_baseline(args: argparse.Namespace) -> None:
    from beadseg.baseline import write_baseline

    write_baseline(_config(args), progress=not args.quiet)


def cmd_train(args: argparse.Namespace) -> None:
    from beadseg.train import train_run

    threads = args.threads or available_cores()
    train_run(_config(args), args.run, threads=threads, progress=not args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from beadseg.evaluate import evaluate_run

    threads = args.threads or available_cores()
    evaluate_run(_config(args), args.run, threads=threads, progress=not args.quiet)


def cmd_aggregate(args: argparse.Namespace) -> None:
    from beadseg.analysis.aggregate import aggregate

    summary = aggregate(_config(args))
    if summary["search_failed"]:
        print(f"aggregate: {summary['n_runs']} runs; the search failed: no run is a result "
              f"({summary['n_degenerate']} degenerate, {summary['n_diverged']} diverged)", file=sys.stderr)
    else:
        print(f"aggregate: {summary['n_runs']} runs; best {summary['best_run_id']} "
              f"(val Jaccard {summary['best_val_jaccard']:.4f})", file=sys.stderr)


def cmd_measure(args: argparse.Namespace) -> None:
    from beadseg.analysis.measure import measure

    path = measure(_config(args))
    print(f"measure: wrote {path}", file=sys.stderr)


def cmd_figures(args: argparse.Namespace) -> None:
    from beadseg.analysis.figures import make_figures

    written = make_figures(_config(args))
    print(f"figures: wrote {len(written)} figure(s) to {written[0].parent if written else '-'}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    from beadseg.analysis.report import write_report

    path = write_report(_config(args))
    print(f"report: {path.resolve()}")


def cmd_plan(args: argparse.Namespace) -> None:
    import yaml

    from beadseg.plan import expand_grid, finetune_table, render_runs_block, replace_runs_block, write_params_text

    grid_path = Path(args.grid)
    if not grid_path.is_file():
        raise BeadsegError(f"grid file '{grid_path}' not found")
    spec = yaml.safe_load(grid_path.read_text()) or {}
    table = expand_grid(spec)
    finetune = finetune_table(spec)
    if not args.write:
        sys.stdout.write(render_runs_block(table))
        if finetune is not None:
            sys.stdout.write(render_runs_block(finetune, "finetune"))
        print(f"plan: {len(table)} runs (not written; add --write to replace the runs table of {args.params})",
              file=sys.stderr)
        return
    params_path = Path(args.params)
    text = params_path.read_text() if params_path.is_file() else ""
    new_text = replace_runs_block(text, table)
    if finetune is not None:
        new_text = replace_runs_block(new_text, finetune, "finetune")
    write_params_text(params_path, new_text, "with the planned runs")
    extra = f" and {len(finetune)} finetune runs" if finetune else ""
    print(f"plan: wrote {len(table)} runs{extra} to {params_path}", file=sys.stderr)


def cmd_search_run(args: argparse.Namespace) -> None:
    from beadseg.search_driver import Engine, check_params_path, plan_lines, run_search

    check_params_path(args.params)
    if args.dry_run:
        for line in plan_lines(args.search):
            print(line)
        return
    if args.engine == "dvc" and (args.cores or args.resources or args.profile):
        raise BeadsegError("--cores, --resources and --profile are Snakemake's: DVC runs one stage at a time")
    engine = Engine(name=args.engine, cores=args.cores, resources=tuple(args.resources or ()), profile=args.profile)
    run_search(args.search, engine)


def cmd_search_propose(args: argparse.Namespace) -> None:
    import yaml

    from beadseg import paths
    from beadseg.analysis.aggregate import load_runs
    from beadseg.config import read_params
    from beadseg.plan import replace_runs_block, write_params_text
    from beadseg.propose import describe, load_space, observations, proposal_table, propose

    space, fixed = load_space(args.space)
    cfg = _config(args)
    if not (Path(".") / paths.runs_table()).is_file():
        raise BeadsegError(f"'{paths.runs_table()}' not found: run the search (and its aggregate step) first, so "
                           "proposals can learn from its results")
    observed, skipped = observations(load_runs(Path(".")), space, fixed, cfg.analysis.rank_by)
    for line in describe(observed, skipped, args.startup):
        print(line, file=sys.stderr)
    points = propose(space, observed, args.n, seed=args.seed, startup=args.startup)
    table = proposal_table(points, space, fixed, set(cfg.run_ids))
    print(yaml.safe_dump({"runs": table}, sort_keys=False), end="")
    if args.write:
        raw = read_params(args.params)
        merged = {**(raw.get("runs") or {}), **table}
        text = replace_runs_block(Path(args.params).read_text(encoding="utf-8"), merged)
        write_params_text(args.params, text, "with the proposals")
        print(f"propose: added {len(table)} run(s) to the runs: table of {args.params}", file=sys.stderr)


def cmd_search_status(args: argparse.Namespace) -> None:
    from beadseg.search_driver import status_lines

    for line in status_lines(_config(args)):
        print(line)
    print("every run's state, epoch, ETA and the leaderboard: beadseg status")


def cmd_status(args: argparse.Namespace) -> None:
    from beadseg.status import status_lines, watch

    if args.watch is None:
        for line in status_lines(_config(args)):
            print(line)
        return
    if args.watch <= 0:
        raise BeadsegError(f"--watch {args.watch:g}: give the seconds between refreshes, a number above 0")
    watch(lambda: status_lines(_config(args)), args.watch)  # params.yaml re-read: a halving search adds rungs


def cmd_predict(args: argparse.Namespace) -> None:
    from beadseg.paths import model_file
    from beadseg.predict import predict_files

    model = Path(args.model) if args.model is not None else model_file(args.run)
    predict_files(model, [Path(p) for p in args.inputs], Path(args.out), threshold=args.threshold,
                  objects=args.objects, min_area=args.min_area, overlap=args.overlap, threads=args.threads,
                  progress=not args.quiet)


def cmd_export(args: argparse.Namespace) -> None:
    from beadseg.export import export_run
    from beadseg.paths import model_file

    model = Path(args.model) if args.model is not None else model_file(args.run)
    out = Path(args.out) if args.out else Path("export") / (args.run or model.parent.name)
    result = export_run(model, out, image=Path(args.input) if args.input else None, author=args.author,
                        license_id=args.license, validate=not args.no_validate)
    if not args.quiet:
        print(result.validation, file=sys.stderr)
    print(f"export: {result.torchscript} (TorchScript: raw image in, bead probabilities out; normalisation and "
          f"threshold inside) and {result.package_zip} (bioimage.io package, also unpacked in {result.package_dir}); "
          f"both reproduce beadseg's probabilities of the test input within {result.max_difference:.1g}",
          file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> None:
    import yaml

    from beadseg.config import validate
    from beadseg.data.ingest import RAW_DIR, add_folder, set_data_lines
    from beadseg.plan import write_params_text

    folder = RAW_DIR / args.name
    new_text = None
    if args.set_params:  # checked before anything is copied: a params file that would not validate copies nothing
        params = Path(args.params)
        text = params.read_text(encoding="utf-8") if params.is_file() else ""
        new_text = set_data_lines(text, f"{folder}/images", f"{folder}/masks")
        validate(yaml.safe_load(new_text) or {}, source=f"{params} (with the imported data)")
    target = add_folder(Path(args.images), Path(args.masks), args.name, dvc=not args.no_dvc)
    done = f"import: copied to {target}" + ("" if args.no_dvc else " and added to DVC (commit the .dvc file with git)")
    if new_text is not None:
        write_params_text(args.params, new_text, "with the imported data")
        print(f"{done}; {args.params} now reads it (data.source folder, data.images {folder}/images, data.masks "
              f"{folder}/masks)", file=sys.stderr)
        return
    print(f"{done}. Point params.yaml at it (or import with --set-params):\n  data: {{source: folder, images: "
          f"{folder}/images, masks: {folder}/masks}}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beadseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"beadseg {__version__}")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The global options are accepted after the subcommand too (`beadseg train --run a --params p.yaml`);
    # SUPPRESS keeps a value given before the subcommand when none is given after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=argparse.SUPPRESS, help="params file (default: params.yaml)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress lines")

    listed: dict[str, str] = {}  # name -> one-line help, for the grouped list in `beadseg --help`

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:  # noqa: ANN001
        p = sub.add_parser(name, description=help_text, parents=[common])  # no help=: listed below, by group
        p.set_defaults(func=func)
        listed[name] = help_text
        return p

    add("validate", cmd_validate, "check params.yaml and summarise it")
    add("runs", cmd_runs, "list the run ids of the run table, one per line")
    add("synth", cmd_synth, "write the embedded synthetic microbead data set (data.synthetic) as TIFFs")
    add("split", cmd_split, "normalise images and split them into train / val / test by source image")
    p = add("tile", cmd_tile, "cut both splits into tiles of one size")
    p.add_argument("--size", type=int, required=True, help="tile size in pixels (one of tiling.sizes)")
    add("fingerprint", cmd_fingerprint, "describe the data set (sizes, intensities, beads, tiles, steps per run) "
        "and warn about what would make training meaningless")
    add("baseline", cmd_baseline, "score a classical threshold baseline on the full validation images")
    p = add("train", cmd_train, "train one run of the run table (resumes an interrupted run)")
    p.add_argument("--run", required=True, help="run id")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all available cores)")
    p = add("evaluate", cmd_evaluate, "score one run's best model on the full val and test images (metrics.json)")
    p.add_argument("--run", required=True, help="run id")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all available cores)")
    add("aggregate", cmd_aggregate, "merge every run into results/summary/runs.csv and summary.json")
    add("measure", cmd_measure, "measure the loss mathematics and the pixel gradients of the best models on the "
        "validation tiles into results/report/analysis_numbers.json")
    add("figures", cmd_figures, "draw the analysis figures into results/report/")
    add("report", cmd_report, "write results/report/REPORT.md")
    p = add("plan", cmd_plan, "expand a grid file into the run table")
    p.add_argument("grid", help="grid YAML (see beadseg/plan.py or presets/*.grid.yaml)")
    p.add_argument("--write", action="store_true", help="replace the runs: block of --params in place")
    p = add("search", lambda a: None, "search beyond a fixed grid: successive halving rung by rung, proposals from "
            "the results so far (beadseg search run / propose / status)")
    search_sub = p.add_subparsers(dest="search_command", required=True, metavar="SEARCH_COMMAND")
    q = search_sub.add_parser("run", parents=[common], help="plan and run every rung (re-run the same command to resume)",
                              description="Expand SEARCH.yaml's grid into rung 0 (runs r0_*) at halving.min_epochs, run it, "
                              "keep the best 1/eta configurations (full-image val Jaccard; replicates together; degenerate "
                              "and diverged dropped), continue them from their checkpoints with eta x the epochs (finetune "
                              "r<k>_*), until the last rung reaches train max_epochs; then the analysis and report. Every "
                              "rung is written into params.yaml; re-running the same command resumes.")
    q.set_defaults(func=cmd_search_run)
    q.add_argument("search", metavar="SEARCH.yaml", help="search file: a grid file plus halving: {eta, min_epochs}")
    q.add_argument("--cores", help="passed to snakemake --cores (default: all, unless --profile sets it)")
    q.add_argument("--resources", nargs="+", metavar="NAME=N", help="passed to snakemake --resources, e.g. gpu=2")
    q.add_argument("--profile", metavar="DIR", help="passed to snakemake --profile, e.g. workflow/profiles/slurm")
    q.add_argument("--engine", choices=("snakemake", "dvc"), default="snakemake",
                   help="run each rung with snakemake (default) or dvc repro")
    q.add_argument("--dry-run", action="store_true", help="print the rung plan and its step budget; run nothing")
    q = search_sub.add_parser("propose", parents=[common],
                              help="propose the next runs from the results so far (Optuna TPE; beadseg[search])",
                              description="Fit Optuna's TPE sampler to the comparable runs of results/summary/runs.csv "
                              "(their settings on SPACE.yaml's axes, their full-image val Jaccard) and print N new "
                              "configurations as a run table; --write adds them to params.yaml's runs.")
    q.set_defaults(func=cmd_search_propose)
    q.add_argument("space", metavar="SPACE.yaml", help="search space: space: {setting: {log_uniform|uniform|int|"
                   "choice: ...}}, optional fixed: {setting: value}")
    q.add_argument("--n", type=int, default=4, help="how many configurations to propose (default 4)")
    q.add_argument("--seed", type=int, default=0, help="sampler seed: the same results and seed give the same proposals")
    q.add_argument("--startup", type=int, default=10,
                   help="finished trials before TPE models them; fewer are sampled at random (default 10)")
    q.add_argument("--write", action="store_true", help="add the proposals to the runs: table of --params")
    q = search_sub.add_parser("status", parents=[common], help="rungs done, survivors, steps used vs the full grid")
    q.set_defaults(func=cmd_search_status)
    p = add("status", cmd_status, "watch a running search: every run's state, epoch, best val score, device, elapsed "
            "time and ETA, and a leaderboard of the runs scored so far (read from the files the steps write)")
    p.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 5) until Ctrl-C: in place on a terminal, plain blocks when piped")
    p = add("predict", cmd_predict, "segment new TIFF images (files or folders) with a trained model: per image a "
            "label TIFF (<stem>_labels.tif; labels in napari, calibrated in Fiji), a probability TIFF "
            "(<stem>_prob.tif) and a per-bead table (<stem>_beads.csv), plus summary.csv")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="PATH",
                       help="model file to predict with, e.g. results/runs/<run id>/model.pt")
    which.add_argument("--run", metavar="ID", help="predict with the model of this run (results/runs/ID/model.pt)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability above which a pixel is bead (default: the one the run was scored with, from "
                        "its evaluation.json; before evaluation, the model file's)")
    p.add_argument("--objects", choices=("components", "watershed", "distance"), default=None,
                   help="how bead pixels become beads: 'components' (connected regions; touching beads stay one), "
                        "'watershed' (splits touching beads) or 'distance' (cut at the valleys of the predicted "
                        "distance: runs trained with target mask_distance) (default: the method the run was "
                        "scored with)")
    p.add_argument("--min-area", type=int, default=None, metavar="PX",
                   help="drop beads smaller than this many pixels (default: the run's evaluation.min_bead_area, "
                        "else 4)")
    p.add_argument("--overlap", type=float, default=0.25,
                   help="fraction of each inference tile shared with its neighbours, 0 to 0.9 (default: 0.25)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: all available cores)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="2-D grayscale TIFF images (.tif/.tiff, OME-TIFF too), "
                   "or folders: every TIFF directly in a folder")
    p = add("export", cmd_export, "write a run's model as TorchScript (normalisation and threshold inside) and as a "
            "bioimage.io model package for deepImageJ (Fiji), napari, ilastik and QuPath")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="ID", help="export the model of this run (results/runs/ID/model.pt)")
    which.add_argument("--model", metavar="PATH", help="model file to export")
    p.add_argument("--out", metavar="DIR", help="new output folder (default: export/ID)")
    p.add_argument("--input", metavar="IMAGE", help="TIFF whose centred tile becomes the package's test input "
                   "(default: the first validation image)")
    p.add_argument("--author", help="author named in rdf.yaml (default: git config user.name, else your login)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id of the weights (default: CC-BY-4.0)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip bioimageio.spec validation (it runs when the beadseg[export] extra is installed)")
    p = add("import", cmd_import, "copy a folder of your TIFFs and masks into data/raw/NAME and dvc-add it, so "
            "`dvc pull` brings the images a model was trained on")
    p.add_argument("images", help="folder of 2-D TIFF images")
    p.add_argument("--masks", required=True, help="folder of masks (same stems; may be the images folder)")
    p.add_argument("--name", required=True, help="name of the data set: it goes to data/raw/NAME")
    p.add_argument("--no-dvc", action="store_true", help="copy only (no `dvc add`)")
    p.add_argument("--set-params", action="store_true", help="also set data.source folder, data.images and data.masks "
                   "of --params to the copy (validated first, written atomically; other lines and comments kept)")
    from beadseg.sync import add_parser as add_sync_parser

    sync = add_sync_parser(sub)
    sync.description = plain_text(sync.description or "")  # its docstring is reStructuredText
    listed["sync"] = "hand finished outputs from Snakemake to DVC or back, without re-running"
    parser.epilog = grouped_help(listed)
    return parser


def plain_text(rst: str) -> str:
    """Text with reStructuredText's inline literals (double backquotes) as a terminal shows code (single ones)."""
    return rst.replace("``", "`")


# The steps Snakemake rules and DVC stages call; every other subcommand is for people.
PIPELINE_STEPS = ("synth", "split", "tile", "fingerprint", "baseline", "train", "evaluate", "aggregate", "measure",
                  "figures", "report")
ENVIRONMENT = {
    "BEADSEG_DEVICE": "cpu | cuda | mps: force a device (default: a free GPU, else MPS, else the CPU)",
    "BEADSEG_GPU_WAIT": "seconds a job waits for a free GPU slot before it stops (default 600)",
    "BEADSEG_GPU_FALLBACK": "cpu: a job that found no free GPU slot in time trains on the CPU instead of stopping",
    "BEADSEG_JOBS_PER_GPU": "jobs that may share one card (default 1), or auto: slots by the job's measured or "
                            "estimated memory (16 slots per card)",
    "BEADSEG_LOCK_DIR": "folder of the GPU lock files (default: a private folder per user; "
                        "share one folder between users of the same cards)",
}


def grouped_help(listed: dict[str, str]) -> str:
    """The subcommands in two groups (commands for you, steps for the pipeline) and the environment variables."""
    import textwrap

    width = max(len(name) for name in listed) + 2

    def block(title: str, names: Sequence[str]) -> list[str]:
        lines = [title]
        for name in names:
            wrapped = textwrap.wrap(listed[name], 100 - width - 2) or [""]
            lines.append(f"  {name:<{width}}{wrapped[0]}")
            lines += [" " * (width + 2) + rest for rest in wrapped[1:]]
        return lines

    user = [n for n in listed if n not in PIPELINE_STEPS]
    steps = [n for n in PIPELINE_STEPS if n in listed]
    pad = max(len(name) for name in ENVIRONMENT) + 2
    env = [f"  {name:<{pad}}{text}" for name, text in ENVIRONMENT.items()]
    return "\n".join([*block("commands for you:", user), "", *block("pipeline steps (what the Snakemake rules and DVC "
                      "stages call):", steps), "", "environment:", *env, "",
                      "`beadseg COMMAND --help` for a command's options."])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BeadsegError as exc:  # one line per problem (a params file may have several)
        for line in str(exc).splitlines() or [""]:
            print(f"beadseg {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"beadseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
