"""Changes: the fields mdadm's DDF code would set, written to overlays and read back; crash safety of the order."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.base import Write, write_all
from formats.blockio import Disk, OverlayDisk
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
from formats.ddf import HANDLER
from formats.ddf import structs as S
from formats.ddf.container import DDFContainer
from formats.ddf.model import ref_text
from formats.errors import ChangeRejected, MetadataError
from formats.model import Container, DiskState, MemberState, Migration, MigrationType, VolumeState

from .helpers import container, writable

NOW = 1_800_000_000.0


def env() -> Environment:
    return Environment(now=lambda: NOW, rng=random.Random(7))


def write(c: DDFContainer) -> None:
    writes = c.encode()
    for ref, disk in c.disks().items():
        write_all(disk, writes[ref])


def reload(disks: list[OverlayDisk]) -> DDFContainer:
    return HANDLER.assemble([HANDLER.load(d) for d in disks])


def changed_sectors(c: DDFContainer) -> dict[str, list[Write]]:
    """encode() reduced to the sectors that differ from the disks, in encode() order (what mdmond writes)."""
    out: dict[str, list[Write]] = {}
    for ref, ws in c.encode().items():
        disk = c.disks()[ref]
        ss = disk.sector_size
        out[ref] = []
        for w in ws:
            have = disk.read(w.offset, len(w.data))
            for i in range(0, len(w.data), ss):
                if have[i : i + ss] != w.data[i : i + ss]:
                    out[ref].append(Write(w.offset + i, w.data[i : i + ss]))
    return out


def apply_and_reload(scenario: str, changes: list[Change]) -> tuple[DDFContainer, DDFContainer, Container]:
    disks = writable(scenario)
    old = container(scenario, disks)
    before = old.model()
    new = old.apply(changes, env())
    assert old.model() == before  # self untouched
    write(new)
    back = reload(disks)
    assert back.model() == new.model()
    return old, new, back.model()


def test_dirty_flip_changes_five_sectors_per_disk() -> None:
    disks = writable("ddf-raid5-spare")
    old = container("ddf-raid5-spare", disks)
    new = old.apply([SetDirty(0, True)], env())
    assert new.model().volume(0).dirty and not old.model().volume(0).dirty
    assert new.header.seq == old.header.seq + 1 and new.header.timestamp == int(NOW) - S.DECADE
    n = disks[0].size_bytes // 512
    sec, pri = n - 65536, n - 32768
    for ref, ws in changed_sectors(new).items():
        # secondary VD section, secondary header, primary VD section, primary header, anchor
        assert [w.offset // 512 for w in ws] == [sec + 130, sec, pri + 130, pri, n - 1], ref
    write(new)
    back = reload(disks)
    assert back.model().volume(0).dirty and back.header.seq == new.header.seq
    clean = back.apply([SetDirty(0, False)], env())
    assert not clean.model().volume(0).dirty and clean.header.seq == new.header.seq + 1


def test_no_change_moves_nothing() -> None:
    old = container("ddf-raid5")
    new = old.apply([SetDirty(0, False), SetCheckpoint(0, 4096)], env())
    assert new.header.seq == old.header.seq and new.header.timestamp == old.header.timestamp
    assert all(not ws for ws in changed_sectors(new).values())


def test_one_seq_per_batch() -> None:
    old = container("ddf-two-volumes")
    new = old.apply([SetDirty(0, True), SetDirty(1, True)], env())
    assert new.header.seq == old.header.seq + 1
    assert all(v.dirty for v in new.model().volumes)


@pytest.mark.parametrize(
    ("scenario", "changes"),
    [
        ("ddf-raid5-spare", [SetDirty(0, True)]),
        ("ddf-raid5-spare", [FailDisk("4624ee28")]),
        ("ddf-raid5-degraded", [SetDirty(0, True), FailDisk("d90f38c6")]),
        ("ddf-two-volumes", [SetDirty(1, True)]),
    ],
)
def test_a_crash_after_any_sector_leaves_old_or_new(scenario: str, changes: list[Change]) -> None:
    """Write the changed sectors in encode() order, stopping after each one: every disk still loads as old or new."""
    disks = writable(scenario)
    old = container(scenario, disks)
    new = old.apply(changes, env())
    plan = [(ref, w) for ref, ws in changed_sectors(new).items() for w in ws]
    assert plan
    names = {ref: d.name for ref, d in new.disks().items()}
    old_models = {ref: _single(d) for ref, d in old.disks().items()}
    new_models = {}
    for ref, d in new.disks().items():
        target = OverlayDisk(d.base) if isinstance(d, OverlayDisk) else d
        write_all(target, new.encode()[ref])
        new_models[ref] = _single(target)
    assert new_models != old_models
    for stop in range(len(plan) + 1):
        fresh = {d.name: d for d in writable(scenario)}
        for ref, w in plan[:stop]:
            fresh[names[ref]].write(w.offset, w.data)
        for ref, name in names.items():
            want = (old_models[ref], new_models[ref]) if stop < len(plan) else (new_models[ref],)
            assert _single(fresh[name]) in want, (stop, ref)


def _single(disk: Disk) -> Container:
    return HANDLER.assemble([HANDLER.load(disk)]).model()


def test_fail_disk_as_mdadm_records_it() -> None:
    old, new, m = apply_and_reload("ddf-raid5-spare", [FailDisk("4624ee28")])
    pd = new.pd(0x4624EE28)
    assert pd is not None and pd.state == S.PD_ONLINE | S.PD_FAILED  # 0x03, as on ddf-raid5-degraded
    guid = new.vd_guid(0)
    assert new.bvds(guid)[0].seqnum == old.bvds(guid)[0].seqnum + 1
    assert new.header.seq == old.header.seq + 1
    v = m.volume(0)
    assert v.state == VolumeState.DEGRADED
    assert v.member(1).state == MemberState.FAILED
    assert m.disk("4624ee28").state == DiskState.FAILED


def test_rebuild_cycle() -> None:
    disks = writable("ddf-raid5-spare")
    c = container("ddf-raid5-spare", disks)
    failed = c.apply([FailDisk("4624ee28")], env())
    write(failed)
    c = reload(disks)
    seqnum = c.bvds(c.vd_guid(0))[0].seqnum
    act = c.apply([ActivateSpare(0, 1, "34175d40")], env())
    write(act)
    c = reload(disks)
    assert c.model() == act.model()
    # as on ddf-raid5-rebuild-stopped: spare active+rebuilding, the failed disk back to a failed global spare
    spare, gone = c.pd(0x34175D40), c.pd(0x4624EE28)
    assert spare is not None and gone is not None
    assert (spare.type, spare.state) == (S.PD_FORCED_GUID | S.PD_ACTIVE, S.PD_ONLINE | S.PD_REBUILDING)
    assert (gone.type, gone.state) == (0x05, S.PD_ONLINE | S.PD_FAILED | S.PD_TRANSITION)
    # mdmon leaves the stored record's seqnum (it bumps its update buffer only); we move it on, so
    # that a crash between disks leaves the new record the newer one (test below)
    assert c.bvds(c.vd_guid(0))[0].seqnum == seqnum + 1
    v = c.model().volume(0)
    assert v.member(1).disk_ref == "34175d40" and v.member(1).state == MemberState.REBUILDING
    assert v.migration is not None and v.migration.type == MigrationType.REBUILD
    assert v.migration.checkpoint_sectors is None
    # the spare's own config slot now holds the volume
    assert [s.config is not None for s in HANDLER.load(disks[3]).sections.slots[:2]] == [True, False]
    done = c.apply([MemberInSync(0, 1)], env())
    write(done)
    v = reload(disks).model().volume(0)
    assert v.state == VolumeState.NORMAL and v.migration is None
    assert all(m.state == MemberState.IN_SYNC for m in v.members)


def test_a_crash_between_disks_of_a_spare_activation_loads_as_after_in_any_disk_order() -> None:
    """Some disks of the activation written, the rest not: the new PD table must come with the new VD config.

    mdmon leaves the config's seqnum alone on activation, so the old and new
    records tie and the loader keeps whichever disk it meets first.  Once the
    failed disk (which no longer holds the VD) or another disk with the new
    header has won, that was the new PD table (spare active, rebuilding) with
    the old slot (failed disk, no rebuild).
    """
    disks = writable("ddf-raid5-spare")
    write(container("ddf-raid5-spare", disks).apply([FailDisk("4624ee28")], env()))
    c = reload(disks)
    act = c.apply([ActivateSpare(0, 1, "34175d40")], env())
    writes = act.encode()
    for ref in list(writes)[:-1]:
        write_all(act.disks()[ref], writes[ref])
        copies = [HANDLER.load(d) for d in disks]
        for order in (copies, copies[::-1]):
            v = HANDLER.assemble(order).model().volume(0)
            assert v == act.model().volume(0), ref


def test_the_disks_holding_a_changed_config_record_are_written_first() -> None:
    """ddf-two-volumes, a member of both VDs failed, two new spares: vol0 takes the second one.

    In mdadm's disk-list order the newest spare (head of the list, in no VD)
    would be written first: a crash after its header gives the loader the new
    PD table and only old records to pair it with.
    """
    from formats.blockio import MemoryDisk

    disks = writable("ddf-two-volumes")
    c = container("ddf-two-volumes", disks)
    failed = c.apply([FailDisk(c.model().volume(0).member(0).disk_ref or "")], env())
    blanks = [MemoryDisk(bytes(disks[0].size_bytes), name=f"/dev/sd{x}") for x in "de"]
    with_spares = failed.apply([AddSpare(f"S{i}", d.size_bytes // 512, disk=d) for i, d in enumerate(blanks)], env())
    for i, d in enumerate(blanks):
        with_spares.attach(f"S{i}", d)
    head, older = (ref_text(m.refnum) for m in with_spares.members[:2])  # S1, then S0
    act = with_spares.apply([ActivateSpare(0, 0, older)], env())
    order = list(act.encode())
    assert order[0] != head  # not mdadm's disk-list order
    guid = act.vd_guid(0)
    first = act.member(int(order[0], 16))
    assert first is not None and guid in first.vlist
    assert act.bvds(guid)[0].seqnum == with_spares.bvds(guid)[0].seqnum + 1


def test_end_migration_finishes_a_rebuild() -> None:
    _, _, m = apply_and_reload("ddf-raid5-rebuild-stopped", [EndMigration(0), SetDirty(0, False)])
    v = m.volume(0)
    assert v.state == VolumeState.NORMAL and not v.dirty and v.migration is None


def test_resync_states() -> None:
    _, new, m = apply_and_reload("ddf-raid1", [StartResync(0)])
    assert m.volume(0).state == VolumeState.UNINITIALIZED
    assert m.volume(0).migration == Migration(MigrationType.INIT, None)
    assert _init_state(new) == S.INIT_NOT
    part = new.apply([SetCheckpoint(0, 1024)], env())
    assert _init_state(part) == S.INIT_QUICK  # mdadm records only "started"; the position is not kept
    assert part.header.seq == new.header.seq + 1
    done = part.apply([EndMigration(0)], env())
    assert done.model().volume(0).state == VolumeState.NORMAL and done.model().volume(0).migration is None


def _init_state(c: DDFContainer) -> int:
    e = c.virt.entries[0]
    assert e is not None
    return int(e.init_state) & S.INIT_MASK


def test_add_spare_attach_and_write() -> None:
    disks = writable("ddf-raid5-degraded")
    c = container("ddf-raid5-degraded", disks)
    new = c.apply([AddSpare("NEWDISK1", 131072, "/dev/sdz")], env())
    assert new.header.seq == c.header.seq + 1
    added = [d for d in new.model().disks if d.ref not in {x.ref for x in c.model().disks}]
    assert len(added) == 1 and added[0].state == DiskState.SPARE and added[0].path is None
    assert added[0].size_sectors == 65536 and added[0].serial.startswith("Linux-MD")
    extra = OverlayDisk(disks[1].base)  # a blank-for-DDF target: the removed disk's image
    new.attach("NEWDISK1", extra)
    assert new.model().disk(added[0].ref).path == extra.name
    write(new)
    copy = HANDLER.load(extra)
    assert f"{copy.refnum:08x}" == added[0].ref and copy.pd_index == 3
    act = reload([disks[0], disks[2], extra]).apply([ActivateSpare(0, 0, added[0].ref)], env())
    assert act.model().volume(0).member(0).state == MemberState.REBUILDING


def test_remove_failed_disk() -> None:
    _, new, m = apply_and_reload("ddf-raid5-spare", [FailDisk("4624ee28"), RemoveDisk("4624ee28")])
    assert m.disk("4624ee28").state == DiskState.MISSING and m.disk("4624ee28").path is None
    assert "4624ee28" not in new.encode()


@pytest.mark.parametrize(
    "change",
    [
        SetDirty(3, True),
        FailDisk("deadbeef"),
        ActivateSpare(0, 1, "34175d40"),  # the slot is working
        MemberInSync(0, 7),
        RemoveDisk("276ff0b0"),  # a working member
        AddSpare("tiny", 1000),
    ],
)
def test_rejected(change: Change) -> None:
    c = container("ddf-raid5-spare")
    with pytest.raises(ChangeRejected):
        c.apply([change], env())


def test_activate_rejects_a_failed_disk() -> None:
    c = container("ddf-raid5-rebuild-stopped")
    with pytest.raises(ChangeRejected):
        c.apply([ActivateSpare(0, 1, "3bb5c407")], env())


def _spare_record(vd_guid: bytes, *, populated: int = 1, maximum: int = 8) -> bytes:
    from formats.ddf.codec import crc

    rec = bytearray(b"\xff" * 7 * 512)
    struct.pack_into(">IIIxxxxxxxBHH", rec, 0, S.SPARE_ASSIGN_MAGIC, 0, 1000, 0x01, populated, maximum)
    rec[24:32] = b"\xff" * 8
    rec[32 : 32 + 24] = vd_guid
    struct.pack_into(">H", rec, 56, 0)
    struct.pack_into(">I", rec, 4, crc(rec))
    return bytes(rec)


def test_spare_assignment_record_is_read_and_kept() -> None:
    disks = writable("ddf-raid5-spare")
    c = container("ddf-raid5-spare", disks)
    guid = c.vd_guid(0)
    conf0 = (disks[3].size_bytes // 512 - 32768 + 162) * 512
    for base in (conf0, conf0 - 32768 * 512):
        disks[3].write(base, _spare_record(guid))  # slot 0 of both copies
    c = container("ddf-raid5-spare", disks)
    assert c.model().extra["spare_assignments"] == {"34175d40": {"dedicated": True, "volumes": [0]}}
    new = c.apply([SetDirty(0, True)], env())
    write(new)
    copy = HANDLER.load(disks[3])
    # mdadm writes a disk's spare record in the last slot (and never its buggy rewrite)
    assert copy.sections.slots[64].raw == _spare_record(guid)
    assert copy.sections.slots[0].raw == b"\xff" * 7 * 512


@pytest.mark.parametrize("mine", [True, False])
def test_a_dedicated_spare_serves_only_the_volumes_its_record_names(mine: bool) -> None:
    disks = writable("ddf-raid5-spare")
    c = container("ddf-raid5-spare", disks)
    guid = c.vd_guid(0) if mine else bytes(range(24))  # another container's VD
    conf0 = (disks[3].size_bytes // 512 - 32768 + 162) * 512
    for base in (conf0, conf0 - 32768 * 512):
        disks[3].write(base, _spare_record(guid))
    failed = container("ddf-raid5-spare", disks).apply([FailDisk("4624ee28")], env())
    if mine:
        v = failed.apply([ActivateSpare(0, 1, "34175d40")], env()).model().volume(0)
        assert v.member(1).disk_ref == "34175d40" and v.member(1).state == MemberState.REBUILDING
    else:
        with pytest.raises(ChangeRejected, match="dedicated to other volumes"):
            failed.apply([ActivateSpare(0, 1, "34175d40")], env())


def test_spare_assignment_counts_are_checked() -> None:
    disks = writable("ddf-raid5-spare")
    conf0 = (disks[3].size_bytes // 512 - 32768 + 162) * 512
    disks[3].write(conf0, _spare_record(b"x" * 24, populated=9, maximum=8))
    with pytest.raises(MetadataError) as e:
        HANDLER.load(disks[3])
    assert (e.value.structure, e.value.field, e.value.offset) == ("spare_assign[0]", "populated", conf0 + 20)
    disks[3].write(conf0, _spare_record(b"x" * 24, populated=1, maximum=500))
    with pytest.raises(MetadataError) as e:
        HANDLER.load(disks[3])
    assert e.value.field == "max"


@pytest.mark.parametrize(("scenario", "fail", "slot"), [("ddf-raid10", "0de33044", 1), ("ddf-raid1", "4aac579f", 1)])
def test_rebuild_onto_a_new_spare(scenario: str, fail: str, slot: int) -> None:
    disks = writable(scenario)
    c = container(scenario, disks)
    failed = c.apply([FailDisk(fail), AddSpare("SPARE001", 131072)], env())
    assert failed.model().volume(0).member(slot).state == MemberState.FAILED
    spare = next(d.ref for d in failed.model().disks if d.state == DiskState.SPARE)
    act = failed.apply([ActivateSpare(0, slot, spare)], env())
    v = act.model().volume(0)
    assert v.member(slot).disk_ref == spare and v.member(slot).state == MemberState.REBUILDING
    done = act.apply([MemberInSync(0, slot)], env())
    assert done.model().volume(0).state == VolumeState.NORMAL
    assert done.header.seq == c.header.seq + 3


def test_member_missing_at_assembly_is_recorded_as_mdadm_does() -> None:
    """handle_missing: a member never assembled becomes Failed|Missing and its slot's refnum 0."""
    disks = writable("ddf-raid5")
    c = HANDLER.assemble([HANDLER.load(disks[0]), HANDLER.load(disks[2])])
    assert c.model().disk("2209d27b").path is None
    new = c.apply([FailDisk("2209d27b")], env())
    pd = new.pd(0x2209D27B)
    assert pd is not None and pd.state == S.PD_FAILED | S.PD_MISSING
    assert new.bvds(new.vd_guid(0))[0].phys_refnum[0] == 0
    v = new.model().volume(0)
    assert v.member(0).disk_ref is None and v.member(0).state == MemberState.MISSING
    assert v.state == VolumeState.DEGRADED
    write(new)
    back = HANDLER.assemble([HANDLER.load(disks[0]), HANDLER.load(disks[2])])
    assert back.model() == new.model()
    # mdadm's --examine shows the emptied slot as "--"
    assert "Raid Devices[0] : 3 (--@0K 0@0K 2@0K)" in HANDLER.load(disks[0]).examine()


