# Validation of params.yaml (the same schema and code the `beadseg` CLI uses) and lookups only.
from beadseg.analysis import FIGURES
from beadseg.workflow import validate_for_snakemake


CFG = validate_for_snakemake(config, workflow.configfiles)
RUN_IDS = CFG.run_ids
TILE_SIZES = list(CFG.tiling.sizes)
ENV = "../envs/beadseg.yaml"


wildcard_constraints:
    run="[a-z][a-z0-9_-]*",
    size="[0-9]+",
    split="train|val",


def train_tiles(wildcards):
    """Tiles of every size the run trains on (its tile_size plus extra_tile_sizes)."""
    return [f"data/tiles/t{size}/train.npz" for size in CFG.run(wildcards.run).tile_sizes] + [
        f"data/tiles/t{CFG.run(wildcards.run).tile_size}/val.npz"
    ]


def init_model(wildcards):
    """The best model of the run this run starts from (progressive training), if any."""
    other = CFG.run(wildcards.run).init_from
    return [f"results/runs/{other}/model.pt"] if other else []


def run_settings(wildcards):
    """All settings of one run: a change re-runs exactly that run (Snakemake's params trigger)."""
    return CFG.run(wildcards.run).to_dict()
