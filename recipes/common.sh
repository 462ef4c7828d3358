# What every recipe shares. A recipe script sources this file first, then writes its own algorithm and EchoRL
# settings as plain Hydra overrides (ALGORITHM=(...) and ECHO=(...)) and ends with `launch NAME "$@"`.
# This file holds the rest: the profile, the model / data / size defaults and the overrides made of them, and
# `launch` (the run folder and its metrics file, DRY_RUN, ENTRY).
#
# Every setting is an environment variable whose default applies only where it is unset, so what you set
# wins; then the profile's defaults (sourced first, below); then the recipe's and these (they never name
# the same variable). A recipe's extra arguments are Hydra overrides, appended last: they win over all.
#
#   PROFILE=gpu (default)  a GPU node: the defaults below (Qwen2.5-Math-7B with 16k positions, vLLM, 8 GPUs a node)
#   PROFILE=<name>         recipes/profile_<name>.sh first; cpu: this machine (toy model, VERL_PLATFORM=cpu);
#                          smollm2: this machine with a real pretrained model (SmolLM2-135M-Instruct)
#   DRY_RUN=1              run the start-up checks, print the command and the resolved config, train nothing
#   ENTRY=verl             a baseline through verl's own `python -m verl.trainer.main_ppo` (echorl's checks first)
#   ECHO_ENABLE=false      an echo recipe as its baseline (what the *_baseline_* scripts set): echo.enable=false
#   SEED=<k>               seeds the data order, the rollout sampling, the actor's shuffling and echo's ablations
#   NAME=<name>            the run's label (default: the script's name)
#   RUN_DIR=<dir>          everything of the run (default $RUN_ROOT/$NAME): metrics*.jsonl, resolved_config.yaml,
#                          checkpoints, rollouts. The dry run and the run both start in it.
#
# Relative paths (PYTHON, MODEL_PATH, DATA_DIR, TRAIN_FILES, VAL_FILES, RUN_ROOT, RUN_DIR, TOY_DIR) are read
# against your directory and made absolute before anything runs. Many nodes: docs/recipes.md.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$PWD"

# absolute PATH: PATH read against the caller's directory (~ is $HOME); absolute paths and URLs stay as they are
absolute() {
    case "$1" in
        /* | *://*) printf '%s\n' "$1" ;;
        "~" | "~/"*) printf '%s\n' "$HOME${1#\~}" ;;
        *) printf '%s\n' "$CALLER_DIR/${1#./}" ;;
    esac
}

# file_list VALUE: the paths of a data setting (a path, or a Hydra list such as "[a.parquet, 'b.parquet']"), one a line
file_list() {
    local value="${1#\[}" item items
    IFS=, read -r -a items <<< "${value%\]}"
    for item in "${items[@]}"; do
        item="${item//[\'\"]/}"
        item="${item#"${item%%[![:space:]]*}"}"
        item="${item%"${item##*[![:space:]]}"}"
        if [ -n "$item" ]; then printf '%s\n' "$item"; fi
    done
}

# hydra_list PATH...: "[PATH,PATH,...]"
hydra_list() { (IFS=,; printf '[%s]\n' "$*"); }

# parquet_files SET...: the Hydra list of DATA_DIR/<set>.parquet
parquet_files() {
    local files=() set_name
    for set_name in "$@"; do files+=("$DATA_DIR/$set_name.parquet"); done
    hydra_list "${files[@]+"${files[@]}"}"
}

# absolute_files VALUE: a data setting with each path absolute (a list stays a list)
absolute_files() {
    local paths=() path
    while IFS= read -r path; do paths+=("$(absolute "$path")"); done < <(file_list "$1")
    case "$1" in
        \[*) hydra_list "${paths[@]+"${paths[@]}"}" ;;
        *) printf '%s\n' "${paths[0]}" ;;
    esac
}

# ---- the profile: its defaults come first, so they win over the ones below -------------------------------
PROFILE="${PROFILE:-gpu}"
PROFILE_OVERRIDES=()   # a profile's own Hydra overrides (after the recipe's algorithm settings, before yours)
if [ "$PROFILE" != gpu ]; then
    if [[ "$PROFILE" == *[!a-z0-9_]* || ! -f "$REPO/recipes/profile_$PROFILE.sh" ]]; then
        known=(gpu)
        for f in "$REPO"/recipes/profile_*.sh; do f="${f##*/profile_}"; known+=("${f%.sh}"); done
        echo "error: PROFILE=$PROFILE: no recipes/profile_$PROFILE.sh; use one of: ${known[*]}" >&2
        exit 2
    fi
    # shellcheck source=/dev/null
    source "$REPO/recipes/profile_$PROFILE.sh"
fi

