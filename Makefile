# kl_grad: every target creates .venv on first use, so each is a one-command set-up.
PYTHON      ?= python3
VENV        ?= .venv
# The CPU wheel of this version lies on disk here; an unpinned torch pulls GBs of CUDA.
TORCH_SPEC  ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

# `make live`: the frameworks' own packages in a separate venv (never .venv), each without its dependency tree
# (--no-deps: CUDA kernels, vLLM, DeepSpeed are not needed to call a KL function), plus the packages their KL
# modules import (verl 0.9.1's core_algos: ray, tensordict, omegaconf, transformers, codetiming, orjson; the
# pins are verl's own). OpenRLHF's models package imports flash_attn (CUDA only) and SkyRL 0.3's pydantic config
# needs Python 3.12: on a CPU Python 3.11 they are reported `not installed` with that reason.
LIVE_VENV       ?= .venv-live
LIVE_PY         := $(LIVE_VENV)/bin/python
LIVE_STAMP      := $(LIVE_VENV)/.installed
LIVE_FRAMEWORKS ?= verl==0.9.1 openrlhf==0.11.2 skyrl==0.3.0
LIVE_DEPS       ?= ray "tensordict>=0.8.0,!=0.9.0,<=0.10.0" "transformers>=5.5.3,!=5.6.0,<5.11" omegaconf codetiming \
                   orjson jaxtyping loguru pydantic

.PHONY: install test reproduce check bench clean live

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[plot,test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

reproduce: $(STAMP)
	$(PY) -m kl_grad reproduce experiments --out results

# The full regression check: every experiment recomputed and compared with results/ (make test skips the slowest).
check: $(STAMP)
	$(PY) -m kl_grad reproduce --check experiments --out results

# bench_kl_loss on one thread, median of 31: with torch's two threads a shared machine's other tenants moved its
# sub-millisecond timings more than the code does (docs/performance.md).
bench: $(STAMP)
	$(PY) -m benchmarks.bench_runner
	$(PY) -m benchmarks.bench_sequences
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_audit
	$(PY) -m benchmarks.bench_cli
	$(PY) -m benchmarks.bench_kl_loss --repeat 31 --threads 1
	$(PY) -m benchmarks.bench_full_kl

$(LIVE_STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(LIVE_VENV)
	$(LIVE_PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(LIVE_PY) -m pip install --quiet -c $(CONSTRAINTS) -e .
	$(LIVE_PY) -m pip install --quiet $(LIVE_DEPS)
	$(LIVE_PY) -m pip install --quiet --no-deps $(LIVE_FRAMEWORKS)
	touch $(LIVE_STAMP)

# Does each installed framework still compute its catalogue rows? (exit 1 on drift; docs/frameworks.md)
live: $(LIVE_STAMP)
	$(LIVE_PY) -m kl_grad frameworks --live

clean:
	rm -rf $(VENV) $(LIVE_VENV) .pytest_cache build *.egg-info
