import pytest

from echo_testlib import compose_config


@pytest.fixture(scope="session")
def verl_config():
    """verl's ppo_trainer config extended by ours, composed by Hydra."""
    return compose_config()
