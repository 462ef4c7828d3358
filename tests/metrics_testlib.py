"""Metrics files written the way a real run writes them, for the report and study tests.

Validation metrics come from verl's own `PPOTrainer._val_metrics_update` (which calls
`process_validation_metrics`) on per-sample rewards the test chooses, and every line goes through verl's
`FileLogger`. A change of verl's metric naming or file format breaks the tests that use these.
"""

from __future__ import annotations

import os


def verl_val_metrics(rows: dict[str, list[list[float]]]) -> dict[str, float]:
    """Validation metrics exactly as verl's v1 trainer names them.

    rows: {data_source: [[acc of sample 1, ..., sample n] per prompt row]}; the reward returns
    {"score", "acc", "pred"} like echorl_verl.rewards.
    """
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    sources, uids, extra = [], [], {"reward": [], "score": [], "acc": [], "pred": []}
    expected = {}
    for source, prompts in rows.items():
        for i, samples in enumerate(prompts):
            uid = f"{source}-{i}"
            expected[(source, uid)] = len(samples)
            for acc in samples:
                sources.append(source)
                uids.append(uid)
                for key in ("reward", "score", "acc"):
                    extra[key].append(float(acc))
                extra["pred"].append("42" if acc else "7")
    # _val_metrics_update uses nothing of `self`: call verl's own code on the fake samples
    return PPOTrainer._val_metrics_update(None, sources, uids, extra, [1] * len(sources),
                                          expected_acc_counts=expected)


def log_lines(path, records: list[tuple[int, dict]]) -> str:
    """Write [(step, metrics)] through verl's FileLogger to `path` (folders created); returns the path."""
    from verl.utils.tracking import FileLogger

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    before = os.environ.get("VERL_FILE_LOGGER_PATH")
    os.environ["VERL_FILE_LOGGER_PATH"] = str(path)
    try:
        logger = FileLogger("echorl", "test")
    finally:
        if before is None:
            del os.environ["VERL_FILE_LOGGER_PATH"]
        else:
            os.environ["VERL_FILE_LOGGER_PATH"] = before
    for step, data in records:
        logger.log(data, step=step)
    logger.finish()
    return str(path)


def dump_rollouts(dump_dir, step: int, groups: list[list[float]], padding: int = 0) -> None:
    """verl's training rollout dump for one step, through verl's own writer: one line per rollout with
    `uid` = `{prompt uid}_{session}_0` (the TransferQueue key) and its `score`; groups: scores per prompt;
    padding: synthetic padding rows as verl's padding_utils adds them (uid `pad<hex>`, score 0)."""
    import uuid

    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    uids = [str(uuid.uuid4()) for _ in groups]  # verl's prompt uids
    keys = [f"{uids[g]}_{s}_0" for g, scores in enumerate(groups) for s in range(len(scores))]
    pad = f"pad{uuid.uuid4().hex}"
    keys += [f"{pad}_{i}_0" for i in range(padding)]
    scores = [float(x) for scores in groups for x in scores] + [0.0] * padding
    n = len(scores)
    PPOTrainer._write_generations(["q"] * n, ["a"] * n, ["42"] * n, scores, {"uid": keys}, str(dump_dir), step)
