"""Every golden image: mdadm's --examine text, the model's fields, and a byte-exact round trip."""

from __future__ import annotations

import pytest

from formats.base import first_difference
from formats.model import DiskState, MemberState, MigrationType, VolumeState
from tests.golden import GOLDEN, disk_count, examine, scenarios
from tests.mdadm_examine import split_arrow

from .helpers import container, load

CASES = [(s, n) for s in scenarios("imsm") for n in range(disk_count(s))]


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_examine_text_is_mdadms(scenario: str, n: int) -> None:
    want = (GOLDEN / scenario / f"disk{n}.examine.txt").read_text().rstrip("\n").splitlines()
    got = load(scenario, n).examine().rstrip("\n").splitlines()
    for i, (a, b) in enumerate(zip(want, got, strict=False)):
        assert a == b, f"line {i + 1}"
    assert len(want) == len(got)


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_round_trip_is_byte_exact(scenario: str, n: int) -> None:
    copy = load(scenario, n)
    enc, reg = copy.encode(), copy.regions()
    assert [(w.offset, len(w.data)) for w in enc] == [(w.offset, len(w.data)) for w in reg]
    assert first_difference(copy.disk, enc) is None
    assert first_difference(copy.disk, reg) is None


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_model_matches_examine(scenario: str, n: int) -> None:
    ex = examine(scenario, n)
    copy = load(scenario, n)
    from formats.imsm import HANDLER

    c = HANDLER.assemble([copy]).model()
    assert c.format == "imsm"
    assert c.uuid == ex.fields["UUID"]
    assert c.identity == ex.fields["Family"]
    assert c.generation == int(ex.fields["Generation"], 16)
    assert len(c.volumes) == int(ex.fields["RAID Devices"])
    refs = {d.ref for d in c.disks}
    for d in ex.disks:
        assert d["Serial"] in refs
    me = next(d for d in c.disks if d.path == copy.disk.name)
    assert me.ref == f"MDVM{n:08d}"
    for v, xv in zip(c.volumes, ex.volumes, strict=True):
        assert v.name == xv["name"]
        assert v.uuid == xv["UUID"]
        new_level, old_level = split_arrow(xv["RAID Level"])
        assert v.level == int(old_level or new_level)
        assert v.raid_disks == int(split_arrow(xv["Members"])[0])
        assert v.size_sectors == int(xv["Array Size"].split()[0])
        new_state, old_state = split_arrow(xv["Map State"])
        assert v.state == VolumeState(old_state or new_state)
        assert v.dirty == (xv["Dirty State"] == "dirty")
        chunk_kib = int(split_arrow(xv["Chunk Size"])[-1 if "<--" in xv["Chunk Size"] else 0].split()[0])
        assert v.chunk_sectors == (0 if v.level == 1 else chunk_kib * 2)
        assert all(m.offset_sectors == int(xv["Sector Offset"]) for m in v.members)
        if "Checkpoint" in xv:
            units, per = xv["Checkpoint"].split()
            assert v.migration is not None
            assert v.migration.checkpoint_sectors == int(units) * int(per.strip("()"))
        else:
            assert v.migration is None
        slots = split_arrow(xv["Slots"])[0].strip("[]")
        for m in v.members:
            assert (slots[m.slot] == "_") == (m.state != MemberState.IN_SYNC or False) or m.state in (
                MemberState.REBUILDING,
            )


def test_rebuild_stopped_model() -> None:
    c = container("imsm-raid5-rebuild-stopped").model()
    assert c.generation == 0x33 and c.identity == "93389440"
    v = c.volume(0)
    assert v.migration is not None
    assert v.migration.type == MigrationType.REBUILD
    assert v.migration.checkpoint_sectors == 24576
    assert v.state == VolumeState.DEGRADED
    assert [m.state for m in v.members] == [MemberState.IN_SYNC, MemberState.REBUILDING, MemberState.IN_SYNC]
    assert [m.disk_ref for m in v.members] == ["MDVM00000000", "MDVM00000003", "MDVM00000002"]
    assert v.level == 5 and v.layout == 0 and v.chunk_sectors == 256 and v.component_sectors == 49152
    # the stale disk1 is not in the newest table and is left out
    assert {d.path for d in c.disks} == {"/dev/sda", "/dev/sdc", "/dev/sdd"}


def test_resync_killed_model() -> None:
    v = container("imsm-raid1-resync-killed").model().volume(0)
    assert v.migration is not None and v.migration.type == MigrationType.INIT
    assert v.migration.checkpoint_sectors == 73 * 512
    assert v.state == VolumeState.UNINITIALIZED
    assert v.component_sectors == 118784


def test_degraded_model() -> None:
    c = container("imsm-raid1-degraded").model()
    assert c.generation == 0x1A
    v = c.volume(0)
    assert v.state == VolumeState.DEGRADED
    assert v.members[0].disk_ref == "MDVM00000001:0" and v.members[0].state == MemberState.FAILED
    d = c.disk("MDVM00000001:0")
    assert d.state == DiskState.FAILED and d.serial == "MDVM00000001" and d.path is None


def test_spare_joins_container() -> None:
    c = container("imsm-raid5-spare").model()
    spare = c.disk("MDVM00000003")
    assert spare.state == DiskState.SPARE and spare.path == "/dev/sdd"
    assert spare.size_sectors == 131072
    assert len(c.disks) == 4


def test_spare_only_container() -> None:
    c = container("imsm-spare-only").model()
    assert c.volumes == ()
    assert {d.state for d in c.disks} == {DiskState.SPARE}
    assert c.uuid == "00000000:00000000:00000000:00000000"


def test_raid10_level_rule() -> None:
    from formats.imsm.records import MapRec

    m = MapRec(0, 0, 0, 128, 0, 1, 4, 2, 0xFF, 1, 0, 0, 0, bytes(16), [0, 1, 2, 3])
    assert m.level == 10
    m.num_members = 2
    assert m.level == 1


def test_container_encode_reproduces_every_golden_disk() -> None:
    """Unchanged metadata encoded for the container equals what mdadm wrote (spare records included)."""
    for s in ["imsm-raid5-spare", "imsm-spare-only", "imsm-raid5", "imsm-two-volumes"]:
        c = container(s)
        writes = c.encode()
        for ref, disk in c.disks().items():
            ws = writes[ref]
            # the MPB sectors (not the migration-record sector, which mdadm zeroes) are identical
            assert first_difference(disk, [w for w in ws if w.offset != disk.size_bytes - 512]) is None, (s, ref)
