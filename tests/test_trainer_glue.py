"""The trainer glue without Ray.

- The reward reading: the success decision (the reward sum, or `echo.success_key` of the reward's extra info,
  e.g. DAPO's `acc`) and the infrastructure-failure count, on verl's per-row `extra_fields` as the agent loop
  stores them and on the padding rows verl's own `construct_minimal_padding_template` builds.
- The TaskRunner choice that makes baselines log `reward/infra_error_rows` too.
- The step (`EchoPPOTrainer._compute_advantage` around verl's own advantage step), the baseline's reward metric
  and the rollout dump, on a dict-backed stand-in for TransferQueue.
End to end, with Ray and verl's whole trainer: test_recipes_cpu.py."""

import pytest
import torch
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta

from echorl_verl.config import EchoConfig
from echorl_verl.trainer import infra_error_rows, not_padding_rows, reward_extra_info, success_mask, success_scores


class Wrapped:
    """verl's NonTensorData-like wrapper around a row's extra_fields dict (`.data`)."""

    def __init__(self, data):
        self.data = data


def rows(*infos):
    return [Wrapped({"reward_extra_info": info}) for info in infos]


def test_the_reward_extra_info_of_every_layout():
    assert reward_extra_info(Wrapped({"reward_extra_info": {"acc": 1.0}})) == {"acc": 1.0}
    assert reward_extra_info({"reward_extra_info": {"acc": 0.0}}) == {"acc": 0.0}
    assert reward_extra_info({"turns": 1}) == {} and reward_extra_info(None) == {} and reward_extra_info(Wrapped(None)) == {}


def test_score_is_the_reward_sum():
    rm_scores = torch.tensor([[0.0, 1.0], [0.0, -0.2]])
    assert success_scores(rm_scores, None, "score", [0, 1]).tolist() == pytest.approx([1.0, -0.2])
    assert success_scores(rm_scores, None, "score", [1]).tolist() == pytest.approx([-0.2])


def test_acc_comes_from_the_reward_extra_info_not_the_shaped_score():
    # DAPO's overlong shaping: score 0.8 on a correct answer, -0.1 on a wrong one; acc says what was verified
    rm_scores = torch.tensor([[0.8], [-0.1]])
    extra = rows({"acc": 1.0, "score": 0.8}, {"acc": 0.0, "score": -0.1})
    assert success_scores(rm_scores, extra, "acc", [0, 1]).tolist() == [1.0, 0.0]
    plain = [{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {"acc": 0.0}}]
    assert success_scores(rm_scores, plain, "acc", [0, 1]).tolist() == [1.0, 0.0]


def test_a_missing_field_names_the_batch_row_and_the_fields_there():
    with pytest.raises(KeyError, match=r"row 2 has no such reward field; the reward function returned \['score'\]"):
        success_scores(torch.zeros(3, 1), rows({"acc": 1.0}, {}, {"score": 1.0}), "acc", [0, 2])


def verl_padded_batch(infos, scores):
    """Real rows (reward info, reward sum) + one padding row built by verl's own padding code, placed first as
    verl's batch balancing may reorder rows: (rm_scores [B, 1], extra_fields, KVBatchMeta)."""
    from verl.trainer.ppo.padding_utils import construct_minimal_padding_template

    real = [{"responses": torch.tensor([5, 6]), "response_mask": torch.ones(2, dtype=torch.int64),
             "rm_scores": torch.tensor([0.0, s]), "extra_fields": {"reward_extra_info": dict(info)}}
            for info, s in zip(infos, scores)]
    tag = {"seq_len": 4, "prompt_len": 2, "response_len": 2}
    pad, pad_tag = construct_minimal_padding_template(real[0], tag, eos_token_id=2)
    assert pad["extra_fields"] == real[0]["extra_fields"] and pad_tag["is_padding"]  # verl copies row 0's reward info
    samples, tags = [pad] + real, [pad_tag] + [dict(tag) for _ in real]
    rm_scores = torch.stack([s["rm_scores"].sum(-1, keepdim=True) for s in samples])
    meta = KVBatchMeta(keys=[f"k{i}" for i in range(len(samples))], tags=tags, partition_id="train")
    return rm_scores, [s["extra_fields"] for s in samples], meta


def test_padding_rows_are_never_a_success_though_verl_copies_a_real_rows_reward_info():
    rm_scores, extra, meta = verl_padded_batch([{"acc": 1.0}, {"acc": 0.0}], [1.0, 0.0])
    not_padding = not_padding_rows(meta)
    assert not_padding.tolist() == [False, True, True]
    assert success_mask(rm_scores, extra, not_padding, EchoConfig(success_key="acc")).tolist() == [False, True, False]
    # a threshold every score reaches: the padding row's zero reward must not make it a success
    assert success_mask(rm_scores, None, not_padding, EchoConfig(success_threshold=0.0)).tolist() == [False, True, True]


