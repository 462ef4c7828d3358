"""Shared test helpers: verl's real Hydra config (ours, which extends verl's ppo_trainer) and a tiny HF model."""

import os

import torch

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "echorl_verl", "configs")


def compose_config(overrides=()):
    """Compose echo_ppo_trainer.yaml (verl's ppo_trainer + echo) exactly as `python -m echorl_verl.main_ppo` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="echo_ppo_trainer", overrides=list(overrides))


def tiny_qwen2(vocab_size=64, seed=0):
    """A real transformers Qwen2 causal LM, small enough for gradient tests (about 30k parameters)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    model = Qwen2ForCausalLM(config).to(torch.float64)
    model.eval()  # no dropout: gradients must be comparable bit for bit across splits
    return model


def toy_cache_dir(name):
    """Where toy builds are cached between test sessions ($ECHORL_CACHE, default ~/.cache/echorl_verl)."""
    return os.path.join(os.path.expanduser(os.environ.get("ECHORL_CACHE", "~/.cache/echorl_verl")), name)


def shared_benchmarks_dir():
    """The project's real benchmark rows (verl format): $ECHORL_BENCHMARKS, else ../shared/data/benchmarks
    beside the checkout (where CI puts it), else /work/shared/data/benchmarks."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.environ.get("ECHORL_BENCHMARKS"), os.path.join(repo, "..", "shared", "data", "benchmarks"),
                      "/work/shared/data/benchmarks"):
        if candidate and os.path.exists(os.path.join(candidate, "math_eval_suite.parquet")):
            return os.path.abspath(candidate)
    return os.path.join(repo, "..", "shared", "data", "benchmarks")  # absent: the tests that need it skip
