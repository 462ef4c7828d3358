"""The Hydra overrides that make verl's main_ppo run on a CPU (with VERL_PLATFORM=cpu).

Task-independent: the recipes' CPU profile (recipes/profile_cpu.sh) reads them from here
(`python -m echorl_verl.cpu.overrides` prints one per line) and adds the toy model, data and sizes; the
GPU count is the profile's (`+ray_kwargs.ray_init.num_gpus` must match trainer.nnodes x n_gpus_per_node).
"""

import sys

CPU_OVERRIDES = [
    # FSDP2 (FSDP1 refuses CPU parameters), fp32 everywhere, no torch.compile.
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.actor.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.dtype=float32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
    # No flash-attention on CPU: sdpa. transformers keeps packed sequences apart by their position ids
    # (use_cache=False, as verl's engine calls it), so use_remove_padding=True stays exact here.
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    # The HF-transformers rollout of echorl_verl.cpu.
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    # Fake GPUs (a Ray scheduling label; torch never sees CUDA), enough Ray CPU slots for TransferQueue,
    # the agent loop and reward workers on a 2-core machine.
    "trainer.device=cpu",
    "+ray_kwargs.ray_init.num_cpus=16",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
]


def cpu_overrides(n_gpus: int = 1) -> list[str]:
    """CPU_OVERRIDES plus the Ray GPU label for `n_gpus` fake GPUs (trainer.nnodes x n_gpus_per_node)."""
    return CPU_OVERRIDES + [f"+ray_kwargs.ray_init.num_gpus={n_gpus}"]


if __name__ == "__main__":
    print("\n".join(cpu_overrides(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
