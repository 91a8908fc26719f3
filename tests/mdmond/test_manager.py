"""The manager with its monitor on the simulated kernel, over real IMSM metadata (golden images)."""

from __future__ import annotations

import errno
import itertools
import random
import struct
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import formats
from formats.blockio import Disk, FileDisk
from formats.changes import Environment, MdadmUpdate
from formats.imsm import structs as IMSM
from formats.model import Container, DiskState, MemberState, VolumeState
from mdmond.kernel.simulated import SimArray, SimDevice, SimKernel
from mdmond.kernel.values import ArrayState as S
from mdmond.kernel.values import SyncAction
from mdmond.manager import ContainerReload, Manager
from mdmond.metadata import MetadataStore
from mdmond.monitor.container import ContainerMonitor
from tests.golden import disk_count, overlay

from .monitor.rig import on_disk
from .test_metadata import inline

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(5))
UPDATE_RWH_POLICY = 11  # IMSM enum imsm_update_type


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

    def __init__(
        self,
        scenario: str,
        *,
        assembled: list[str] | None = None,
        state: S = S.READONLY,
        missing: str | None = None,
        started: list[int] | None = None,
        rwh_policy: int | None = None,
        md_policy: str | None = None,
    ) -> None:
        """``assembled``: the members md was given (default: all present); ``missing``: a disk not in the container.

        ``rwh_policy``: volume 0's IMSM write-hole policy, set through mdadm's update (``--update-subarray=ppl``);
        ``md_policy``: the ``consistency_policy`` mdadm started the arrays with (``ppl``: each member gets the log
        the metadata gives it, as mdadm's assembly does).
        """
        self.h = formats.handler(scenario.split("-")[0])
        self.disks = [overlay(scenario, n) for n in range(disk_count(scenario))]
        present = [d for d in self.disks if d.name != f"/dev/{missing}"]
        c = self.h.assemble([self.h.load(d) for d in present])
        if rwh_policy is not None:
            c = c.apply([MdadmUpdate(struct.pack("@iii", UPDATE_RWH_POLICY, rwh_policy, 0))], ENV)
        self.store = MetadataStore(c, runner=inline)
        model = self.store.model()
        self.kernel = ContainerKernel()
        self.kernel.add_container("md127", model.format, [d.name.removeprefix("/dev/") for d in present])
        #: One md array per volume, as mdadm -I starts them: volume 0 is md126, volume 1 md125, ...
        self.mds: list[SimArray] = []
        for vol in model.volumes:
            if started is not None and vol.index not in started:
                continue  # not running (mdadm -I starts a volume once its disks are there)
            paths = {m.slot: model.disk(m.disk_ref).path for m in vol.members if m.disk_ref}
            by_slot = {slot: p.removeprefix("/dev/") for slot, p in paths.items() if p is not None}
            slots = [
                s for s in range(vol.raid_disks) if s in by_slot and (assembled is None or by_slot[s] in assembled)
            ]
            md = SimArray(
                f"md{126 - vol.index}",
                state=state,
                level=vol.level,
                devices=(),
                component_sectors=vol.component_sectors,
                metadata_version=f"external:/md127/{vol.index}",
                consistency_policy=md_policy,
            )
            for s in slots:
                m = vol.member(s)
                log = vol.ppl(m.offset_sectors) if md_policy == "ppl" else None
                md.devs[by_slot[s]] = SimDevice(
                    by_slot[s],
                    s,
                    {"in_sync"},
                    offset=m.offset_sectors,
                    size_kib=vol.component_sectors // 2,
                    ppl_sector=log.sector if log else 0,
                    ppl_size=log.size_sectors if log else 0,
                )
            md.raid_disks = vol.raid_disks
            self.kernel.add_array(md)
            self.mds.append(md)
        self.md = self.mds[0]
        self.monitor = ContainerMonitor(self.store)
        self.new_disks: dict[str, Disk] = {}  # what the manager finds at /dev/<name> when a disk joins
        self.manager = Manager("md127", self.kernel, self.monitor, open_disk=self.new_disks.__getitem__)

    def model(self) -> Container:
        return on_disk(self.h, self.disks)

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        async with trio.open_nursery() as n:
            for md in self.mds:
                n.start_soon(md.run)
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


