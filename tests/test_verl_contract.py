"""The verl contract: every private verl name echorl_verl relies on, with the signature it relies on.

Supporting a new verl version starts here: run this file against it. A failure names the verl object, what
we use it for, and where in echorl_verl. Where we depend on what a function DOES (not only its name), its
source is fingerprinted; a changed fingerprint means: re-read that function, check the dependency still
holds, and update the hash (`python -c "..."` in `fingerprint`'s docstring).
"""

import hashlib
import inspect

import pytest

import verl
from echorl_verl.plugin import SUPPORTED_VERL, version_warning


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def fingerprint(obj) -> str:
    """sha256 (16 hex digits) of the source of `obj`:
    python -c "import hashlib,inspect; from X import Y; print(hashlib.sha256(inspect.getsource(Y).encode()).hexdigest()[:16])"
    """
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def test_the_supported_verl_is_installed_and_another_one_is_named():
    assert verl.__version__ == SUPPORTED_VERL
    assert version_warning(SUPPORTED_VERL) is None
    warning = version_warning("0.10.0")
    assert "verl 0.10.0 is installed" in warning and f"supports verl {SUPPORTED_VERL}" in warning


# --------------------------------------------------------------------- the trainer (echorl_verl/trainer.py)
TRAINER_HOOKS = {
    # name: parameters we call / override it with
    "_setup": ["self"],
    "_init_tokenizer": ["self"],
    "_init_resource_pool_mgr": ["self"],
    "_build_replay_buffer": ["self"],
    "_compute_advantage": ["self", "batch", "metrics"],
    "_update_actor": ["self", "batch", "metrics"],
    "_dump_generations": ["self", "inputs", "outputs", "gts", "scores", "reward_extra_infos_dict", "dump_path"],
    "_log_rollout_data": ["self", "batch", "timing_raw", "rollout_data_dir"],
    "_compute_metrics": ["self", "batch", "metrics", "timing_raw", "global_steps", "epoch"],
}


@pytest.mark.parametrize("name", sorted(TRAINER_HOOKS))
def test_trainer_hooks(name):
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    method = getattr(PPOTrainerSync, name, None)
    assert method is not None, f"PPOTrainerSync.{name} is gone: EchoPPOTrainer overrides it"
    assert params(method) == TRAINER_HOOKS[name], f"PPOTrainerSync.{name} changed signature"


def test_trainer_state_we_read():
    """EchoPPOTrainer reads self.tokenizer, self.role_worker_mapping, self.actor_rollout_wg, self.global_steps,
    self.config; the dump hands us the batch keys under "uid"; the advantage step runs the multi-trajectory path."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    for attribute in ("self.tokenizer", "self.role_worker_mapping", "self.actor_rollout_wg", "self.global_steps"):
        assert attribute in inspect.getsource(PPOTrainer), attribute
    assert fingerprint(PPOTrainer._log_rollout_data) == "c1fa53a46df397cb"  # {"uid": batch keys} into the dump
    assert fingerprint(PPOTrainer._compute_advantage) == "2a4a2aa4a475b228"  # writes advantages; fold reads them
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    assert params(compute_advantage_for_multi_trajectories)[:3] == ["data", "batch_keys", "adv_estimator"]


def test_padding_rows_are_tagged():
    """EchoPPOTrainer keeps rows verl padded in (`upsample_batch_to_divisible_size`) out of success via this tag."""
    from verl.trainer.ppo import padding_utils

    assert "template_tag.update(\n        is_padding=True" in inspect.getsource(padding_utils)


def test_the_task_runner_builds_the_trainer_by_mode_name():
    """main_ppo.EchoTaskRunner subclasses TaskRunnerV1 and swaps TRAINER_REGISTRY["sync"] for the run."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.v1 import trainer_base

    assert isinstance(TaskRunnerV1.__ray_actor_class__, type)
    source = inspect.getsource(TaskRunnerV1.__ray_actor_class__.run)
    assert "get_trainer_cls(config.trainer.v1.trainer_mode)" in source
    assert fingerprint(TaskRunnerV1.__ray_actor_class__.run) == "26be986901db888b"
    assert "TRAINER_REGISTRY[name]" in inspect.getsource(trainer_base.get_trainer_cls)
    assert trainer_base.TRAINER_REGISTRY["sync"].__name__ == "PPOTrainerSync"
    assert params(run_ppo) == ["config", "task_runner_class"]


