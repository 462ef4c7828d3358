"""`python -m echorl_verl.main_ppo`: verl's main_ppo with EchoRL.

Takes every verl override (it loads verl's own `ppo_trainer` config) plus the `echo` group:

    python -m echorl_verl.main_ppo <your verl overrides> echo.coef=0.001 echo.clip_mode=peak_prefix

With `echo.enable=false` it runs verl's own TaskRunner, trainer step and loss; the one difference is the
step metric `reward/infra_error_rows`, logged on every run (`task_runner_class`). Before Ray starts it
checks the config (`echorl_verl.preflight`), forwards the driver's environment that Ray would not pass on
(`forward_environment`), and then either trains or, with `ECHORL_DRY_RUN=1`, prints the resolved config
and stops. `ECHORL_RESOLVED_CONFIG=PATH` also writes the resolved config to PATH (the recipes use both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import traceback

import hydra
import ray
from omegaconf import DictConfig, OmegaConf, open_dict

from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

from echorl_verl.advantage import ECHO_ESTIMATOR, check_base_estimator
from echorl_verl.config import EchoConfig, EchoConfigError
from echorl_verl import shm
from echorl_verl.errors import failure_line
from echorl_verl.preflight import PreflightError, preflight

#: environment variables (by prefix) the driver forwards to every Ray worker, also on a cluster started with
#: `ray start` before the script (verl forwards only a fixed list: verl/trainer/constants_ppo.py)
FORWARDED_PREFIXES = ("VERL_", "ECHORL_", "WANDB_", "HF_", "HUGGING_FACE_", "TRANSFORMERS_", "NCCL_", "TOKENIZERS_", "VLLM_",
                      "OMP_WAIT_POLICY")
#: never forwarded unless ECHORL_FORWARD_SECRETS=1: verl prints the runtime env (`ray init kwargs: ...`)
SECRET = re.compile(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
#: set per process by Ray or the recipes' own bookkeeping: never forwarded
NOT_FORWARDED = ("ECHORL_DRY_RUN", "ECHORL_RESOLVED_CONFIG", "ECHORL_FORWARD_SECRETS")


def prepare_config(config: DictConfig) -> EchoConfig:
    """Parse and validate the echo group once and wire it into verl's config. Raises EchoConfigError."""
    import echorl_verl.plugin  # noqa: F401  (re-raises a registration failure that `import verl` swallowed)
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    if "echo" not in ADV_ESTIMATOR_REGISTRY:
        raise RuntimeError("echorl_verl: the 'echo' advantage estimator is not registered with verl")

    echo = EchoConfig.from_dict(config.get("echo"))
    adv = config.algorithm.adv_estimator
    if not echo.enable:
        if adv == ECHO_ESTIMATOR:
            raise EchoConfigError(
                "algorithm.adv_estimator=echo with echo.enable=false: for the baseline set algorithm.adv_estimator to "
                "the estimator itself (e.g. grpo)"
            )
        return echo
    if not config.trainer.get("use_v1", True):
        raise EchoConfigError("echo needs verl's v1 trainer: set trainer.use_v1=true (or echo.enable=false)")
    if config.trainer.v1.get("trainer_mode", "sync") != "sync":
        raise EchoConfigError(
            f"echo supports trainer.v1.trainer_mode=sync, got {config.trainer.v1.trainer_mode!r}"
        )
    if echo.base_estimator is not None and adv not in (ECHO_ESTIMATOR, echo.base_estimator):
        raise EchoConfigError(
            f"echo.base_estimator={echo.base_estimator} but algorithm.adv_estimator={adv}: set one of them "
            "(algorithm.adv_estimator=echo takes echo.base_estimator)"
        )
    echo = dataclasses.replace(echo, base_estimator=check_base_estimator(echo.base_estimator or adv))
    with open_dict(config):
        config.echo.base_estimator = echo.base_estimator
        # verl's own advantage step runs the base estimator by its name, so that every path verl has for it
        # (multi-turn GRPO included) is the baseline's; advantage mode folds the clips in after it.
        config.algorithm.adv_estimator = echo.base_estimator
    return echo


