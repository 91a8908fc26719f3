"""Corrupt, truncated and absurd metadata gives MetadataError/NoMetadata, quickly; 4Kn units."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats.base import first_difference
from formats.blockio import MemoryDisk
from formats.errors import MetadataError, NoMetadata
from formats.imsm import HANDLER
from formats.imsm.codec import checksum, mpb_bytes_for_disk
from formats.imsm.disk import mpb_writes
from tests.golden import disk_count, golden_serial, scenarios

from .helpers import disk, load

TAIL = 8 * 4096  # every golden MPB and its migration record lie in the last 32 KiB
CASES = [(s, n) for s in scenarios("imsm") for n in range(disk_count(s))]


def tail_disk(scenario: str, n: int) -> MemoryDisk:
    d = disk(scenario, n)
    m = MemoryDisk(d.read(d.size_bytes - TAIL, TAIL), name=d.name, serial=d.serial)
    return m


def reseal(data: bytearray) -> None:
    """Recompute the checksum so a corruption reaches the structure checks."""
    anchor = len(data) - 1024
    size = struct.unpack_from("<I", data, anchor + 0x24)[0]
    sectors = -(-size // 512)
    buf = bytearray(data[anchor : anchor + 512] + data[anchor - 512 * (sectors - 1) : anchor])
    if size > len(buf) or size % 4:
        return
    struct.pack_into("<I", data, anchor + 0x20, checksum(buf, size))


def assert_only_metadata_errors(data: bytes, name: str = "/dev/sdz") -> None:
    try:
        copy = HANDLER.load(MemoryDisk(data, name=name))
    except NoMetadata:
        return
    except MetadataError as e:
        assert e.format == "imsm" and e.disk == name
        return
    copy.examine()
    HANDLER.assemble([copy]).model()


def test_no_signature() -> None:
    with pytest.raises(NoMetadata):
        HANDLER.load(MemoryDisk(bytes(TAIL)))
    assert not HANDLER.probe(MemoryDisk(bytes(TAIL)))


def test_checksum_mismatch_names_the_field() -> None:
    data = bytearray(tail_disk("imsm-raid5", 0).data)
    data[-1024 + 0x100] ^= 1
    with pytest.raises(MetadataError) as e:
        HANDLER.load(MemoryDisk(bytes(data), name="/dev/sda"))
    assert (e.value.structure, e.value.field, e.value.disk) == ("mpb", "check_sum", "/dev/sda")
    assert e.value.offset == len(data) - 1024 + 0x20


def test_huge_mpb_size_is_refused_before_reading() -> None:
    data = bytearray(tail_disk("imsm-raid5", 0).data)
    struct.pack_into("<I", data, len(data) - 1024 + 0x24, 0xFFFFFFF0)
    with pytest.raises(MetadataError) as e:
        HANDLER.load(MemoryDisk(bytes(data)))
    assert e.value.field == "mpb_size"


def test_absurd_num_disks() -> None:
    data = bytearray(tail_disk("imsm-raid1", 0).data)
    data[len(data) - 1024 + 0x38] = 255
    reseal(data)
    with pytest.raises(MetadataError) as e:
        HANDLER.load(MemoryDisk(bytes(data)))
    assert e.value.field == "num_disks" and e.value.offset is not None


def test_truncated_disk() -> None:
    data = tail_disk("imsm-raid5", 0).data
    for cut in (512, 1024, 1536):
        assert_only_metadata_errors(data[:cut])


@pytest.mark.parametrize(("scenario", "n"), [CASES[0], CASES[-1], ("imsm-raid5-rebuild-stopped", 3)])
@given(st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 7)), min_size=1, max_size=8), st.booleans())
def test_bit_flips(scenario: str, n: int, flips: list[tuple[int, int]], seal: bool) -> None:
    data = bytearray(tail_disk(scenario, n).data)
    base = len(data) - 2048  # the migration record, anchor and up to two extension sectors
    for off, bit in flips:
        data[base + off] ^= 1 << bit
    if seal:
        reseal(data)
    assert_only_metadata_errors(bytes(data))


@given(st.integers(0, 215), st.integers(0, 255))
def test_header_bytes(offset: int, value: int) -> None:
    data = bytearray(tail_disk("imsm-raid5-raid1", 0).data)
    data[len(data) - 1024 + offset] = value
    reseal(data)
    assert_only_metadata_errors(bytes(data))


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_4kn_image_loads_to_the_same_model(scenario: str, n: int) -> None:
    copy = load(scenario, n)
    size = 1 << 20
    d4 = MemoryDisk(bytes(size), name=copy.disk.name, sector_size=4096, serial=golden_serial(n))
    for w in mpb_writes(size // 4096, 4096, mpb_bytes_for_disk(copy.mpb, 4096), b"", bytes(4096)):
        d4.write(w.offset, w.data)
    copy4 = HANDLER.load(d4)
    m512 = HANDLER.assemble([copy]).model()
    m4k = HANDLER.assemble([copy4]).model()
    # mdadm divides curr_migr_unit by 8 on 4Kn too (a count, not sectors): a checkpoint
    # survives only to a multiple of 8 units, which rounds down, the safe direction.
    lossy = []
    for v, dev in zip(m512.volumes, copy.mpb.devs, strict=True):
        if v.migration is not None and v.migration.checkpoint_sectors is not None:
            units = dev.vol.curr_migr_unit
            per = v.migration.checkpoint_sectors // units if units else 0
            v = replace(v, migration=replace(v.migration, checkpoint_sectors=units // 8 * 8 * per))
        lossy.append(v)
    assert replace(m4k, sector_size=512) == replace(m512, volumes=tuple(lossy))
    assert m4k.sector_size == 4096
    assert first_difference(d4, copy4.encode()) is None
    # the on-disk fields really are in 4 KiB units
    anchor = d4.read(size - 8192, 4096)
    assert struct.unpack_from("<I", anchor, 216 + 16)[0] * 8 == copy.mpb.disks[0].total_blocks_lo


def test_a_dev_past_the_mpb_names_the_size_that_leaves_it_no_room() -> None:
    data = bytearray(tail_disk("imsm-raid1", 0).data)
    data[len(data) - 1024 + 0x39] = 2  # num_raid_devs: a second volume that is not there
    reseal(data)
    with pytest.raises(MetadataError) as e:
        HANDLER.load(MemoryDisk(bytes(data), name="/dev/sda"))
    err = e.value
    assert (err.structure, err.field, err.disk, err.offset) == ("mpb", "mpb_size", "/dev/sda", len(data) - 1024 + 0x24)
    assert "dev[1]" in err.message
