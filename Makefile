# make demo: create the environment, run the whole mini-world study on this machine (CPU, no network).
# make test: create the environment, run the test suite.
VENV ?= .venv
PYTHON ?= python3
# The CPU build on a laptop; on a GPU cluster install the torch build that matches its CUDA instead.
TORCH_SPEC ?= torch==2.13.0
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: env demo test test-fast lint dry-run clean clean-scratch

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/demo
	$(BIN)/snakemake --profile profiles/demo --report results/report.html

dry-run: $(STAMP)
	$(BIN)/snakemake --profile profiles/demo --dry-run

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The inner loop: unit tests only, no Snakemake run, no whole study, no SLURM cluster (a few minutes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not study and not workflow and not slurm"

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile profiles/demo/study.yaml

clean:
	rm -rf results logs benchmarks .snakemake

# What a later run rebuilds without losing a result (docs/faults.md): Trainer checkpoints of
# fine-tunes that were cut off, and the temporary files of killed jobs. Not while a snakemake run holds the directory.
clean-scratch:
	@if [ -n "$$(ls -A .snakemake/locks 2>/dev/null)" ]; then \
		echo "a snakemake run holds this directory (.snakemake/locks): let it end, or 'snakemake --unlock' if it was killed"; \
		exit 1; fi
	rm -rf results/scratch
	if [ -d results ]; then find results -name '.*.????????.tmp' -prune -exec rm -rf {} +; fi
