# kl_grad: every target creates .venv on first use, so each is a one-command set-up.
PYTHON      ?= python3
VENV        ?= .venv
# The CPU wheel of this version lies on disk here; an unpinned torch pulls GBs of CUDA.
TORCH_SPEC  ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

.PHONY: install test reproduce check bench clean

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

bench: $(STAMP)
	$(PY) -m benchmarks.bench_runner
	$(PY) -m benchmarks.bench_sequences
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_audit
	$(PY) -m benchmarks.bench_cli
	$(PY) -m benchmarks.bench_kl_loss
	$(PY) -m benchmarks.bench_full_kl

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
