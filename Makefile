# `make test` and `make demo` create the environment (.venv) on a fresh machine when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.echorl-installed

.PHONY: env test demo bench clean-env

env: $(STAMP)

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	@$(PY) -c "import verl, echorl_verl.plugin; from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY as R; assert 'echo' in R, 'echorl plugin not registered'"
	@touch $(STAMP)

test: env
	$(PY) -m pytest -q --import-mode=importlib -p no:cacheprovider tests

demo: env
	bash recipes/cpu_demo.sh

bench: env
	$(PY) -m benchmarks.bench_selection
	$(PY) -m benchmarks.bench_actor_step
	$(PY) -m benchmarks.bench_cpu_step
	$(PY) -m benchmarks.check_reward_agreement

clean-env:
	rm -rf $(VENV)
