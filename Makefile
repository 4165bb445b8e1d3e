# mlops_nb: every target creates the pinned environment first if it is missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# extra `mlops-nb run` arguments, e.g. make pipeline ARGS="-p n_trials 20"
ARGS ?=
# the eight stage notebooks, which nbval executes top to bottom with their pipeline cells (the library notebooks
# have no pipeline or notest cells: nbdev-test already runs every cell of theirs)
STAGE_NBS = $(sort $(wildcard nbs/0[1-8]_*.ipynb))

.PHONY: env pipeline test test-fast lab bench export readme lock clean

env: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip==26.3"
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

pipeline: $(STAMP)
	$(BIN)/mlops-nb run $(ARGS)

# the README's test command: PostgreSQL if missing (for the tuning-workers test), sync check, notebook library tests,
# pytest (two processes: most tests wait on kernels, servers and subprocesses), then every stage notebook under nbval
test: $(STAMP)
	bash tools/install-debian.sh postgresql || echo "make test: no PostgreSQL: the tuning-workers test on PostgreSQL will be skipped"
	$(PY) tools/check_sync.py
	cd nbs && ../$(BIN)/nbdev-test --n-workers 2
	$(BIN)/pytest -q -n 2 tests
	$(BIN)/pytest -q --nbval-lax -p no:cacheprovider $(STAGE_NBS)

# library cells only (seconds)
test-fast: $(STAMP)
	cd nbs && ../$(BIN)/nbdev-test --n-workers 2

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

# wrk (Debian) for the serving benchmark: installed only when missing
bench: $(STAMP)
	bash tools/install-debian.sh
	$(BIN)/python -m benchmarks $(ARGS)

# after editing notebooks: regenerate the package, clean the notebooks and README.md
export: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(BIN)/python tools/readme.py

readme: $(STAMP)
	$(BIN)/python tools/readme.py

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^mlops' > requirements.lock

clean:
	rm -rf $(VENV) _proc _docs .pytest_cache