def forward_environment(config: DictConfig, environ=None) -> list[str]:
    """Copy the driver's VERL_*/WANDB_*/HF_*/NCCL_*... variables into `ray_kwargs.ray_init.runtime_env.env_vars`.

    A value the config already sets wins. Returns the names of secrets that were left out.
    """
    environ = os.environ if environ is None else environ
    forward_secrets = environ.get("ECHORL_FORWARD_SECRETS") == "1"
    with open_dict(config):
        env_vars = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars")
        if env_vars is None:
            if OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env") is None:
                config.ray_kwargs.ray_init.runtime_env = {}
            config.ray_kwargs.ray_init.runtime_env.env_vars = {}
            env_vars = config.ray_kwargs.ray_init.runtime_env.env_vars
        withheld = []
        for name in sorted(environ):
            if not name.startswith(FORWARDED_PREFIXES) or name in NOT_FORWARDED or name in env_vars:
                continue
            if SECRET.search(name) and not forward_secrets:
                withheld.append(name)
                continue
            env_vars[name] = environ[name]
    return withheld


def redacted_yaml(config: DictConfig) -> str:
    """The resolved config as YAML, with secret-looking environment values replaced by '***'."""
    data = OmegaConf.to_container(config, resolve=True)
    env_vars = (((data.get("ray_kwargs") or {}).get("ray_init") or {}).get("runtime_env") or {}).get("env_vars") or {}
    for name in env_vars:
        if SECRET.search(name):
            env_vars[name] = "***"
    return OmegaConf.to_yaml(OmegaConf.create(data))


@contextlib.contextmanager
def _echo_trainer_registered(mode: str):
    """Let verl's TaskRunnerV1 build EchoPPOTrainer for `mode` ("sync"), in this (TaskRunner) process only.

    verl's trainer registry refuses a second class for a name, and a new name would be treated as
    asynchronous wherever verl tests `trainer_mode != "sync"`; so the entry is swapped for the run and put
    back after it.
    """
    from verl.trainer.ppo.v1 import trainer_base

    from echorl_verl.trainer import EchoPPOTrainer

    registry = trainer_base.TRAINER_REGISTRY
    previous = registry.get(mode)
    registry[mode] = EchoPPOTrainer
    try:
        yield
    finally:
        registry[mode] = previous


@ray.remote
class EchoTaskRunner(TaskRunnerV1.__ray_actor_class__):
    """verl's TaskRunnerV1, unchanged, building EchoPPOTrainer as its sync trainer."""

    def run(self, config: DictConfig):
        with _echo_trainer_registered(config.trainer.v1.trainer_mode):
            return super().run(config)


def task_runner_class(config: DictConfig):
    """The TaskRunner of a run. In verl's sync mode, echo on or off, EchoTaskRunner: its EchoPPOTrainer with
    echo.enable=false is verl's PPOTrainerSync plus the reward metric `reward/infra_error_rows`, so that
    baselines log every reward fact the echo runs log. Other trainer modes (echo off only: prepare_config
    refuses them with echo) run verl's own TaskRunnerV1 and trainer, unchanged."""
    return EchoTaskRunner if config.trainer.v1.trainer_mode == "sync" else TaskRunnerV1


def run(config: DictConfig) -> None:
    """Everything `main` does after Hydra: checks first (before Ray starts), then verl's run_ppo."""
    echo = prepare_config(config)
    withheld = forward_environment(config)
    with contextlib.redirect_stdout(sys.stderr):  # verl's checks print; stdout carries the dry run's config
        notes = preflight(config, echo)
        auto_set_device(config)
        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    for line in notes + [f"not forwarded to Ray workers (a secret; set ECHORL_FORWARD_SECRETS=1): {n}" for n in withheld]:
        print(f"[echorl] preflight: {line}", file=sys.stderr)
    resolved = redacted_yaml(config)
    target = os.environ.get("ECHORL_RESOLVED_CONFIG")
    if target:
        from echorl_verl.atomic import write_text

        write_text(target, resolved)
    if os.environ.get("ECHORL_DRY_RUN") == "1":
        print(resolved, end="")
        print("[echorl] dry run: every start-up check passed; nothing was trained", file=sys.stderr)
        return
    started = shm.begin_run(config.trainer.get("default_local_dir"))
    try:
        run_ppo(config, task_runner_class=task_runner_class(config))
    finally:
        # Ray ends the run's processes without letting them unlink their shared memory: end them, then clean up
        if ray.is_initialized():
            ray.shutdown()
        shm.end_run(started)


@hydra.main(config_path="configs", config_name="echo_ppo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    try:
        run(config)
    except (EchoConfigError, PreflightError) as err:
        # a bad setting: one line that names the key and the fix, not a stack trace; exit code 2 (usage error)
        print(f"echorl_verl: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:  # noqa: BLE001  (the trace first, then the one line that says what failed)
        traceback.print_exc()
        print(f"echorl_verl: the run failed: {failure_line(err)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
