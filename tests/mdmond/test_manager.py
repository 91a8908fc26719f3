"""The manager with its monitor on the simulated kernel, over real IMSM metadata (golden images)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import formats
from formats.blockio import Disk, FileDisk
from formats.model import Container, DiskState, MemberState, VolumeState
from mdmond.kernel.simulated import SimArray, SimDevice, SimKernel
from mdmond.kernel.values import ArrayState as S
from mdmond.kernel.values import SyncAction
from mdmond.manager import Manager
from mdmond.metadata import MetadataStore
from mdmond.monitor.container import ContainerMonitor
from tests.golden import disk_count, overlay

from .monitor.rig import on_disk
from .test_metadata import inline


class ContainerKernel(SimKernel):
    """The simulator, plus what ``mdadm --add/--remove /dev/md/c0 /dev/sdX`` does to the container."""

    def add_container_disk(self, container: str, dev: str) -> None:
        self.containers[container][1].append(dev)
        self.device_number(dev)
        self._event()

    def remove_container_disk(self, container: str, dev: str) -> None:
        self.containers[container][1].remove(dev)
        self._event()


class World:
    """A container as mdadm would have assembled it: the kernel, the disks, the daemon."""

    def __init__(self, scenario: str, *, assembled: list[str] | None = None, state: S = S.READONLY) -> None:
        self.h = formats.handler(scenario.split("-")[0])
        self.disks = [overlay(scenario, n) for n in range(disk_count(scenario))]
        self.store = MetadataStore(self.h.assemble([self.h.load(d) for d in self.disks]), runner=inline)
        model = self.store.model()
        vol = model.volume(0)
        self.kernel = ContainerKernel()
        self.kernel.add_container("md127", model.format, [d.name.removeprefix("/dev/") for d in self.disks])
        by_slot = {m.slot: model.disk(m.disk_ref).path.removeprefix("/dev/") for m in vol.members if m.disk_ref}  # type: ignore[union-attr]
        slots = [s for s in range(vol.raid_disks) if s in by_slot and (assembled is None or by_slot[s] in assembled)]
        self.md = SimArray("md126", state=state, level=vol.level, devices=(), component_sectors=vol.component_sectors)
        for s in slots:
            self.md.devs[by_slot[s]] = SimDevice(by_slot[s], s, {"in_sync"})
        self.md.raid_disks = vol.raid_disks
        self.kernel.add_array(self.md)
        self.monitor = ContainerMonitor(self.store)
        self.new_disks: dict[str, Disk] = {}  # what the manager finds at /dev/<name> when a disk joins
        self.manager = Manager("md127", self.kernel, self.monitor, open_disk=self.new_disks.__getitem__)

    def model(self) -> Container:
        return on_disk(self.h, self.disks)

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self.md.run)
            await n.start(self.monitor.run)
            await n.start(self.manager.run)
            await body()
            n.cancel_scope.cancel()


async def until(cond: Callable[[], bool], limit: float = 600.0) -> None:
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


# -- disks added to and removed from the container (mdmon.md §3.6) ----------------------------

DISK_BYTES = 64 << 20  # the golden disks' size


class Tracked(FileDisk):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def blank(tmp_path: Path, name: str, serial: str, size: int = DISK_BYTES) -> Tracked:
    """A new, empty disk with a serial, as ``/dev/<name>``."""
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
    return Tracked(str(path), writable=True, name=f"/dev/{name}", serial=serial)


def read_back(h: formats.FormatHandler, disks: Sequence[Disk]) -> Container:
    return h.assemble([h.load(d) for d in disks]).model()


@pytest.mark.parametrize("scenario", ["imsm-raid5", "ddf-raid5"])
async def test_disk_added_to_the_container_replaces_a_failed_member(
    scenario: str, tmp_path: Path, autojump_clock: MockClock
) -> None:
    w = World(scenario, state=S.ACTIVE)
    new = blank(tmp_path, "sde", "MDVM00000009")

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sdc")
        await until(lambda: "no-spare" in w.monitor.events.kinds())
        w.new_disks["sde"] = new
        w.kernel.add_container_disk("md127", "sde")  # mdadm wrote nothing on it
        await until(lambda: w.md.sync_action is SyncAction.RECOVER)
        await until(lambda: w.md.sync_action is SyncAction.IDLE and "in_sync" in w.md.devs["sde"].flags)
        await trio.sleep(1)

    await w.run(body)
    kinds = w.monitor.events.kinds()
    assert kinds.index("container-disk-added") < kinds.index("spare-activated")
    ref = next(e.fields["disk"] for e in w.monitor.events.records if e.kind == "container-disk-added")
    working = [d for d in w.disks if d.name != "/dev/sdc"] + [new]
    model = read_back(w.h, working)
    vol = model.volume(0)
    assert vol.state is VolumeState.NORMAL and vol.member(2).disk_ref == ref
    assert vol.member(2).state is MemberState.IN_SYNC
    # Every working disk, the new one too, holds the same metadata: same family/GUID, same generation/seq.
    own = [read_back(w.h, [d]) for d in working]
    assert {(m.identity, m.generation) for m in own} == {(model.identity, model.generation)}


@pytest.mark.parametrize("scenario", ["imsm-raid5", "ddf-raid5"])
async def test_disk_added_to_a_healthy_container_is_a_spare_on_disk_and_leaves_again(
    scenario: str, tmp_path: Path, autojump_clock: MockClock
) -> None:
    w = World(scenario, state=S.ACTIVE)
    new = blank(tmp_path, "sde", "MDVM00000009")

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.new_disks["sde"] = new
        w.kernel.add_container_disk("md127", "sde")
        await until(lambda: "container-disk-added" in w.monitor.events.kinds())
        ref = w.manager._ref_of("sde")
        assert ref is not None
        model = read_back(w.h, [*w.disks, new])
        assert model.disk(ref).state is DiskState.SPARE and model.disk(ref).path == "/dev/sde"
        assert read_back(w.h, [new]).disk(ref).state is DiskState.SPARE  # its own metadata, parseable
        if w.h.name == "ddf":  # an IMSM spare record carries no family until it is used
            assert read_back(w.h, [new]).identity == model.identity
        w.kernel.remove_container_disk("md127", "sde")
        await until(lambda: "container-disk-removed" in w.monitor.events.kinds())
        left = read_back(w.h, list(w.disks)).disks
        assert all(d.ref != ref or d.state is DiskState.MISSING for d in left)
        assert ref not in w.store.metadata.disks()

    await w.run(body)
    assert w.model().volume(0).state is VolumeState.NORMAL
    assert new.closed


@pytest.mark.parametrize("scenario", ["imsm-raid5-spare", "ddf-raid5-spare"])
async def test_spare_removed_from_the_container_leaves_the_records(scenario: str, autojump_clock: MockClock) -> None:
    w = World(scenario, state=S.ACTIVE)
    spare = next(d for d in w.store.model().disks if d.state is DiskState.SPARE)
    closed: list[str] = []
    setattr(w.disks[3], "close", lambda: closed.append("sdd"))  # noqa: B010 - the overlay has no close

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.kernel.remove_container_disk("md127", "sdd")
        await until(lambda: "container-disk-removed" in w.monitor.events.kinds())

    await w.run(body)
    left = read_back(w.h, w.disks[:3]).disks  # the spare keeps its old record: nobody reads it back now
    assert all(d.ref != spare.ref or d.state is DiskState.MISSING for d in left)
    assert all(d.ref != spare.ref or d.state is DiskState.MISSING for d in w.store.model().disks)
    assert closed == ["sdd"]


async def test_working_member_removed_from_the_container_is_only_reported(autojump_clock: MockClock) -> None:
    w = World("imsm-raid5", state=S.ACTIVE)

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.kernel.remove_container_disk("md127", "sdb")
        await until(lambda: "container-disk-remove-refused" in w.monitor.events.kinds())

    await w.run(body)
    assert w.model().disk("MDVM00000001").state is DiskState.ACTIVE


async def test_unfit_disk_is_refused_and_let_go(tmp_path: Path, autojump_clock: MockClock) -> None:
    w = World("ddf-raid5", state=S.ACTIVE)
    tiny = blank(tmp_path, "sde", "TINY0001", size=16 << 20)  # DDF needs more than 32 MiB

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.new_disks["sde"] = tiny
        w.kernel.add_container_disk("md127", "sde")
        await until(lambda: "container-disk-refused" in w.monitor.events.kinds())

    await w.run(body)
    assert len(w.store.model().disks) == 3
    assert tiny.closed
