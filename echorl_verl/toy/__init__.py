"""A synthetic RLVR task small enough to train on a CPU: multi-digit addition worked digit by digit.

Modules: `task` (problems and worked solutions), `tokenizer` (word-level tokenizer with a chat
template), `model` (a tiny Qwen2), `warmup` (a short deterministic SFT), `evaluate` (group shares of a
policy), `reward` (verl `compute_score`), `data` (verl parquet files), `build`
(`python -m echorl_verl.toy.build`), `rollout_stats` (group shares from verl's rollout dumps).
"""

DATA_SOURCE = "echorl/addition"
