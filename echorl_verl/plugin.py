"""verl plugin entry point (`verl.plugins` group): `import verl` imports this module in every process.

It registers the `echo` advantage estimator and, when `VERL_PLATFORM=cpu`, the CPU backend (platform,
gloo fix, `hf` rollout). verl swallows plugin import errors at DEBUG level, so a failure here is printed
to stderr and logged at ERROR before it is re-raised; `echorl_verl.main_ppo` imports this module again
and so stops with the real traceback.
"""

import logging
import os
import sys


def _register() -> None:
    from echorl_verl import advantage  # noqa: F401  (registers "echo" with verl's register_adv_est)

    if os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu":
        from echorl_verl.cpu import enable_cpu_backend

        enable_cpu_backend()


try:
    _register()
except Exception as err:  # noqa: BLE001  (re-raised below; this only makes it visible)
    message = f"[echorl_verl] plugin registration FAILED in pid {os.getpid()}: {type(err).__name__}: {err}"
    logging.getLogger("echorl_verl").error(message)
    print(message, file=sys.stderr, flush=True)
    raise
