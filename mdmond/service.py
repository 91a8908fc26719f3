"""One container served: its metadata, monitor, manager, control socket and pid file, as mdmon does.

Start-up follows mdmon (mdmon.md §1.2): find a previous instance through its
pid file; refuse if it is alive and answers (unless taking over); load the
metadata; write our pid file (exclusive) and socket; start monitoring; only
*then* stop the previous instance, so there is never a moment with no one to
answer a write-pending array.  The service ends when the container has no
member arrays left and nobody (mdadm) holds it exclusively, or after SIGTERM
once every array is clean.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import struct
from collections.abc import Callable
from pathlib import Path

import trio

from formats.base import ContainerMetadata
from formats.changes import MdadmUpdate

from . import __version__
from .control.frames import Frame, encode
from .control.server import ControlServer, Handlers
from .events import EventLog
from .kernel.interface import Kernel
from .manager import Manager
from .metadata import MetadataStore, Runner, in_thread
from .monitor.container import ContainerMonitor

#: mdadm's MDMON_DIR.
RUN_DIR = Path("/run/mdadm")
#: How long a taken-over instance gets to leave (mdmon: 25 x 200 ms).
TAKEOVER_WAIT = 5.0
#: The version string a ping-monitor answers; mdadm parses "<name> - v<major>.<minor>".
VERSION = f"mdmond - v4.2.0 - {__version__}\n"


class AlreadyManaged(Exception):
    """Another live instance answers for this container (mdmon's exit status 3)."""


class ServiceError(Exception):
    """The service could not start (exit status 3, as mdmon)."""


class ContainerService:
    def __init__(
        self,
        container: str,
        kernel: Kernel,
        load: Callable[[], ContainerMetadata],
        *,
        run_dir: Path = RUN_DIR,
        events: EventLog | None = None,
        takeover: bool = False,
        runner: Runner = in_thread,
        exclusive_open: Callable[[], bool] | None = None,
    ) -> None:
        self.container = container
        self.kernel = kernel
        self.load = load
        self.run_dir = run_dir
        self.events = events or EventLog()
        self.takeover = takeover
        self.runner = runner
        #: True when nobody holds the container exclusively (mdadm does while it creates a member).
        self.exclusive_open = exclusive_open or (lambda: True)
        self.pid_file = run_dir / f"{container}.pid"
        self.sock_file = run_dir / f"{container}.sock"
        self.sigterm = False
        self.monitor: ContainerMonitor | None = None
        self.manager: Manager | None = None
        #: Set by the supervisor for a restart: write what differs before serving (``run``).
        self.catch_up = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        victim = await self._find_victim()
        metadata = self.load()
        store = MetadataStore(metadata, runner=self.runner)
        await store.prime()  # the first write after assembly must not wait for reads
        if self.catch_up:
            # A restart in this process (no other writer): bring every disk's copy to the
            # metadata now held, such as a disk that arrived late with an older copy.
            await store.commit([])
        self.monitor = ContainerMonitor(store, events=self.events)
        self.manager = Manager(self.container, self.kernel, self.monitor, events=self.events)
        self._claim_files(victim)
        server = ControlServer(
            Handlers(self.monitor.ping, self.manager.ping, self._update), version=VERSION, events=self.events
        )
        listener = await server.listen(str(self.sock_file))
        async with trio.open_nursery() as n:
            await n.start(self.monitor.run)
            await n.start(self.manager.run)
            n.start_soon(server.serve, listener)
            self.events.emit("serving", container=self.container, pid=os.getpid())
            task_status.started()
            if victim is not None:
                await self._retire(victim)
                self.manager.restore_safe_mode()
            await self._until_done()
            n.cancel_scope.cancel()
        if not self.sigterm:
            self._remove_files()  # a successor taking over after SIGTERM cleans up itself
        self.events.emit("exiting", container=self.container, sigterm=self.sigterm)

    def terminate(self) -> None:
        """SIGTERM: make every array clean quickly, adopt nothing new, release arrays once clean."""
        self.sigterm = True
        if self.monitor is not None:
            self.monitor.release_when_clean = True
            self.monitor.wake()
        if self.manager is not None:
            self.manager.stop_adopting()

    async def _update(self, payloads: list[bytes]) -> None:
        """Queue the updates mdadm composed, as one; like mdmon, the client had its ack on receipt.

        mdadm follows its updates with a ping-monitor, which answers only after a
        whole monitor pass, so by then they are on disk (or refused together and
        logged by the monitor as ``update-refused``).  After SIGTERM updates are
        dropped, as mdmon drops them: the successor reloads the metadata.
        """
        if self.sigterm or self.monitor is None:
            self.events.emit("update-dropped", count=len(payloads), length=sum(map(len, payloads)))
            return
        self.monitor.queue.post([MdadmUpdate(p) for p in payloads])

    async def _until_done(self) -> None:
        """mdmon's exit test: the manager has scanned, no array is left (SIGTERM releases them once
        clean), and nobody holds the container exclusively.

        Arrays only ever leave in a monitor pass, so while there are some this
        waits for passes and costs no wake-ups of its own (a 20 ms poll here
        was measured at ~2,500 wake-ups a minute on an idle system).  Only
        while mdadm holds an empty container does it re-check every 20 ms, as
        mdmon does.
        """
        assert self.monitor is not None and self.manager is not None
        while True:
            if self.manager.scans and not self.monitor.arrays:
                if self.exclusive_open():
                    return
                await trio.sleep(0.02)
            elif not self.manager.scans:
                await trio.sleep(0.02)  # start-up only: until the first scan
            else:
                await self.monitor.next_pass()

    async def _find_victim(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid == os.getpid() or not _alive(pid):
            return None
        if not self.takeover and await _answers_ping(self.sock_file):
            raise AlreadyManaged(f"{self.container} is already managed by pid {pid}")
        return pid

    def _claim_files(self, victim: int | None) -> None:
        self.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if victim is not None or self.pid_file.exists():
            self._remove_files()
        try:
            fd = os.open(self.pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as e:
            raise ServiceError(f"cannot create {self.pid_file}: {e.strerror}") from e
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")

    def _remove_files(self) -> None:
        for p in (self.pid_file, self.sock_file):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    async def _retire(self, pid: int) -> None:
        """Stop the previous instance, now that we answer for the container (mdmon.md §1.4)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            return
        if b"mdmon" not in cmdline and b"@dmon" not in cmdline and b"mdmond" not in cmdline:
            self.events.emit("takeover-skipped", pid=pid, reason="pid file names another program")
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with trio.move_on_after(TAKEOVER_WAIT):
            while _alive(pid):
                await trio.sleep(0.2)
        self.events.emit("took-over", pid=pid, gone=not _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _answers_ping(path: Path) -> bool:
    try:
        with trio.move_on_after(2) as scope:
            stream = await trio.open_unix_socket(str(path))
            async with stream:
                await stream.send_all(encode(Frame(0)))
                head = await stream.receive_some(8)
                return len(head) >= 4 and struct.unpack("=I", head[:4])[0] == 0x5A5AA5A5
        return not scope.cancelled_caught
    except (OSError, trio.BrokenResourceError):
        return False


def container_is_free(devnode: str) -> Callable[[], bool]:
    """mdmon's exclusive-open test: EBUSY means mdadm (or someone) holds the container."""

    def check() -> bool:
        try:
            fd = os.open(devnode, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
        except OSError as e:
            return e.errno != errno.EBUSY
        os.close(fd)
        return True

    return check


__all__ = ["AlreadyManaged", "ContainerService", "ServiceError", "container_is_free"]
