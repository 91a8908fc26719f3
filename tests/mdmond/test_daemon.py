"""The daemon on the simulated kernel: containers side by side, start-up failures, restarts, scoped SIGTERM."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from mdmond import host
from mdmond.daemon import Daemon, Options
from mdmond.events import Event, EventLog
from mdmond.kernel.values import ArrayState as S
from mdmond.manager import ContainerReload
from mdmond.service import ContainerService

from .test_manager import World, until
from .test_metadata import inline


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


def world(name: str) -> World:
    """A container as mdadm assembled it, its member md126 started read-only; named ``name``."""
    w = World("imsm-raid5")
    if name != "md127":
        w.kernel.containers[name] = w.kernel.containers.pop("md127")
        w.md.metadata_version = f"external:/{name}/0"
    return w


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


Make = Callable[[str, EventLog], ContainerService]


def maker(worlds: dict[str, World], run_dir: Path, cls: type[ContainerService] = ContainerService) -> Make:
    def make(name: str, events: EventLog) -> ContainerService:
        w = worlds[name]
        return cls(
            name,
            w.kernel,
            lambda: w.h.assemble([w.h.load(d) for d in w.disks]),  # from disk, as a restart would
            run_dir=run_dir,
            events=events,
            runner=inline,
        )

    return make


class Running:
    """A daemon run in a nursery, with what it reported."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.ready: list[int] = []
        self.status: int | None = None
        self.done = trio.Event()

    async def run(self) -> None:
        self.status = await self.daemon.run(self.ready.append)
        self.done.set()

    async def wait(self, limit: float = 10) -> int:
        with trio.fail_after(limit):
            await self.done.wait()
        assert self.status is not None
        return self.status


async def serving_array(d: Daemon, name: str) -> None:
    await until(
        lambda: (s := d.services.get(name)) is not None and s.monitor is not None and "md126" in s.monitor.arrays, 10
    )


async def answered(w: World) -> None:
    """A write to the container's array goes through: someone marked the metadata dirty first."""
    await until(lambda: w.md.array_state in (S.READ_AUTO, S.CLEAN, S.ACTIVE), 10)
    with trio.fail_after(10):
        await w.md.submit_write()
    assert w.model().volume(0).dirty


def pid(path: Path) -> str:
    return path.read_text()


async def test_two_containers_are_served_side_by_side_until_sigterm(tmp_path: Path) -> None:
    worlds = {"md127": world("md127"), "md130": world("md130")}
    sink = Recorder()
    d = Daemon(
        list(worlds), Options(lock_memory=False, run_dir=tmp_path, sinks=[sink]), make_service=maker(worlds, tmp_path)
    )
    r = Running(d)
    async with trio.open_nursery() as n:
        for w in worlds.values():
            n.start_soon(w.md.run)
        n.start_soon(r.run)
        await until(lambda: r.ready != [], 10)
        assert r.ready == [0]
        for name, w in worlds.items():
            assert pid(tmp_path / f"{name}.pid") == f"{os.getpid()}\n"
            assert (tmp_path / f"{name}.sock").exists()
            await serving_array(d, name)
            await answered(w)
        assert d.taken_over() == []
        os.kill(os.getpid(), signal.SIGTERM)  # systemctl stop: every container, each left clean
        assert await r.wait() == 0
        n.cancel_scope.cancel()
    for name, w in worlds.items():
        assert w.md.array_state is S.CLEAN and not w.model().volume(0).dirty, name
        assert (tmp_path / f"{name}.pid").exists()  # after SIGTERM the successor cleans up
    exits = {e.fields["container"] for e in sink.events if e.kind == "exiting"}
    assert exits == {"md127", "md130"}  # the last events reached the sinks before the daemon returned
    serving = [e for e in sink.events if e.kind == "serving"]
    assert sorted(e.fields["container"] for e in serving) == ["md127", "md130"]


