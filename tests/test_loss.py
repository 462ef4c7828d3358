"""echo_ppo_loss through verl's real ppo_loss, nested tensors, micro-batching and a real transformers model."""

# ppo_loss keeps float32 masks, so float64 models agree to float32 round-off (~1e-7 relative), not 1e-15.
import functools
from functools import partial

import pytest
import torch

from echo_testlib import compose_config, tiny_qwen2
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.engine.utils import prepare_micro_batches
from verl.workers.utils.losses import ppo_loss

from echorl_verl.loss import CLIP_MASK_KEY, CLIP_TOKENS_KEY, clip_nll_sum, echo_ppo_loss
from echorl_verl.workers import assign_global_clip_tokens

VOCAB = 64
COEF = 0.25  # large, so that a wrong echo gradient cannot hide under the PPO term


@functools.lru_cache(maxsize=None)
def actor_config(loss_mode="vanilla", loss_agg_mode="token-mean"):
    cfg = compose_config(
        [
            f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}",
            f"actor_rollout_ref.actor.loss_agg_mode={loss_agg_mode}",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.actor.use_dynamic_bsz=false",
        ]
    )
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def make_batch(seed=0, batch=8, clip_rows=(0, 1, 3, 6)):
    """A mini-batch laid out like the trainer's TransferQueue fields: nested, one row per rollout."""
    g = torch.Generator().manual_seed(seed)
    prompts, responses, old, adv, clip = [], [], [], [], []
    for row in range(batch):
        p_len = int(torch.randint(2, 6, (1,), generator=g))
        r_len = int(torch.randint(1, 10, (1,), generator=g))
        prompts.append(torch.randint(0, VOCAB, (p_len,), generator=g))
        responses.append(torch.randint(0, VOCAB, (r_len,), generator=g))
        old.append(-torch.rand(r_len, generator=g, dtype=torch.float64) * 4 - 1.0)
        adv.append(torch.randn(r_len, generator=g, dtype=torch.float64))
        mask = torch.zeros(r_len)
        if row in clip_rows:
            mask[: int(torch.randint(1, r_len + 1, (1,), generator=g))] = 1
        clip.append(mask)
    nested = partial(tu.nested_tensor_from_tensor_list)
    data = tu.get_tensordict(
        tensor_dict={
            "prompts": nested(prompts),
            "responses": nested(responses),
            "input_ids": nested([torch.cat([p, r]) for p, r in zip(prompts, responses)]),
            "response_mask": nested([torch.ones(len(r)) for r in responses]),
            "loss_mask": nested([torch.ones(len(r)) for r in responses]),
            "old_log_probs": nested(old),
            "advantages": nested(adv),
            CLIP_MASK_KEY: nested(clip),
        },
        non_tensor_dict={"use_dynamic_bsz": False, "global_batch_size": batch},
    )
    return data, prompts, responses, clip


def model_log_probs(model, micro):
    """verl's no-padding convention: a nested [b, L] tensor, position t holds log p(token t+1 | <= t)."""
    rows = []
    ids = micro["input_ids"]
    for seq in ids.unbind():
        logits = model(input_ids=seq[None]).logits[0]
        lp = torch.log_softmax(logits, -1)[:-1].gather(-1, seq[1:, None])[:, 0]
        rows.append(torch.cat([lp, lp.new_zeros(1)]))
    return tu.nested_tensor_from_tensor_list(rows)


def accumulate_grads(model, loss_fn, data, micro_batch_size, dp_size=1, batch_num_tokens=None, clip_tokens=None):
    """Run verl's micro-batch split and accumulate gradients like the engine's forward_backward_batch."""
    data = data.clone() if hasattr(data, "clone") else data
    tu.assign_non_tensor(
        data,
        dp_size=dp_size,
        batch_num_tokens=int(data["loss_mask"].values().sum()) if batch_num_tokens is None else batch_num_tokens,
        micro_batch_size_per_gpu=micro_batch_size,
    )
    if clip_tokens is None:
        assign_global_clip_tokens(data)
    else:
        tu.assign_non_tensor(data, **{CLIP_TOKENS_KEY: clip_tokens})
    micro_batches, _ = prepare_micro_batches(data)
    total, metrics = 0.0, []
    for micro in micro_batches:
        loss, m = loss_fn(model_output={"log_probs": model_log_probs(model, micro)}, data=micro)
        loss.backward()
        total += float(loss.detach())
        metrics.append(m)
    return total, metrics


def grads(model):
    out = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("loss_mode", ["vanilla", "gspo"])
def test_empty_mask_is_exactly_verls_ppo_loss(loss_mode):
    model, config = tiny_qwen2(VOCAB), actor_config(loss_mode)
    data, *_ = make_batch(clip_rows=())
    base, _ = accumulate_grads(model, partial(ppo_loss, config=config), data, micro_batch_size=8)
    g_base = grads(model)
    echo, metrics = accumulate_grads(model, partial(echo_ppo_loss, config=config, coef=COEF), data, micro_batch_size=8)
    g_echo = grads(model)
    assert echo == base
    assert torch.equal(g_echo, g_base)
    assert float(metrics[0]["actor/echo_loss"].aggregate()) == 0.0


