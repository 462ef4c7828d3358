"""Actor step time with the echo term / without it, measured in one run.

    python -m benchmarks.bench_actor_step [--hidden 384 --layers 6 --batch 8 --response 512]

One actor step = forward of a real transformers Qwen2 model (>= 10M parameters) over a mini-batch laid
out as verl lays it (nested tensors), verl's `ppo_loss` or our `echo_ppo_loss`, backward. The two
variants alternate (ABAB...) and the medians are compared, so machine noise hits both alike. It also
counts forward passes: the echo variant must make exactly as many as verl's.
Goal (issue 2): ratio <= 1.01.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.engine.utils import prepare_micro_batches
from verl.workers.utils.losses import ppo_loss

from echorl_verl.loss import CLIP_MASK_KEY, echo_ppo_loss
from echorl_verl.workers import assign_global_clip_tokens


def build_model(vocab, hidden, layers):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1), num_key_value_heads=max(hidden // 128, 1),
        max_position_embeddings=4096, attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config)


def build_batch(batch, prompt_len, response_len, vocab, clip_share=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (prompt_len,), generator=g) for _ in range(batch)]
    lengths = torch.randint(response_len // 2, response_len + 1, (batch,), generator=g).tolist()
    responses = [torch.randint(0, vocab, (n,), generator=g) for n in lengths]
    clip = []
    for i, n in enumerate(lengths):
        m = torch.zeros(n)
        if i < int(batch * clip_share + 0.5):
            m[: n // 2] = 1
        clip.append(m)
    nested = tu.nested_tensor_from_tensor_list
    data = tu.get_tensordict(
        tensor_dict={
            "prompts": nested(prompts),
            "responses": nested(responses),
            "input_ids": nested([torch.cat([p, r]) for p, r in zip(prompts, responses)]),
            "response_mask": nested([torch.ones(n) for n in lengths]),
            "loss_mask": nested([torch.ones(n) for n in lengths]),
            "old_log_probs": nested([-torch.rand(n) for n in lengths]),
            "advantages": nested([torch.randn(n, generator=g) for n in lengths]),
            CLIP_MASK_KEY: nested(clip),
        },
        non_tensor_dict={"use_dynamic_bsz": False, "global_batch_size": batch, "dp_size": 1},
    )
    tu.assign_non_tensor(data, batch_num_tokens=int(sum(lengths)))
    return data


class ForwardCounter:
    def __init__(self, model):
        self.count = 0
        model.register_forward_hook(self)

    def __call__(self, *args):
        self.count += 1


def model_log_probs(model, micro):
    """Padded batched forward, then verl's nested no-padding layout (log p(token t+1) at position t)."""
    seqs = list(micro["input_ids"].unbind())
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    attention = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        attention[i, : len(s)] = 1
    logits = model(input_ids=ids, attention_mask=attention).logits
    lp = torch.log_softmax(logits.float(), -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    lp = torch.cat([lp, lp.new_zeros(len(seqs), 1)], dim=1)
    return tu.nested_tensor_from_tensor_list([lp[i, : len(s)] for i, s in enumerate(seqs)])


def actor_step(model, loss_fn, data, micro_batch_size):
    tu.assign_non_tensor(data, micro_batch_size_per_gpu=micro_batch_size)
    assign_global_clip_tokens(data)
    micro_batches, _ = prepare_micro_batches(data)
    for micro in micro_batches:
        loss, _ = loss_fn(model_output={"log_probs": model_log_probs(model, micro)}, data=micro)
        loss.backward()
    model.zero_grad(set_to_none=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--response", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="echorl_verl.configs", version_base=None):
        cfg = compose(config_name="echo_ppo_trainer", overrides=["actor_rollout_ref.actor.use_dynamic_bsz=false",
                                                                   "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4"])
    config = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    model = build_model(args.vocab, args.hidden, args.layers)
    params = sum(p.numel() for p in model.parameters())
    data = build_batch(args.batch, args.prompt, args.response, args.vocab)
    variants = {"verl ppo_loss": partial(ppo_loss, config=config), "echo_ppo_loss": partial(echo_ppo_loss, config=config, coef=0.001)}
    counter = ForwardCounter(model)
    times = {name: [] for name in variants}
    forwards = {name: 0 for name in variants}
    for name, fn in variants.items():  # warm-up
        actor_step(model, fn, data, args.micro)
    for _ in range(args.repeats):
        for name, fn in variants.items():
            before = counter.count
            start = time.perf_counter()
            actor_step(model, fn, data, args.micro)
            times[name].append(time.perf_counter() - start)
            forwards[name] = counter.count - before
    base, echo = statistics.median(times["verl ppo_loss"]), statistics.median(times["echo_ppo_loss"])
    print(f"model: Qwen2 {params / 1e6:.1f}M parameters; batch {args.batch} x (prompt {args.prompt} + response <= {args.response}), "
          f"micro-batch {args.micro}, {args.threads} threads, {args.repeats} alternating repeats")
    print(f"{'variant':<16}{'median s':>10}{'min s':>10}{'forwards/step':>15}")
    for name in variants:
        print(f"{name:<16}{statistics.median(times[name]):>10.3f}{min(times[name]):>10.3f}{forwards[name]:>15}")
    print(f"ratio echo/verl (median): {echo / base:.4f}   (goal <= 1.01)")
    print(f"extra forward passes per step: {forwards['echo_ppo_loss'] - forwards['verl ppo_loss']}   (goal 0)")


if __name__ == "__main__":
    main()
