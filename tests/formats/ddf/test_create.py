"""New containers: mdadm's layout, checked byte for byte against the goldens once their random parts are adopted."""

from __future__ import annotations

import random
from typing import Any

import pytest

from formats.base import first_difference, write_all
from formats.blockio import MemoryDisk
from formats.changes import AddSpare, Environment
from formats.ddf import HANDLER, VolumeSpec, create
from formats.ddf import structs as S
from formats.ddf.codec import guid_crc16
from formats.ddf.container import DDFContainer
from formats.errors import ChangeRejected
from formats.model import DiskState, VolumeState
from tests.golden import disk_count, golden_serial, open_disk

from .helpers import container

GOLDEN_LIKE: dict[str, list[VolumeSpec]] = {
    "ddf-raid0": [VolumeSpec("vol0", 0, (1, 0))],
    "ddf-raid1": [VolumeSpec("vol0", 1, (1, 0), clean=True)],
    "ddf-raid5": [VolumeSpec("vol0", 5, (1, 0, 2), clean=True)],
    "ddf-raid5-spare": [VolumeSpec("vol0", 5, (0, 1, 2), clean=True)],
    "ddf-raid10": [VolumeSpec("vol0", 10, (1, 3, 0, 2), clean=True)],
    "ddf-two-volumes": [
        VolumeSpec("vol0", 5, (1, 0, 2), size_sectors=24576, clean=True),
        VolumeSpec("vol1", 1, (1, 0), size_sectors=16384, clean=True),
    ],
}


def env() -> Environment:
    return Environment(now=lambda: 1_800_000_000.0, rng=random.Random(3))


def adopt(new: DDFContainer, gold: DDFContainer) -> None:
    """Give a created container the golden's random values and clocks (GUIDs, refnums, timestamps, seq)."""
    refs: dict[int, int] = {}
    for e, g in zip(new.phys.entries, gold.phys.entries, strict=True):
        if e is not None:
            assert g is not None
            refs[e.refnum] = g.refnum
            e.guid, e.refnum = g.guid, g.refnum
    gold_data = {m.refnum: m.disk_data for m in gold.members}
    for m in new.members:
        m.refnum = refs[m.refnum]
        m.disk_data.guid, m.disk_data.refnum = gold_data[m.refnum].guid, m.refnum
    guids: dict[bytes, bytes] = {}
    for ve, gve in zip(new.virt.entries, gold.virt.entries, strict=True):
        if ve is not None:
            assert gve is not None
            guids[bytes(ve.guid)] = bytes(gve.guid)
            ve.guid = gve.guid
            ve.guid_crc = guid_crc16(bytes(gold.header.guid))  # derived from the header GUID, not adopted
    configs: dict[tuple[bytes, int], Any] = {}
    for (g, seq), conf in new.configs.items():
        gconf = gold.configs[(guids[g], seq)]
        conf.guid, conf.timestamp = guids[g], gconf.timestamp
        conf.phys_refnum = [refs.get(r, r) for r in conf.phys_refnum]
        configs[(guids[g], seq)] = conf
    new.configs = configs
    for m in new.members:
        m.vlist = [guids[g] for g in m.vlist]
    new.header.guid, new.header.timestamp = gold.header.guid, gold.header.timestamp


@pytest.mark.parametrize("scenario", sorted(GOLDEN_LIKE))
def test_create_lays_out_what_mdadm_laid_out(scenario: str) -> None:
    n = disk_count(scenario)
    disks = [(golden_serial(i), 131072) for i in range(n)]
    new = create(disks, GOLDEN_LIKE[scenario], env(), hostname="mdvm", homehost="mdvm")
    gold = container(scenario)
    # what mdadm's create sequence leaves, before the array's own dirty/clean writes
    assert new.header.seq == 2 + len(GOLDEN_LIKE[scenario])
    # each record's seqnum is 1 + one per member added (compared with the golden below, not adopted)
    adopt(new, gold)
    new.header.seq = gold.header.seq
    for i in range(n):
        new.attach(golden_serial(i), open_disk(scenario, i))
    writes = new.encode()
    for ref, disk in new.disks().items():
        assert first_difference(disk, writes[ref]) is None, (scenario, disk.name)