def test_infrastructure_failures_are_counted_on_real_rows_only():
    assert infra_error_rows(rows({"infra_error": 1.0}, {"infra_error": 0.0}, {}, {"infra_error": 1.0}),
                            torch.ones(4, dtype=torch.bool)) == 2.0
    _, extra, meta = verl_padded_batch([{"infra_error": 1.0}, {"infra_error": 0.0}], [0.0, 1.0])
    assert infra_error_rows(extra, not_padding_rows(meta)) == 1.0  # not 2: the padding row copies row 0's flag


@pytest.mark.parametrize("enable", [False, True])
def test_every_sync_run_builds_the_echo_trainer_so_baselines_log_the_reward_metric(enable):
    from verl.trainer.main_ppo import TaskRunnerV1

    from echorl_verl.main_ppo import EchoTaskRunner, task_runner_class

    sync = OmegaConf.create({"echo": {"enable": enable}, "trainer": {"v1": {"trainer_mode": "sync"}}})
    assert task_runner_class(sync) is EchoTaskRunner
    other = OmegaConf.create({"echo": {"enable": False}, "trainer": {"v1": {"trainer_mode": "separate_async"}}})
    assert task_runner_class(other) is TaskRunnerV1  # verl's own asynchronous trainers stay verl's


# ------------------------------------------------------------------ the step on verl's own advantage step
class FakeTransferQueue:
    """A dict-backed stand-in for TransferQueue's kv_batch_get / kv_batch_put (the real one needs Ray): per-token
    fields come back as jagged nested tensors, others as verl's NonTensorStack, absent fields are left out."""

    def __init__(self, rows: dict[str, dict], tags: dict[str, dict]):
        self.rows, self.tags = rows, tags

    def kv_batch_get(self, keys, partition_id, select_fields):
        from verl.utils import tensordict_utils as tu

        out = {}
        for field in select_fields:
            if all(field in self.rows[k] for k in keys):
                values = [self.rows[k][field] for k in keys]
                out[field] = (torch.nested.as_nested_tensor(values, layout=torch.jagged)
                              if isinstance(values[0], torch.Tensor) else values)
        return tu.get_tensordict(out)

    def kv_batch_put(self, keys, partition_id, fields):
        for name in fields.keys():
            for key, value in zip(keys, fields[name].unbind()):
                self.rows[key][name] = value.clone()
        return KVBatchMeta(keys=list(keys), tags=[self.tags[k] for k in keys], partition_id=partition_id)


def echo_batch():
    """2 prompts x 4 rollouts (token 9 ends a step; acc 1 on the rows of prompt a and on row b1; the sandbox failed
    on row a0) + one padding row from verl's own padding code, which copies row a0's fields: (rows, tags)."""
    from verl.trainer.ppo.padding_utils import construct_minimal_padding_template

    gen = torch.Generator().manual_seed(0)
    rows, tags = {}, {}
    for p, accs in (("a", [1, 1, 1, 1]), ("b", [0, 1, 0, 0])):
        for i, acc in enumerate(accs):
            n = 6 + 2 * i
            responses = torch.randint(10, 50, (n,), generator=gen)
            responses[2::3] = 9
            rm_scores = torch.zeros(n)
            rm_scores[-1] = 0.8 * acc
            rows[f"{p}_{i}_0"] = {
                "responses": responses, "response_mask": torch.ones(n, dtype=torch.int64),
                "entropy": torch.rand(n, generator=gen), "rm_scores": rm_scores, "uid": p, "prompts": torch.tensor([3, 4, 5, 6]),
                "extra_fields": {"reward_extra_info": {"acc": float(acc), "infra_error": float(p == "a" and i == 0)}}}
            tags[f"{p}_{i}_0"] = {"seq_len": n + 4, "prompt_len": 4, "response_len": n}
    pad, pad_tag = construct_minimal_padding_template(rows["a_0_0"], tags["a_0_0"], eos_token_id=2)
    pad["uid"] = "pad0"
    rows["pad0_0_0"], tags["pad0_0_0"] = pad, pad_tag
    return rows, tags


class Tokenizer:
    def batch_decode(self, ids, skip_special_tokens=False):
        return [" ".join(map(str, x)) for x in ids]


def make_trainer(monkeypatch, echo: dict, dump: bool = False):
    """An EchoPPOTrainer without Ray (only the state the step reads) on echo_batch in a FakeTransferQueue:
    (trainer, its store's rows, the batch)."""
    import copy

    import transfer_queue

    from echorl_verl.trainer import EchoPPOTrainer

    rows, tags = echo_batch()
    store = FakeTransferQueue(copy.deepcopy(rows), tags)
    monkeypatch.setattr(transfer_queue, "kv_batch_get", store.kv_batch_get)  # verl's trainer and ours call tq.kv_batch_*
    monkeypatch.setattr(transfer_queue, "kv_batch_put", store.kv_batch_put)
    trainer = object.__new__(EchoPPOTrainer)
    trainer.echo, trainer.echo_boundary_ids, trainer._echo_facts = EchoConfig.from_dict(echo), torch.tensor([9]), {}
    trainer.global_steps, trainer.tokenizer, trainer._dump_token_ids = 1, Tokenizer(), dump
    trainer.config = OmegaConf.create({
        "trainer": {"rollout_data_dir": "rollouts" if dump else None},
        "actor_rollout_ref": {"rollout": {"n": 4}},
        "algorithm": {"adv_estimator": "grpo", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True,
                      "use_kl_in_reward": False, "rollout_correction": None}})
    return trainer, store.rows, KVBatchMeta(keys=list(rows), tags=[tags[k] for k in rows], partition_id="train")


