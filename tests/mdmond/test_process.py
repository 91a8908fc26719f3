"""Process-wide start-up effects, each in a fresh interpreter: the '@' mark, mlockall, the readiness fork, detach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        timeout=20,
        **kw,
    )
    return result


def test_mark_root_storage_daemon_puts_an_at_sign_first_in_the_command_line(tmp_path: Path) -> None:
    code = """
        import sys
        from mdmond.process import mark_root_storage_daemon
        print(open("/proc/self/cmdline", "rb").read().hex())
        print(mark_root_storage_daemon(), flush=True)
        sys.stdin.readline()
    """
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        before = bytes.fromhex(p.stdout.readline())
        assert p.stdout.readline() == "True\n"
        after = Path(f"/proc/{p.pid}/cmdline").read_bytes()
    finally:
        p.communicate("\n", timeout=10)
    argv0 = sys.executable.encode()
    assert after.split(b"\0")[0] == b"@" + argv0[1:]
    assert before.split(b"\0")[0] == argv0 and after[1:] == before[1:]  # only the first byte changed


def test_lock_memory_locks_everything_as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mlockall needs CAP_IPC_LOCK")
    code = """
        import threading
        from mdmond.process import THREAD_STACK, lock_memory
        print(lock_memory())
        print(threading.stack_size() == THREAD_STACK)
        status = open("/proc/self/status").read()
        print(next(l for l in status.splitlines() if l.startswith("VmLck:")).split()[1])
    """
    out = python(code, capture_output=True, check=True).stdout.split()
    assert out[0] == "0" and out[1] == "True"
    assert int(out[2]) > 1000  # kB: the interpreter's pages are locked


def test_lock_memory_reports_the_errno_when_refused() -> None:
    # RLIMIT_MEMLOCK of one page and no CAP_IPC_LOCK: mlockall fails, the errno comes back, no exception.
    code = """
        import ctypes, os, resource
        from mdmond.process import lock_memory
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))
        if os.geteuid() == 0:
            # Drop CAP_IPC_LOCK (capability 14) from the bounding and effective sets.
            libc = ctypes.CDLL(None, use_errno=True)
            PR_CAPBSET_DROP = 24
            libc.prctl(PR_CAPBSET_DROP, 14, 0, 0, 0)
            os.setgid(65534)
            os.setuid(65534)
        print(lock_memory())
    """
    out = python(code, capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot drop privileges here: {out.stderr.strip()[-200:]}")
    assert int(out.stdout) in (1, 11, 12)  # EPERM, EAGAIN or ENOMEM


FORK = """
    import os, signal, sys
    from mdmond.process import fork_and_wait
    report = fork_and_wait()
    mode, pidfile = sys.argv[1], sys.argv[2]
    open(pidfile, "w").write(str(os.getpid()))
    if mode == "ready":
        report(0)
        report(3)  # a second report is ignored
        sys.stdin.readline()  # the child goes on serving; the parent has already exited
        os._exit(7)
    if mode == "refused":
        report(3)
        os._exit(0)
    if mode == "dies":
        os._exit(5)
    if mode == "silent":
        os._exit(0)
    if mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(("mode", "status"), [("refused", 3), ("dies", 5), ("silent", 1), ("killed", 128 + 9)])
def test_the_parent_exits_with_the_childs_report_or_its_death(tmp_path: Path, mode: str, status: int) -> None:
    p = python(FORK, mode, str(tmp_path / "child"), stdin=subprocess.DEVNULL)
    assert p.returncode == status
    assert int((tmp_path / "child").read_text()) != 0


def test_the_parent_exits_0_as_soon_as_the_child_reports_ready(tmp_path: Path) -> None:
    r, w = os.pipe()  # the child's stdin: it stays alive until we close w
    try:
        p = python(FORK, "ready", str(tmp_path / "child"), stdin=r)
        assert p.returncode == 0
        child = int((tmp_path / "child").read_text())
        assert running(child)  # still serving after its parent left
    finally:
        os.close(r)
        os.close(w)
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    if running(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child did not exit once its stdin closed")


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_detach_puts_stdio_on_dev_null_in_a_new_session(tmp_path: Path) -> None:
    code = """
        import json, os, sys
        from mdmond.process import detach
        print("before", flush=True)
        detach()
        print("after", flush=True)
        os.write(2, b"after\\n")
        facts = {
            "fds": [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)],
            "leader": os.getsid(0) == os.getpid(),
            "cwd": os.getcwd(),
        }
        open(sys.argv[1], "w").write(json.dumps(facts))
    """
    out = python(code, str(tmp_path / "facts.json"), capture_output=True, stdin=subprocess.PIPE)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "before\n" and out.stderr == ""
    import json

    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts == {"fds": ["/dev/null"] * 3, "leader": True, "cwd": "/"}


def test_name_as_mdmon_makes_argv0_one_stock_mdmon_takes_over_from() -> None:
    """mdadm 4.2's try_kill_monitor reads /proc/PID/cmdline as one C string: argv[0] must say mdmon."""
    code = """
        from mdmond.process import mark_root_storage_daemon, name_as_mdmon
        print(name_as_mdmon(), mark_root_storage_daemon())
        print(open("/proc/self/cmdline", "rb").read().hex())
    """
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "md127"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    ok, cmdline = r.stdout.splitlines()
    assert ok == "True True", r.stderr
    argv = bytes.fromhex(cmdline).split(b"\0")
    assert argv[0] == b"@dmon" and argv[-2] == b"md127"  # strstr(buf, "@dmon") finds it; arguments kept
