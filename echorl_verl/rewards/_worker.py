"""Child side of :mod:`echorl_verl.rewards.bounded`: ``python -m echorl_verl.rewards._worker MOD:FN``.

Protocol, one JSON object per line: the parent writes ``{"args": [...]}``, the worker answers
``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}`` and waits for the next line.
It prints ``{"ready": true}`` once the function's module (and its heavy imports) is loaded, so
the parent's per-call deadline never includes start-up. Runs in its own main thread, so
signal-based timeouts inside the function (math-verify's) work here.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys

#: Address-space cap of the worker: a sympy blow-up (``10^{10^{10}}``) ends in MemoryError here
#: instead of swapping the host. Parsing one answer needs well under 1 GiB.
WORKER_AS_BYTES = 4 << 30


def main(argv: list[str]) -> int:
    module_name, _, fn_name = argv[1].partition(":")
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_AS_BYTES, WORKER_AS_BYTES))
    fn = getattr(importlib.import_module(module_name), fn_name)
    for name in argv[2:]:  # heavy imports done before "ready"
        importlib.import_module(name)
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints of the libraries must not corrupt the protocol
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            value = fn(*json.loads(line)["args"])
            reply = {"ok": True, "value": value}
        except BaseException as e:  # noqa: BLE001 - report everything; the parent decides
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
