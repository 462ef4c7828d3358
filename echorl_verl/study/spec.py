"""STUDY.yaml: which arms, which seeds, where the runs go. Parsed once into a Study; every error names the key.

    name: toy_coef                    # optional (default: the file's stem)
    study_dir: runs/study_toy         # relative paths are relative to the repository root
    seeds: [0, 1, 2]
    baseline: grpo                    # the arm every other arm is compared with, seed by seed
    env: {PROFILE: cpu, TOTAL_STEPS: 40}          # shared environment (optional)
    overrides: [trainer.test_freq=5]              # shared Hydra overrides (optional)
    run_timeout_s: 3600               # optional: a run that takes longer is stopped and counts as failed
    arms:
      grpo:
        recipe: recipes/grpo_echo_qwen.sh         # relative to the repository root, or absolute
        overrides: [echo.enable=false]
      echo_0.01:
        recipe: recipes/grpo_echo_qwen.sh
        overrides: [echo.coef=0.01]
        env: {}                                   # per-arm environment (optional)

Express what makes an arm different as Hydra overrides: the study report checks that the arms' resolved
configs differ only at the keys their overrides name (and at seeds and run paths). RUN_DIR, SEED and NAME
are set by the harness for each run and may not appear in `env`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS_ENV = ("RUN_DIR", "SEED", "NAME")
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TOP_KEYS = {"name", "study_dir", "seeds", "baseline", "env", "overrides", "run_timeout_s", "arms"}
ARM_KEYS = {"recipe", "overrides", "env"}


class StudyError(ValueError):
    """Bad study file or study folder: the message names the file and key (or run) and the fix."""


@dataclass(frozen=True)
class Arm:
    name: str
    recipe: str  # as written in the file
    overrides: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def recipe_path(self) -> str:
        return self.recipe if os.path.isabs(self.recipe) else os.path.join(REPO, self.recipe)


def run_path(root: str, arm: str, seed: int) -> str:
    """Where a run lives in a study folder or its compact copy: ``root/<arm>/seed<N>``."""
    return os.path.join(root, arm, f"seed{seed}")


@dataclass(frozen=True)
class Study:
    name: str
    study_dir: str  # absolute
    seeds: tuple[int, ...]
    baseline: str
    arms: dict[str, Arm]
    env: dict[str, str] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    run_timeout_s: float | None = None

    def run_dir(self, arm: str, seed: int) -> str:
        return run_path(self.study_dir, arm, seed)

    def runs(self) -> list[tuple[str, int]]:
        """(arm, seed) in the order they run: seed-major, so an interrupted study has every arm's first seeds."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]

    def to_dict(self) -> dict:
        """The study as a STUDY.yaml mapping (what the harness writes to STUDY_DIR/study.yaml)."""
        out = {"name": self.name, "study_dir": self.study_dir, "seeds": list(self.seeds), "baseline": self.baseline,
               "env": dict(self.env), "overrides": list(self.overrides),
               "arms": {a.name: {"recipe": a.recipe, "overrides": list(a.overrides), "env": dict(a.env)}
                        for a in self.arms.values()}}
        if self.run_timeout_s is not None:
            out["run_timeout_s"] = self.run_timeout_s
        return out


def override_key(override: str) -> str:
    """`+a.b=1` / `++a.b=1` / `a.b=1` / `~a.b` -> `a.b` (the config key a Hydra override sets)."""
    return override.lstrip("+~").partition("=")[0].strip()


def _strings(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StudyError(f"{where}: a list of Hydra overrides as strings, e.g. [echo.coef=0.01]; got {value!r}")
    for v in value:
        if not override_key(v) or ("=" not in v and not v.startswith("~")):
            raise StudyError(f"{where}: {v!r} is not a Hydra override (key=value, +key=value or ~key)")
    return tuple(value)


def _env(value, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{where}: a mapping of environment variables, e.g. {{PROFILE: cpu}}; got {value!r}")
    out = {}
    for key, v in value.items():
        if key in HARNESS_ENV:
            raise StudyError(f"{where}.{key}: the harness sets {', '.join(HARNESS_ENV)} for each run; remove it")
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise StudyError(f"{where}: {key!r} is not an environment variable name")
        if isinstance(v, (dict, list)) or v is None:
            raise StudyError(f"{where}.{key}: a string or number; got {v!r}")
        out[key] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _arm(name, raw, path: str, shared_keys: set[str], check_recipe: bool) -> Arm:
    where = f"{path}: arms.{name}"
    if not isinstance(name, str) or not ARM_NAME.match(name):
        raise StudyError(f"{path}: arms: {name!r} is not a usable arm name (letters, digits, . _ -; it names a folder)")
    if not isinstance(raw, dict):
        raise StudyError(f"{where}: a mapping with recipe (and overrides, env); got {raw!r}")
    unknown = sorted(set(raw) - ARM_KEYS)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; an arm has {sorted(ARM_KEYS)}")
    if not isinstance(raw.get("recipe"), str):
        raise StudyError(f"{where}.recipe: missing; name the recipe script, e.g. recipes/grpo_echo_qwen.sh")
    arm = Arm(name, raw["recipe"], _strings(raw.get("overrides"), f"{where}.overrides"), _env(raw.get("env"), f"{where}.env"))
    if check_recipe and not os.path.isfile(arm.recipe_path()):
        raise StudyError(f"{where}.recipe: {arm.recipe_path()} does not exist (paths are relative to {REPO})")
    both = sorted(shared_keys & {override_key(o) for o in arm.overrides})
    if both:
        raise StudyError(f"{where}.overrides: {both} also in the shared overrides; set each key in one place")
    return arm


def _seeds(value, path: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value
            or not all(type(s) is int and s >= 0 for s in value) or len(set(value)) != len(value)):
        raise StudyError(f"{path}: seeds: a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]; got {value!r}")
    return tuple(value)


def parse_study(raw, path: str, study_dir: str | None = None, check_recipes: bool = True) -> Study:
    """A STUDY.yaml mapping -> Study. study_dir (e.g. from the command line) replaces the file's;
    check_recipes=False for reading a finished study (the report needs no recipe file)."""
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: the study file must be a mapping (study_dir, seeds, baseline, arms, ...)")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {unknown}; a study has {sorted(TOP_KEYS)}")
    study_dir = study_dir or raw.get("study_dir")
    if not isinstance(study_dir, str) or not study_dir:
        raise StudyError(f"{path}: study_dir: missing; the folder the runs go to, e.g. runs/study_toy")
    overrides = _strings(raw.get("overrides"), f"{path}: overrides")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise StudyError(f"{path}: arms: missing or empty; a mapping of arm name -> {{recipe, overrides, env}}")
    shared = {override_key(o) for o in overrides}
    arms = {name: _arm(name, a, path, shared, check_recipes) for name, a in arms_raw.items()}
    baseline = raw.get("baseline")
    if baseline not in arms:
        raise StudyError(f"{path}: baseline: {baseline!r} is not one of the arms {list(arms)}")
    timeout = raw.get("run_timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise StudyError(f"{path}: run_timeout_s: a positive number of seconds; got {timeout!r}")
    name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]
    return Study(name=str(name), study_dir=os.path.abspath(os.path.join(REPO, study_dir)),
                 seeds=_seeds(raw.get("seeds"), path), baseline=baseline, arms=arms,
                 env=_env(raw.get("env"), f"{path}: env"), overrides=overrides, run_timeout_s=timeout)


def load_study(path: str, study_dir: str | None = None) -> Study:
    """Read and check a STUDY.yaml (StudyError with the file, line or key on any problem)."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise StudyError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_study(raw, path, study_dir)
