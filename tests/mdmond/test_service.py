"""A container service end to end on the simulated kernel: files, socket, exit rules, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from mdmond.control import frames
from mdmond.kernel.values import ArrayState as S
from mdmond.service import VERSION, AlreadyManaged, ContainerService

from .test_manager import World, until
from .test_metadata import inline


def service(w: World, run_dir: Path, **kw: object) -> ContainerService:
    return ContainerService(
        "md127",
        w.kernel,
        lambda: w.store.metadata,
        run_dir=run_dir,
        runner=inline,
        **kw,  # type: ignore[arg-type]
    )


async def ping(path: Path) -> bytes:
    async with await trio.open_unix_socket(str(path)) as s:
        await s.send_all(frames.encode(frames.Frame(0)))
        got = b""
        with trio.fail_after(10):
            while len(got) < 12 + len(VERSION) + 1:
                got += await s.receive_some()
        return got


async def test_files_socket_and_exit_when_the_last_array_stops(tmp_path: Path) -> None:
    w = World("imsm-raid5", state=S.ACTIVE)
    svc = service(w, tmp_path)
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        await n.start(svc.run)
        assert (tmp_path / "md127.pid").read_text() == f"{os.getpid()}\n"
        assert await ping(tmp_path / "md127.sock") == frames.reply(VERSION.encode() + b"\0")
        await until(lambda: "md126" in svc.monitor.arrays)  # type: ignore[union-attr]
        w.md.write("array_state", "inactive")  # mdadm --stop
        with trio.fail_after(10):
            while (tmp_path / "md127.pid").exists():
                await trio.sleep(0.02)
        n.cancel_scope.cancel()
    assert not (tmp_path / "md127.sock").exists()
    assert w.md.array_state is S.CLEAR


async def test_a_live_instance_is_not_displaced_without_takeover_but_is_with_it(tmp_path: Path) -> None:
    # The previous instance: a live process named like mdmon, with a socket that answers.
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mdmon", "md127"])
    try:
        w = World("imsm-raid5", state=S.ACTIVE)
        first = service(w, tmp_path, exclusive_open=lambda: False)
        async with trio.open_nursery() as n:
            n.start_soon(w.md.run)
            await n.start(first.run)
            (tmp_path / "md127.pid").write_text(f"{victim.pid}\n")
            with pytest.raises(AlreadyManaged):
                await service(w, tmp_path).run()
            second = service(w, tmp_path, takeover=True, exclusive_open=lambda: False)
            await n.start(second.run)
            w.md.write("safe_mode_delay", "0.001")  # what the victim's SIGTERM does (mdmon and mdmond alike)
            with trio.fail_after(10):
                while victim.poll() is None:
                    await trio.sleep(0.05)
            assert victim.returncode == -signal.SIGTERM
            assert (tmp_path / "md127.pid").read_text() == f"{os.getpid()}\n"
            await until(lambda: "took-over" in second.events.kinds(), limit=10)
            assert float(w.md.read("safe_mode_delay")) >= 1  # ours again, not the victim's parting 1 ms
            n.cancel_scope.cancel()
    finally:
        victim.kill()
        victim.wait()


async def test_sigterm_leaves_every_array_clean_then_exits_keeping_the_files(tmp_path: Path) -> None:
    w = World("imsm-raid5")  # started read-only, as mdadm starts it
    svc = service(w, tmp_path)
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        done = trio.Event()

        async def serve() -> None:
            await svc.run()
            done.set()

        n.start_soon(serve)
        await until(lambda: svc.monitor is not None and "md126" in svc.monitor.arrays)
        await w.md.submit_write()
        assert w.model().volume(0).dirty
        svc.terminate()
        with trio.fail_after(30):
            await done.wait()
        n.cancel_scope.cancel()
    assert w.md.array_state is S.CLEAN and not w.model().volume(0).dirty
    assert (tmp_path / "md127.pid").exists()  # the successor that sent SIGTERM cleans up


async def test_an_exclusive_holder_keeps_the_service_alive(tmp_path: Path) -> None:
    w = World("imsm-raid5", state=S.ACTIVE)
    held = [True]
    svc = service(w, tmp_path, exclusive_open=lambda: not held[0])
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        await n.start(svc.run)
        w.md.write("array_state", "inactive")
        await trio.sleep(1)
        assert (tmp_path / "md127.pid").exists()  # mdadm holds the container: stay
        held[0] = False
        with trio.fail_after(10):
            while (tmp_path / "md127.pid").exists():
                await trio.sleep(0.02)
        n.cancel_scope.cancel()


async def test_an_mdadm_update_is_acknowledged_then_applied_or_refused_by_the_monitor(tmp_path: Path) -> None:
    """mdmon's order: ack once queued; the ping-monitor after it answers once the monitor has judged it."""
    w = World("imsm-raid5", state=S.ACTIVE)
    svc = service(w, tmp_path)
    before = w.store.metadata
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        await n.start(svc.run)
        junk = b"\xff" * 16  # no format's update type: must be refused, and nothing written
        async with await trio.open_unix_socket(str(tmp_path / "md127.sock")) as s:
            await s.send_all(frames.encode(frames.Frame(len(junk), junk)))
            got = b""
            with trio.fail_after(10):
                while len(got) < 12:
                    got += await s.receive_some()
            assert got == frames.reply()
        await ping(tmp_path / "md127.sock")
        refused = [e for e in svc.events.records if e.kind == "update-refused"]
        assert len(refused) == 1 and "16 bytes" in refused[0].fields["changes"][0]
        assert svc.monitor is not None and svc.monitor.store.metadata is before
        n.cancel_scope.cancel()