@pytest.mark.parametrize("scenario", ["imsm-raid5-spare", "ddf-raid5-spare"])
async def test_raid5_losing_two_members_is_recorded_failed_and_keeps_its_spare(
    scenario: str, autojump_clock: MockClock
) -> None:
    """Two members of a RAID5 fail: nothing to rebuild from.  md refuses a spare's slot then (EINVAL,
    seen in the VM); the manager must not offer one, nor ask again and again (it did, every 0.1 s)."""
    w = World(scenario, state=S.ACTIVE)
    spare = next(d for d in w.store.model().disks if d.state is DiskState.SPARE)

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sda")
        w.md.fail_device("sdb")
        await until(lambda: "sda" not in w.md.devs and "sdb" not in w.md.devs)
        await trio.sleep(1)
        assert "spare-add-failed" not in w.monitor.events.kinds()
        scans = w.manager.scans
        await trio.sleep(2)
        assert w.manager.scans - scans < 5, "the manager keeps working on a failed volume"

    await w.run(body)
    vol = w.model().volume(0)
    assert vol.state is VolumeState.FAILED
    assert [m.state for m in vol.members].count(MemberState.FAILED) == 2
    assert w.model().disk(spare.ref).state is DiskState.SPARE
    assert set(w.md.devs) == {"sdc"}
    kinds = w.monitor.events.kinds()
    assert "spare-activated" not in kinds and "spare-add-failed" not in kinds, kinds


@pytest.mark.parametrize("scenario", ["imsm-raid5-spare", "ddf-raid5-spare"])
async def test_member_missing_at_assembly_is_recorded_failed_and_rebuilt_onto_the_spare(
    scenario: str, autojump_clock: MockClock
) -> None:
    """mdadm --assemble without sdb, then mdadm -I --run: md starts the volume degraded, read-auto."""
    w = World(scenario, state=S.READ_AUTO, missing="sdb")
    before = w.store.model().volume(0)
    lost = before.member(1).disk_ref
    assert before.member(1).state is MemberState.IN_SYNC and "sdb" not in w.md.devs

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await until(lambda: w.md.sync_action is SyncAction.RECOVER)
        # the spare's assignment and the lost member's failure are on disk before md recovers
        assert w.model().volume(0).member(1).disk_ref != lost
        await until(lambda: w.md.sync_action is SyncAction.IDLE and w.md.degraded == 0)
        await trio.sleep(1)

    await w.run(body)
    vol = w.model().volume(0)
    assert vol.state is VolumeState.NORMAL and all(m.state is MemberState.IN_SYNC for m in vol.members)
    assert lost not in {m.disk_ref for m in vol.members}
    assert w.monitor.events.kinds().count("spare-activated") == 1


