"""Infrastructure failures of the code reward are loud (issue 9 item 8).

"The program failed" (a RunResult, scored by the tests) and "we could not run it" (SandboxUnavailable:
``infra_error=1.0``, counted, and past ``max_infra_errors`` the run stops) are kept apart, on the real
sandbox, the real verl sandbox-fusion client, and real reasons for a sandbox not to start: an interpreter
reached through a symbolic link under /tmp (which the sandbox covers), an address-space limit too small
for Python, a service that is not listening, and a service that answers with its own error.
"""

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from echorl_verl.rewards import compute_score, infra
from echorl_verl.rewards.code_sandbox import SandboxLimits, SandboxUnavailable, run_program, self_test

REPO = Path(__file__).resolve().parents[1]
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
ADD_TEST = json.dumps({"kind": "functional", "test": "def check(c):\n    assert c(2, 3) == 5\n", "entry_point": "add"})
BAD_SANDBOX_ENV = {"ECHORL_SANDBOX": "namespaces", "PATH": os.path.dirname(sys.executable)}  # no unshare on PATH


@pytest.fixture(autouse=True)
def fresh_counter(monkeypatch):
    """Each test starts with this process's infrastructure-failure count at 0."""
    monkeypatch.setattr(infra, "_COUNTER", infra._Counter())


def closed_port_url() -> str:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/run_code"


def python_in_subprocess(code: str, python: str = sys.executable, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **(env or {})})  # fmt: skip


# ---------- the interpreter ----------
def test_interpreter_reached_through_a_symlink_under_tmp(tmp_path_factory):
    """A venv reached through a link under /tmp: inside the sandbox /tmp is a fresh tmpfs, so the link is gone.

    Before the fix every code reward of such a process was 0 with "sandbox init failed: FileNotFoundError".
    """
    link = Path("/tmp") / f"echorl_venv_link_{os.getpid()}"
    link.symlink_to(Path(sys.prefix).resolve())
    try:
        code = ("import json; from echorl_verl.rewards import compute_score; from echorl_verl.rewards.code_sandbox "
                "import self_test, run_program; print(self_test()); "
                f"print(json.dumps(compute_score('humaneval', {GOOD!r}, {ADD_TEST!r}))); "
                "print(run_program('import sys; print(sys.prefix)').stdout.strip())")  # fmt: skip
        out = python_in_subprocess(code, python=str(link / "bin" / "python"))
        assert out.returncode == 0, out.stderr[-2000:]
        where, result, prefix = out.stdout.strip().splitlines()[-3:]
        assert "code sandbox" in where
        assert json.loads(result) == {"score": 1.0, "acc": 1.0, "pred": "", "error": "", "infra_error": 0.0}
        assert prefix == str(Path(sys.prefix).resolve())  # the program still runs in this venv
    finally:
        link.unlink()


# ---------- the start-up self-test ----------
def test_self_test_passes_here():
    assert "code sandbox" in self_test()


def test_self_test_names_what_failed_and_the_fix_when_unshare_is_missing():
    out = python_in_subprocess("from echorl_verl.rewards.code_sandbox import self_test; self_test()", env=BAD_SANDBOX_ENV)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("echorl_verl.rewards.runner.SandboxUnavailable: code sandbox self-test")
    assert "unshare" in last and "ECHORL_SANDBOX=rlimits" in last and "sandbox_fusion_url" in last


def test_self_test_through_an_unreachable_sandbox_fusion_url():
    url = closed_port_url()
    with pytest.raises(SandboxUnavailable, match="sandbox-fusion at .* cannot run print") as err:
        self_test(sandbox_fusion_url=url)
    assert url in str(err.value) and "reachable from every node" in str(err.value)


