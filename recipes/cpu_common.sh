# Sourced by the CPU recipes (cpu_demo.sh, cpu_grpo_baseline.sh): verl's real trainer on a CPU with the toy
# addition task. Settings are environment variables; extra Hydra overrides given to a script win.
#
#   PYTHON          interpreter (default: .venv/bin/python of this repo, else python3)
#   TOY_DIR         toy build folder (default: $ECHORL_CACHE/toy-default, ECHORL_CACHE=~/.cache/echorl_verl)
#   TOY_BUILD_ARGS  extra args for `python -m echorl_verl.toy.build` (e.g. "--quick" for the test model)
#   STEPS           training steps (default 3)
#   TRAIN_BATCH     prompts per step (default 32; 8 rollouts each; two PPO mini-batches). The toy model has
#                   about 11% all-correct groups, so 32 prompts almost always include some for EchoRL.
#   RUN_DIR         working folder: Hydra outputs, rollouts, and the file logger's metrics.jsonl
#
# What makes verl run on a CPU (echorl_verl/cpu/__init__.py explains each piece):
#   VERL_PLATFORM=cpu   selects echorl_verl's CPU platform in every process (Ray workers inherit the
#                       driver's environment; the ray_init runtime_env override makes it explicit).
#   VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload
#                       enables the CPU backend at `import verl` even where the project's `verl.plugins`
#                       entry point is not installed (the plugin does the same; both are idempotent).
#   the "CPU" block of overrides below (kept equal to echorl_verl.cpu.overrides.CPU_OVERRIDES by a test).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
ECHORL_CACHE="${ECHORL_CACHE:-$HOME/.cache/echorl_verl}"
TOY_DIR="${TOY_DIR:-$ECHORL_CACHE/toy-default}"
STEPS="${STEPS:-3}"
TRAIN_BATCH="${TRAIN_BATCH:-32}"

export VERL_PLATFORM=cpu
export VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made 2-thread
# torch 4-50x slower than 1 thread (measured); with PASSIVE, 2 threads help again.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# run_cpu NAME MODULE [Hydra overrides...]: build the toy model if missing, preflight, train.
run_cpu() {
    local name="$1" module="$2"; shift 2
    RUN_DIR="${RUN_DIR:-$REPO/runs/$name}"
    mkdir -p "$RUN_DIR"
    export VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$RUN_DIR/metrics.jsonl}"

    # 1. the toy model + data (cached: returns at once when TOY_DIR holds a complete build)
    # shellcheck disable=SC2086
    "$PYTHON" -m echorl_verl.toy.build --output_dir "$TOY_DIR" ${TOY_BUILD_ARGS:-}

    local overrides=(
        # --- CPU (echorl_verl.cpu.overrides.CPU_OVERRIDES) ---
        actor_rollout_ref.actor.strategy=fsdp2
        actor_rollout_ref.actor.use_torch_compile=False
        actor_rollout_ref.actor.fsdp_config.use_torch_compile=False
        actor_rollout_ref.actor.fsdp_config.dtype=float32
        +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32
        +actor_rollout_ref.actor.fsdp_config.mixed_precision.reduce_dtype=fp32
        +actor_rollout_ref.actor.fsdp_config.mixed_precision.buffer_dtype=fp32
        actor_rollout_ref.model.use_remove_padding=False
        +actor_rollout_ref.model.override_config.attn_implementation=sdpa
        actor_rollout_ref.rollout.name=hf
        actor_rollout_ref.rollout.tensor_model_parallel_size=1
        trainer.device=cpu
        trainer.n_gpus_per_node=1
        trainer.nnodes=1
        +ray_kwargs.ray_init.num_cpus=16
        +ray_kwargs.ray_init.num_gpus=1
        +ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu
        +ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload
        transfer_queue.backend.SimpleStorage.num_data_storage_units=1
        actor_rollout_ref.rollout.agent.num_workers=1
        reward.num_workers=1
        data.dataloader_num_workers=0
        # --- task: toy addition, GRPO, TRAIN_BATCH prompts x 8 rollouts per step ---
        algorithm.adv_estimator=grpo
        data.train_files="$TOY_DIR/data/train.parquet"
        data.val_files="$TOY_DIR/data/val.parquet"
        data.train_batch_size="$TRAIN_BATCH"
        data.max_prompt_length=32
        data.max_response_length=96
        actor_rollout_ref.model.path="$TOY_DIR/model"
        actor_rollout_ref.actor.optim.lr=1e-5  # 1e-4 (Adam) took greedy val acc 0.45 -> 0.09 in 3 steps
        actor_rollout_ref.actor.ppo_mini_batch_size=$(( (TRAIN_BATCH + 1) / 2 ))
        actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=64
        actor_rollout_ref.actor.use_kl_loss=False
        actor_rollout_ref.actor.entropy_coeff=0
        actor_rollout_ref.rollout.n=8
        actor_rollout_ref.rollout.temperature=1.0
        actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64
        reward.custom_reward_function.path=pkg://echorl_verl.toy.reward
        reward.custom_reward_function.name=compute_score
        # validation (greedy) before training and after the last step
        trainer.total_training_steps="$STEPS"
        trainer.val_before_train=True
        trainer.test_freq="$STEPS"
        trainer.save_freq=-1
        trainer.rollout_data_dir="$RUN_DIR/rollouts"  # group shares: python -m echorl_verl.toy.rollout_stats
        trainer.logger='[console,file]'
        trainer.project_name=echorl_cpu
        trainer.experiment_name="$name"
    )

    # 2. preflight: a bad path / column / override is a one-line error here, not a trace from a Ray worker
    "$PYTHON" -m echorl_verl.cpu.check "${overrides[@]}" "$@"

    # 3. train
    (cd "$RUN_DIR" && "$PYTHON" -m "$module" "${overrides[@]}" "$@")
}