async def test_disk_lost_by_two_volumes_is_replaced_in_each_from_the_other_volumes_free_space(
    autojump_clock: MockClock,
) -> None:
    """Intel matrix RAID without a spare: vol0 (RAID5: sda sdd sdb, offset 0) and vol1 (RAID1: sdc sdd,
    offset 40960) share sdd.  When it fails, mdmon rebuilds vol0 onto sdc's free space before 40960 and
    vol1 onto free space of vol0's disks after it; so does mdmond."""
    w = World("imsm-raid5-raid1", state=S.ACTIVE)
    assert [m.name for m in w.mds] == ["md126", "md125"] and all("sdd" in m.devs for m in w.mds)

    async def body() -> None:
        await until(lambda: len(w.monitor.arrays) == 2)
        await w.md.submit_write()
        w.md.fail_device("sdd")  # the monitor propagates it to vol1
        await until(
            lambda: (
                all(md.degraded == 0 and md.sync_action is SyncAction.IDLE for md in w.mds)
                and all(len(md.devs) == md.raid_disks for md in w.mds)
            )
        )
        await trio.sleep(1)

    await w.run(body)
    model = w.model()
    vol0, vol1 = model.volume(0), model.volume(1)
    assert vol0.state is VolumeState.NORMAL and vol1.state is VolumeState.NORMAL
    assert "MDVM00000003" not in {m.disk_ref for v in (vol0, vol1) for m in v.members}  # sdd, failed
    assert vol0.member(1).disk_ref == "MDVM00000002"  # sdc, the disk vol0 did not use
    assert vol1.member(1).disk_ref in ("MDVM00000000", "MDVM00000001")  # sda or sdb
    # every disk's extents stay apart
    for d in model.disks:
        used = sorted(
            (m.offset_sectors, m.offset_sectors + v.component_sectors)
            for v in model.volumes
            for m in v.members
            if m.disk_ref == d.ref
        )
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(used)), (d.ref, used)
    assert w.monitor.events.kinds().count("spare-activated") == 2


