"""A run id from params.yaml never reaches DVC's shell as code.

dvc.yaml's per-run stages (train, finetune, evaluate, evaluate-finetune) are `foreach` over params.yaml's run
tables, and DVC substitutes `${key}` into `cmd` before beadseg validates anything; the command then runs
through $SHELL. With `beadseg train --run ${key}`, a hand-edited run id such as `a;touch INJECTED` ran
`touch INJECTED` under `dvc repro -s train@...`, `dvc repro train@...` and `dvc repro --keep-going` (measured
with DVC 3.67), and quoting (`'${key}'`) is broken out of by an id holding a quote. So these stages take the
run id from DVC's `DVC_STAGE` environment variable (`train@<id>`) instead: the shell only ever expands a
variable, and beadseg receives the id as one argument and rejects it with a message naming it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from beadseg.config import ConfigError, validate
from tests.helpers.workflow import REPO, copy_project, tiny_params_dict

PER_RUN_STAGES = ("train", "finetune", "evaluate", "evaluate-finetune")

# Run ids that run `touch INJECTED` when pasted into a shell command, quoted or not.
INJECTING = {
    "semicolon": "a;touch INJECTED",
    "substitution": "$(touch INJECTED)",
    "backticks": "`touch INJECTED`",
    "quote break-out": "a';touch INJECTED;'",
    "double-quote break-out": 'a";touch INJECTED;"',
    "newline": "a\ntouch INJECTED",
    "or": "a || touch INJECTED",
}


def _add_run(root: Path, table: str, run_id: str, entry: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[table][run_id] = entry
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _injected(root: Path) -> list[str]:
    """Files the injected `touch INJECTED` made (not the run folders DVC names after the odd id)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("INJECTED"))


# --- without DVC -----------------------------------------------------------------------------------------

def test_per_run_stage_commands_never_interpolate_the_run_id() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in PER_RUN_STAGES:
        cmd = stages[name]["do"]["cmd"]
        assert "${" not in cmd, f"{name}: {cmd}"  # no DVC interpolation in the shell text at all
        assert '"$(printf %s "$DVC_STAGE" | cut -d@ -f2-)"' in cmd


@pytest.mark.parametrize("table", ["runs", "finetune"])
@pytest.mark.parametrize("run_id", [*INJECTING.values(), "abc\n", "A", ""], ids=[*INJECTING, "trailing newline",
                                                                               "upper case", "empty"])
def test_validation_names_every_bad_run_id(table: str, run_id: str) -> None:
    params = tiny_params_dict()
    params.setdefault("finetune", {})
    first = next(iter(params["runs"]))
    params[table][run_id] = {"init_from": first} if table == "finetune" else {}
    with pytest.raises(ConfigError, match="run id " + re.escape(repr(run_id)) + " is not path-safe"):
        validate(params)


# --- the real DVC ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, wf) -> Path:
    """A tiny project whose split and tiles DVC has made: the per-run stages have their inputs."""
    root = wf.make_project(tmp_path_factory.mktemp("runid") / "project")
    wf.run(["dvc", "repro", *(f"tile@{s}" for s in wf.tiny_params()["tiling"]["sizes"])], root)
    return root


@pytest.fixture
def project(upstream: Path, tmp_path: Path) -> Path:
    return copy_project(upstream, tmp_path / "project")


# Three shapes under the real DVC (each one costs a DVC run); every shape is checked by validation above.
UNDER_DVC = ("semicolon", "quote break-out", "newline")


