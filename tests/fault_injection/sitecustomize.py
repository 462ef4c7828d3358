"""Fault injection for the tests that a fault ends a run instead of hanging it (tests/test_run_lifecycle.py).

On PYTHONPATH, Python imports this file at start-up in every process of the run (the driver, Ray's workers,
vLLM's engine and worker processes inherit PYTHONPATH). With `ECHORL_FAULT=weight_load` the vLLM worker's
weight load (verl's `vLLMColocateWorkerExtension._update_weights`) raises, as the trial's dropped linear weights
did; the trainer's BucketedWeightSender then waits for an acknowledgement that never comes. Nothing is
imported until verl's module itself is, so processes that never load it are unaffected.
"""

import importlib.abc
import os
import sys

TARGET = "verl.workers.rollout.vllm_rollout.utils"


def _break_weight_load(module) -> None:
    def _update_weights(self, *args, **kwargs):
        raise RuntimeError("injected fault: the vLLM worker failed to load the synced weights")

    module.vLLMColocateWorkerExtension._update_weights = _update_weights


class _Inject(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module, _run=run):
                    _run(module)
                    _break_weight_load(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


if os.environ.get("ECHORL_FAULT") == "weight_load":
    sys.meta_path.insert(0, _Inject())
