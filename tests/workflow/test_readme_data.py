"""Following README's "Bring your own TIFFs" literally: import a folder, copy the original-512 preset, and
`snakemake -n` plans that search on the imported data. A preset copied before its data exists stops Snakemake
(and warns in `beadseg validate`) with one line naming the import to run."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from beadseg.data.lookalikes import write_folder

PRESET = "presets/original-512.params.yaml"


def readme_commands(readme: str) -> list[str]:
    """The commands of the bash block of README's "Bring your own TIFFs" section, comments and `snakemake` left out
    (the test runs snakemake itself)."""
    section = readme.split("## Bring your own TIFFs", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README's Bring your own TIFFs section has no bash block"
    commands = []
    for line in block.group(1).splitlines():
        command = re.split(r"\s{2,}#|^#", line, maxsplit=1)[0].strip()
        if command and not command.startswith("snakemake"):
            commands.append(command)
    return commands


def test_the_readme_import_and_preset_plan_the_search_on_the_imported_data(tmp_path: Path, wf) -> None:
    root = wf.make_project(tmp_path / "project")
    shared = tmp_path / "microscope"
    write_folder(shared / "images", shared / "masks", "disks", n_images=4, size=128, seed=2)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    (root / "presets").mkdir()
    (root / PRESET).write_bytes((wf.repo / PRESET).read_bytes())

    # a preset copied before its data exists: one line naming the import to run
    wf.run(["cp", PRESET, "params.yaml"], root)
    early = wf.run(["snakemake", "-n"], root, check=False, env=env)
    assert early.returncode != 0
    lines = [line for line in (early.stdout + early.stderr).splitlines() if "beadseg import" in line]
    assert len(lines) == 1 and "--name mydata" in lines[0] and "data/raw/mydata/images" in lines[0], early.stderr
    validate = wf.run([sys.executable, "-m", "beadseg", "validate"], root, env=env)
    assert "warning: data.images 'data/raw/mydata/images'" in validate.stderr
    wf.run(["git", "checkout", "--", "params.yaml"], root)

    commands = readme_commands((wf.repo / "README.md").read_text())
    assert [c.split()[0] for c in commands] == ["beadseg", "git", "cp"], commands
    for command in commands:
        command = command.replace("/path/to/images", shlex.quote(str(shared / "images")))
        command = command.replace("/path/to/masks", shlex.quote(str(shared / "masks")))
        wf.run(command, root, env=env)

    runs = wf.run([sys.executable, "-m", "beadseg", "runs"], root).stdout.split()
    assert len(runs) == 15  # the original search
    jobs = wf.snakemake_jobs(root)
    assert {f"train[run={r}]" for r in runs} <= set(jobs) and "split" in jobs
    plan = wf.run(["snakemake", "-n"], root, env=env)
    assert plan.returncode == 0 and "data/raw/mydata/images" in (root / "params.yaml").read_text()
