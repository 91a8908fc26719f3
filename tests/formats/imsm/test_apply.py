"""apply -> encode -> write -> load again, compared with mdadm's own later states where the goldens have them."""

from __future__ import annotations

import contextlib
import random
from dataclasses import replace

import pytest

from formats.base import write_all
from formats.blockio import FileDisk, MemoryDisk, OverlayDisk
from formats.changes import (
    ActivateSpare,
    AddSpare,
    Change,
    EndMigration,
    Environment,
    FailDisk,
    MemberInSync,
    RemoveDisk,
    SetCheckpoint,
    SetDirty,
    StartResync,
)
from formats.errors import ChangeRejected, MetadataError
from formats.imsm import HANDLER
from formats.imsm.container import IMSMContainer
from formats.imsm.create import VolumeSpec, create
from formats.model import Container, MemberState, MigrationType, VolumeState
from tests.golden import disk_count

from .helpers import container, writable

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(7))


def roundtrip(scenario: str, changes: list[Change]) -> tuple[IMSMContainer, IMSMContainer, list[OverlayDisk]]:
    disks = [writable(scenario, n) for n in range(disk_count(scenario))]
    before = container(scenario, disks)
    after = before.apply(changes, ENV)
    assert before.model() == container(scenario, [writable(scenario, n) for n in range(len(disks))]).model()
    for ref, writes in after.encode().items():
        write_all(after.disks()[ref], writes)
    reloaded = HANDLER.assemble([HANDLER.load(d) for d in disks])
    assert unfail_paths(reloaded.model()) == unfail_paths(after.model())
    return before, reloaded, disks


def unfail_paths(c: Container) -> Container:
    """A failed disk's serial gains ":0", so on reload it no longer matches its own disk (as in mdadm)."""
    return replace(c, disks=tuple(replace(d, path=None) if d.state.value == "failed" else d for d in c.disks))


def comparable(c: Container) -> Container:
    """Drop what differs between two separately created containers: family, generation, UUIDs, paths."""
    return replace(
        c,
        uuid="",
        identity="",
        generation=0,
        disks=tuple(replace(d, path=None) for d in c.disks),
        volumes=tuple(replace(v, uuid="") for v in c.volumes),
    )


def test_set_dirty() -> None:
    before, after, _ = roundtrip("imsm-raid1", [SetDirty(0, True)])
    assert after.model().volume(0).dirty
    assert after.mpb.generation_num == before.mpb.generation_num + 1
    assert replace(after.model().volume(0), dirty=False) == before.model().volume(0)
    _, clean, _ = roundtrip("imsm-raid1-degraded", [SetDirty(0, False)])
    assert not clean.model().volume(0).dirty


def test_fail_disk_matches_mdadm_degraded() -> None:
    _, after, disks = roundtrip("imsm-raid1", [FailDisk("MDVM00000001")])
    got = after.model()
    want = container("imsm-raid1-degraded").model()
    assert comparable(got).volumes == comparable(want).volumes
    assert [(d.ref, d.state) for d in got.disks] == [(d.ref, d.state) for d in want.disks]
    # the failed disk is not written (mdadm skips FAILED disks), so it keeps the old generation
    assert HANDLER.load(disks[1]).mpb.generation_num == after.mpb.generation_num - 1


def test_fail_then_activate_spare_matches_mdadm_rebuild() -> None:
    _, after, _ = roundtrip("imsm-raid5-spare", [FailDisk("MDVM00000001")])
    assert after.model().volume(0).state == VolumeState.DEGRADED
    disks = [writable("imsm-raid5-spare", n) for n in range(4)]
    c = container("imsm-raid5-spare", disks).apply([FailDisk("MDVM00000001")], ENV)
    old_family = c.mpb.family_num
    c2 = c.apply([ActivateSpare(0, 1, "MDVM00000003"), SetCheckpoint(0, 24576 + 100)], ENV)
    assert c2.mpb.family_num != old_family and c2.mpb.orig_family_num == c.mpb.orig_family_num
    for ref, writes in c2.encode().items():
        write_all(c2.disks()[ref], writes)
    got = HANDLER.assemble([HANDLER.load(d) for d in disks]).model()
    want = container("imsm-raid5-rebuild-stopped").model()
    # the golden rebuild ran on a 24 MiB/disk volume, this one spans the disks: compare all but sizes
    sized = tuple(
        replace(v, size_sectors=w.size_sectors, component_sectors=w.component_sectors)
        for v, w in zip(comparable(got).volumes, comparable(want).volumes, strict=True)
    )
    assert sized == comparable(want).volumes
    assert [(d.ref, d.state) for d in got.disks] == [(d.ref, d.state) for d in want.disks]


def test_member_in_sync_ends_rebuild() -> None:
    _, after, _ = roundtrip("imsm-raid5-rebuild-stopped", [MemberInSync(0, 1)])
    v = after.model().volume(0)
    assert v.migration is None and v.state == VolumeState.NORMAL
    assert all(m.state == MemberState.IN_SYNC for m in v.members)
    assert after.mpb.devs[0].map0.failed_disk_num == 0xFF


def test_end_migration_of_initialisation() -> None:
    _, after, _ = roundtrip("imsm-raid1-resync-killed", [EndMigration(0)])
    v = after.model().volume(0)
    assert v.migration is None and v.state == VolumeState.NORMAL


def test_checkpoint_rounds_down() -> None:
    _, after, _ = roundtrip("imsm-raid1-resync-killed", [SetCheckpoint(0, 100 * 512 + 511)])
    v = after.model().volume(0)
    assert v.migration is not None and v.migration.checkpoint_sectors == 100 * 512
    assert v.migration.type == MigrationType.INIT


