# `make demo` and `make test` each set up .venv from nothing (Python 3.11+ with venv and pip).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
.PHONY: demo transfer_demo transfer_claims test bench clean fidelity thesis_venv

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.parallel_tasks --config=experiments/configs/parallel_tasks_moons_circles.py --workdir=runs/demo_parallel_tasks

# Morcos et al.'s study offline on real data (scikit-learn's digits, a few minutes on a laptop CPU):
# digits_a → digits_b with SGD, then the same source tickets trained with Adam, and one report over both.
TRANSFER := $(PY) -m experiments.transfer --config=experiments/configs/transfer_digits.py
transfer_demo: $(STAMP)
	$(TRANSFER) --workdir=runs/digits_transfer
	$(TRANSFER) --config.source_workdir=runs/digits_transfer/source/digits_a_sgd --config.targets=digits_a \
		--config.target_optimizer=adam --workdir=runs/digits_sgd_to_adam
	$(PY) -m experiments.report --workdirs=runs/digits_transfer,runs/digits_sgd_to_adam --out=runs/digits_transfer_report

# Morcos et al.'s four claims tested on the digits and their variants (16 seeds, IMP to 99.1% pruned, VGG- and
# ResNet-style convnets on 8x8 inputs; about 30 minutes on a 2-core CPU, resumable): runs/transfer_claims/report/claims.md.
transfer_claims: $(STAMP)
	$(PY) -m experiments.transfer_claims --workdir=runs/transfer_claims

# The tests run on the CPU backend, one worker per core; 8 simulated devices are set up per test where needed.
test: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -q -n auto tests

# lth_jax against the thesis's own PyTorch code (benchmarks/fidelity/README.md). FULL=1: every point;
# THESIS_REPO=<checkout>: also run the thesis's code (in .venv-thesis, `make thesis_venv`) on THESIS_SEEDS seeds.
FIDELITY_RESULTS := benchmarks/fidelity/results/thesis_code.jsonl
THESIS_SEEDS ?= 2
fidelity: $(STAMP)
	$(PY) -m experiments.fidelity --workdir=runs/fidelity$(if $(FULL),_full) $(if $(FULL),--config=fidelity_full) \
		--config.thesis_results=$(FIDELITY_RESULTS) \
		$(if $(THESIS_REPO),--config.thesis_repo=$(THESIS_REPO) --config.thesis_python=.venv-thesis/bin/python --config.thesis_seeds=$(THESIS_SEEDS))

# The thesis's code runs in a virtualenv of its own: CPU torch, never a dependency of lth_jax.
thesis_venv: .venv-thesis/.installed
.venv-thesis/.installed:
	$(PYTHON) -m venv .venv-thesis
	.venv-thesis/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 numpy scikit-learn sympy networkx tqdm
	touch $@

bench: $(STAMP)
	$(PY) benchmarks/bench_prune.py
	$(PY) benchmarks/bench_masked_step.py
	$(PY) benchmarks/bench_structure.py
	$(PY) benchmarks/bench_parallel_tasks.py
	$(PY) benchmarks/bench_train_step.py

clean:
	rm -rf $(VENV) .venv-thesis runs .pytest_cache
