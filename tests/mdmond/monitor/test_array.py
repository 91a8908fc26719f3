"""The monitor loop against the simulated md array, over a toy format on memory disks.

The invariants are checked at the moment they matter: when the kernel is told
``active`` every disk already says dirty; when the metadata is marked clean on
disk, md is already clean.
"""

from __future__ import annotations

import trio
import trio.testing

from mdmond.kernel.simulated import SimArray
from mdmond.kernel.values import ArrayState as S
from mdmond.metadata import MetadataStore
from mdmond.monitor.array import ArrayMonitor

from ..toyformat import FlakyDisk, ToyMetadata, read_back


class WatchedArray(SimArray):
    """Checks, at each state write, what the disks hold."""

    def __init__(self, disks: dict[str, FlakyDisk], **kw: object) -> None:
        super().__init__("md126", **kw)  # type: ignore[arg-type]
        self.disks = disks
        self.violations: list[str] = []

    def write(self, attr: str, value: str) -> None:
        if attr == "array_state" and value == "active":
            states = [read_back(d) for d in self.disks.values()]
            if any(s is None or s[1] != [1] for s in states):
                self.violations.append(f"active written while disks say {states}")
        super().write(attr, value)


async def inline(fn):  # type: ignore[no-untyped-def]
    fn()


def setup(**kw: object) -> tuple[WatchedArray, MetadataStore, dict[str, FlakyDisk]]:
    disks = {f"d{i}": FlakyDisk(64 * 1024, f"/dev/sd{'ab'[i]}") for i in range(2)}
    md = WatchedArray(disks, **kw)
    return md, MetadataStore(ToyMetadata(disks), runner=inline), disks


async def test_write_clean_cycle(autojump_clock: trio.testing.MockClock) -> None:
    md, store, disks = setup(safe_mode_delay=5.0)
    async with trio.open_nursery() as n:
        n.start_soon(md.run_safe_mode_timer)
        n.start_soon(ArrayMonitor(md, store, 0).run)
        await trio.sleep(1)
        with trio.fail_after(1):  # simulated seconds: the monitor must answer at once
            await md.submit_write(0.1)
        assert all(read_back(d) == (1, [1]) for d in disks.values())
        await trio.sleep(10)  # idle past safe_mode_delay
        assert md.array_state is S.CLEAN
        assert all(read_back(d) == (2, [0]) for d in disks.values())
        n.cancel_scope.cancel()
    assert md.violations == []
    assert md.history == [S.CLEAN, S.WRITE_PENDING, S.ACTIVE, S.ACTIVE_IDLE, S.CLEAN]


async def test_many_writers_one_dirty_record(autojump_clock: trio.testing.MockClock) -> None:
    md, store, _disks = setup(safe_mode_delay=5.0)
    async with trio.open_nursery() as n:
        n.start_soon(md.run_safe_mode_timer)
        n.start_soon(ArrayMonitor(md, store, 0).run)
        async with trio.open_nursery() as writers:
            for i in range(20):
                writers.start_soon(md.submit_write, 0.01 * i)
        assert store.commits == 1  # one dirty record covers every concurrent writer
        n.cancel_scope.cancel()
    assert md.violations == []


async def test_stopped_array_is_marked_clean_and_released(autojump_clock: trio.testing.MockClock) -> None:
    md, store, _disks = setup(state=S.ACTIVE, safe_mode_delay=0)
    mon = ArrayMonitor(md, store, 0)
    await store.commit([])  # generation 1, clean
    async with trio.open_nursery() as n:
        n.start_soon(mon.run)
        await md.submit_write()
        # A stop is a transition (mdmon.md §2.3): the monitor must have seen the
        # array running first.  Without this, trio's randomised scheduling may
        # stop the array before the monitor's first look.
        await trio.testing.wait_all_tasks_blocked()
        assert mon.previous is S.ACTIVE
        md.write("array_state", "inactive")  # mdadm --stop
    assert mon.previous is S.INACTIVE
    assert not store.model().volume(0).dirty
    assert md.array_state is S.CLEAR


async def test_takeover_of_readonly_array_goes_read_auto(autojump_clock: trio.testing.MockClock) -> None:
    md, store, _disks = setup(state=S.READONLY)
    mon = ArrayMonitor(md, store, 0)
    assert await mon.step()
    assert md.array_state is S.READ_AUTO
