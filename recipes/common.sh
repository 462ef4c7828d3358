# Sourced by the recipe scripts (<algo>_{echo,baseline}_qwen.sh). Every setting is an environment variable
# with a default; extra Hydra overrides given to a script are appended last, so they win. The defaults are
# the EchoRL authors' setup (docs/recipes.md compares every setting with their launch script).
#
#   PROFILE=gpu (default)  a GPU node: Qwen2.5-Math-7B (16k-position copy), vLLM, 8 GPUs per node
#   PROFILE=cpu            the same script on this CPU: the toy model and data, the hf rollout, 1 "GPU"
#                          (recipes/profile_cpu.sh); every algorithm setting stays as it is
#   DRY_RUN=1              run the start-up checks, print the command and the resolved config, train nothing
#   SEED=<k>               seeds the data order, the rollout sampling, the actor's shuffling and echo's ablations
#   RUN_DIR=<dir>          everything of the run: metrics*.jsonl, resolved_config.yaml, checkpoints, rollouts
#
# A variable you set always wins over the profile's default. Many nodes: README.md ("Many nodes").
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${PROFILE:-gpu}"
PLATFORM_OVERRIDES=()
case "$PROFILE" in
    gpu) ;;
    cpu) source "$REPO/recipes/profile_cpu.sh" ;;
    *) echo "error: PROFILE=$PROFILE: use gpu (default) or cpu" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
# 16384 positions (rope_theta 40000), as LUFFY and the authors' fork: Qwen/Qwen2.5-Math-7B itself has 4096, which
# would cut 8192-token responses silently. Or write such a copy yourself:
#   python -m echorl_verl.tools.extend_context Qwen/Qwen2.5-Math-7B /models/qwen-16k --max_positions 16384 --rope_theta 40000
MODEL_PATH="${MODEL_PATH:-Elliott/Qwen2.5-Math-7B-16k-think}"
DATA_DIR="${DATA_DIR:-$REPO/data/echorl}"             # OUTPUT_DIR of data_prep/all.sh (<set>.parquet)
TRAIN_FILES="${TRAIN_FILES:-$DATA_DIR/openr1.parquet}"
# in-training validation: the math sets + two OOD sets (MMLU-Pro is large: evaluate it with eval_qwen.sh)
if [ -z "${VAL_FILES:-}" ]; then
    # the sets the catalog (echorl_verl/data/catalog.py) marks for in-training validation
    VAL_SETS="${VAL_SETS:-$("$PYTHON" -m echorl_verl.data.catalog sets --role val)}" || exit 2
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
ROLLOUT_NAME="${ROLLOUT_NAME:-vllm}"
ROLLOUT_TP="${ROLLOUT_TP:-1}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.8}"
MAX_TOKENS_PER_GPU="${MAX_TOKENS_PER_GPU:-32768}"      # dynamic batch size: tokens per GPU per micro-batch
VAL_TEMPERATURE="${VAL_TEMPERATURE:-0.6}"
VAL_N="${VAL_N:-1}"                                    # samples per validation prompt (pass@k needs k > 1)
TOTAL_STEPS="${TOTAL_STEPS:-500}"
TEST_FREQ="${TEST_FREQ:-5}"
SAVE_FREQ="${SAVE_FREQ:-5}"
MAX_CKPT_TO_KEEP="${MAX_CKPT_TO_KEEP:-2}"               # a 7B checkpoint with optimizer state is ~90 GB
PROJECT="${PROJECT:-echorl}"
LOGGER="${LOGGER:-[console,file]}"                     # add wandb/tensorboard as you like
BOUNDARY_IDS="${BOUNDARY_IDS-[198,271]}"               # Qwen2.5's "\n", "\n\n" (the authors'); empty: from the tokenizer
REWARD_FORMAT="${REWARD_FORMAT-think}"                 # the authors' reward: 0 without </think>; empty: plain
ECHO_COEF="${ECHO_COEF:-0.001}"                        # lambda (authors' launch script)
ECHO_EXTRA="${ECHO_EXTRA:-}"                           # e.g. "echo.clip_mode=full_response"
RUN_ROOT="${RUN_ROOT:-$REPO/runs}"
SEED="${SEED:-}"
ROLLOUT_DUMP="${ROLLOUT_DUMP:-0}"                      # 1: verl's rollout dump (+ echo's clip facts) in RUN_DIR/rollouts
ENTRY="${ENTRY:-echorl}"                               # verl: run verl's own main_ppo (baselines only)

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
    actor_rollout_ref.rollout.name="$ROLLOUT_NAME"
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
    actor_rollout_ref.rollout.val_kwargs.temperature="$VAL_TEMPERATURE"
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.val_kwargs.n="$VAL_N"
    algorithm.use_kl_in_reward=False
    reward.custom_reward_function.path=pkg://echorl_verl.rewards
    reward.custom_reward_function.name=compute_score
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.total_training_steps="$TOTAL_STEPS"
    trainer.test_freq="$TEST_FREQ"
    trainer.save_freq="$SAVE_FREQ"
    trainer.max_actor_ckpt_to_keep="$MAX_CKPT_TO_KEEP"
    trainer.val_before_train=True
    trainer.logger="$LOGGER"
    trainer.project_name="$PROJECT"
)
[ -n "$REWARD_FORMAT" ] && COMMON_OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.math_format="$REWARD_FORMAT")
if [ -n "$SEED" ]; then
    COMMON_OVERRIDES+=(data.seed="$SEED" actor_rollout_ref.rollout.seed="$SEED"
                       actor_rollout_ref.actor.data_loader_seed="$SEED")
