"""`python -m echorl_verl.main_ppo`: verl's main_ppo with EchoRL.

Takes every verl override (it loads verl's own `ppo_trainer` config) plus the `echo` group:

    python -m echorl_verl.main_ppo <your verl overrides> echo.coef=0.001 echo.clip_mode=peak_prefix

With `echo.enable=false` it runs verl's PPOTrainerSync with verl's loss and estimator, unchanged.
"""

from __future__ import annotations

import os

import hydra
import ray
from omegaconf import DictConfig, OmegaConf, open_dict

from verl.trainer.main_ppo import run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device
from verl.utils.import_utils import load_class_from_fqn
from verl.utils.logging_utils import configure_verl_logging

from echorl_verl.config import EchoConfig, EchoConfigError


def prepare_config(config: DictConfig) -> EchoConfig:
    """Validate the echo group and wire it into verl's config. Raises EchoConfigError on bad settings."""
    import echorl_verl.plugin  # noqa: F401  (re-raises a registration failure that `import verl` swallowed)
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    if "echo" not in ADV_ESTIMATOR_REGISTRY:
        raise RuntimeError("echorl_verl: the 'echo' advantage estimator is not registered with verl")

    echo = EchoConfig.from_dict(config.get("echo"))
    if not echo.enable:
        return echo
    if not config.trainer.get("use_v1", True):
        raise EchoConfigError("echo needs verl's v1 trainer: set trainer.use_v1=true (or echo.enable=false)")
    if config.trainer.v1.get("trainer_mode", "sync") != "sync":
        raise EchoConfigError(
            f"echo supports trainer.v1.trainer_mode=sync, got {config.trainer.v1.trainer_mode!r}"
        )
    adv = config.algorithm.adv_estimator
    if echo.base_estimator is None:
        if adv == "echo":
            raise EchoConfigError("algorithm.adv_estimator=echo needs echo.base_estimator (e.g. grpo)")
        echo.base_estimator = adv
    with open_dict(config):
        config.echo.base_estimator = echo.base_estimator
        # The estimator only sees the algorithm config: mirror the settings there.
        config.algorithm.echo = OmegaConf.create(OmegaConf.to_container(config.echo, resolve=True))
        if echo.mode == "advantage":
            config.algorithm.adv_estimator = "echo"
    return echo


@ray.remote
class EchoTaskRunner:
    """verl's TaskRunnerV1, building EchoPPOTrainer instead of looking the trainer up by mode name."""

    def run(self, config: DictConfig):
        configure_verl_logging()
        import transfer_queue as tq

        from echorl_verl.trainer import EchoPPOTrainer
        from verl.trainer.ppo.v1 import AgentLoopManagerTQ

        config.transfer_queue.enable = True
        OmegaConf.resolve(config)
        tq.init(config.transfer_queue)
        trainer, succeeded = None, False
        try:
            trainer = EchoPPOTrainer(config=config)
            trainer.init()
            fqn = config.actor_rollout_ref.rollout.get("agent", {}).get("agent_loop_manager_class")
            manager_cls = load_class_from_fqn(fqn, "AgentLoopManager") if fqn else AgentLoopManagerTQ
            manager = manager_cls.create(
                config=config,
                llm_client=trainer.get_llm_client(),
                teacher_client=trainer.get_teacher_client(),
                reward_loop_worker_handles=trainer.get_reward_handles(),
            )
            trainer.fit(manager)
            succeeded = True
        finally:
            try:
                tracking = getattr(trainer, "logger", None)
                if tracking is not None:
                    tracking.finish(exit_code=0 if succeeded else 1)
            finally:
                tq.close()


def run(config: DictConfig) -> None:
    """Everything `main` does after Hydra: checks first (before Ray starts), then verl's run_ppo."""
    echo = prepare_config(config)
    if os.environ.get("VERL_PLATFORM", "").lower() == "cpu":
        from echorl_verl.cpu import preflight

        preflight(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    if echo.enable:
        run_ppo(config, task_runner_class=EchoTaskRunner)
    else:
        # Baselines: verl's own TaskRunner and trainer, untouched.
        from verl.trainer.main_ppo import TaskRunnerV1

        run_ppo(config, task_runner_class=TaskRunnerV1)


@hydra.main(config_path="configs", config_name="echo_ppo_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from echorl_verl.cpu import PreflightError

    try:
        run(config)
    except (EchoConfigError, PreflightError) as err:
        # a bad setting: one line that names the key and the fix, not a stack trace
        raise SystemExit(f"echorl_verl: {err}") from None


if __name__ == "__main__":
    main()