@pytest.mark.integration
@pytest.mark.parametrize("run_id", [INJECTING[k] for k in UNDER_DVC], ids=list(UNDER_DVC))
def test_injecting_run_id_does_not_run_under_dvc_repro(project: Path, wf, run_id: str) -> None:
    _add_run(project, "runs", run_id, {"tile_size": 64, "loss": "dice"})
    for cmd in (["dvc", "repro", "-s", f"train@{run_id}"], ["dvc", "repro", f"train@{run_id}"]):
        proc = wf.run(cmd, project, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert _injected(project) == [], out
        assert f"run id {run_id!r} is not path-safe" in out, out  # the user is told which id is bad


@pytest.mark.integration
def test_injecting_run_id_under_full_repro_keep_going_and_dry_run(project: Path, wf) -> None:
    run_id = INJECTING["semicolon"]
    _add_run(project, "runs", run_id, {"tile_size": 64, "loss": "dice"})
    dry = wf.run(["dvc", "repro", "--dry", "-s", f"train@{run_id}"], project)
    assert f"Running stage 'train@{run_id}'" in dry.stdout
    assert '> beadseg train --run "$(printf %s "$DVC_STAGE" | cut -d@ -f2-)"\n' in dry.stdout
    for cmd in (["dvc", "repro"], ["dvc", "repro", "--keep-going"]):
        proc = wf.run(cmd, project, check=False)
        assert proc.returncode != 0
        assert _injected(project) == [], proc.stdout + proc.stderr
        assert f"run id {run_id!r} is not path-safe" in proc.stdout + proc.stderr


@pytest.mark.integration
def test_injecting_ids_in_evaluate_and_finetune_stages(project: Path, wf) -> None:
    """evaluate runs only once its inputs exist: give it placeholder inputs so DVC reaches the command."""
    run_id, ft_id = INJECTING["quote break-out"], INJECTING["substitution"]
    first = next(iter(wf.runs))
    _add_run(project, "runs", run_id, {"tile_size": 64, "loss": "dice"})
    _add_run(project, "finetune", ft_id, {"init_from": first})
    for rid in (run_id, ft_id):
        for name in ("model.pt", "train.json", "history.csv"):
            path = project / "results" / "runs" / rid / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder\n")
    (project / "results" / "runs" / first).mkdir(parents=True, exist_ok=True)
    (project / "results" / "runs" / first / "model.pt").write_text("placeholder\n")
    # evaluate-finetune before finetune: DVC deletes a stage's outputs (the placeholders) before its command
    for stage in (f"evaluate@{run_id}", f"evaluate-finetune@{ft_id}", f"finetune@{ft_id}"):
        proc = wf.run(["dvc", "repro", "-s", stage], project, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert f"Running stage '{stage}'" in out, out  # DVC did reach the command
        assert _injected(project) == [], out
        assert "is not path-safe" in out and stage.split("@", 1)[1] in out, out


@pytest.mark.integration
def test_valid_runs_still_train_and_evaluate_under_dvc(project: Path, wf) -> None:
    """The stage name -> run id step works in sh (dash) and bash, and from a subdirectory (the stage is then
    addressed as ../dvc.yaml:train@<id>)."""
    first = next(iter(wf.runs))
    _add_run(project, "finetune", "ft", {"init_from": first})
    sub = project / "sub"
    sub.mkdir()
    sh = shutil.which("sh") or "/bin/sh"
    wf.run(["dvc", "repro", "-s", f"train@{first}"], project, env={"SHELL": sh})
    wf.run(["dvc", "repro", "-s", "../dvc.yaml:finetune@ft"], sub, env={"SHELL": shutil.which("bash") or sh})
    wf.run(["dvc", "repro", "-s", f"evaluate@{first}", "evaluate-finetune@ft"], project, env={"SHELL": sh})
    for rid in (first, "ft"):
        assert (project / "results" / "runs" / rid / "model.pt").stat().st_size > 0
        assert (project / "results" / "runs" / rid / "metrics.json").is_file()
    assert wf.run(["dvc", "status", "evaluate@" + first, "evaluate-finetune@ft"], project).stdout.strip() == \
        "Data and pipelines are up to date."


@pytest.mark.integration
def test_snakemake_refuses_an_injecting_run_id_at_parse_time(project: Path, wf) -> None:
    run_id = INJECTING["semicolon"]
    _add_run(project, "runs", run_id, {"tile_size": 64, "loss": "dice"})
    proc = wf.run(["snakemake", "--cores", "1"], project, check=False)
    assert proc.returncode != 0 and _injected(project) == []
    assert f"run id {run_id!r} is not path-safe" in proc.stdout + proc.stderr
