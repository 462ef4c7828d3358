"""What every start-up check shares: the one error type and the config lookup.

A module of its own so that the platform-specific checks (`cpu/preflight.py`) and the general ones
(`preflight.py`, which runs them all) both import it and neither imports the other.
"""

from __future__ import annotations

from omegaconf import OmegaConf


class PreflightError(ValueError):
    """A main_ppo config that cannot work; the message names the key and the fix."""


def get(config, key: str, default=None):
    """`OmegaConf.select` with a default for missing and null keys."""
    value = OmegaConf.select(config, key, default=None)
    return default if value is None else value
