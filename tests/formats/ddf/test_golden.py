"""Every golden DDF image: mdadm's --examine text, the model's fields, and a byte-exact round trip."""

from __future__ import annotations

import re

import pytest

from formats.base import first_difference
from formats.ddf import HANDLER
from formats.model import DiskState, MemberState, MigrationType, VolumeState
from tests.golden import GOLDEN, disk_count, examine, open_disk, scenarios

from .helpers import container, load

CASES = [(s, n) for s in scenarios("ddf") for n in range(disk_count(s))]


def test_there_are_golden_ddf_images() -> None:
    assert len(scenarios("ddf")) == 9 and len(CASES) == 27


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
    # primary and secondary copies plus the anchor: 618 + 618 + 1 sectors on mdadm's layout
    assert sum(len(w.data) for w in enc) == (618 * 2 + 1) * 512
    assert not copy.raw.problems and copy.raw.active == "primary"


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_model_matches_examine(scenario: str, n: int) -> None:
    ex = examine(scenario, n)
    copy = load(scenario, n)
    c = HANDLER.assemble([copy]).model()
    assert c.format == "ddf"
    assert c.generation == int(ex.fields["Seq"], 16)
    guid = ex.fields["Container GUID"].split("(")[0].replace(":", "").strip().lower()
    assert c.identity == guid
    scan = re.search(r"ARRAY metadata=ddf UUID=(\S+)", _manifest_scan(scenario))
    assert scan is not None and c.uuid == scan.group(1)
    assert len(ex.volumes) == int(ex.fields["Virtual Disks"])
    # a disk's own copy details only the VDs it holds config records for (as --examine does)
    assert len(c.volumes) == sum("Raid Devices" in xv for xv in ex.volumes)
    me = next(d for d in c.disks if d.path == copy.disk.name)
    assert me.ref == f"{copy.refnum:08x}"
    assert ex.pds and {d.ref for d in c.disks} == {d["refno"] for d in ex.pds}
    for d in ex.pds:
        model_disk = c.disk(d["refno"])
        assert model_disk.size_sectors == int(d["size_k"]) * 2
        assert (d["device"] == copy.disk.name) == (model_disk.ref == me.ref)
        if "Missing" in d["type_state"]:
            assert model_disk.state == DiskState.MISSING
        elif "Failed" in d["type_state"]:
            assert model_disk.state == DiskState.FAILED
        elif d["type_state"].startswith("active"):
            assert model_disk.state == DiskState.ACTIVE
        else:
            assert model_disk.state == DiskState.SPARE
    by_index = {int(xv["index"]): xv for xv in ex.volumes if "Raid Devices" in xv}
    assert set(by_index) == {v.index for v in c.volumes}
    for v in c.volumes:
        xv = by_index[v.index]
        assert v.name == xv["Name"]
        assert v.size_sectors == int(xv["Array Size"]) * 2
        assert v.component_sectors == int(xv["Device Size"]) * 2
        state, consistency = xv["state"].split(", ")
        assert v.dirty == (consistency == "Not Consistent")
        assert (v.state == VolumeState.DEGRADED) == (state in ("Degraded", "Partially Optimal"))
        assert v.chunk_sectors == int(xv.get("Chunk Size", "0 sectors").split()[0])


def _manifest_scan(scenario: str) -> str:
    import json

    return str(json.loads((GOLDEN / scenario / "manifest.json").read_text())["mdadm_examine_scan"])


def test_volume_uuids_are_mdadms() -> None:
    for s in scenarios("ddf"):
        c = container(s).model()
        scan = _manifest_scan(s)
        for v in c.volumes:
            assert f"member={v.index} UUID={v.uuid}" in scan, (s, v.name)


@pytest.mark.parametrize("scenario", scenarios("ddf"))
def test_container_encode_reproduces_every_present_disk(scenario: str) -> None:
    c = container(scenario)
    writes = c.encode()
    assert set(writes) == set(c.disks())
    for ref, disk in c.disks().items():
        assert first_difference(disk, writes[ref]) is None, (scenario, ref)


def test_levels_and_layouts() -> None:
    want = {
        "ddf-raid0": (0, 0, 2, 1024),
        "ddf-raid1": (1, 0, 2, 0),
        "ddf-raid5": (5, 2, 3, 1024),  # mdadm's DDF default: left-symmetric, 512 KiB
        "ddf-raid10": (10, 0x102, 4, 1024),
    }
    for s, (level, layout, n, chunk) in want.items():
        v = container(s).model().volume(0)
        assert (v.level, v.layout, v.raid_disks, v.chunk_sectors) == (level, layout, n, chunk), s


def test_raid10_slots_span_both_bvds() -> None:
    c = container("ddf-raid10")
    v = c.model().volume(0)
    assert [m.slot for m in v.members] == [0, 1, 2, 3]
    bvds = c.bvds(c.vd_guid(0))
    assert [b.sec_elmnt_seq for b in bvds] == [0, 1]
    assert [m.disk_ref for m in v.members] == [f"{r:08x}" for b in bvds for r in b.phys_refnum[:2]]


def test_rebuild_stopped_model() -> None:
    c = container("ddf-raid5-rebuild-stopped").model()
    assert c.generation == 0x10
    v = c.volume(0)
    assert v.migration is not None and v.migration.type == MigrationType.REBUILD
    assert v.migration.checkpoint_sectors is None  # DDF keeps no position
    assert v.state == VolumeState.DEGRADED and v.dirty
    assert [m.state for m in v.members] == [MemberState.IN_SYNC, MemberState.REBUILDING, MemberState.IN_SYNC]
    assert [m.disk_ref for m in v.members] == ["90e7e63b", "dab245a0", "929b8cb2"]
    assert c.disk("3bb5c407").state == DiskState.FAILED and c.disk("3bb5c407").path == "/dev/sdb"
    assert v.component_sectors == 49152


def test_degraded_models() -> None:
    for s, gone in (("ddf-raid1-degraded", "9f7a2426"), ("ddf-raid5-degraded", "62b5be2a")):
        c = container(s).model()
        v = c.volume(0)
        assert v.state == VolumeState.DEGRADED and not v.dirty
        slot = next(m for m in v.members if m.disk_ref == gone)
        assert slot.state == MemberState.FAILED
        d = c.disk(gone)
        assert d.state == DiskState.MISSING and d.path is None  # removed: its stale copy is not used
        assert c.generation == 12


def test_removed_disk_is_not_written() -> None:
    c = container("ddf-raid5-degraded")
    assert set(c.encode()) == {"074891cf", "d90f38c6"}


def test_spare_and_two_volumes() -> None:
    c = container("ddf-raid5-spare").model()
    spare = c.disk("34175d40")
    assert spare.state == DiskState.SPARE and spare.path == "/dev/sdd" and spare.size_sectors == 65536
    t = container("ddf-two-volumes").model()
    assert [v.name for v in t.volumes] == ["vol0", "vol1"]
    assert all(m.offset_sectors == 24576 for m in t.volume(1).members)
    assert t.volume(1).raid_disks == 2 and t.volume(0).raid_disks == 3


def test_stale_copy_loses_to_the_newest() -> None:
    """raid1-degraded: disk1 stopped at seq 10, disk0 went on to 12; the merge takes disk0's tables."""
    c = container("ddf-raid1-degraded")
    assert c.header.seq == 12
    assert load("ddf-raid1-degraded", 1).header.seq == 10
    assert open_disk("ddf-raid1-degraded", 1).size_bytes == 64 << 20
