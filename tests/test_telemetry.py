"""The gradient telemetry (`echo.grad_telemetry_every`): norms, ratio and cosine of the echo and RL gradients,
as the actor worker computes them (workers.gradient_telemetry: separate backward passes, micro-batched), against
autograd on the whole batch.
The end-to-end run that logs them is in tests/test_recipes_cpu.py."""

from functools import partial

import pytest
import torch

from echo_testlib import tiny_qwen2
from test_loss import VOCAB, accumulate_grads, actor_config, make_batch, model_log_probs
from verl.utils import tensordict_utils as tu
from verl.workers.utils.losses import ppo_loss

from echorl_verl.loss import echo_only_loss
from echorl_verl.workers import assign_global_clip_tokens, gradient_telemetry, telemetry_metrics

COEF = 0.05


def worker_telemetry(model, config, data, coef=COEF):
    """The worker's gradient_telemetry with the two backward passes micro-batched (2 micro-batches)."""
    return gradient_telemetry(
        model.parameters(),
        lambda: accumulate_grads(model, partial(echo_only_loss, config=config, coef=coef), data, micro_batch_size=4),
        lambda: accumulate_grads(model, partial(ppo_loss, config=config), data, micro_batch_size=4),
        lambda: model.zero_grad(set_to_none=True))


def autograd_reference(model, config, data, coef=COEF):
    """The two gradients as vectors from torch.autograd.grad, the whole batch as one micro-batch."""
    data = data.clone()
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(data["loss_mask"].values().sum()),
                         micro_batch_size_per_gpu=len(data))
    assign_global_clip_tokens(data)
    params = [p for p in model.parameters()]
    vectors = []
    for fn in (partial(echo_only_loss, config=config, coef=coef), partial(ppo_loss, config=config)):
        from verl.workers.engine.utils import prepare_micro_batches

        (micro,), _ = prepare_micro_batches(data.clone())
        loss, _ = fn(model_output={"log_probs": model_log_probs(model, micro)}, data=micro)
        vectors.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return vectors


@pytest.mark.parametrize("coef", [COEF, 1e-7])
def test_telemetry_equals_autograd_on_a_hand_built_batch(coef):
    """At coef 1e-7 the echo gradient is ~1e-7 of the RL gradient (as at the paper's coefficient on a model sure of
    its successes): the cosine is still exact, which |g|^2 - |g_echo|^2 - |g_rl|^2 could not give."""
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, *_ = make_batch()
    measured = worker_telemetry(model, config, data, coef)
    assert all(p.grad is None for p in model.parameters())  # left cleared for the real update
    g_echo, g_rl = autograd_reference(model, config, data, coef)
    assert measured["echo_grad_norm"] == pytest.approx(float(g_echo.norm()), rel=1e-6)
    assert measured["rl_grad_norm"] == pytest.approx(float(g_rl.norm()), rel=1e-6)
    assert measured["echo_grad_ratio"] == pytest.approx(float(g_echo.norm() / g_rl.norm()), rel=1e-6)
    cos = float(g_echo.double() @ g_rl.double() / (g_echo.double().norm() * g_rl.double().norm()))
    assert measured["echo_grad_cos"] == pytest.approx(cos, abs=1e-6)
    assert abs(cos) > 1e-3  # the case is not degenerate: the cosine is measured, not 0 by construction
    if coef < 1e-6:
        assert measured["echo_grad_ratio"] < 1e-5


def test_no_rl_gradient_or_no_echo_gradient():
    assert telemetry_metrics(0.0, 4.0, 0.0) == {"echo_grad_norm": 0.0, "rl_grad_norm": 2.0, "echo_grad_ratio": 0.0}
    assert telemetry_metrics(1.0, 0.0, 0.0) == {"echo_grad_norm": 1.0, "rl_grad_norm": 0.0}
    assert telemetry_metrics(4.0, 9.0, -6.0)["echo_grad_cos"] == -1.0


def test_echo_only_loss_refuses_a_batch_without_clips():
    model, config = tiny_qwen2(VOCAB), actor_config()
    data, *_ = make_batch(clip_rows=())
    with pytest.raises(RuntimeError, match="no clip token"):
        accumulate_grads(model, partial(echo_only_loss, config=config, coef=COEF), data, micro_batch_size=4)