def run_step(monkeypatch, echo: dict):
    """EchoPPOTrainer._compute_advantage (verl's own advantage step inside) on echo_batch: (store rows, metrics)."""
    trainer, rows, batch = make_trainer(monkeypatch, echo)
    metrics = {}
    trainer._compute_advantage(batch, metrics)
    return rows, metrics


def test_advantage_mode_adds_the_fold_to_verls_own_advantages_on_clip_tokens_only(monkeypatch):
    base, _ = run_step(monkeypatch, {"enable": False})
    echo = {"enable": True, "mode": "advantage", "success_key": "acc", "scope": "all_successes", "min_step_tokens": 1}
    folded, metrics = run_step(monkeypatch, echo)
    fold = metrics["echo/fold_value"]
    assert fold > 0 and metrics["echo/clip_rollouts"] == 5  # a0..a3 and b1; never the padding copy of a0
    changed = {}
    for key in base:
        diff = folded[key]["advantages"] - base[key]["advantages"]
        assert torch.all((diff == 0) | torch.isclose(diff, torch.tensor(fold))), key
        changed[key] = int((diff != 0).sum())
    assert {k for k, n in changed.items() if n} == {"a_0_0", "a_1_0", "a_2_0", "a_3_0", "b_1_0"}
    clip_tokens = sum(changed.values())
    response_tokens = sum(int(row["response_mask"].sum()) for row in base.values())
    assert fold == pytest.approx(EchoConfig().coef * response_tokens / clip_tokens)


def test_loss_mode_writes_the_clip_mask_and_leaves_verls_advantages(monkeypatch):
    base, _ = run_step(monkeypatch, {"enable": False})
    rows, metrics = run_step(monkeypatch, {"enable": True, "success_key": "acc", "min_step_tokens": 1})
    assert metrics["echo/clip_rollouts"] == 4  # all-success groups only: prompt a
    for key in base:
        assert torch.equal(rows[key]["advantages"], base[key]["advantages"]), key
        mask = rows[key]["echo_clip_mask"]
        assert mask.shape == rows[key]["responses"].shape and bool(mask.any()) == key.startswith("a_"), key


def test_a_baseline_counts_infrastructure_failures_after_verls_metrics(monkeypatch):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    trainer, _, batch = make_trainer(monkeypatch, {"enable": False})
    monkeypatch.setattr(PPOTrainer, "_compute_metrics", lambda self, batch, metrics, *a: metrics.update(verl=1.0))
    metrics = {}
    trainer._compute_metrics(batch, metrics, {}, 1, 0)
    assert metrics == {"verl": 1.0, "reward/infra_error_rows": 1.0}  # row a0 only, not its padding copy


def test_the_rollout_dump_carries_token_ids_clip_mask_and_trained_advantages(monkeypatch):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    dumps = []
    monkeypatch.setattr(PPOTrainer, "_dump_generations",
                        lambda self, inputs, outputs, gts, scores, extra, dump_path: dumps.append(extra))
    monkeypatch.setattr(PPOTrainer, "_log_rollout_data", lambda self, batch, timing_raw, rollout_data_dir: self._dump_generations(
        inputs=[], outputs=[], gts=[], scores=[], reward_extra_infos_dict={"uid": list(batch.keys)}, dump_path=rollout_data_dir))
    echo = {"enable": True, "mode": "advantage", "success_key": "acc", "scope": "all_successes", "min_step_tokens": 1}
    trainer, rows, batch = make_trainer(monkeypatch, echo, dump=True)
    trainer._compute_advantage(batch, {})
    trainer._dump_generations([], [], [], [], {"uid": ["val_0_0"], "reward": [1.0]}, "validation")  # verl validates first
    trainer._log_rollout_data(batch, {}, "rollouts")
    assert "echo" not in dumps[0] and list(dumps[1]["uid"]) == batch.keys and trainer._echo_facts == {}
    for key, fact in zip(batch.keys, dumps[1]["echo"]):
        valid = rows[key]["response_mask"].bool()
        assert fact["prompt_ids"] == rows[key]["prompts"].tolist()
        assert fact["response_ids"] == rows[key]["responses"][valid].tolist()
        assert fact["advantages"] == rows[key]["advantages"][valid].tolist()  # after the fold: what the actor trains on
        assert len(fact["clip_mask"]) == int(valid.sum()) and (sum(fact["clip_mask"]) > 0) == fact["selected"], key
