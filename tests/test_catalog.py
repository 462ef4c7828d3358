"""echorl_verl.data.catalog: every data source declared once, and everything derived from it agrees.

Checks, against the real modules (no copies of the table here): each catalog source has a loader in its
family's data_prep module with the catalog's data_source and repeat; compute_score has a scorer for each
(it dispatches, no "unknown data_source"); each evaluation set has a report column; the command line the
shell scripts call prints exactly the catalog; the table's rules catch a bad edit.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from echorl_verl.data import catalog
from echorl_verl.data.catalog import EVAL, TRAIN, VAL, CatalogError, Source
from echorl_verl.data.choice_sets import CHOICE_SETS
from echorl_verl.data.code_sets import CODE_SETS
from echorl_verl.data.math_sets import EVAL_SETS, TRAIN_SETS
from echorl_verl.report import suite
from echorl_verl.rewards import KNOWN_DATA_SOURCES, TOY_SOURCES, compute_score

REPO = Path(__file__).resolve().parents[1]
LOADERS = {"math_train": TRAIN_SETS, "math_eval": EVAL_SETS, "choice": CHOICE_SETS, "code_bench": CODE_SETS}


def test_every_source_has_exactly_one_loader_with_the_catalogs_facts():
    loaders = {name: (script, spec) for script, table in LOADERS.items() for name, spec in table.items()}
    assert set(loaders) == {s.name for s in catalog.SOURCES}, "a catalog source without a loader, or the reverse"
    for s in catalog.SOURCES:
        script, spec = loaders[s.name]
        assert script == s.script and (REPO / "data_prep" / f"{script}.py").is_file(), s.name
        assert spec.data_source == s.data_source, s.name
        assert getattr(spec, "repeat", 1) == s.repeat, s.name


# a ground truth each family's scorer accepts, and a response it scores quickly (no sandbox run for code)
PROBE = {"math": ("\\boxed{1}", "1", 1.0), "choice": ("Answer: A", "A", 1.0),
         "code": ("no code here", json.dumps({"kind": "stdio", "inputs": ["1"], "outputs": ["1"]}), 0.0)}


@pytest.mark.parametrize("src", catalog.SOURCES, ids=lambda s: s.name)
def test_every_source_has_a_scorer(src):
    response, truth, expected = PROBE[src.family]
    result = compute_score(src.data_source, response, truth)
    assert result["score"] == expected and result["error"] == "", result


def test_reward_registry_is_the_catalog_plus_the_toy_task():
    assert KNOWN_DATA_SOURCES == {s.data_source for s in catalog.SOURCES} | TOY_SOURCES


def test_every_evaluation_set_has_a_report_column():
    for s in catalog.SOURCES:
        if s.role == TRAIN:
            assert s.data_source not in suite.BY_SOURCE
        elif s.group:
            assert suite.BY_SOURCE[s.data_source] == suite.Benchmark(s.data_source, s.label, s.group)
        else:  # outside the paper's table: report/table.py shows it as an extra column
            assert s.label and s.data_source not in suite.BY_SOURCE
    assert [b.source for b in suite.SUITE] == [s.data_source for s in catalog.SOURCES if s.group]
    assert suite.group_sources("OOD") == ["arc_c", "gpqa", "mmlu_pro"] and suite.GROUPS == ("ID", "OOD")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "echorl_verl.data.catalog", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, expected", [
    (["--role", "val"], catalog.select([VAL])),
    (["--role", "train"], catalog.select([TRAIN])),
    (["--role", "eval"], catalog.select([EVAL])),
    (["--role", "val", "--role", "eval"], catalog.select([VAL, EVAL])),
    (["--suite"], catalog.select(suite=True)),
    (["--family", "code", "--role", "eval"], catalog.select([EVAL], ["code"])),
])
def test_cli_sets_print_the_catalog(args, expected):
    out = cli("sets", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [s.name for s in expected] and expected


def test_cli_values_the_recipes_rely_on():
    """What recipes/common.sh (VAL_SETS) and recipes/eval_qwen.sh (SUITE_SETS) had written by hand."""
    assert cli("sets", "--role", "val").stdout.split() == [
        "aime", "aime25", "amc", "math", "minerva", "olympiad_bench", "arc_c", "gpqa"]
    assert cli("sets", "--suite").stdout.split() == [
        "aime", "aime25", "amc", "math", "minerva", "olympiad_bench", "arc_c", "gpqa", "mmlu_pro"]


def test_cli_plan_is_every_source_in_order_with_its_script():
    out = cli("plan")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{s.script}:{s.name}" for s in catalog.SOURCES]
    assert len(out.stdout.split()) == len(catalog.SOURCES) == 19


def test_cli_refuses_an_empty_selection_and_bad_flags():
    out = cli("sets", "--role", "train", "--suite")
    assert out.returncode == 1 and "no set matches" in out.stderr
    assert cli("sets", "--role", "test").returncode == 2


def test_catalog_import_is_cheap():
    """Shell scripts and the reward function import it: no torch, verl, pyarrow or tqdm."""
    code = ("import sys, echorl_verl.data.catalog, echorl_verl.rewards; "
            "print([m for m in ('torch', 'verl', 'pyarrow', 'tqdm', 'math_verify') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


AIME = catalog.source("aime")


@pytest.mark.parametrize("bad, message", [
    ([AIME, dataclasses.replace(AIME, data_source="other")], "name must be unique"),
    ([AIME, dataclasses.replace(AIME, name="aime2")], "data_source must be unique"),
    ([dataclasses.replace(AIME, family="physics")], "family 'physics'"),
    ([dataclasses.replace(AIME, role="test")], "role 'test'"),
    ([dataclasses.replace(AIME, group="MID")], "group 'MID'"),
    ([dataclasses.replace(AIME, role=TRAIN)], "a training set has no report label"),
    ([Source("x", "x", "math", EVAL)], "needs a label"),
    ([dataclasses.replace(AIME, repeat=0)], "repeat must be >= 1"),
])
def test_the_rules_catch_a_bad_edit(bad, message):
    with pytest.raises(CatalogError, match=message):
        catalog.check(bad)


def test_unknown_name_says_where_to_declare_it():
    with pytest.raises(KeyError, match="gsm8k.*declare it there"):
        catalog.source("gsm8k")