async def test_a_container_that_cannot_start_is_reported_and_the_other_serves(tmp_path: Path) -> None:
    worlds = {"md130": world("md130"), "md127": world("md127")}
    make = maker(worlds, tmp_path)

    def broken(name: str, events: EventLog) -> ContainerService:
        svc = make(name, events)
        if name == "md130":

            def load() -> None:
                raise host.HostError("md130: /dev/sdc carries no imsm metadata")

            svc.load = load  # type: ignore[assignment]
        return svc

    d = Daemon(list(worlds), Options(lock_memory=False, run_dir=tmp_path), make_service=broken)
    r = Running(d)
    async with trio.open_nursery() as n:
        for w in worlds.values():
            n.start_soon(w.md.run)
        n.start_soon(r.run)
        await until(lambda: r.ready != [], 10)
        assert r.ready == [0] and list(d.services) == ["md127"]
        assert not (tmp_path / "md130.pid").exists()
        failed = [e for e in d.log.records if e.kind == "service-failed"]
        assert len(failed) == 1 and failed[0].fields["container"] == "md130" and failed[0].fields["status"] == 3
        assert "carries no imsm metadata" in failed[0].fields["error"]
        await serving_array(d, "md127")
        await answered(worlds["md127"])
        d.terminate(list(d.services))
        assert await r.wait() == 3  # what could not start is the daemon's status
        n.cancel_scope.cancel()


async def test_when_nothing_can_start_ready_gets_the_failure(tmp_path: Path) -> None:
    worlds = {"md127": world("md127")}

    def make(name: str, events: EventLog) -> ContainerService:
        raise host.HostError(f"{name}: a member array, not a container", status=1)

    d = Daemon(["md127"], Options(lock_memory=False, run_dir=tmp_path), make_service=make)
    r = Running(d)
    async with trio.open_nursery() as n:
        n.start_soon(worlds["md127"].md.run)
        n.start_soon(r.run)
        assert await r.wait() == 1
        n.cancel_scope.cancel()
    assert r.ready == [1] and d.services == {}


class CrashesOnce(ContainerService):
    """Serves, then hits a bug (once per container): the supervisor must bring it back."""

    crashed: set[str] = set()
    trigger = trio.Event()

    async def _until_done(self) -> None:
        if self.container in self.crashed:
            return await super()._until_done()
        await self.trigger.wait()
        self.crashed.add(self.container)
        raise RuntimeError("bug in the monitor")


async def test_a_crashed_service_is_restarted_and_its_arrays_answered_again(tmp_path: Path) -> None:
    worlds = {"md127": world("md127"), "md130": world("md130")}
    CrashesOnce.crashed = {"md130"}  # only md127 crashes
    CrashesOnce.trigger = trio.Event()
    d = Daemon(
        list(worlds), Options(lock_memory=False, run_dir=tmp_path), make_service=maker(worlds, tmp_path, CrashesOnce)
    )
    r = Running(d)
    async with trio.open_nursery() as n:
        for w in worlds.values():
            n.start_soon(w.md.run)
        n.start_soon(r.run)
        await serving_array(d, "md127")
        first = d.services["md127"]
        other = d.services["md130"]
        CrashesOnce.trigger.set()
        await until(lambda: d.services.get("md127") not in (None, first), 10)
        await serving_array(d, "md127")
        await answered(worlds["md127"])  # the restarted service marks it dirty
        assert d.services["md130"] is other  # the other container never noticed
        assert pid(tmp_path / "md127.pid") == f"{os.getpid()}\n"
        kinds = d.logs["md127"].kinds()
        assert kinds.count("serving") == 2
        (failed,) = [e for e in d.logs["md127"].records if e.kind == "service-failed"]
        assert failed.fields["restarts"] == 1 and "bug in the monitor" in failed.fields["error"]
        d.terminate(list(d.services))
        assert await r.wait() == 0
        n.cancel_scope.cancel()


class ReloadsOnce(ContainerService):
    """Serves, then its manager sees a late member disk (``ContainerReload``) once."""

    reloaded = False
    trigger = trio.Event()

    async def _until_done(self) -> None:
        if ReloadsOnce.reloaded:
            return await super()._until_done()
        await self.trigger.wait()
        ReloadsOnce.reloaded = True
        raise ContainerReload("sdc carries this container's metadata")