fi

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
        [ -n "$BOUNDARY_IDS" ] && echo_overrides+=(echo.boundary_token_ids="$BOUNDARY_IDS")
        [ -n "$SEED" ] && echo_overrides+=(echo.seed="$SEED")
    fi
    RUN_DIR="${RUN_DIR:-$RUN_ROOT/$name}"
    mkdir -p "$RUN_DIR"
    RUN_DIR="$(cd "$RUN_DIR" && pwd)"
    # verl's file logger opens its file with "wb": each attempt (a resumed run too) gets its own file, and
    # `python -m echorl_verl.report ... $RUN_DIR` reads them all, the later attempt winning for a repeated step.
    if [ -z "${VERL_FILE_LOGGER_PATH:-}" ]; then
        VERL_FILE_LOGGER_PATH="$("$PYTHON" -m echorl_verl.report next-metrics-path "$RUN_DIR")" || exit 2
    fi
    export VERL_FILE_LOGGER_PATH
    export ECHORL_RESOLVED_CONFIG="$RUN_DIR/resolved_config.yaml"
    local run_overrides=(trainer.experiment_name="$name" trainer.default_local_dir="$RUN_DIR/checkpoints")
    [ "$ROLLOUT_DUMP" = 1 ] && run_overrides+=(trainer.rollout_data_dir="$RUN_DIR/rollouts")
    local overrides=("${COMMON_OVERRIDES[@]}" "${algo[@]}" "${run_overrides[@]}"
                     "${PLATFORM_OVERRIDES[@]+"${PLATFORM_OVERRIDES[@]}"}")
    # echorl's main_ppo checks the config before Ray starts (echorl_verl/preflight.py) and writes the resolved
    # config; ENTRY=verl then hands the same overrides, without the echo group, to verl's own main_ppo.
    local check=("$PYTHON" -m echorl_verl.main_ppo "${overrides[@]}" "${echo_overrides[@]}" "$@")
    local cmd=("${check[@]}")
    if [ "$ENTRY" = verl ]; then
        [ "$echo_on" = 1 ] && { echo "error: ENTRY=verl runs verl's own main_ppo, which has no EchoRL" >&2; exit 2; }
        cmd=("$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}" "$@")
    elif [ "$ENTRY" != echorl ]; then
        echo "error: ENTRY=$ENTRY: use echorl (default) or verl" >&2; exit 2
    fi
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "[echorl] $name (PROFILE=$PROFILE): the command would be"
        printf ' %q' "${cmd[@]}"; echo
        ECHORL_DRY_RUN=1 "${check[@]}"
        return
    fi
    if [ "$ENTRY" = verl ]; then
        ECHORL_DRY_RUN=1 "${check[@]}" > /dev/null || exit 2
    fi
    echo "[echorl] $name (PROFILE=$PROFILE): metrics -> $VERL_FILE_LOGGER_PATH"
    (cd "$RUN_DIR" && exec "${cmd[@]}")   # Hydra writes its outputs/ under the run folder
}