# ---- model, data, sizes (the EchoRL authors' setup; docs/recipes.md compares every one with theirs) ------
PYTHON="${PYTHON:-python3}"
# 16384 positions (rope_theta 40000), as LUFFY and the authors' fork: Qwen/Qwen2.5-Math-7B itself has 4096, which
# would cut 8192-token responses silently. Or write such a copy yourself:
#   python -m echorl_verl.tools.extend_context Qwen/Qwen2.5-Math-7B /models/qwen-16k \
#       --max_positions 16384 --rope_theta 40000
MODEL_PATH="${MODEL_PATH:-Elliott/Qwen2.5-Math-7B-16k-think}"
# the model's step-end token ids for EchoRL (echo.boundary_token_ids): Qwen2.5's "\n" and "\n\n", the authors';
# empty: every token of the tokenizer whose text holds a newline (a profile with another model sets it)
BOUNDARY_IDS="${BOUNDARY_IDS-[198,271]}"
DATA_DIR="${DATA_DIR:-$REPO/data/echorl}"             # OUTPUT_DIR of data_prep/all.sh (<set>.parquet)
# TRAIN_FILES (default DATA_DIR/openr1.parquet) and VAL_FILES (default: the VAL_SETS in DATA_DIR, the catalog's
# in-training validation sets) are filled in by `launch`, after the recipe: eval_qwen.sh names its own.
NNODES="${NNODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
TRAIN_BATCH="${TRAIN_BATCH:-128}"                      # prompts per step
MINI_BATCH="${MINI_BATCH:-64}"                         # prompts per PPO mini-batch
ROLLOUT_N="${ROLLOUT_N:-8}"                            # rollouts per prompt (G)
MAX_PROMPT="${MAX_PROMPT:-1024}"
MAX_RESPONSE="${MAX_RESPONSE:-8192}"
LR="${LR:-1e-6}"
ROLLOUT_NAME="${ROLLOUT_NAME:-vllm}"
ROLLOUT_TP="${ROLLOUT_TP:-1}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.8}"
MAX_TOKENS_PER_GPU="${MAX_TOKENS_PER_GPU:-32768}"      # dynamic batch size: tokens per GPU per micro-batch
TEMPERATURE="${TEMPERATURE:-1.0}"                      # rollout sampling temperature (training)
VAL_TEMPERATURE="${VAL_TEMPERATURE:-0.6}"
VAL_N="${VAL_N:-1}"                                    # samples per validation prompt (pass@k needs k > 1)
TOTAL_STEPS="${TOTAL_STEPS:-500}"
TEST_FREQ="${TEST_FREQ:-5}"
SAVE_FREQ="${SAVE_FREQ:-5}"
MAX_CKPT_TO_KEEP="${MAX_CKPT_TO_KEEP:-2}"               # a 7B checkpoint with optimizer state is ~90 GB
PROJECT="${PROJECT:-echorl}"
LOGGER="${LOGGER:-[console,file]}"                     # add wandb/tensorboard as you like
REWARD_FORMAT="${REWARD_FORMAT-think}"                 # the authors' reward: 0 without </think>; empty: plain
RUN_ROOT="${RUN_ROOT:-$REPO/runs}"
SEED="${SEED:-}"
ROLLOUT_DUMP="${ROLLOUT_DUMP:-0}"                      # 1: verl's rollout dump (+ echo's clip facts), RUN_DIR/rollouts
ENTRY="${ENTRY:-echorl}"                               # verl: verl's own main_ppo (baselines only)
ECHO_ENABLE="${ECHO_ENABLE:-true}"                     # false: the echo recipe runs as its baseline
case "$ECHO_ENABLE" in true | false) ;; *)
    echo "error: ECHO_ENABLE=$ECHO_ENABLE: use true (default) or false (the baseline)" >&2; exit 2 ;;
esac

