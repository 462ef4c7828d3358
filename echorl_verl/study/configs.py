"""Do the arms differ only where they say? The runs' resolved configs, flattened and compared.

Each run's `resolved_config.yaml` is flattened to dotted keys (pandas.json_normalize). Expected to differ,
and left out: keys whose last part names a seed (`data.seed`, `actor_rollout_ref.rollout.seed`, ...), and
the run's own folder and name inside string values (replaced by <RUN_DIR> and <NAME>, from the run's
study_run.json). Then the seeds of one arm must agree everywhere, and each arm may differ from the
baseline arm only at keys that its own or the baseline's Hydra overrides set (a key or anything under it;
an `<group>.enable` switch covers its whole group, since switching a feature off changes what the rest of
its group resolves to, e.g. `echo.enable=false` -> `echo.base_estimator: null`). An arm that runs another
recipe than the baseline's (`grpo_echo_qwen.sh` against `grpo_baseline_qwen.sh`) may differ at the
`<group>.enable` switches the two recipes set, and so in those whole groups; nothing else. The metrics file of
a retried attempt (`metrics.1.jsonl`, ...) is the run's metrics file.
Anything else (an environment variable that changed the config, another recipe, a different verl) is a
problem that the study report prints at its top.
"""

from __future__ import annotations

import re

import pandas as pd

from echorl_verl.study.results import RunResult
from echorl_verl.study.spec import Study, override_key

MISSING = "<absent>"
ATTEMPT_METRICS = re.compile(r"metrics\.\d+\.jsonl")  # each attempt of a run logs to its own file (recipes/common.sh)


def flatten(config: dict) -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not config:
        return {}
    return pd.json_normalize(config, sep=".").iloc[0].to_dict()


def normalised(result: RunResult) -> dict:
    """The run's flattened config without seed keys, its run folder and name written as placeholders."""
    run_dir, name = result.status.get("run_dir"), result.status.get("env", {}).get("NAME")

    def clean(value):
        if isinstance(value, str):
            if run_dir:
                value = value.replace(run_dir, "<RUN_DIR>")
            if name:
                value = value.replace(name, "<NAME>")
            value = ATTEMPT_METRICS.sub("metrics.jsonl", value)
        elif isinstance(value, list):
            value = [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in flatten(result.config).items() if "seed" not in k.rsplit(".", 1)[-1].lower()}


def differences(a: dict, b: dict) -> dict[str, tuple]:
    """{key: (value in a, value in b)} for every key where they differ (MISSING where one lacks it)."""
    return {k: (a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, MISSING) != b.get(k, MISSING)}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _covers(override_keys: set[str]) -> set[str]:
    """The config keys (and prefixes) the overrides explain: each key, and for `x.enable` all of `x`."""
    return override_keys | {k.rsplit(".", 1)[0] for k in override_keys if k.endswith(".enable") and "." in k}


def _covered(key: str, keys: set[str]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def config_problems(study: Study, results: list[RunResult]) -> tuple[list[str], dict[str, list[str]]]:
    """(problems, {arm: keys where it differs from the baseline as its overrides say})."""
    by_arm: dict[str, list[RunResult]] = {}
    for r in sorted(results, key=lambda r: r.seed):
        by_arm.setdefault(r.arm, []).append(r)
    problems, explained = [], {}
    first = {arm: normalised(runs[0]) for arm, runs in by_arm.items()}
    for arm, runs in by_arm.items():
        for r in runs[1:]:
            for key, (a, b) in differences(first[arm], normalised(r)).items():
                problems.append(f"{arm}: seed{runs[0].seed} and seed{r.seed} differ at {key}: {_short(a)} vs {_short(b)}")
    if study.baseline not in first:
        return problems + [f"no run of the baseline arm {study.baseline!r}: the arms' configs were not compared"], {}
    base_keys = {override_key(o) for o in study.arms[study.baseline].overrides}
    for arm, config in first.items():
        if arm == study.baseline:
            continue
        keys = _covers(base_keys | {override_key(o) for o in study.arms[arm].overrides})
        diff = differences(first[study.baseline], config)
        if study.arms[arm].recipe_path() != study.arms[study.baseline].recipe_path():
            keys |= _covers({k for k in diff if k.endswith(".enable")})  # the recipes' own feature switch
        explained[arm] = [k for k in diff if _covered(k, keys)]
        for key, (base, value) in diff.items():
            if not _covered(key, keys):
                problems.append(f"{arm} vs {study.baseline}: {key} = {_short(value)} vs {_short(base)}, "
                                "not set by either arm's overrides")
    return problems, explained
