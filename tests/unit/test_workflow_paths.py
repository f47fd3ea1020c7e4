"""Output paths are defined once (beadseg/paths.py): the Snakemake rules and dvc.yaml must spell the same ones.

Every data/ or results/ path written in workflow/rules/*.smk or dvc.yaml is normalised (run ids and tile
sizes become placeholders) and must be one that beadseg.paths produces; and every per-run and summary
file of beadseg.paths must appear in both engines.
"""

from __future__ import annotations

import re

from beadseg import paths
from beadseg.analysis import FIGURES
from tests.helpers import REPO

RUN, SIZE, SPLIT = "{run}", "{size}", "{split}"


def _known() -> dict[str, str]:
    """Normalised path -> the paths.py name that makes it."""
    made = {
        "split_file": [paths.split_file(s) for s in ("train", "val", "test")],
        "split_manifest": [paths.split_manifest()],
        "tiles_file": [paths.tiles_file(SIZE, s) for s in ("train", "val")],  # type: ignore[arg-type]
        "tiles_manifest": [paths.tiles_manifest(SIZE)],  # type: ignore[arg-type]
        "tiles_dir": [paths.tiles_dir(SIZE), paths.TILES_DIR],  # type: ignore[arg-type]
        "run files": [f(RUN) for f in (paths.model_file, paths.history_file, paths.metrics_file,
                                       paths.train_info_file, paths.per_image_file, paths.evaluation_info_file,
                                       paths.predictions_file)],
        "summary": [paths.fingerprint_file(), paths.baseline_file(), paths.runs_table(), paths.summary_json(),
                    paths.histories_table()],
        "report": [paths.report_file(), paths.math_summary_file(), paths.complete_file(), paths.next_search_file(),
                   paths.analysis_numbers_file(), paths.FIGURES_DIR, paths.figure_file("{name}"),
                   *(paths.figure_file(f) for f in FIGURES)],
        "dirs": [paths.SPLIT_DIR, paths.RUNS_DIR],
    }
    return {str(p): name for name, ps in made.items() for p in ps}


def _normalise(path: str) -> str:
    path = path.rstrip("/")
    path = re.sub(r"\$\{(key|item\.init_from)\}|\{other\}", RUN, path)  # dvc ${key}, init_from; smk {other}
    path = re.sub(r"t\$\{item\}|t\{CFG\.run\(wildcards\.run\)\.tile_size\}", f"t{SIZE}", path)
    return path


def smk_paths() -> set[str]:
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow/rules").glob("*.smk")))
    return {_normalise(m) for m in re.findall(r'f?"((?:data|results)/[^"]*)"', text)}


def dvc_paths() -> set[str]:
    text = (REPO / "dvc.yaml").read_text()
    found = set(re.findall(r"(?:^|\s|- )((?:data|results)/[^\s:\"]*)", text, flags=re.M))
    return {_normalise(p) for p in found if "raw/demo" not in p}


def test_every_path_in_the_rules_is_one_of_paths_py():
    known = _known()
    demo = {"data/raw/demo/images", "data/raw/demo/masks"}  # the demo generator's output (config.DEMO_*)
    unknown = sorted(p for p in smk_paths() - demo if p not in known)
    assert unknown == [], f"paths in workflow/rules/*.smk that beadseg/paths.py does not define: {unknown}"


def test_every_path_in_dvc_yaml_is_one_of_paths_py():
    known = _known()
    unknown = sorted(p for p in dvc_paths() if p not in known)
    assert unknown == [], f"paths in dvc.yaml that beadseg/paths.py does not define: {unknown}"


def test_both_engines_declare_every_per_run_and_summary_file():
    must = {str(f(RUN)) for f in (paths.model_file, paths.history_file, paths.metrics_file, paths.train_info_file,
                                  paths.per_image_file, paths.evaluation_info_file, paths.predictions_file)}
    must |= {str(p) for p in (paths.fingerprint_file(), paths.baseline_file(), paths.runs_table(),
                              paths.summary_json(), paths.histories_table(), paths.report_file(),
                              paths.math_summary_file(), paths.complete_file(), paths.next_search_file(),
                              paths.analysis_numbers_file(), paths.split_manifest(),
                              *(paths.split_file(s) for s in ("train", "val", "test")))}
    assert sorted(must - smk_paths()) == []
    assert sorted(must - dvc_paths()) == []
