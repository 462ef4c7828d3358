"""Enable the CPU backend at `import verl` without the project plugin entry point.

`VERL_USE_EXTERNAL_MODULES=echorl_verl.cpu.autoload` makes verl import this module in every process
(verl does not swallow errors there). It calls `enable_cpu_backend()` only when VERL_PLATFORM=cpu.
The recipe sets both, so a CPU run works even where the `verl.plugins` entry point is not installed.
"""

import os

if os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu":
    from echorl_verl.cpu import enable_cpu_backend

    enable_cpu_backend()