class StepCounter(trio.abc.Instrument):
    """Counts task steps: every wake-up of any task is one or more steps."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def test_an_idle_service_does_not_wake_up(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Idle arrays cost nothing: a 20 ms poll here once cost ~2,500 wake-ups a minute in the test bed."""
    w = World("imsm-raid5", state=S.CLEAN)
    svc = service(w, tmp_path)
    counter = StepCounter()
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        await n.start(svc.run)
        await until(lambda: "md126" in svc.monitor.arrays)  # type: ignore[union-attr]
        await trio.sleep(10)  # settle: adoption, safe mode, first passes
        trio.lowlevel.add_instrument(counter)
        await trio.sleep(600)  # ten idle minutes, in simulated time
        trio.lowlevel.remove_instrument(counter)
        n.cancel_scope.cancel()
    assert counter.steps < 20, f"{counter.steps} task steps in 10 idle minutes"


async def test_the_kernel_is_served_while_the_control_socket_is_abused(tmp_path: Path) -> None:
    """Issue 12: with the socket flooded (past the cap), trickled into and fed updates without a ping,
    a write that md blocks on is still marked dirty at once, and a legitimate ping is still answered."""
    w = World("imsm-raid5")
    svc = service(w, tmp_path)
    sock = str(tmp_path / "md127.sock")
    async with trio.open_nursery() as n:
        n.start_soon(w.md.run)
        await n.start(svc.run)
        await until(lambda: svc.monitor is not None and "md126" in svc.monitor.arrays)

        async def trickle() -> None:
            with trio.move_on_after(5):
                async with await trio.open_unix_socket(sock) as s:
                    try:
                        for b in frames.encode(frames.Frame(16, bytes(16))):
                            await s.send_all(bytes([b]))
                            await trio.sleep(0.05)
                    except trio.BrokenResourceError:
                        pass

        async def hoard() -> None:
            async with await trio.open_unix_socket(sock) as s:
                try:
                    for _ in range(40):
                        await s.send_all(frames.encode(frames.Frame(1 << 20, bytes(1 << 20))))
                except trio.BrokenResourceError:
                    pass  # cut off at the bound

        crowd = []
        async with trio.open_nursery() as abuse:
            for _ in range(10):
                abuse.start_soon(trickle)
            abuse.start_soon(hoard)
            crowd = [await trio.open_unix_socket(sock) for _ in range(40)]
            await trio.sleep(0.1)
            with trio.fail_after(2):
                await w.md.submit_write()  # md blocks the write until the metadata says dirty
            assert w.model().volume(0).dirty
            for s in crowd:
                await s.aclose()
            await trio.sleep(0.05)
            with trio.fail_after(2):
                assert await ping(tmp_path / "md127.sock") == frames.reply(VERSION.encode() + b"\0")
            abuse.cancel_scope.cancel()
        n.cancel_scope.cancel()
    kinds = svc.events.kinds()
    assert "control-overflow" in kinds and "control-refused" in kinds
