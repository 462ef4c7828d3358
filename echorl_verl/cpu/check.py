"""`python -m echorl_verl.cpu.check OVERRIDES...`: run `preflight` on main_ppo's config, before Ray starts.

Composes verl's `ppo_trainer` config (through echorl's echo_ppo_trainer, which extends it) with the same Hydra overrides main_ppo would get, and exits 2 with
the preflight message (naming the key and the fix) when the run cannot work. The CPU recipe calls this
first, so a bad path or a missing override is a one-line error instead of a trace from a Ray worker.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_module

    overrides = list(sys.argv[1:] if argv is None else argv)
    # echorl's config is verl's ppo_trainer plus the `echo` group: it composes both kinds of run.
    with initialize_config_module(config_module="echorl_verl.configs", version_base=None):
        config = compose(config_name="echo_ppo_trainer", overrides=overrides)
    if os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu":
        from echorl_verl.cpu import enable_cpu_backend

        enable_cpu_backend()
    from echorl_verl.cpu import PreflightError, preflight

    try:
        preflight(config)
    except PreflightError as err:
        print(f"echorl_verl preflight: {err}", file=sys.stderr)
        return 2
    print("echorl_verl preflight: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
