"""The hf rollout's log-probs: transformers' compute_transition_scores, and what they mean for verl.

verl stores the rollout's log-probs as ``rollout_log_probs`` (agent_loop.py) and uses them for rollout
correction (importance weights against the old policy), for bypass mode (as the old log-probs) and in its
rollout-vs-actor diff metrics. vLLM, verl's default engine, returns them with
``logprobs_mode=processed_logprobs``: the log-prob of the sampled token under the distribution it was
sampled from (after temperature, top-k, top-p). The hf rollout keeps that meaning.
"""

import asyncio

import pytest
import torch
from omegaconf import OmegaConf

from echorl_verl.toy.task import sample_problems
from echorl_verl.toy.tokenizer import encode_prompt


@pytest.fixture(scope="module")
def server(toy):
    from echorl_verl.cpu.hf_rollout import HFRolloutServer

    config = OmegaConf.create({"response_length": 24, "prompt_length": 32, "seed": 0})
    return HFRolloutServer(config, OmegaConf.create({"path": toy["model"]}), num_threads=1)


@pytest.fixture(scope="module")
def prompts(toy):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(toy["model"])
    return [encode_prompt(tok, p.prompt) for p in sample_problems(4, 3, 2, 7)]


def _left_padded(prompts, pad_id):
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


def test_compute_transition_scores_equals_log_softmax_of_the_processed_scores(server, prompts):
    """On one real generate() with temperature, top-k and top-p: transformers' helper = the hand computation."""
    from transformers import GenerationConfig

    model = server.model
    assert model.lm_head.out_features == model.config.get_text_config().vocab_size  # what the helper reshapes by
    ids, mask = _left_padded(prompts, server.pad_id)
    torch.manual_seed(0)
    gen = GenerationConfig(do_sample=True, temperature=0.7, top_k=8, top_p=0.9, max_new_tokens=20,
                           eos_token_id=sorted(server.eos_ids), pad_token_id=server.pad_id,
                           return_dict_in_generate=True, output_scores=True)  # fmt: skip
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
    new = out.sequences[:, ids.shape[1]:]
    by_hand = torch.log_softmax(torch.stack(out.scores, dim=1).float(), -1).gather(-1, new[..., None])[..., 0]
    helper = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    assert helper.shape == by_hand.shape == new.shape
    assert torch.allclose(helper, by_hand, rtol=0, atol=1e-6)  # float32 rounding of a differently laid out softmax
    assert torch.isfinite(helper).all()  # every sampled token lies inside the top-k / top-p set


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.7, -1, 1.0), (1.0, 5, 1.0), (0.8, -1, 0.6)])
def test_rollout_log_probs_are_processed_log_probs(server, prompts, temperature, top_k, top_p):
    """Each returned log-prob = log_softmax of a plain forward pass's logits after temperature, top-k and top-p
    (applied with transformers' own warpers), at the sampled token; with a filter on, that is above the raw
    log_softmax(logits / T) (the kept tokens' mass is renormalised)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    params = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "logprobs": True}

    async def go():
        return await asyncio.gather(*[server.generate(p, dict(params), f"r{i}") for i, p in enumerate(prompts)])

    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)]
                                  + ([TopKLogitsWarper(top_k)] if top_k > 0 else [])
                                  + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))  # fmt: skip
    filtered = 0
    for prompt, out in zip(prompts, asyncio.run(go())):
        seq = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logits = server.model(seq).logits[0, len(prompt) - 1 : -1].float()  # [T, V]
        processed = torch.stack([warpers(seq[:, : len(prompt) + t], logits[t : t + 1])[0] for t in range(len(logits))])
        token = torch.tensor(out.token_ids)[:, None]
        ref = torch.log_softmax(processed, -1).gather(-1, token)[:, 0]
        raw = torch.log_softmax(logits / temperature, -1).gather(-1, token)[:, 0]
        got = torch.tensor(out.log_probs)
        assert torch.allclose(got, ref, atol=1e-4), (got[:5], ref[:5])
        assert (got >= raw - 1e-4).all()
        filtered += int((got > raw + 1e-3).sum())
    if top_k > 0 or top_p < 1.0:
        assert filtered > 0  # the filters did change the distribution, so the comparison above had teeth


def test_server_reads_verl_config_dataclasses_and_dictconfigs_alike(toy, prompts):
    """verl hands the server a RolloutConfig dataclass (RolloutReplica) and the model's DictConfig; HFModelConfig
    and plain DictConfigs (the tests) go through the same `.get` reads."""
    from verl.workers.config import HFModelConfig, RolloutConfig

    from echorl_verl.cpu.hf_rollout import HFRolloutServer

    rollout = RolloutConfig(name="hf", prompt_length=32, response_length=6, tensor_model_parallel_size=1, seed=3)
    model_configs = [HFModelConfig(path=toy["model"], override_config={"attn_implementation": "eager"}),
                     OmegaConf.create({"path": toy["model"], "override_config": {"attn_implementation": "eager"}})]  # fmt: skip
    for model_config in model_configs:
        server = HFRolloutServer(rollout, model_config, num_threads=1)
        assert server.model.config._attn_implementation == "eager"
        out = asyncio.run(server.generate(prompts[0], {"temperature": 1.0, "logprobs": True}, "r"))
        assert 1 <= len(out.token_ids) <= 6 and len(out.log_probs) == len(out.token_ids)
