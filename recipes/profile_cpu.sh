# PROFILE=cpu: any recipe, for real, on this CPU: verl's real trainer with the toy addition model (built and
# cached on first use, about 1.5 minutes). recipes/common.sh sources this file before its own defaults; every
# default here applies only where the variable is unset, so what you set wins. It swaps the model, data,
# sizes, platform and rollout engine; every algorithm and EchoRL setting of the recipe stays as it is.
#
#   TOY_DIR         toy build folder (default $ECHORL_CACHE/toy-default, ECHORL_CACHE=~/.cache/echorl_verl)
#   TOY_BUILD_ARGS  extra args for `python -m echorl_verl.toy.build` (e.g. "--quick" for the test model)
#   GPUS_PER_NODE   fake GPUs = FSDP ranks (default 1; 2 runs two actor processes on this machine)
#   RAY_ADDRESS     join a Ray cluster started first: its own CPU and GPU counts apply (none are set here)

# ---- model, data, sizes: the toy (unless a profile that sources this one chose its own model: CPU_MODEL) ----
: "${PYTHON:=$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
ECHORL_CACHE="${ECHORL_CACHE:-$HOME/.cache/echorl_verl}"
CPU_MODEL="${CPU_MODEL:-toy}"
if [ "$CPU_MODEL" = toy ]; then
    TOY_DIR="$(absolute "${TOY_DIR:-$ECHORL_CACHE/toy-default}")"   # a study file may write ~/...
    : "${MODEL_PATH:=$TOY_DIR/model}"
    : "${TRAIN_FILES:=$TOY_DIR/data/train.parquet}"
    : "${VAL_FILES:=$TOY_DIR/data/val.parquet}"
    : "${MAX_PROMPT:=32}"
    : "${MAX_RESPONSE:=96}"
    : "${BOUNDARY_IDS=}"          # the toy tokenizer's newline ids, derived by echo (not Qwen's 198/271)
fi
: "${NNODES:=1}"
: "${GPUS_PER_NODE:=1}"
: "${TRAIN_BATCH:=32}"
: "${MINI_BATCH:=16}"
: "${MAX_TOKENS_PER_GPU:=4096}"   # a toy mini-batch (16 x 8 rollouts) splits into 2-3 dynamic micro-batches
: "${LR:=1e-5}"                   # 1e-4 (Adam) took greedy val acc 0.45 -> 0.09 in 3 steps
: "${TOTAL_STEPS:=3}"
: "${TEST_FREQ:=$TOTAL_STEPS}"
: "${SAVE_FREQ:=-1}"
: "${PROJECT:=echorl_cpu}"
: "${REWARD_FORMAT=}"             # the CPU tasks' rewards have no <think> format
: "${ROLLOUT_DUMP:=1}"            # verl's rollout dump (with echo's clip facts) in RUN_DIR/rollouts

# ---- the rollout engine (its CPU-only keys: echorl_verl/cpu/overrides.py) ------------------------------------
: "${ROLLOUT_NAME:=vllm}"

# ---- the platform: verl on CPU, in this process and in every Ray worker -------------------------------------
export VERL_PLATFORM=cpu
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made 2-thread
# torch 4-50x slower than 1 thread (measured); with PASSIVE, 2 threads help again.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# the CPU overrides (echorl_verl/cpu/overrides.py) with Ray's sizes, unless a cluster started first has its own
if [ -n "${RAY_ADDRESS:-}" ]; then ray_sizes=(--join-cluster); else ray_sizes=("$((NNODES * GPUS_PER_NODE))"); fi
cpu_overrides="$("$PYTHON" -m echorl_verl.cpu.overrides "${ray_sizes[@]}")" || exit 2
mapfile -t PROFILE_OVERRIDES <<< "$cpu_overrides"
PROFILE_OVERRIDES+=(actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64)   # the old-log-prob pass

# the toy model + data (returns at once when TOY_DIR holds a complete build)
if [ "$CPU_MODEL" = toy ]; then
    # shellcheck disable=SC2086
    "$PYTHON" -m echorl_verl.toy.build --output_dir "$TOY_DIR" ${TOY_BUILD_ARGS:-} >&2 || exit 2
fi
