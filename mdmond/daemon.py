"""The daemon: every container served side by side in one event loop, each isolated.

One ``ContainerService`` per container, each with its own kernel handles, event
buffer and supervisor: a service that fails to start is reported and the others
go on; one that crashes while serving is restarted from the metadata on disk
(its arrays would otherwise hang on their next write), a bounded number of
times.

Signals follow mdmon: SIGTERM asks for every array clean, then exit; SIGUSR1
only wakes.  When a successor takes over *one* container of a process that
serves several (``mdmon --takeover md127``), it has already replaced that
container's pid file before sending SIGTERM; so a SIGTERM is taken to concern
the containers whose pid file no longer names us, and all of them only when
every pid file still does (``systemctl stop``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from . import host
from .events import EventLog
from .kernel.real import RealKernel
from .manager import ContainerReload
from .process import lock_memory
from .service import RUN_DIR, AlreadyManaged, ContainerService, ServiceError, container_is_free
from .sinks import Sink, Writer

#: Restarts of a crashed service within ``RESTART_WINDOW`` seconds before giving up on it.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


@dataclass
class Options:
    takeover: bool = False
    run_dir: Path = RUN_DIR
    lock_memory: bool = True
    sinks: Sequence[Sink] = field(default_factory=list)


def _notify(state: str) -> None:
    """sd_notify, where systemd asked for it (``Type=notify``); a no-op elsewhere."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon
    except ImportError:  # pragma: no cover - systemd-python is a dependency
        return
    daemon.notify(state)


class Daemon:
    def __init__(
        self,
        containers: Sequence[str],
        options: Options,
        *,
        make_service: Callable[[str, EventLog], ContainerService] | None = None,
    ) -> None:
        self.containers = list(containers)
        self.options = options
        self.make_service = make_service or self._real_service
        self.services: dict[str, ContainerService] = {}
        self.logs: dict[str, EventLog] = {}
        self.writer = Writer(options.sinks)
        self.log = EventLog(context={"container": "-"})
        self.writer.follow(self.log)
        self.status = 0

    def _real_service(self, name: str, events: EventLog) -> ContainerService:
        info = host.inspect(name)
        return ContainerService(
            name,
            RealKernel(),
            host.loader(info),
            run_dir=self.options.run_dir,
            events=events,
            takeover=self.options.takeover,
            exclusive_open=container_is_free(f"/dev/{name}"),
        )

    async def run(self, ready: Callable[[int], None] = lambda status: None) -> int:
        """Serve until every container is done; ``ready`` gets 0 once all that could start serve."""
        async with trio.open_nursery() as outer:
            outer.start_soon(self.writer.run)
            if self.options.lock_memory:
                # Before any array is served: locking faults in every mapped page (~0.3 s for
                # ~190 MB seen in the test bed), which must not stall a monitor already answering.
                # MCL_FUTURE then covers everything serving allocates.
                err = lock_memory()
                self.log.emit("memory-locked" if err == 0 else "memory-lock-failed", errno=err)
            # A worker thread exists before the first array needs one (mdmon: nothing created late).
            await trio.to_thread.run_sync(lambda: None)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1, signal.SIGINT) as signals:
                outer.start_soon(self._signals, signals)
                async with trio.open_nursery() as services:
                    for name in self.containers:
                        try:
                            await services.start(self._supervise, name)
                        except (host.HostError, AlreadyManaged, ServiceError) as e:
                            status = e.status if isinstance(e, host.HostError) else 3
                            self.status = self.status or status
                            self.log.emit("service-failed", container=name, error=str(e), status=status)
                    serving = bool(self.services)
                    ready(0 if serving else self.status or 3)
                    if serving:
                        _notify(f"READY=1\nSTATUS=serving {' '.join(sorted(self.services))}")
            _notify("STOPPING=1")
            await trio.sleep(0)  # let the writer take the last events
            with trio.move_on_after(2):
                await self._flush()
            outer.cancel_scope.cancel()
        return self.status

    async def _flush(self) -> None:
        self.writer.wake()
        while self.writer.writing or any(log.total and cursor[0] < log.total for log, cursor in self.writer.logs):
            await trio.sleep(0.01)

    async def _supervise(self, name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run one container's service; restart it if it crashes after it started serving."""
        crashes: list[float] = []
        first = True
        started = _Started(task_status)
        while True:
            events = self.logs.get(name) or EventLog(context={"container": name})
            if name not in self.logs:
                self.logs[name] = events
                self.writer.follow(events)
            svc = self.make_service(name, events)
            svc.catch_up = not first
            self.services[name] = svc
            try:
                if first:
                    await svc.run(task_status=started)
                else:
                    await svc.run()
                self.services.pop(name, None)
                return
            except (host.HostError, AlreadyManaged, ServiceError):
                self.services.pop(name, None)
                if first:
                    raise  # a start-up failure: reported by the caller
                events.emit("service-failed", error="could not restart", status=3)
                self.status = 3
                return
            except Exception as e:  # a bug must not leave the container's arrays unanswered
                if (reload := _reload(e)) is not None and started.done:
                    # Not a crash: the container's disks changed (a member arrived late); load again.
                    events.emit("service-reloading", reason=str(reload))
                    self.services.pop(name, None)
                    first = False
                    continue
                now = trio.current_time()
                crashes = [t for t in crashes if now - t < RESTART_WINDOW] + [now]
                events.emit("service-failed", error=_describe(e), restarts=len(crashes))
                self.services.pop(name, None)
                if first and not started.done:
                    # Failed before serving (no socket, say): a start-up failure, reported by the
                    # caller, not restarted (a restart would never tell the caller it started).
                    raise ServiceError(f"{name}: {_describe(e)}") from e
                first = False
                if len(crashes) > MAX_RESTARTS:
                    self.status = 2
                    return
                await trio.sleep(0.1 * 2 ** (len(crashes) - 1))

    async def _signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum == signal.SIGUSR1:
                for svc in self.services.values():
                    if svc.monitor is not None:
                        svc.monitor.wake()
                continue
            self.terminate(self.taken_over() or list(self.services))

    def taken_over(self) -> list[str]:
        """Containers whose pid file names another process: a successor has taken them."""
        mine = f"{os.getpid()}\n"
        out = []
        for name, svc in self.services.items():
            try:
                if svc.pid_file.read_text() != mine:
                    out.append(name)
            except OSError:
                out.append(name)
        return out

    def terminate(self, names: Sequence[str]) -> None:
        for name in names:
            svc = self.services.get(name)
            if svc is not None:
                self.log.emit("terminating", container=name)
                svc.terminate()


class _Started:
    """A service's ``task_status`` that remembers whether the service got to serving."""

    def __init__(self, inner: trio.TaskStatus[None]) -> None:
        self.inner = inner
        self.done = False

    def started(self, value: None = None) -> None:
        self.done = True
        self.inner.started()


def _describe(e: BaseException) -> str:
    """What went wrong, without the nurseries' wrapping: ``RuntimeError: ...; OSError: ...``."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


__all__ = ["Daemon", "Options"]


def _reload(e: BaseException) -> ContainerReload | None:
    """The ``ContainerReload`` a service ended with, alone or in its nursery's group (else None)."""
    if isinstance(e, ContainerReload):
        return e
    if isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        return _reload(e.exceptions[0])
    return None
