"""EchoConfig: defaults, the yaml that mirrors it, and an error naming key and valid values for each bad setting."""

import dataclasses

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from echo_testlib import compose_config
from echorl_verl.config import EchoConfig, EchoConfigError, boundary_ids_from_tokenizer, resolve_boundary_ids
from echorl_verl.main_ppo import prepare_config


def test_yaml_group_equals_the_dataclass(verl_config):
    yaml_echo = OmegaConf.to_container(verl_config.echo)
    assert yaml_echo == dataclasses.asdict(EchoConfig())
    # and verl's own config is all there (we extend ppo_trainer, not replace it)
    assert verl_config.algorithm.adv_estimator == "gae"  # verl's default; recipes set grpo & co.
    assert "policy_loss" in verl_config.actor_rollout_ref.actor


def undocumented_fields(source: str, class_name: str) -> list[str]:
    """Fields of a dataclass source whose annotated assignment is not directly followed by a string literal."""
    import ast

    cls = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == class_name)
    missing = []
    for stmt, nxt in zip(cls.body, cls.body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            documented = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
            if not documented:
                missing.append(stmt.target.id)
    return missing


def test_every_field_is_documented():
    import inspect
    import textwrap

    assert undocumented_fields(textwrap.dedent(inspect.getsource(EchoConfig)), "EchoConfig") == []
    assert [f.name for f in dataclasses.fields(EchoConfig)] == [
        n for n in EchoConfig.__annotations__]  # every dataclass field was looked at


def test_the_documented_field_check_catches_a_field_followed_by_a_documented_one():
    """The old check passed this: an undocumented field followed by a documented one."""
    source = (
        "class C:\n"
        "    a: int = 1\n"
        "    b: int = 2\n"
        "    \"\"\"b is documented\"\"\"\n"
        "    c: int = 3\n"
    )
    assert undocumented_fields(source, "C") == ["a", "c"]


BAD_VALUES = [
    ({"coef": -0.1}, "echo.coef must be a finite number >= 0, got -0.1"),
    ({"coef": float("nan")}, "echo.coef must be a finite number"),
    ({"coef": float("inf")}, "echo.coef must be finite"),
    ({"scope": "everything"}, r"echo.scope='everything' is not valid; choose one of \['all_success_groups', 'all_successes'\]"),
    ({"clip_mode": "typo"}, r"echo.clip_mode='typo' is not valid; choose one of \['peak_prefix', 'peak_step', 'full_response', 'random_prefix'\]"),
    ({"mode": "reward"}, r"echo.mode='reward' is not valid; choose one of \['loss', 'advantage'\]"),
    ({"step_agg": "median"}, r"echo.step_agg='median' is not valid; choose one of \['mean', 'max', 'sum'\]"),
    ({"per_group": "two"}, r"echo.per_group='two' is not valid; choose one of \['all', 'one'\]"),
    ({"min_step_tokens": 0}, "echo.min_step_tokens must be an integer >= 1"),
    ({"boundary_token_ids": []}, "echo.boundary_token_ids must be null"),
    ({"boundary_token_ids": [-3]}, r"echo.boundary_token_ids \[-3\] lie outside the vocabulary"),
    ({"advantage_value": -1.0}, "echo.advantage_value must be null or a finite number >= 0"),
    ({"enable": "yes"}, "echo.enable must be true or false"),
    ({"success_key": ""}, "echo.success_key must be a non-empty string"),
    ({"seed": 1.5}, "echo.seed must be an integer"),
    ({"grad_telemetry_every": -1}, "echo.grad_telemetry_every must be an integer >= 0"),
]


@pytest.mark.parametrize("values, message", BAD_VALUES, ids=[next(iter(v)) + "=" + repr(v[next(iter(v))]) for v, _ in BAD_VALUES])
def test_construction_refuses_each_bad_value_naming_key_and_valid_values(values, message):
    """Checked where the object is made: EchoConfig(...), from_dict and dataclasses.replace all refuse it."""
    with pytest.raises(EchoConfigError, match=message):
        EchoConfig(**values)
    with pytest.raises(EchoConfigError, match=message):
        EchoConfig.from_dict(values)
    with pytest.raises(EchoConfigError, match=message):
        dataclasses.replace(EchoConfig(), **values)


def test_every_choice_list_is_the_one_its_code_implements():
    from echorl_verl.clip_modes import CLIP_SPANS
    from echorl_verl.config import CLIP_MODES, STEP_AGGREGATIONS
    from echorl_verl.steps import STEP_AGGREGATIONS as IMPLEMENTED

    assert CLIP_MODES == tuple(CLIP_SPANS) and STEP_AGGREGATIONS is IMPLEMENTED


def test_unknown_keys_name_the_valid_keys():
    with pytest.raises(EchoConfigError, match=r"unknown key\(s\) \['colour'\]; valid keys are \["):
        EchoConfig.from_dict({"colour": "red"})


def test_boundary_ids_outside_the_vocabulary():
    config = EchoConfig.from_dict({"boundary_token_ids": [5, 500]})
    with pytest.raises(EchoConfigError, match=r"\[500\] lie outside the vocabulary \[0, 100\)"):
        config.validate(vocab_size=100)


def test_command_line_errors_name_the_key():
    # a key that does not exist: Hydra's struct check names it
    with pytest.raises(ConfigCompositionException, match="colour"):
        compose_config(["echo.colour=1"])
    # forced in with '+', or a bad value: our start-up check names it
    for override, message in (("+echo.colour=1", "colour"), ("echo.scope=bogus", "echo.scope='bogus'"), ("echo.coef=-1", "echo.coef")):
        with pytest.raises(EchoConfigError, match=message):
            prepare_config(compose_config([override]))


def test_prepare_config_wires_the_estimator():
    """verl's advantage step always runs the base estimator by its own name (advantage mode folds after it)."""
    config = compose_config(["algorithm.adv_estimator=rloo", "echo.mode=advantage"])
    echo = prepare_config(config)
    assert echo.base_estimator == "rloo" and config.echo.base_estimator == "rloo"
    assert config.algorithm.adv_estimator == "rloo"

    # the registered name `echo` selects the base estimator
    config = compose_config(["algorithm.adv_estimator=echo", "echo.base_estimator=grpo"])
    assert prepare_config(config).base_estimator == "grpo" and config.algorithm.adv_estimator == "grpo"
    with pytest.raises(EchoConfigError, match="echo.base_estimator=rloo but algorithm.adv_estimator=grpo"):
        prepare_config(compose_config(["algorithm.adv_estimator=grpo", "echo.base_estimator=rloo"]))

    config = compose_config(["echo.enable=false"])  # baselines: verl's config untouched
    before = OmegaConf.to_container(config, resolve=False)
    prepare_config(config)
    assert OmegaConf.to_container(config, resolve=False) == before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm.adv_estimator=echo"], "algorithm.adv_estimator=echo needs echo.base_estimator"),
        (["algorithm.adv_estimator=echo", "echo.base_estimator=echo"], "needs echo.base_estimator"),
        ([], "echo wraps the estimator gae .*set algorithm.adv_estimator=grpo"),  # verl's default estimator
        (["algorithm.adv_estimator=echo", "echo.base_estimator=gae"], "echo wraps the estimator gae"),
        (["algorithm.adv_estimator=nope"], "echo wraps the estimator 'nope' .*not a verl advantage estimator; known: .*grpo"),
        (["algorithm.adv_estimator=echo", "echo.enable=false"], "adv_estimator=echo with echo.enable=false"),
    ],
)
def test_the_base_estimator_is_checked_at_start_up(overrides, message):
    """What echo cannot wrap stops in prepare_config, before Ray, naming the key and the fix."""
    with pytest.raises(EchoConfigError, match=message):
        prepare_config(compose_config(overrides))