def test_start_resync_is_repair_on_a_clean_volume() -> None:
    _, after, _ = roundtrip("imsm-raid1", [StartResync(0)])
    v = after.model().volume(0)
    assert v.migration is not None and v.migration.type == MigrationType.REPAIR
    assert v.migration.checkpoint_sectors == 0


def test_add_and_remove_spare() -> None:
    disks = [writable("imsm-raid1", n) for n in range(2)]
    c = container("imsm-raid1", disks).apply([AddSpare("NEWDISK0001", 131072)], ENV)
    base = writable("imsm-spare-only", 0).base
    extra = OverlayDisk(FileDisk(base.path, name=base.name, serial="NEWDISK0001"))
    c.attach("NEWDISK0001", extra)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    got = HANDLER.assemble([HANDLER.load(d) for d in [*disks, extra]]).model()
    assert got.disk("NEWDISK0001").state.value == "spare"
    c2 = c.apply([RemoveDisk("NEWDISK0001")], ENV)
    assert "NEWDISK0001" not in {d.ref for d in c2.model().disks}


def test_rejections_leave_the_original_untouched() -> None:
    c = container("imsm-raid1")
    before = c.model()
    with pytest.raises(ChangeRejected):
        c.apply([SetCheckpoint(0, 5)])  # not migrating
    with pytest.raises(ChangeRejected):
        c.apply([ActivateSpare(0, 1, "nobody")])
    with pytest.raises(ChangeRejected):
        c.apply([RemoveDisk("MDVM00000000")])
    assert c.model() == before


def test_two_spares_join_one_rebuild_in_one_update_and_share_its_checkpoint() -> None:
    """RAID10 losing one disk of each mirror: both spares start together (as mdmon batches them).

    md rebuilds both in one pass, so the volume's one checkpoint bounds both, and a
    restart may resume both from it.  A spare arriving once a checkpoint is recorded
    cannot join: its own progress would be 0, below the checkpoint.
    """
    serials = [f"R10DISK{n:04d}" for n in range(6)]
    c = create([(s, 131072) for s in serials], [VolumeSpec("vol0", 10, (0, 1, 2, 3))], ENV)
    for s in serials:
        c.attach(s, MemoryDisk(bytes(1 << 20), name=s, serial=s))  # only where writes would go
    c = c.apply([EndMigration(0)], ENV) if c.model().volume(0).migration else c
    c = c.apply([FailDisk(serials[0]), FailDisk(serials[2])], ENV)
    assert c.model().volume(0).state is VolumeState.DEGRADED
    both = c.apply([ActivateSpare(0, 0, serials[4]), ActivateSpare(0, 2, serials[5])], ENV)
    vol = both.model().volume(0)
    assert vol.migration is not None and vol.migration.type is MigrationType.REBUILD
    assert [m.state for m in vol.members] == [
        MemberState.REBUILDING,
        MemberState.IN_SYNC,
        MemberState.REBUILDING,
        MemberState.IN_SYNC,
    ]
    halfway = both.apply([SetCheckpoint(0, 40960)], ENV)
    assert halfway.model().volume(0).migration.checkpoint_sectors == 40960  # type: ignore[union-attr]
    # one at a time: the second only while nothing is recorded done
    first = c.apply([ActivateSpare(0, 0, serials[4])], ENV)
    assert first.apply([ActivateSpare(0, 2, serials[5])], ENV).model().volume(0).member(2).state is (
        MemberState.REBUILDING
    )
    progressed = first.apply([SetCheckpoint(0, 40960)], ENV)
    with pytest.raises(ChangeRejected, match="already migrating"):
        progressed.apply([ActivateSpare(0, 2, serials[5])], ENV)


def test_a_spare_taken_into_a_volume_is_written_before_the_old_members() -> None:
    """2-disk container, disk0 failed: a crash after disk1's extension sector, before its anchor.

    In mdadm's order (table order, the new member last) disk1 is torn there and
    the spare still holds its spare record: the only valid MPB is the failed
    disk's stale one, and both volumes loaded normal with it in sync.  The new
    member written first holds the new MPB complete by then.
    """
    disks = [writable("imsm-two-volumes", n) for n in range(2)]
    c = container("imsm-two-volumes", disks).apply([FailDisk("MDVM00000000")], ENV)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    spare = MemoryDisk(bytes(disks[0].size_bytes), name="/dev/sdc", serial="MDVM00000002")
    c = container("imsm-two-volumes", disks).apply([AddSpare("MDVM00000002", spare.size_bytes // 512)], ENV)
    c.attach("MDVM00000002", spare)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    act = c.apply([ActivateSpare(0, 1, "MDVM00000002")], ENV)
    plan = act.encode()
    where = {"MDVM00000001": disks[1], "MDVM00000002": spare}
    for ref, writes in plan.items():  # the encode order is the write order
        if ref == "MDVM00000001":
            assert len(writes) >= 2  # extension sectors, then the anchor
            write_all(disks[1], writes[:-1])  # the crash: the anchor never lands
            break
        write_all(where[ref], writes)
    copies = []
    for d in [*disks, spare]:
        with contextlib.suppress(MetadataError):  # disk1 is torn: mdadm -I leaves it out
            copies.append(HANDLER.load(d))
    got = HANDLER.assemble(copies).model()
    stale = [m for v in got.volumes for m in v.members if m.disk_ref == "MDVM00000000"]
    assert all(m.state is not MemberState.IN_SYNC for m in stale)
    assert got.volumes == act.model().volumes
    assert next(iter(plan)) == "MDVM00000002" and act.joined == {"MDVM00000002"}