async def test_a_reload_loads_again_at_once_writes_what_differs_and_is_no_crash(tmp_path: Path) -> None:
    worlds = {"md127": world("md127")}
    ReloadsOnce.reloaded = False
    ReloadsOnce.trigger = trio.Event()
    d = Daemon(
        list(worlds), Options(lock_memory=False, run_dir=tmp_path), make_service=maker(worlds, tmp_path, ReloadsOnce)
    )
    r = Running(d)
    async with trio.open_nursery() as n:
        n.start_soon(worlds["md127"].md.run)
        n.start_soon(r.run)
        await serving_array(d, "md127")
        first = d.services["md127"]
        assert not first.catch_up
        ReloadsOnce.trigger.set()
        await until(lambda: d.services.get("md127") not in (None, first), 10)
        await serving_array(d, "md127")
        assert d.services["md127"].catch_up  # the reloaded service brings every disk up to date
        await answered(worlds["md127"])
        kinds = d.logs["md127"].kinds()
        assert kinds.count("serving") == 2 and "service-reloading" in kinds and "service-failed" not in kinds
        d.terminate(list(d.services))
        assert await r.wait() == 0
        n.cancel_scope.cancel()


async def test_a_service_failing_between_load_and_serving_is_reported_not_restarted(tmp_path: Path) -> None:
    """A control socket that cannot be made (the path is too long for AF_UNIX) fails the start-up cleanly."""
    long_dir = tmp_path / ("x" * 100)
    worlds = {"md127": world("md127"), "md130": world("md130")}
    make = maker(worlds, tmp_path)

    def one_bad(name: str, events: EventLog) -> ContainerService:
        svc = make(name, events)
        if name == "md127":
            svc.run_dir = long_dir
            svc.pid_file = long_dir / "md127.pid"
            svc.sock_file = long_dir / "md127.sock"
        return svc

    d = Daemon(list(worlds), Options(lock_memory=False, run_dir=tmp_path), make_service=one_bad)
    r = Running(d)
    async with trio.open_nursery() as n:
        for w in worlds.values():
            n.start_soon(w.md.run)
        n.start_soon(r.run)
        await until(lambda: r.ready != [], 10)
        assert r.ready == [0] and list(d.services) == ["md130"]
        failed = [e for e in d.log.records if e.kind == "service-failed"]
        assert [e.fields["container"] for e in failed] == ["md127"] and failed[0].fields["status"] == 3
        await answered(worlds["md130"])
        d.terminate(list(d.services))
        assert await r.wait() == 3
        n.cancel_scope.cancel()


async def test_sigterm_after_a_takeover_stops_only_the_container_taken(tmp_path: Path) -> None:
    worlds = {"md127": world("md127"), "md130": world("md130")}
    d = Daemon(list(worlds), Options(lock_memory=False, run_dir=tmp_path), make_service=maker(worlds, tmp_path))
    r = Running(d)
    async with trio.open_nursery() as n:
        for w in worlds.values():
            n.start_soon(w.md.run)
        n.start_soon(r.run)
        for name in worlds:
            await serving_array(d, name)
        await answered(worlds["md130"])  # dirty: it must be left clean when it goes
        # mdmon --takeover md130 replaced md130's pid file with its own, then sends SIGTERM.
        (tmp_path / "md130.pid").write_text(f"{os.getppid()}\n")
        assert d.taken_over() == ["md130"]
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: "md130" not in d.services, 10)
        assert worlds["md130"].md.array_state is S.CLEAN and not worlds["md130"].model().volume(0).dirty
        assert pid(tmp_path / "md130.pid") == f"{os.getppid()}\n"  # the successor's, untouched
        # md127 goes on serving.
        assert list(d.services) == ["md127"]
        await answered(worlds["md127"])
        assert not r.done.is_set()
        # A pid file that is gone altogether also means taken over (the successor removes it first).
        (tmp_path / "md127.pid").unlink()
        assert d.taken_over() == ["md127"]
        os.kill(os.getpid(), signal.SIGTERM)
        assert await r.wait() == 0
        n.cancel_scope.cancel()
    assert worlds["md127"].md.array_state is S.CLEAN
