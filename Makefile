# `make demo` and `make test` each set up .venv from nothing (Python 3.10+ with venv and pip).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
.PHONY: demo test bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.parallel_tasks --workdir=runs/demo_parallel_tasks

# The tests run on the CPU backend; 8 simulated devices are set up per test where needed.
test: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_prune.py
	$(PY) benchmarks/bench_masked_step.py
	$(PY) benchmarks/bench_structure.py
	$(PY) benchmarks/bench_parallel_tasks.py
	$(PY) benchmarks/bench_train_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
