"""`VERL_PLATFORM`, read in one place: which verl platform this process asked for.

verl itself reads the variable the same way (stripped, lower-case: `verl/plugin/platform/platform_manager.py`).
The plugin, the CPU backend and the start-up checks all ask here. The module imports nothing of the
package or of verl, so every platform can import it without loading the CPU backend.
"""

from __future__ import annotations

import os


def verl_platform() -> str:
    """The platform named by VERL_PLATFORM ('' when unset), as verl's platform manager reads it."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower()


def on_cpu() -> bool:
    """True when VERL_PLATFORM=cpu: the echorl_verl CPU backend runs this process."""
    return verl_platform() == "cpu"