async def test_ddf_disk_lost_by_two_volumes_is_rebuilt_in_both_vol1_onto_a_disk_holding_vol0(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    """ddf-two-volumes: vol0 RAID5 on sda sdb sdc at 0, vol1 RAID1 on sdb sda at 24576; sda fails.

    sdc has room for vol1 after vol0's extent: vol1 is rebuilt there at once, as mdmon does,
    but DDF keeps "Rebuilding" per disk and sdc is in sync for vol0, so nothing is recorded
    until md has vol1's copy in sync (``DDFContainer.pending``).  vol0 has no disk to take
    until one is added; it is then rebuilt onto it, md told the offset DDF records (0).
    """
    w = World("ddf-two-volumes", state=S.ACTIVE)
    new = blank(tmp_path, "sde", "MDVM00000009")

    async def body() -> None:
        await until(lambda: len(w.monitor.arrays) == 2)
        await w.md.submit_write()
        w.md.fail_device("sda")
        await until(lambda: "spare-activated" in w.monitor.events.kinds() and "no-spare" in w.monitor.events.kinds())
        name = new.name.removeprefix("/dev/")
        w.new_disks[name] = new
        w.kernel.add_container_disk("md127", name)
        await until(lambda: all(md.degraded == 0 and md.sync_action is SyncAction.IDLE for md in w.mds))
        await trio.sleep(1)

    await w.run(body)
    model = read_back(w.h, [d for d in w.disks if d.name != "/dev/sda"] + [new])
    vol0, vol1 = model.volumes
    assert vol0.state is VolumeState.NORMAL and vol1.state is VolumeState.NORMAL
    sdc = next(d.ref for d in model.disks if d.path == "/dev/sdc")
    sde = next(d.ref for d in model.disks if d.path == "/dev/sde")
    assert (vol1.member(1).disk_ref, vol1.member(1).offset_sectors) == (sdc, 24576)
    assert [(m.disk_ref, m.offset_sectors) for m in vol0.members if m.disk_ref == sde] == [(sde, 0)]
    assert len({m.disk_ref for m in vol0.members}) == 3 and len({m.disk_ref for m in vol1.members}) == 2
    for md, vol, disk in ((w.mds[0], vol0, sde), (w.mds[1], vol1, sdc)):
        member = next(m for m in vol.members if m.disk_ref == disk)
        dev = md.devs[(model.disk(disk).path or "").removeprefix("/dev/")]
        assert "in_sync" in dev.flags and dev.offset == member.offset_sectors, (md.name, member, dev)


async def test_a_member_disk_that_vanishes_is_failed_recorded_and_replaced_without_any_io(
    autojump_clock: MockClock,
) -> None:
    """udev says sdb is gone; md would notice only at the next I/O to it.  No write is made."""
    w = World("imsm-raid5-spare", state=S.ACTIVE)
    lost = w.store.model().volume(0).member(1).disk_ref

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.kernel.unplug("sdb")
        await until(
            lambda: w.md.sync_action is SyncAction.IDLE and "sdd" in w.md.devs and "in_sync" in w.md.devs["sdd"].flags
        )
        w.kernel.plug("sdb", serial=lost)  # it comes back: reported, not trusted
        await until(lambda: "device-reappeared" in w.monitor.events.kinds())

    await w.run(body)
    vol = w.model().volume(0)
    assert vol.state is VolumeState.NORMAL and lost not in {m.disk_ref for m in vol.members}
    kinds = w.monitor.events.kinds()
    assert kinds.index("device-disappeared") < kinds.index("spare-activated")
    back = next(e.fields for e in w.monitor.events.records if e.kind == "device-reappeared")
    assert back["device"] == "sdb" and back["disk"] == lost and back["recorded"] != "active"


@pytest.mark.parametrize(("scenario", "late"), [("imsm-raid5-raid1", "sdc"), ("ddf-raid5-spare", "sdd")])
async def test_a_disk_of_ours_arriving_late_makes_the_service_reload_instead_of_adding_a_spare(
    scenario: str, late: str, autojump_clock: MockClock
) -> None:
    """mdadm -I adds a container's disks one by one, and starts a volume once its disks are there.

    The daemon started with vol0; then a disk the metadata already names comes: IMSM's sdc (vol1's,
    not started yet), DDF's recorded spare sdd.  Recording either as a new spare would give it a
    second identity (DDF: a second PD entry); the service reloads from all the disks instead.
    """
    w = World(scenario, state=S.READ_AUTO, missing=late, started=[0])
    disk = next(d for d in w.disks if d.name == f"/dev/{late}")
    before = w.store.model().disks

    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        w.new_disks[late] = disk
        w.kernel.add_container_disk("md127", late)
        await until(lambda: False, 60)  # ended by the reload (a timeout here fails the test)

    with pytest.RaisesGroup(ContainerReload, flatten_subgroups=True):
        await w.run(body)
    assert "container-disk-member" in w.monitor.events.kinds()
    assert "container-disk-added" not in w.monitor.events.kinds()
    assert w.store.model().disks == before  # nothing recorded about it (it is still "not here")


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


def _raid10_lost_one_of_each_mirror(activate: bool) -> tuple[MetadataStore, list[Disk], ContainerKernel, SimArray]:
    """RAID10 on sda-sdd, spares sde and sdf, sda and sdc failed; if ``activate``, both spares half rebuilt."""
    from formats.base import write_all
    from formats.blockio import MemoryDisk
    from formats.changes import ActivateSpare, Environment, FailDisk, SetCheckpoint
    from formats.imsm.create import VolumeSpec, create

    names = ["sda", "sdb", "sdc", "sdd", "sde", "sdf"]
    serials = [f"R10DISK{n:04d}" for n in range(6)]
    disks = [MemoryDisk(bytes(64 << 20), name=f"/dev/{n}", serial=s) for n, s in zip(names, serials, strict=True)]
    env = Environment(now=lambda: 1_700_000_000.0)
    c = create([(s, 131072) for s in serials], [VolumeSpec("vol0", 10, (0, 1, 2, 3), size_sectors=65536)], env)
    for s, d in zip(serials, disks, strict=True):
        c.attach(s, d)
    c = c.apply([FailDisk(serials[0]), FailDisk(serials[2])], env)
    if activate:
        c = c.apply([ActivateSpare(0, 0, serials[4]), ActivateSpare(0, 2, serials[5]), SetCheckpoint(0, 16384)], env)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    h = formats.handler("imsm")
    present: list[Disk] = [d for d in disks if d.name not in ("/dev/sda", "/dev/sdc")]  # failed: never written
    store = MetadataStore(h.assemble([h.load(d) for d in present]), runner=inline)
    kernel = ContainerKernel()
    kernel.add_container("md127", "imsm", names)
    vol = store.model().volume(0)
    md = SimArray("md126", state=S.READONLY, level=10, devices=(), component_sectors=vol.component_sectors)
    md.raid_disks = 4
    for slot, dev in ((1, "sdb"), (3, "sdd")):  # mdadm assembled the in-sync halves only
        md.devs[dev] = SimDevice(dev, slot, {"in_sync"})
    kernel.add_array(md)
    return store, present, kernel, md


async def test_two_spares_are_activated_in_one_update_and_rebuilt_in_one_pass(autojump_clock: MockClock) -> None:
    store, present, kernel, md = _raid10_lost_one_of_each_mirror(activate=False)
    monitor = ContainerMonitor(store)
    manager = Manager("md127", kernel, monitor)
    async with trio.open_nursery() as n:
        n.start_soon(md.run)
        await n.start(monitor.run)
        await n.start(manager.run)
        await until(lambda: {"sde", "sdf"} <= set(md.devs) and md.sync_action is SyncAction.RECOVER)
        assert {md.devs["sde"].slot, md.devs["sdf"].slot} == {0, 2}  # both in the one recovery pass
        await until(lambda: md.sync_action is SyncAction.IDLE and not md.degraded, limit=600)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    commits = [e for e in monitor.events.records if e.kind == "metadata" and e.fields.get("source") == "update-queue"]
    assert [e.fields["change"] for e in commits] == ["ActivateSpare", "ActivateSpare"]  # one update, one commit
    done = on_disk(formats.handler("imsm"), present).volume(0)
    assert [m.state for m in done.members] == [MemberState.IN_SYNC] * 4 and done.migration is None


async def test_two_spares_rebuilt_together_both_resume_from_the_one_checkpoint(autojump_clock: MockClock) -> None:
    """Better than mdmon, where provably safe (seeds.md §1; mdmon punts on a dual rebuild, 4363fd80).

    RAID10 lost one disk of each mirror; both spares were activated in one update
    (one rebuild pass), and the rebuild stopped with a checkpoint.  At start-up
    both go back to their recorded slots with recovery_start = the checkpoint:
    the checkpoint only ever records what md had done on the pass that rebuilt
    both, so it bounds each of them.
    """
    store, present, kernel, md = _raid10_lost_one_of_each_mirror(activate=True)
    vol = store.model().volume(0)
    assert [m.state for m in vol.members][0::2] == [MemberState.REBUILDING] * 2
    checkpoint = vol.migration.checkpoint_sectors  # type: ignore[union-attr]
    assert checkpoint and checkpoint <= 16384
    monitor = ContainerMonitor(store)
    manager = Manager("md127", kernel, monitor)
    async with trio.open_nursery() as n:
        n.start_soon(md.run)
        await n.start(monitor.run)
        await n.start(manager.run)
        await until(lambda: {"sde", "sdf"} <= set(md.devs))
        assert (md.devs["sde"].slot, md.devs["sdf"].slot) == (0, 2)
        assert md.devs["sde"].recovery_start == md.devs["sdf"].recovery_start == checkpoint
        await until(lambda: md.sync_action is SyncAction.IDLE and "in_sync" in md.devs["sdf"].flags, limit=600)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    done = on_disk(formats.handler("imsm"), present).volume(0)
    assert [m.state for m in done.members] == [MemberState.IN_SYNC] * 4 and done.migration is None
    resumed = [
        (e.fields["slot"], e.fields["recovery_start"]) for e in manager.events.records if e.kind == "rebuild-resumed"
    ]
    assert resumed == [(0, checkpoint), (2, checkpoint)]


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


# -- write-hole policies (mdmon.md §3.5, sysfs_add_disk) -------------------------------------------


def _fail_sdb_and_wait_for(w: World, cond: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        await until(lambda: "md126" in w.monitor.arrays)
        await w.md.submit_write()
        w.md.fail_device("sdb")
        await until(lambda: "sdb" not in w.md.devs)
        await until(cond)
        await trio.sleep(5)  # long enough for a retry loop to show

    return body


async def test_spare_of_a_ppl_array_gets_the_members_log_before_its_slot(autojump_clock: MockClock) -> None:
    """md takes a PPL array's new member only with its log in place (the simulator checks as
    raid5-ppl.c ppl_validate_rdev does when the slot is written)."""
    w = World("imsm-raid5-spare", state=S.ACTIVE, rwh_policy=IMSM.RWH_MULTIPLE_DISTRIBUTED, md_policy="ppl")
    done = lambda: "sdd" in w.md.devs and "in_sync" in w.md.devs["sdd"].flags  # noqa: E731
    await w.run(_fail_sdb_and_wait_for(w, done))
    new, other = w.md.devs["sdd"], w.md.devs["sda"]
    assert new.slot == 1 and new.ppl_size > 0
    assert (new.ppl_sector, new.ppl_size, new.offset) == (other.ppl_sector, other.ppl_size, other.offset)
    vol = w.model().volume(0)
    assert vol.member(1).disk_ref == "MDVM00000003" and vol.state is VolumeState.NORMAL
    assert "spare-refused" not in w.monitor.events.kinds()


async def test_resync_array_gets_no_log_whatever_the_metadata_says(autojump_clock: MockClock) -> None:
    """mdadm falls back to resync on a kernel without PPL: md's policy decides, as in mdmon."""
    w = World("imsm-raid5-spare", state=S.ACTIVE, rwh_policy=IMSM.RWH_MULTIPLE_DISTRIBUTED, md_policy="resync")
    done = lambda: "sdd" in w.md.devs and "in_sync" in w.md.devs["sdd"].flags  # noqa: E731
    await w.run(_fail_sdb_and_wait_for(w, done))
    assert (w.md.devs["sdd"].ppl_sector, w.md.devs["sdd"].ppl_size) == (0, 0)


@pytest.mark.parametrize("how", ["md-refuses-the-slot", "no-log-in-the-metadata"])
async def test_spare_refused_is_reported_once_and_not_retried(how: str, autojump_clock: MockClock) -> None:
    """A disk md will not take (here: its slot write fails, or md runs PPL and the metadata has no
    log for it) is set aside for the array and reported once; nothing is recorded, nothing rebuilt."""
    rwh = IMSM.RWH_MULTIPLE_DISTRIBUTED if how == "md-refuses-the-slot" else None
    w = World("imsm-raid5-spare", state=S.ACTIVE, rwh_policy=rwh, md_policy="ppl")
    if how == "md-refuses-the-slot":
        w.md.inject_write_error("dev-sdd/slot", errno.ENOSPC, times=1000)
    refused = lambda: "spare-refused" in w.monitor.events.kinds()  # noqa: E731
    await w.run(_fail_sdb_and_wait_for(w, refused))
    kinds = w.monitor.events.kinds()
    assert kinds.count("spare-refused") == 1 and "spare-activated" not in kinds, kinds
    (e,) = [e for e in w.monitor.events.records if e.kind == "spare-refused"]
    assert e.fields["device"] == "sdd" and e.fields["disk"] == "MDVM00000003"
    if how == "md-refuses-the-slot":
        # Two writes in all, no retry loop: the slot, then the take-back's "none".
        assert len(w.md._write_errors["dev-sdd/slot"]) == 998
        assert "ENOSPC" in e.fields["error"] or "injected" in e.fields["error"]
    assert "sdd" not in w.md.devs  # taken back out before the unfreeze
    assert w.md.sync_action is SyncAction.IDLE and not w.md.frozen
    assert w.model().volume(0).member(1).disk_ref != "MDVM00000003"
