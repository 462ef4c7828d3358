"""EchoRL for verl: learn from the advantage-degenerated (all-success) groups of group-relative RL.

Public API (imported lazily, so `import echorl_verl.toy` or `.rewards` does not pull in verl's trainer):
    EchoConfig              every setting, documented (echorl_verl/config.py)
    select_echo_clips       EchoClip selection: each success rollout's prefix through its highest-entropy step
    echo_ppo_loss           verl's ppo_loss + coef * token-mean NLL of the clip tokens
Entry point: `python -m echorl_verl.main_ppo` (a drop-in for `python -m verl.trainer.main_ppo`).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "EchoConfig": "echorl_verl.config",
    "EchoConfigError": "echorl_verl.config",
    "boundary_ids_from_tokenizer": "echorl_verl.config",
    "EchoClips": "echorl_verl.selection",
    "select_echo_clips": "echorl_verl.selection",
    "echo_ppo_loss": "echorl_verl.loss",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'echorl_verl' has no attribute {name!r}")
