# Sourced by the recipe scripts. Every setting is an environment variable with a default; extra Hydra
# overrides given to a script are appended last, so they win. The defaults are the EchoRL authors' setup
# (docs/reproduce.md): Qwen2.5-Math-7B, Openr1-Math-46k-8192, 128 prompts x 8 rollouts, mini-batch 64,
# lr 1e-6, max response 8192, vLLM rollout, validation every 5 steps, one node of 8 GPUs.
#
# Multi-node: start a Ray cluster first (`ray start --head` on node 0, `ray start --address=HEAD:6379`
# on the others), then run the script on the head node with NNODES=<nodes>; verl's ray.init joins the
# running cluster (RAY_ADDRESS=auto).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}"
DATA_DIR="${DATA_DIR:-$REPO/data/echorl}"             # OUTPUT_DIR of data_prep/all.sh (<set>.parquet)
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/openr1.parquet}"
# in-training validation: the six math sets + two OOD sets (MMLU-Pro is large: evaluate it with eval_qwen.sh)
VAL_SETS="${VAL_SETS:-aime aime25 amc math minerva olympiad_bench arc_c gpqa}"
if [ -z "${VAL_FILES:-}" ]; then
    VAL_FILES="["
    for set_name in $VAL_SETS; do VAL_FILES="$VAL_FILES$DATA_DIR/$set_name.parquet,"; done
    VAL_FILES="${VAL_FILES%,}]"
fi
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
TRAIN_BATCH="${TRAIN_BATCH:-128}"                      # prompts per step
MINI_BATCH="${MINI_BATCH:-64}"                         # prompts per PPO mini-batch
ROLLOUT_N="${ROLLOUT_N:-8}"                            # rollouts per prompt (G)
MAX_PROMPT="${MAX_PROMPT:-1024}"
MAX_RESPONSE="${MAX_RESPONSE:-8192}"
LR="${LR:-1e-6}"
ENTROPY_COEFF="${ENTROPY_COEFF:-0.001}"
ROLLOUT_TP="${ROLLOUT_TP:-1}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.7}"
MAX_TOKENS_PER_GPU="${MAX_TOKENS_PER_GPU:-$(( (MAX_PROMPT + MAX_RESPONSE) * 2 ))}"
TOTAL_STEPS="${TOTAL_STEPS:-500}"
TEST_FREQ="${TEST_FREQ:-5}"
SAVE_FREQ="${SAVE_FREQ:-5}"
PROJECT="${PROJECT:-echorl}"
LOGGER="${LOGGER:-[console,file]}"                     # add wandb/tensorboard as you like
ECHO_COEF="${ECHO_COEF:-0.001}"                        # lambda (authors' launch script)
ECHO_EXTRA="${ECHO_EXTRA:-}"                           # e.g. "echo.clip_mode=full_response"
RUN_ROOT="${RUN_ROOT:-$REPO/runs}"

# Shared by every algorithm, echo or baseline.
COMMON_OVERRIDES=(
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.train_batch_size="$TRAIN_BATCH"
    data.max_prompt_length="$MAX_PROMPT"
    data.max_response_length="$MAX_RESPONSE"
    data.filter_overlong_prompts=True
    actor_rollout_ref.model.path="$MODEL_PATH"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr="$LR"
    actor_rollout_ref.actor.optim.clip_grad=1.0
    actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH"
    actor_rollout_ref.actor.ppo_epochs=1
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.actor.entropy_coeff="$ENTROPY_COEFF"
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.val_kwargs.n=1
    algorithm.use_kl_in_reward=False
    reward.custom_reward_function.path=pkg://echorl_verl.rewards
    reward.custom_reward_function.name=compute_score
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.total_training_steps="$TOTAL_STEPS"
    trainer.test_freq="$TEST_FREQ"
    trainer.save_freq="$SAVE_FREQ"
    trainer.val_before_train=True
    trainer.logger="$LOGGER"
    trainer.project_name="$PROJECT"
)

# run_recipe NAME ECHO(0|1) ALGORITHM_OVERRIDES... -- EXTRA_OVERRIDES...
run_recipe() {
    local name="$1" echo_on="$2"; shift 2
    local algo=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do algo+=("$1"); shift; done
    [ "${1:-}" = "--" ] && shift
    local echo_overrides=(echo.enable=false)
    if [ "$echo_on" = 1 ]; then
        # shellcheck disable=SC2206
        echo_overrides=(echo.enable=true echo.coef="$ECHO_COEF" $ECHO_EXTRA)
    fi
    local run_dir="$RUN_ROOT/$name"
    mkdir -p "$run_dir"
    export VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$run_dir/metrics.jsonl}"
    echo "[echorl] $name: metrics -> $VERL_FILE_LOGGER_PATH"
    exec "$PYTHON" -m echorl_verl.main_ppo "${COMMON_OVERRIDES[@]}" "${algo[@]}" "${echo_overrides[@]}" \
        trainer.experiment_name="$name" trainer.default_local_dir="$run_dir/checkpoints" "$@"
}
