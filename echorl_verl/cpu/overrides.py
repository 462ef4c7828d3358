"""The Hydra overrides that make `verl.trainer.main_ppo` run on a CPU (with VERL_PLATFORM=cpu).

Task-independent: add data/model/batch overrides on top (recipes/cpu_grpo_baseline.sh spells all of
them out; tests/test_cpu_backend.py checks the recipe contains every line below).
"""

CPU_OVERRIDES = [
    # FSDP2 (FSDP1 refuses CPU parameters), fp32 everywhere, no torch.compile.
    "actor_rollout_ref.actor.strategy=fsdp2",
    "actor_rollout_ref.actor.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
    "actor_rollout_ref.actor.fsdp_config.dtype=float32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32",
    "+actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32",
    # No flash-attention on CPU: sdpa, and no remove-padding (varlen flash kernels).
    "actor_rollout_ref.model.use_remove_padding=False",
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    # The HF-transformers rollout of echorl_verl.cpu.
    "actor_rollout_ref.rollout.name=hf",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    # One fake GPU (a Ray scheduling label; torch never sees CUDA), enough Ray CPU slots for
    # TransferQueue, the agent loop and reward workers on a 2-core machine.
    "trainer.device=cpu",
    "trainer.n_gpus_per_node=1",
    "trainer.nnodes=1",
    "+ray_kwargs.ray_init.num_cpus=16",
    "+ray_kwargs.ray_init.num_gpus=1",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
]
