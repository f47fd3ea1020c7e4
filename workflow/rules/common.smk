# Validation of params.yaml (the same schema and code the `beadseg` CLI uses) and lookups only.
from dataclasses import asdict

from beadseg.analysis import FIGURES
from beadseg.workflow import validate_for_snakemake

CFG = validate_for_snakemake(config, workflow.configfiles)
RUN_IDS = CFG.run_ids
ENV = "../envs/beadseg.yaml"
# Rule params must be plain data (dict/list/str/number): Snakemake silently leaves other objects (such as
# these frozen dataclasses) out of its params re-run trigger.
DATA_SETTINGS = asdict(CFG.data)
SYNTH_SETTINGS = asdict(CFG.data.synthetic)
ANALYSIS_SETTINGS = asdict(CFG.analysis)
EVALUATION_SETTINGS = CFG.evaluation.to_dict()
TILING_SETTINGS = asdict(CFG.tiling)
RUN_SETTINGS = CFG.run_settings


wildcard_constraints:
    run="[a-z][a-z0-9_-]*",
    size="[0-9]+",
    split="train|val|test",


def train_tiles(wildcards):
    """Tiles of every size the run trains on (its tile_size plus extra_tile_sizes), its validation tiles, and the
    full training images its random crops come from."""
    return [
        f"data/tiles/t{size}/train.npz" for size in CFG.run(wildcards.run).tile_sizes
    ] + [
        f"data/tiles/t{CFG.run(wildcards.run).tile_size}/val.npz",
        "data/split/train.npz",
        "data/split/split.json",  # the normalisation the model file records
    ]


def init_model(wildcards):
    """The best model of the run this run starts from (progressive training), if any."""
    other = CFG.run(wildcards.run).init_from
    return [f"results/runs/{other}/model.pt"] if other else []


def tile_stride(wildcards):
    """The stride (pixels) of one tile size: the only tiling setting besides small_images a tile job reads."""
    return CFG.tiling.stride(int(wildcards.size))


def run_settings(wildcards):
    """All settings of one run: a change re-runs exactly that run (Snakemake's params trigger)."""
    return CFG.run(wildcards.run).to_dict()