def test_dirty_flip_of_a_later_vd_entry() -> None:
    """VD entry 7 lives in the VD section's second sector: that sector and the CRC's first one change."""
    from formats.blockio import MemoryDisk
    from formats.ddf import VolumeSpec, create

    specs = [VolumeSpec(f"v{k}", 1, (0, 1), size_sectors=1024, clean=True) for k in range(8)]
    c = create([("a", 131072), ("b", 131072)], specs, env(), hostname="h")
    for s in "ab":
        c.attach(s, MemoryDisk(bytes(131072 * 512), name=f"/dev/{s}"))
    write(c)
    new = c.apply([SetDirty(7, True)], Environment(now=lambda: NOW + 5))
    sec, pri, n = 131072 - 65536, 131072 - 32768, 131072
    for ws in changed_sectors(new).values():
        assert [w.offset // 512 for w in ws] == [sec + 130, sec + 131, sec, pri + 130, pri + 131, pri, n - 1]


CHANGES = st.one_of(
    st.builds(SetDirty, st.integers(0, 1), st.booleans()),
    st.builds(SetCheckpoint, st.integers(0, 1), st.integers(0, 1 << 20)),
    st.builds(StartResync, st.integers(0, 1)),
    st.builds(EndMigration, st.integers(0, 1)),
    st.builds(FailDisk, st.sampled_from(["276ff0b0", "4624ee28", "e5a87b6c", "34175d40", "nosuchdk"])),
    st.builds(ActivateSpare, st.integers(0, 1), st.integers(0, 3), st.sampled_from(["34175d40", "4624ee28", "NEW"])),
    st.builds(MemberInSync, st.integers(0, 1), st.integers(0, 3)),
    st.builds(AddSpare, st.just("NEW"), st.sampled_from([1000, 131072, 200000])),
    st.builds(RemoveDisk, st.sampled_from(["276ff0b0", "4624ee28", "34175d40", "NEW"])),
)


@settings(max_examples=40)
@given(st.lists(st.lists(CHANGES, min_size=1, max_size=3), min_size=1, max_size=4))
def test_any_change_sequence_gives_metadata_that_reloads(batches: list[list[Change]]) -> None:
    disks = writable("ddf-raid5-spare")
    c = container("ddf-raid5-spare", disks)
    for i, batch in enumerate(batches):
        before = c.model()
        try:
            new = c.apply(batch, Environment(now=lambda i=i: NOW + i, rng=random.Random(i)))
        except ChangeRejected:
            assert c.model() == before
            continue
        assert c.model() == before
        assert new.header.seq in (c.header.seq, c.header.seq + 1)
        write(new)
        back = reload([d for d in disks if d.name in {x.name for x in new.disks().values()}])
        assert back.model() == new.model()
        c = new


def test_pd_table_compacted_after_a_missing_member_is_replaced_lists_each_disk_once() -> None:
    """Missing member replaced by the spare: the absent disk's entry is dropped and the table compacted.

    mdmon leaves the vacated entry's refnum behind (only its GUID is set to 0xFF), so mdadm
    --examine lists the spare twice and a later ``mdadm -I`` of each disk counts one disk too
    many (seen in the VM); here a vacated entry is wholly unused.
    """
    disks = writable("ddf-raid5-spare")
    c = container("ddf-raid5-spare", [d for i, d in enumerate(disks) if i != 1])  # disk 1 absent
    model = c.model()
    vol = model.volume(0)
    lost = vol.member(1).disk_ref
    spare = next(d.ref for d in model.disks if d.state is DiskState.SPARE)
    assert lost is not None
    new = c.apply([FailDisk(lost), ActivateSpare(0, 1, spare)], env())
    assert isinstance(new, DDFContainer)
    used = [e for e in new.phys.entries if e is not None]
    refnums = [e.refnum for e in used]
    assert len(refnums) == len(set(refnums)) == new.phys.header.used_pdes, [hex(r) for r in refnums]
    assert int(lost, 16) not in refnums
    assert all(e.guid != b"\xff" * S.GUID_LEN for e in used)


def test_bad_blocks_are_refused_ddf_keeps_no_log() -> None:
    from formats.changes import ClearBadBlock, RecordBadBlock

    c = container("ddf-raid5")
    ref = c.model().volume(0).members[2].disk_ref
    assert ref is not None
    for ch in (RecordBadBlock(ref, 8200, 8), ClearBadBlock(ref, 8200, 8)):
        with pytest.raises(ChangeRejected, match="no bad-block log"):
            c.apply([ch], env())
    assert c.model() == container("ddf-raid5").model()


# -- a rebuild onto a disk that holds another VD (ddf-two-volumes: vol0 RAID5 on all three disks
# at 0, vol1 RAID1 on 5d0b90e0 and a0a3554f at 24576; 5eb032d5 has room for vol1 after vol0) -----
def test_rebuild_onto_a_disk_holding_another_vd_is_recorded_only_once_in_sync() -> None:
    disks = writable("ddf-two-volumes")
    failed = container("ddf-two-volumes", disks).apply([FailDisk("a0a3554f")], env())
    write(failed)
    act = reload(disks).apply([ActivateSpare(1, 1, "5eb032d5")], env())
    member = act.model().volume(1).member(1)
    assert (member.disk_ref, member.state, member.offset_sectors) == ("5eb032d5", MemberState.REBUILDING, 24576)
    # Nothing is written while md copies: DDF's "Rebuilding" is per disk, and this disk is in
    # sync for vol0.  A crash now reassembles vol1 degraded, as before, to be rebuilt again.
    assert all(not ws for ws in changed_sectors(act).values())
    assert reload(disks).model().volume(1).member(1).state == MemberState.FAILED
    done = act.apply([MemberInSync(1, 1)], env())
    assert not done.pending
    write(done)
    back = reload(disks).model()
    v1 = back.volume(1)
    assert v1.state == VolumeState.NORMAL and v1.migration is None
    assert (v1.member(1).disk_ref, v1.member(1).state, v1.member(1).offset_sectors) == (
        "5eb032d5",
        MemberState.IN_SYNC,
        24576,
    )
    assert back.volume(0).state == VolumeState.DEGRADED  # vol0 still lacks its failed member
    assert back.volume(0).member(2) == reload(disks).model().volume(0).member(2)
    assert [s.config is not None for s in HANDLER.load(disks[2]).sections.slots[:2]] == [True, True]


def test_the_room_of_an_unrecorded_rebuild_is_taken_and_checked() -> None:
    act = container("ddf-two-volumes").apply([FailDisk("a0a3554f"), ActivateSpare(1, 1, "5eb032d5")], env())
    ((key, held),) = act.pending.items()
    assert held.lba == 24576
    from formats.ddf.apply import find_space

    m = act.member(0x5EB032D5)
    assert m is not None and find_space(act, m, 16384) == 24576 + 16384  # past vol0 and the rebuild
    act.pending[key] = type(held)(held.refnum, 16384)  # would overlap vol0's extent on that disk
    with pytest.raises(MetadataError, match="overlaps a recorded extent"):
        act.validate()


def test_an_unrecorded_rebuild_waits_for_its_disks_own_rebuild_then_both_are_recorded() -> None:
    """The new disk rebuilds vol0 (PD Rebuilding) and vol1 (held): vol1 finishing first waits for vol0."""
    c = container("ddf-two-volumes").apply([FailDisk("a0a3554f"), AddSpare("SPARE001", 131072)], env())
    spare = next(d.ref for d in c.model().disks if d.state == DiskState.SPARE)
    act = c.apply([ActivateSpare(0, 1, spare)], env()).apply([ActivateSpare(1, 1, spare)], env())
    assert set(act.pending) == {(act.vd_guid(1), 1)}
    half = act.apply([MemberInSync(1, 1)], env())
    assert half.model().volume(1).member(1).state == MemberState.IN_SYNC  # md has it; held until vol0 ends
    assert int(spare, 16) not in half.bvds(half.vd_guid(1))[0].phys_refnum
    both = half.apply([MemberInSync(0, 1)], env())
    assert not both.pending
    m = both.model()
    assert [m.volume(i).state for i in (0, 1)] == [VolumeState.NORMAL, VolumeState.NORMAL]
    assert m.volume(1).member(1).disk_ref == spare and m.volume(1).member(1).offset_sectors == 24576


def test_an_unrecorded_rebuild_is_dropped_when_its_disk_fails() -> None:
    act = container("ddf-two-volumes").apply([FailDisk("a0a3554f"), ActivateSpare(1, 1, "5eb032d5")], env())
    gone = act.apply([FailDisk("5eb032d5")], env())
    assert not gone.pending
    assert gone.model().volume(1).member(1).disk_ref == "a0a3554f"  # the slot as recorded
    with pytest.raises(ChangeRejected):
        gone.apply([MemberInSync(1, 1)], env())
