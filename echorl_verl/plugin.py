"""verl plugin entry point (`verl.plugins` group): `import verl` imports this module in every process.

It registers the `echo` advantage estimator, stops verl's own entry points when they are asked for
`algorithm.adv_estimator=echo` (only `python -m echorl_verl.main_ppo` can run it), and, when
`VERL_PLATFORM=cpu`, enables the CPU backend (platform, gloo fix, `hf` rollout): this entry point is the
one switch for it (Ray workers share the driver's venv, so they load it too).

verl swallows plugin import errors at DEBUG level, so a failure here is printed to stderr and logged at
ERROR before it is re-raised; `echorl_verl.main_ppo` imports this module again and so stops with the real
traceback. The stop for `adv_estimator=echo` is a SystemExit, which verl's loader does not swallow.

The package relies on a dozen private verl names (listed and checked by tests/test_verl_contract.py);
when the installed verl is not the supported release, a warning names both versions: supporting a new
verl starts with running that test file.
"""

import logging
import os
import sys

SUPPORTED_VERL = "0.9.1"


def version_warning(installed: str) -> str | None:
    """The warning for an installed verl other than SUPPORTED_VERL, or None."""
    if installed == SUPPORTED_VERL:
        return None
    return (f"[echorl_verl] WARNING: verl {installed} is installed; echorl_verl supports verl {SUPPORTED_VERL} (it uses "
            f"private verl names: run tests/test_verl_contract.py, or `pip install verl=={SUPPORTED_VERL}`)")


def _register() -> None:
    import verl

    warning = version_warning(getattr(verl, "__version__", "unknown"))
    if warning:
        logging.getLogger("echorl_verl").warning(warning)
        print(warning, file=sys.stderr, flush=True)

    from echorl_verl import advantage  # registers "echo" with verl's register_adv_est

    # verl's own main_ppo with algorithm.adv_estimator=echo would train the baseline: stop now, before Hydra and Ray
    advantage.stop_echo_in_verl_main(getattr(sys, "orig_argv", sys.argv), os.path.dirname(verl.__file__))

    from echorl_verl.platform_env import on_cpu

    if on_cpu():
        from echorl_verl.cpu import enable_cpu_backend

        enable_cpu_backend()


try:
    _register()
except Exception as err:  # noqa: BLE001  (re-raised below; this only makes it visible)
    message = f"[echorl_verl] plugin registration FAILED in pid {os.getpid()}: {type(err).__name__}: {err}"
    logging.getLogger("echorl_verl").error(message)
    print(message, file=sys.stderr, flush=True)
    raise
