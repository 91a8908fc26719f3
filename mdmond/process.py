"""What makes this process a storage daemon: forking with a readiness pipe, locked memory, the '@' mark.

All of it happens before or right after serving starts (mdmon.md §1.2): the
parent of a forked daemon waits for the child to say it serves before it
exits, so whoever started us (mdadm) knows the arrays are answered for.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
import threading
from collections.abc import Callable

MCL_CURRENT = 1
MCL_FUTURE = 2
#: Worker-thread stacks; locked in memory by MCL_FUTURE, so kept small (Python frames live on the heap).
THREAD_STACK = 512 * 1024


def in_initrd() -> bool:
    """systemd's test: an initrd has ``/etc/initrd-release``."""
    return os.path.exists("/etc/initrd-release")


def mark_root_storage_daemon() -> bool:
    """Make ``argv[0]`` start with '@', as mdmon does with ``--offroot`` or in an initrd.

    systemd-shutdown spares processes whose ``argv[0][0]`` is '@' in its final
    killing spree: we must outlive the unmounting of root, or a last write to a
    clean array hangs the shutdown.  The first byte of the argument area is
    rewritten in place through ``/proc/self/mem`` (the interpreter's argv is
    not reachable from Python).  Returns False where that is not allowed.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        arg_start = int(fields[48 - 3])  # proc(5) field 48; fields[0] is field 3 (state)
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(b"@")
    except (OSError, ValueError, IndexError):
        return False
    return True


def name_as_mdmon() -> bool:
    """Make ``argv[0]`` say ``mdmon`` when it does not, so that stock mdmon can take over from us.

    mdadm 4.2's ``try_kill_monitor`` signals the pid in the pid file only if
    ``strstr`` finds "mdmon" or "@dmon" in ``/proc/PID/cmdline``, read as one C
    string: argv[0] alone.  Ours is the interpreter's path (``python -m``, or
    a console script's shebang), so ``mdmon --takeover`` left us running beside
    it (seen in the VM).  argv[0] is rewritten in place, cut to "mdmon" and the
    rest of it zeroed, through ``/proc/self/mem`` as for the '@' mark; arguments
    after it are untouched.  Returns False where that is not allowed.
    """
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0]
        if b"mdmon" in argv0 or b"@dmon" in argv0:
            return True
        if len(argv0) < len(b"mdmon"):
            return False
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        arg_start = int(fields[48 - 3])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(b"mdmon".ljust(len(argv0), b"\0"))
    except (OSError, ValueError, IndexError):
        return False
    return True


def lock_memory() -> int:
    """``mlockall(MCL_CURRENT|MCL_FUTURE)``: no page fault may wait on swap on an array we must unblock.

    Returns 0 or the errno (EPERM without CAP_IPC_LOCK, ENOMEM over the limit);
    like mdmon, the daemon runs on either way.
    """
    threading.stack_size(THREAD_STACK)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        return ctypes.get_errno() or errno.EPERM
    return 0


def fork_and_wait() -> Callable[[int], None] | None:
    """Fork; the parent waits for the child's readiness status and exits with it.

    Returns, in the child, the function that reports the status (0 = serving).
    If the child dies before reporting, the parent exits with the child's
    status (mdmon §1.2 step 1).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < 4 and (chunk := os.read(r, 4 - len(data))):
                data += chunk
        if len(data) == 4:
            os._exit(struct.unpack("=i", data)[0])
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        # Killed by a signal: the shell's 128+N (not -N, which exit() would wrap to 256-N).
        # Exited 0 without reporting: it never served, so that is a failure too.
        os._exit(128 - code if code < 0 else code or 1)
    os.close(r)

    def report(status: int) -> None:
        nonlocal w
        if w < 0:
            return
        with contextlib.suppress(OSError):
            os.write(w, struct.pack("=i", status))
            os.close(w)
        w = -1

    return report


def detach() -> None:
    """New session, stdio on /dev/null, cwd /: nothing ties us to whoever started us."""
    with contextlib.suppress(OSError):
        os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


__all__ = ["detach", "fork_and_wait", "in_initrd", "lock_memory", "mark_root_storage_daemon"]
