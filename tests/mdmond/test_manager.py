"""The manager with its monitor on the simulated kernel, over real IMSM metadata (golden images)."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import MockClock

import formats
from formats.model import MemberState, VolumeState
from mdmond.kernel.simulated import SimArray, SimDevice, SimKernel
from mdmond.kernel.values import ArrayState as S
from mdmond.kernel.values import SyncAction
from mdmond.manager import Manager
from mdmond.metadata import MetadataStore
from mdmond.monitor.container import ContainerMonitor
from tests.golden import disk_count, overlay

from .monitor.rig import on_disk
from .test_metadata import inline


class World:
    """A container as mdadm would have assembled it: the kernel, the disks, the daemon."""

    def __init__(self, scenario: str, *, assembled: list[str] | None = None, state: S = S.READONLY) -> None:
        self.h = formats.handler(scenario.split("-")[0])
        self.disks = [overlay(scenario, n) for n in range(disk_count(scenario))]
        self.store = MetadataStore(self.h.assemble([self.h.load(d) for d in self.disks]), runner=inline)
        model = self.store.model()
        vol = model.volume(0)
        self.kernel = SimKernel()
        self.kernel.add_container("md127", model.format, [d.name.removeprefix("/dev/") for d in self.disks])
        by_slot = {m.slot: model.disk(m.disk_ref).path.removeprefix("/dev/") for m in vol.members if m.disk_ref}  # type: ignore[union-attr]
        slots = [s for s in range(vol.raid_disks) if s in by_slot and (assembled is None or by_slot[s] in assembled)]
        self.md = SimArray("md126", state=state, level=vol.level, devices=(), component_sectors=vol.component_sectors)
        for s in slots:
            self.md.devs[by_slot[s]] = SimDevice(by_slot[s], s, {"in_sync"})
        self.md.raid_disks = vol.raid_disks
        self.kernel.add_array(self.md)
        self.monitor = ContainerMonitor(self.store)
        self.manager = Manager("md127", self.kernel, self.monitor)

    def model(self):  # type: ignore[no-untyped-def]
        return on_disk(self.h, self.disks)

    async def run(self, body):  # type: ignore[no-untyped-def]
        async with trio.open_nursery() as n:
            n.start_soon(self.md.run)
            await n.start(self.monitor.run)
            await n.start(self.manager.run)
            await body()
            n.cancel_scope.cancel()


async def until(cond, limit: float = 600.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(limit):
        while not cond():
            await trio.sleep(0.05)


async def test_member_array_is_adopted_and_taken_over(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5")

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await until(lambda: w.md.array_state is S.READ_AUTO)

    await w.run(body)
    assert "array-adopted" in w.monitor.events.kinds()


async def test_failed_member_removed_spare_activated_rebuilt_and_recorded(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5-spare", state=S.ACTIVE)

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sdb")
        await until(lambda: "sdb" not in w.md.devs)  # removed by the manager, off the loop
        await until(lambda: w.md.sync_action is SyncAction.RECOVER)
        assert w.model().volume(0).member(1).disk_ref == "MDVM00000003"  # recorded before recover
        await until(lambda: w.md.sync_action is SyncAction.IDLE and "in_sync" in w.md.devs["sdd"].flags)
        await trio.sleep(1)

    await w.run(body)
    vol = w.model().volume(0)
    assert vol.member(1).state is MemberState.IN_SYNC and vol.state is VolumeState.NORMAL
    kinds = w.monitor.events.kinds()
    assert kinds.index("member-removed") < kinds.index("spare-activated")


async def test_no_spare_is_reported_and_nothing_is_touched(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5", state=S.ACTIVE)

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sdc")
        await until(lambda: "no-spare" in w.monitor.events.kinds())

    await w.run(body)
    assert w.model().volume(0).state is VolumeState.DEGRADED


async def test_frozen_array_gets_no_spare_until_thawed(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5-spare", state=S.ACTIVE)
    w.md.metadata_version = "external:-md127/0"

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sdb")
        await trio.sleep(30)
        assert "spare-activated" not in w.monitor.events.kinds()
        w.md.metadata_version = "external:/md127/0"
        await until(lambda: "spare-activated" in w.monitor.events.kinds())

    await w.run(body)


async def test_rebuild_found_at_start_up_resumes_from_the_checkpoint(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5-rebuild-stopped", assembled=["sda", "sdc"])
    checkpoint = w.store.model().volume(0).migration.checkpoint_sectors  # type: ignore[union-attr]
    assert checkpoint

    async def body() -> None:
        await until(lambda: "sdd" in w.md.devs)
        assert w.md.devs["sdd"].recovery_start == checkpoint  # before the monitor's first pass made it active
        await until(lambda: w.md.sync_action is SyncAction.RECOVER)
        assert w.md.sync_done == checkpoint
        await until(lambda: w.md.sync_action is SyncAction.IDLE and "in_sync" in w.md.devs["sdd"].flags)
        await trio.sleep(1)

    await w.run(body)
    vol = w.model().volume(0)
    assert vol.member(1).state is MemberState.IN_SYNC and vol.migration is None
    assert "rebuild-resumed" in w.monitor.events.kinds()