def test_gradient_is_base_plus_coef_times_clip_nll():
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, prompts, responses, clip = make_batch()
    accumulate_grads(model, partial(ppo_loss, config=config), data, micro_batch_size=8)
    g_base = grads(model)
    accumulate_grads(model, partial(echo_ppo_loss, config=config, coef=COEF), data, micro_batch_size=8)
    g_echo = grads(model)

    # independent reference: plain HF forward, token-mean NLL over all clip tokens of the batch
    nll, count = 0.0, 0
    for p, r, m in zip(prompts, responses, clip):
        seq = torch.cat([p, r])
        logp = torch.log_softmax(model(input_ids=seq[None]).logits[0], -1)
        resp_logp = logp[len(p) - 1 : len(seq) - 1].gather(-1, r[:, None])[:, 0]
        nll = nll - (resp_logp * m.to(resp_logp.dtype)).sum()
        count += int(m.sum())
    (nll / count).backward()
    g_nll = grads(model)
    assert count > 0 and g_nll.abs().sum() > 0
    torch.testing.assert_close(g_echo, g_base + COEF * g_nll, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss_mode", ["vanilla", "gspo"])
def test_micro_batch_split_does_not_change_the_gradient(loss_mode):
    model, config = tiny_qwen2(VOCAB), actor_config(loss_mode, "token-mean" if loss_mode == "vanilla" else "seq-mean-token-mean")
    data, *_ = make_batch(seed=1)
    results = {}
    for micro in (8, 4, 2):  # 1, 2 and 4 micro-batches
        loss, _ = accumulate_grads(model, partial(echo_ppo_loss, config=config, coef=COEF), data, micro_batch_size=micro)
        results[micro] = (loss, grads(model))
    for micro in (4, 2):
        assert results[micro][0] == pytest.approx(results[8][0], rel=1e-7)
        torch.testing.assert_close(results[micro][1], results[8][1], rtol=1e-6, atol=1e-7)


def test_data_parallel_layout_does_not_change_the_gradient():
    """Two DP ranks, each with half the mini-batch; FSDP averages their gradients."""
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, *_ = make_batch(seed=2)
    loss_fn = partial(echo_ppo_loss, config=config, coef=COEF)
    accumulate_grads(model, loss_fn, data, micro_batch_size=2)
    g_single = grads(model)

    halves = tu.chunk_tensordict(data, 2)
    total_tokens = int(data["loss_mask"].values().sum())
    total_clip = int(data[CLIP_MASK_KEY].values().sum())
    rank_grads = []
    for half in halves:
        tu.assign_non_tensor(half, global_batch_size=len(data))
        accumulate_grads(model, loss_fn, half, micro_batch_size=2, dp_size=2, batch_num_tokens=total_tokens, clip_tokens=total_clip)
        rank_grads.append(grads(model))
    torch.testing.assert_close((rank_grads[0] + rank_grads[1]) / 2, g_single, rtol=1e-6, atol=1e-7)


def test_echo_loss_metric_is_the_token_mean_clip_nll():
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, prompts, responses, clip = make_batch(seed=3)
    _, metrics = accumulate_grads(model, partial(echo_ppo_loss, config=config, coef=COEF), data, micro_batch_size=4)
    reported = sum(m["actor/echo_loss"].aggregate() for m in metrics)
    with torch.no_grad():
        nll, count = 0.0, 0
        for p, r, m in zip(prompts, responses, clip):
            seq = torch.cat([p, r])
            logp = torch.log_softmax(model(input_ids=seq[None]).logits[0], -1)
            nll -= float((logp[len(p) - 1 : len(seq) - 1].gather(-1, r[:, None])[:, 0] * m).sum())
            count += int(m.sum())
    assert reported == pytest.approx(nll / count, rel=1e-6)


def test_mask_without_global_count_is_a_clear_error():
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, *_ = make_batch()
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(data["loss_mask"].values().sum()))
    with pytest.raises(RuntimeError, match="echo_clip_tokens"):
        echo_ppo_loss(config, {"log_probs": model_log_probs(model, data)}, data, coef=COEF)


def test_clip_nll_ignores_minus_inf_outside_the_clip():
    log_prob = torch.tensor([[-1.0, -float("inf"), -2.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    value = clip_nll_sum(log_prob, mask)
    value.backward()
    assert value.item() == 3.0
    assert torch.isfinite(log_prob.grad).all()


def test_flat_response_log_probs_match_verls_padding_helper():
    """Our one-gather slicing picks the same log-probs as verl's no_padding_2_padding."""
    from verl.workers.utils.padding import no_padding_2_padding

    from echorl_verl.loss import response_log_probs_flat

    data, prompts, responses, _ = make_batch(seed=4)
    g = torch.Generator().manual_seed(0)
    seq_log_probs = tu.nested_tensor_from_tensor_list(
        [torch.randn(len(p) + len(r), generator=g, dtype=torch.float64) for p, r in zip(prompts, responses)]
    )
    padded = no_padding_2_padding(seq_log_probs, data)
    lengths = [len(r) for r in responses]
    expected = torch.cat([padded[i, :n] for i, n in enumerate(lengths)])
    assert torch.equal(response_log_probs_flat(seq_log_probs, data), expected)