# --------------------------------------------------------------------- the actor (workers.py, loss.py)
def test_the_actor_loss_is_a_partial_of_ppo_loss():
    """set_echo_loss checks `base.func is ppo_loss` and reuses `base.keywords["config"]`."""
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl.workers.utils.losses import ppo_loss

    source = inspect.getsource(ActorRolloutRefWorker.init_model)
    assert "partial(ppo_loss, config=" in source and "actor_worker_cls" in source
    assert fingerprint(ActorRolloutRefWorker.init_model) == "d1598903d82449f2"
    assert params(ppo_loss) == ["config", "model_output", "data", "dp_group"]
    assert hasattr(ActorRolloutRefWorker, "actor_worker_cls") and hasattr(ActorRolloutRefWorker, "set_loss_fn")


def test_the_training_worker():
    """EchoTrainingWorker overrides train_batch and, for the telemetry, restates its default engine keys."""
    from verl.workers.engine.base import BaseEngine
    from verl.workers.engine_workers import TrainingWorker

    assert params(TrainingWorker.train_batch) == ["self", "data"]
    assert fingerprint(TrainingWorker.train_batch) == "9107065b72b67cfc"
    for name, expected in (("forward_backward_batch", ["self", "data", "loss_function", "forward_only"]),
                           ("optimizer_zero_grad", ["self"]), ("get_data_parallel_group", ["self"]),
                           ("train_mode", ["self", "kwargs"])):
        assert params(getattr(BaseEngine, name)) == expected, name
    assert hasattr(TrainingWorker, "set_loss_fn")


def test_tensordict_and_padding_helpers():
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding, response_to_nested

    for fn in (tu.get_non_tensor_data, tu.assign_non_tensor, tu.get):
        assert callable(fn)
    assert params(tu.get_non_tensor_data)[:3] == ["data", "key", "default"]
    assert params(no_padding_2_padding)[:2] == ["tensor", "data"]
    assert params(response_to_nested)[:2] == ["tensor", "response_mask"]


# --------------------------------------------------------------------- DAPO (sampling.py)
def test_the_replay_buffer_hook():
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    from echorl_verl.sampling import check_hook

    check_hook()
    assert fingerprint(ReplayBuffer._dapo_filtered_keys) == "790dfb4e7ffb4d1b"  # (set, Counter), fills the cache
    assert "self._dapo_classification_cache" in inspect.getsource(ReplayBuffer.__init__)
    assert "filter_groups_metric" in params(ReplayBuffer.__init__)


# --------------------------------------------------------------------- the CPU backend (echorl_verl/cpu/)
def test_cpu_backend_names():
    import verl.utils.distributed as dist
    from verl.plugin.platform import PlatformBase, PlatformRegistry, platform_manager
    from verl.workers.rollout import base, replica

    assert hasattr(platform_manager, "_current_platform")  # the CPU backend refuses a platform chosen earlier
    assert isinstance(base._ROLLOUT_REGISTRY, dict) and ("vllm", "async") in base._ROLLOUT_REGISTRY
    assert callable(replica.RolloutReplicaRegistry.register) and callable(PlatformRegistry.register)
    assert isinstance(PlatformBase, type)
    assert params(dist.initialize_global_process_group_ray) == ["timeout_second", "backend"]


# --------------------------------------------------------------------- facts the start-up checks restate
def test_facts_the_preflight_restates():
    from verl.utils.tracking import FileLogger
    from verl.workers.rollout.utils import get_max_position_embeddings

    # context: max_model_len defaults to the model's positions (check_context_length); read as text, since
    # importing the vLLM server needs vllm
    import os

    source = open(os.path.join(os.path.dirname(verl.__file__), "workers", "rollout", "vllm_rollout",
                               "vllm_async_server.py")).read()
    assert "self.config.max_model_len = max_position_embeddings" in source
    assert get_max_position_embeddings(type("C", (), {"max_position_embeddings": 4096})()) == 4096
    # the mini-batch must split over the DP ranks (check_batch_split)
    from verl.workers.engine_workers import TrainingWorker

    assert "mini_batch_size % self.engine.get_data_parallel_size() == 0" in inspect.getsource(TrainingWorker.train_mini_batch)
    # verl's file logger overwrites its file: the recipes give each attempt its own (report/attempts.py)
    assert '"wb"' in inspect.getsource(FileLogger)
    # only a fixed list of environment variables reaches Ray workers (main_ppo.forward_environment)
    from verl.trainer import constants_ppo

    assert "VERL_FILE_LOGGER_PATH" not in inspect.getsource(constants_ppo)
