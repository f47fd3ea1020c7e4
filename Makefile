# A newcomer's two commands:  make run  (the demo search)   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
CORES ?= 2
# CPU machines get the CPU build of torch (small); machines with an NVIDIA driver get pip's default
# (CUDA) build. Override with e.g.  make install TORCH_SPEC='torch==2.13.0' TORCH_INDEX_URL=<your index>
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.2' || echo 'torch==2.13.0')
TORCH_INDEX_URL ?=
SNAKEMAKE := PATH="$(BIN):$$PATH" $(BIN)/snakemake

.PHONY: install run dry-run report-html test test-fast lint benchmark clean-results help

help:
	@echo "make run           - install (if needed) and run the demo search under Snakemake on $(CORES) cores"
	@echo "make dry-run       - what Snakemake would run (8 cores, 2 GPUs)"
	@echo "make test          - install (if needed), lint, and run the whole test suite (tests/unit + tests/workflow)"
	@echo "make test-fast     - tests/unit only: under a minute, what to run after each edit"
	@echo "make lint          - ruff (pyflakes, pycodestyle, import order, likely bugs) and mypy (types of beadseg/)"
	@echo "make benchmark     - the training-step benchmark (benchmarks/train_step.py)"
	@echo "make report-html   - Snakemake's HTML report of the last run (report.html)"
	@echo "make clean-results - remove results/, logs/, per-rule benchmarks and Snakemake metadata"
	@echo "make install       - create $(VENV) and install beadseg with its dependencies"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[workflow,test]"
	touch $@

install: $(VENV)/.installed

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