# relative paths are the caller's: the run starts in RUN_DIR
if [[ "$PYTHON" == */* ]]; then PYTHON="$(absolute "$PYTHON")"; fi
if [ -e "$(absolute "$MODEL_PATH")" ]; then MODEL_PATH="$(absolute "$MODEL_PATH")"; fi   # else a hub id
DATA_DIR="$(absolute "$DATA_DIR")"
RUN_ROOT="$(absolute "$RUN_ROOT")"

# The same in every recipe, echo or baseline, and in every profile.
SHARED=(
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
    # Every algorithm here (and the authors' script): no KL, neither in the reward nor as a loss, and verl's
    # vanilla PPO policy loss clipped at 0.2/0.2. verl's defaults, which verl's own recipes leave implicit:
    # written out so that a changed default cannot change a run. GSPO and DAPO set their own loss mode and
    # clip ratios in their ALGORITHM block, which comes later on the command line and so wins.
    algorithm.use_kl_in_reward=False
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.actor.policy_loss.loss_mode=vanilla
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.2
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    actor_rollout_ref.rollout.name="$ROLLOUT_NAME"
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.temperature="$TEMPERATURE"
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
    actor_rollout_ref.rollout.val_kwargs.temperature="$VAL_TEMPERATURE"
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.val_kwargs.n="$VAL_N"
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
if [ -n "$REWARD_FORMAT" ]; then SHARED+=(+reward.custom_reward_function.reward_kwargs.math_format="$REWARD_FORMAT"); fi
if [ -n "$SEED" ]; then
    SHARED+=(data.seed="$SEED" actor_rollout_ref.rollout.seed="$SEED" actor_rollout_ref.actor.data_loader_seed="$SEED")
fi

# launch NAME [Hydra overrides...]: run (or, with DRY_RUN=1, check) the shared overrides, the recipe's ALGORITHM,
# the run's files, the profile's, the recipe's ECHO and yours, in that order (a later one wins), from RUN_DIR.
launch() {
    local name="$1"; shift
    TRAIN_FILES="$(absolute_files "${TRAIN_FILES:-$DATA_DIR/openr1.parquet}")"
    if [ -z "${VAL_FILES:-}" ]; then
        VAL_SETS="${VAL_SETS:-$(cd "$REPO" && "$PYTHON" -m echorl_verl.data.catalog sets --role val)}" || exit 2
        VAL_FILES="$(parquet_files $VAL_SETS)"
    fi
    VAL_FILES="$(absolute_files "$VAL_FILES")"
    RUN_DIR="$(absolute "${RUN_DIR:-$RUN_ROOT/$name}")"
    mkdir -p "$RUN_DIR"
    RUN_DIR="$(cd "$RUN_DIR" && pwd)"
    # verl's file logger opens its file with "wb": each attempt (a resumed run too) gets its own file, and
    # `python -m echorl_verl.report ... $RUN_DIR` reads them all, the later attempt winning for a repeated step.
    if [ -z "${VERL_FILE_LOGGER_PATH:-}" ]; then
        VERL_FILE_LOGGER_PATH="$(cd "$REPO" && "$PYTHON" -m echorl_verl.report next-metrics-path "$RUN_DIR")" || exit 2
    fi
    export VERL_FILE_LOGGER_PATH ECHORL_RESOLVED_CONFIG="$RUN_DIR/resolved_config.yaml"
    local files=(data.train_files="$TRAIN_FILES" data.val_files="$VAL_FILES"
                 trainer.experiment_name="$name" trainer.default_local_dir="$RUN_DIR/checkpoints")
    if [ "$ROLLOUT_DUMP" = 1 ]; then files+=(trainer.rollout_data_dir="$RUN_DIR/rollouts"); fi
    local overrides=("${SHARED[@]}" "${ALGORITHM[@]}" "${files[@]}" "${PROFILE_OVERRIDES[@]+"${PROFILE_OVERRIDES[@]}"}")
    # echorl's main_ppo checks the config before Ray starts (echorl_verl/preflight.py) and writes the resolved
    # config; ENTRY=verl then hands the same overrides, without the echo group, to verl's own main_ppo.
    local check=("$PYTHON" -m echorl_verl.main_ppo "${overrides[@]}" "${ECHO[@]}" "$@")
    local cmd=("${check[@]}")
    case "$ENTRY" in
        echorl) ;;
        verl)
            if [[ " ${ECHO[*]} " == *" echo.enable=true "* ]]; then
                echo "error: ENTRY=verl runs verl's own main_ppo, which has no EchoRL: use a *_baseline_* recipe" \
                     "(or ECHO_ENABLE=false)" >&2
                exit 2
            fi
            cmd=("$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}" "$@") ;;
        *) echo "error: ENTRY=$ENTRY: use echorl (default) or verl" >&2; exit 2 ;;
    esac
    cd "$RUN_DIR"   # the check and the run start here (Hydra writes its outputs/ here too)
    if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "[echorl] $name (PROFILE=$PROFILE), in $RUN_DIR: the command would be"
        printf ' %q' "${cmd[@]}"; echo
        ECHORL_DRY_RUN=1 exec "${check[@]}"
    fi
    if [ "$ENTRY" = verl ]; then ECHORL_DRY_RUN=1 "${check[@]}" > /dev/null || exit 2; fi
    echo "[echorl] $name (PROFILE=$PROFILE): metrics -> $VERL_FILE_LOGGER_PATH"
    if [ "$ENTRY" = verl ]; then
        # verl's own driver leaves its run's shared memory behind (vLLM's ring buffers): remove it as ours does
        local started rc=0
        started="$("$PYTHON" -c 'import time; print(time.time())')"
        "${cmd[@]}" || rc=$?
        "$PYTHON" -c 'import sys; from echorl_verl import shm; shm.end_run(float(sys.argv[1]))' "$started"
        exit "$rc"
    fi
    exec "${cmd[@]}"
}