def test_config_is_frozen_and_validate_does_not_change_it():
    config = EchoConfig.from_dict({"boundary_token_ids": [198, 271]})
    assert config.boundary_token_ids == (198, 271)
    snapshot = dataclasses.asdict(config)
    config.validate(vocab_size=1000)
    assert dataclasses.asdict(config) == snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.coef = 1.0
    assert dataclasses.replace(config, coef=0.5).coef == 0.5 and config.coef == 0.001
    assert EchoConfig(boundary_token_ids=[198, 271]).boundary_token_ids == (198, 271)  # hashable, like from_dict's
    hash(EchoConfig(boundary_token_ids=[198, 271]))


def test_prepare_config_refuses_async_trainers():
    with pytest.raises(EchoConfigError, match="trainer_mode=sync"):
        prepare_config(compose_config(["trainer.v1.trainer_mode=separate_async"]))


def _byte_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["Step 1: add 2 and 3.\nStep 2: the sum is 5.\n\nanswer: 5"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_boundaries_derived_from_a_byte_level_tokenizer():
    tokenizer = _byte_level_tokenizer()
    ids = boundary_ids_from_tokenizer(tokenizer)
    assert ids and all("\n" in tokenizer.decode([i]) for i in ids)
    newline = tokenizer.encode("\n")
    assert len(newline) == 1 and newline[0] in ids
    others = set(range(len(tokenizer))) - set(ids)
    assert all("\n" not in tokenizer.decode([i]) for i in others)
    assert resolve_boundary_ids(EchoConfig(), tokenizer) == ids
    with pytest.raises(EchoConfigError, match="outside the vocabulary"):
        resolve_boundary_ids(EchoConfig(boundary_token_ids=[len(tokenizer)]), tokenizer)


def test_a_tokenizer_without_newline_tokens_is_an_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(EchoConfigError, match="set echo.boundary_token_ids"):
        boundary_ids_from_tokenizer(PreTrainedTokenizerFast(tokenizer_object=tok))