def test_raid0_create_is_exact_without_adopting_seq() -> None:
    new = create([(golden_serial(i), 131072) for i in range(2)], GOLDEN_LIKE["ddf-raid0"], env(), hostname="mdvm")
    assert new.header.seq == container("ddf-raid0").header.seq == 3


def test_created_container_loads_back() -> None:
    specs = [VolumeSpec("data", 6, (0, 1, 2, 3)), VolumeSpec("logs", 1, (4, 5), size_sectors=8192)]
    new = create([(f"S{i}", 100_000 + 8 * i) for i in range(7)], specs, env(), hostname="host")
    disks = {f"S{i}": MemoryDisk(bytes((100_000 + 8 * i) * 512), name=f"/dev/vd{i}") for i in range(7)}
    for serial, d in disks.items():
        new.attach(serial, d)
    writes = new.encode()
    for ref, target in new.disks().items():
        write_all(target, writes[ref])
    back = HANDLER.assemble([HANDLER.load(d) for d in disks.values()])
    assert back.model() == new.model()
    m = back.model()
    data, logs = m.volume(0), m.volume(1)
    assert (data.level, data.layout, data.raid_disks, data.chunk_sectors) == (6, 10, 4, 1024)
    assert data.state == VolumeState.UNINITIALIZED  # a new RAID6 still has to resync
    assert logs.level == 1 and logs.size_sectors == 8192 and logs.chunk_sectors == 0
    assert m.disk(f"{new.members[0].refnum:08x}").state == DiskState.SPARE  # the 7th disk
    # disks of different sizes keep the metadata at the same distance from the end
    for d in disks.values():
        copy = HANDLER.load(d)
        assert copy.header.primary_lba == d.size_bytes // 512 - 32768


def test_largest_container() -> None:
    """mdadm's tables: 1023 disks, 255 volumes."""
    disks = [(f"D{i:04d}", 70_000) for i in range(1023)]
    specs = [VolumeSpec(f"v{k}", 1, (2 * k, 2 * k + 1), size_sectors=64) for k in range(255)]
    big = create(disks, specs, env(), hostname="big")
    m = big.model()
    assert len(m.disks) == 1023 and len(m.volumes) == 255
    assert big.phys.header.used_pdes == 1023 and big.virt.header.populated_vdes == 255
    with pytest.raises(ChangeRejected):
        big.apply([AddSpare("one-too-many", 70_000)], env())
    ws = big.disk_writes(big.members[-1])
    assert sum(len(w.data) for w in ws) == (618 * 2 + 1) * 512
    with pytest.raises(ChangeRejected):
        create([*disks, ("X", 70_000)], [], env())


def test_create_rejects() -> None:
    with pytest.raises(ChangeRejected):
        create([("a", 131072), ("b", 131072)], [VolumeSpec("v", 5, (0, 1))], env())
    with pytest.raises(ChangeRejected):
        create([("a", 1000)], [], env())
    with pytest.raises(ChangeRejected):
        create([("a", 131072), ("b", 131072)], [VolumeSpec("v", 1, (0, 1)), VolumeSpec("v", 1, (0, 1))], env())


def test_unit_sizes_match_the_header() -> None:
    new = create([("a", 131072)], [], env())
    assert all(e is None for e in new.virt.entries)
    assert new.header.config_record_len == 7 and new.header.max_primary_element_entries == 256
    assert new.header.config_section_length == 455 and new.header.data_section_offset == 617
    assert new.phys.entries[0] is not None and new.phys.entries[0].type == S.PD_FORCED_GUID | S.PD_GLOBAL_SPARE


def test_create_on_4kn_disks() -> None:
    new = create([("a", 131072), ("b", 131072)], [VolumeSpec("m", 1, (0, 1))], env(), sector_size=4096)
    disks = {s: MemoryDisk(bytes(131072 * 512), name=f"/dev/{s}", sector_size=4096) for s in "ab"}
    with pytest.raises(ValueError):
        new.attach("a", MemoryDisk(bytes(131072 * 512), name="/dev/x"))
    for s, d in disks.items():
        new.attach(s, d)
    writes = new.encode()
    for ref, target in new.disks().items():
        write_all(target, writes[ref])  # MemoryDisk refuses writes that are not whole 4 KiB sectors
    back = HANDLER.assemble([HANDLER.load(d) for d in disks.values()])
    assert back.model() == new.model() and back.model().sector_size == 4096
