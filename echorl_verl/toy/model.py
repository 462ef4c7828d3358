"""A tiny Qwen2 causal LM for the addition task (a real HF architecture, so verl's FSDP2 engine,
`HFModelConfig` and the HF rollout load it like any checkpoint).

Sizes (parameters with the 130-token vocabulary, tied embeddings):
    "tiny":  hidden 64,  2 layers, ffn 128  (tests: fast, not accurate)
    "small": hidden 96,  4 layers, ffn 256  (default recipe)
    "base":  hidden 160, 6 layers, ffn 432  (slower per step; learned slower per second here)

Every size has attention heads of 32 dimensions and one key/value head: vLLM's CPU attention serves head
sizes 32, 64, 80, 96, ... only (vllm/v1/attention/backends/cpu_attn.py:59-60), and the recipes generate
with verl's vLLM rollout on a CPU too.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

HEAD_DIM = 32
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128),
    "small": dict(hidden_size=96, num_hidden_layers=4, intermediate_size=256),
    "base": dict(hidden_size=160, num_hidden_layers=6, intermediate_size=432),
}


def build_model(tokenizer, size: str = "small", seed: int = 0) -> Qwen2ForCausalLM:
    """A freshly initialised model whose special-token ids match `tokenizer`.

    sdpa attention: flash-attention does not exist on CPU (verl's default is flash_attention_2,
    which the CPU recipe overrides to sdpa too).
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        num_attention_heads=SIZES[size]["hidden_size"] // HEAD_DIM,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="sdpa",
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True
    )
    return model


def num_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