class FusionService:
    """A sandbox-fusion ``/run_code`` endpoint on localhost that runs each request in the local sandbox.

    Speaks the service's documented request and answer fields (what verl's client sends and reads);
    ``broken=True`` makes it answer as the service does when its own sandbox fails.
    """

    def __init__(self):
        self.requests, self.broken = [], False
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append(request)
                if service.broken:
                    answer = {"status": "SandboxError", "message": "no runner available"}
                else:
                    r = run_program(request["code"], request["stdin"] or "", SandboxLimits(cpu_s=request["run_timeout"]))
                    answer = {"status": "Success" if r.ok else "Failed", "run_result": {
                        "status": "Finished", "return_code": r.returncode, "stdout": r.stdout, "stderr": r.stderr}}  # fmt: skip
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/run_code"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fusion():
    service = FusionService()
    yield service
    service.close()


def test_self_test_and_rewards_go_through_the_configured_sandbox_fusion(fusion):
    assert self_test(sandbox_fusion_url=fusion.url) == f"sandbox-fusion at {fusion.url}"
    assert "echorl-self-test-" in fusion.requests[-1]["code"]
    r = compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=fusion.url)
    assert r["score"] == 1.0 and r["infra_error"] == 0.0 and len(fusion.requests) == 2
    fusion.broken = True  # the service's own sandbox fails: not the model's fault
    with pytest.raises(SandboxUnavailable, match="no runner available"):
        self_test(sandbox_fusion_url=fusion.url)
    r = compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=fusion.url)
    assert r["score"] == 0.0 and r["infra_error"] == 1.0 and "no runner available" in r["error"]
    assert infra.failures_so_far() == 1


# ---------- the program failed vs we could not run it ----------
def test_a_program_that_fails_at_once_is_the_programs_failure():
    for program, code in (("import os; os._exit(3)", 3), ("raise SystemExit(1)", 1), ("import os, signal; os.kill(os.getpid(), 9)", 137)):
        assert run_program(program).returncode == code, program  # a RunResult, no SandboxUnavailable


def test_the_program_cannot_forge_the_started_report():
    forge = "import os\nfor fd in range(3, 256):\n    try:\n        os.write(fd, b'started')\n        print(fd)\n    except OSError:\n        pass\n"
    assert run_program(forge).stdout == ""  # the status pipe is closed before the program runs


def test_a_sandbox_that_cannot_start_python_raises():
    with pytest.raises(SandboxUnavailable, match="did not start the program"):
        run_program("print(1)", limits=SandboxLimits(memory_mb=5))


def test_an_infrastructure_failure_is_flagged_and_counted_not_scored_as_a_wrong_answer():
    url = closed_port_url()
    wrong = compute_score("humaneval", GOOD.replace("a + b", "a - b"), ADD_TEST)
    assert wrong["score"] == 0.0 and wrong["infra_error"] == 0.0 and wrong["error"] == ""  # the model's failure
    unrun = compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url)
    assert unrun["score"] == 0.0 and unrun["infra_error"] == 1.0 and url in unrun["error"]  # ours
    assert infra.failures_so_far() == 1
    for source, response, gold in (("math", "\\boxed{1}", "1"), ("gpqa", "Answer: A", "A")):
        assert compute_score(source, response, gold)["infra_error"] == 0.0  # every source returns the key


def test_the_bound_stops_the_run():
    url = closed_port_url()
    for _ in range(3):
        assert compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url, max_infra_errors=3)["infra_error"] == 1.0
    assert compute_score("humaneval", GOOD, ADD_TEST)["score"] == 1.0  # successes do not reset the window
    with pytest.raises(infra.InfrastructureError, match=r"4 of the last 5 code rewards .* max_infra_errors=3") as err:
        compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url, max_infra_errors=3)
    assert url in str(err.value) and "self_test" in str(err.value)


def test_the_window_forgets_old_failures(monkeypatch):
    monkeypatch.setattr(infra, "WINDOW", 4)
    monkeypatch.setattr(infra, "_COUNTER", infra._Counter())
    url = closed_port_url()
    compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url, max_infra_errors=1)
    for _ in range(4):  # pushes the failure out of the last 4 calls
        compute_score("humaneval", GOOD, ADD_TEST, max_infra_errors=1)
    assert compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url, max_infra_errors=1)["infra_error"] == 1.0
    with pytest.raises(infra.InfrastructureError):
        compute_score("humaneval", GOOD, ADD_TEST, sandbox_fusion_url=url, max_infra_errors=1)
