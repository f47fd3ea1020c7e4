# A newcomer's two commands:  make run  (the demo search)   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
CORES ?= 2
# torch: scripts/torch_install.py picks the build. A machine whose `nvidia-smi -L` works gets pip's default (CUDA)
# build; any other asks for the CPU build (torch==2.13.0), with TORCH_INDEX_URL (a wheel index serving CPU builds
# of torch, e.g. PyTorch's CPU index) as an extra index when set and reachable, and refuses to pull the CUDA
# libraries there. Override with  make install TORCH_SPEC='torch==2.x' TORCH_INDEX_URL=<index URL>
# (see what it would do: make torch-plan). An environment that already has torch keeps it.
TORCH_SPEC ?=
TORCH_INDEX_URL ?=
TORCH_ENV := TORCH_SPEC='$(TORCH_SPEC)' TORCH_INDEX_URL='$(TORCH_INDEX_URL)'
SNAKEMAKE := PATH="$(BIN):$$PATH" $(BIN)/snakemake

.PHONY: install torch-plan run dry-run report-html test test-fast lint benchmark clean-results help

help:
	@echo "make run           - install (if needed) and run the demo search under Snakemake on $(CORES) cores"
	@echo "make dry-run       - what Snakemake would run (8 cores, 2 GPUs)"
	@echo "make test          - install (if needed), lint, and run the whole test suite (tests/unit + tests/workflow)"
	@echo "make test-fast     - tests/unit only: under a minute, what to run after each edit"
	@echo "make lint          - ruff (pyflakes, pycodestyle, import order, likely bugs) and mypy (types of beadseg/)"
	@echo "make benchmark     - the training-step benchmark (benchmarks/train_step.py)"
	@echo "make report-html   - Snakemake's HTML report of the last run (report.html)"
	@echo "make clean-results - remove results/, logs/, per-rule benchmarks and Snakemake metadata"
	@echo "make install       - create $(VENV) and install beadseg with its dependencies (the CPU build of torch"
	@echo "                     without an NVIDIA driver; TORCH_INDEX_URL=<CPU wheel index> to fetch it from there)"
	@echo "make torch-plan    - which torch build make install would ask for on this machine, and why"

$(VENV)/.installed: pyproject.toml scripts/torch_install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(TORCH_ENV) $(BIN)/python scripts/torch_install.py
	$(BIN)/python -m pip install -e ".[workflow,test]"
	touch $@

install: $(VENV)/.installed

torch-plan:
	@$(TORCH_ENV) $(PYTHON) scripts/torch_install.py --print

run: install
	$(SNAKEMAKE) --cores $(CORES) --rerun-incomplete
	@echo
	@echo "Report: $(abspath results/report/REPORT.md)"

dry-run: install
	$(SNAKEMAKE) -n --cores 8 --resources gpu=2

report-html: install
	$(SNAKEMAKE) --report report.html
	@echo "HTML report: $(abspath report.html)"

# Workers for `make test` (pytest-xdist): one per core by default; TEST_WORKERS=0 runs in one process.
# worksteal: an idle worker takes tests queued on a busy one, so the long real-tool tests do not leave a tail.
TEST_WORKERS ?= auto
test: install lint
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: install
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

benchmark: install
	PATH="$(BIN):$$PATH" $(BIN)/python benchmarks/train_step.py

clean-results:
	rm -rf results logs benchmarks/*/ .snakemake/metadata
