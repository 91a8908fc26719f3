"""The BBM log as mdmon's record_bad_block / clear_badblock keep it (mdadm 4.2 super-intel.c)."""

from __future__ import annotations

import random
import struct

import pytest

from formats.base import write_all
from formats.changes import ClearBadBlock, Environment, FailDisk, RecordBadBlock
from formats.errors import ChangeRejected
from formats.imsm import HANDLER
from formats.imsm import structs as S
from formats.imsm.container import IMSMContainer
from tests.golden import disk_count

from .helpers import container, writable

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(7))
SCENARIO = "imsm-raid5"


def _ref_and_index(c: IMSMContainer, slot: int) -> tuple[str, int]:
    m = c.model().volume(0).members[slot]
    assert m.disk_ref is not None
    idx = next(i for i, d in enumerate(c.mpb.disks) if d.serial_text == m.disk_ref)
    return m.disk_ref, idx


def _entries(c: IMSMContainer) -> list[tuple[int, int, int]]:
    """(disk index, start, sectors) of every entry, in log order."""
    assert c.mpb.bbm is not None
    return [(e.disk_ordinal, e.start, e.marked_count + 1) for e in c.mpb.bbm.entries]


def test_record_writes_the_log_bytes_mdmon_writes() -> None:
    disks = [writable(SCENARIO, n) for n in range(disk_count(SCENARIO))]
    before = container(SCENARIO, disks)
    ref, idx = _ref_and_index(before, 2)
    after = before.apply([RecordBadBlock(ref, 8200, 8)], ENV)
    for r, writes in after.encode().items():
        write_all(after.disks()[r], writes)
    # struct bbm_log { u32 signature; u32 entry_count; struct bbm_log_entry[]; } followed by
    # the packed entry { u8 marked_count; u8 disk_ordinal; u16 w1; u32 dw1; }: the log sits at
    # the end of the MPB, after the last dev, and mpb_size/bbm_log_size count it.
    want = struct.pack("<II", 0xABADB10C, 1) + struct.pack("<BBHI", 8 - 1, idx, 8200 & 0xFFFF, 8200 >> 16)
    for d in disks:
        copy = HANDLER.load(d)
        raw = bytes(copy.raw.buffer)
        mpb_size, bbm_size = struct.unpack_from("<I", raw, 0x24)[0], struct.unpack_from("<I", raw, 0x48)[0]
        assert bbm_size == 16
        assert mpb_size == before.mpb.mpb_size + 16
        assert raw[mpb_size - bbm_size : mpb_size] == want
        assert copy.mpb.attributes & S.MPB_ATTRIB_BBM
        assert copy.mpb.generation_num == before.mpb.generation_num + 1
    reloaded = HANDLER.assemble([HANDLER.load(d) for d in disks])
    assert _entries(reloaded) == [(idx, 8200, 8)]
    assert reloaded.model() == after.model()


def test_long_range_is_split_in_runs_of_256() -> None:
    c = container(SCENARIO)
    ref, idx = _ref_and_index(c, 1)
    after = c.apply([RecordBadBlock(ref, 1 << 40, 600)], ENV)
    assert _entries(after) == [(idx, 1 << 40, 256), (idx, (1 << 40) + 256, 256), (idx, (1 << 40) + 512, 88)]
    e = after.mpb.bbm.entries[0]  # type: ignore[union-attr]
    assert (e.w1, e.dw1) == (0, 1 << 24)  # the 48-bit start: dw1 << 16 | w1


def test_range_covering_a_recorded_entry_rewrites_it() -> None:
    """mdmon rewrites the first entry lying inside the new range instead of adding one."""
    c = container(SCENARIO)
    ref, idx = _ref_and_index(c, 0)
    one = c.apply([RecordBadBlock(ref, 1000, 8)], ENV)
    two = one.apply([RecordBadBlock(ref, 992, 24)], ENV)
    assert _entries(two) == [(idx, 992, 24)]
    # the same range again changes nothing of the log
    assert _entries(two.apply([RecordBadBlock(ref, 992, 24)], ENV)) == [(idx, 992, 24)]
    # a range inside a recorded one is not "stored within": mdmon appends it
    assert _entries(two.apply([RecordBadBlock(ref, 1000, 8)], ENV)) == [(idx, 992, 24), (idx, 1000, 8)]


def test_full_entries_at_the_head_are_kept() -> None:
    c = container(SCENARIO)
    ref, idx = _ref_and_index(c, 0)
    one = c.apply([RecordBadBlock(ref, 0, 256), RecordBadBlock(ref, 300, 4)], ENV)
    two = one.apply([RecordBadBlock(ref, 0, 512)], ENV)
    # the full run at 0 is skipped, the entry at 300 (inside 256..512) is rewritten to cover it
    assert _entries(two) == [(idx, 0, 256), (idx, 256, 256)]
    # wholly covered by full runs: recorded already, accepted, nothing changes
    assert _entries(two.apply([RecordBadBlock(ref, 0, 256)], ENV)) == _entries(two)


def test_full_log_is_refused_whole() -> None:
    c = container(SCENARIO)
    ref, _ = _ref_and_index(c, 0)
    full = c.apply([RecordBadBlock(ref, 1024 * i, 1) for i in range(S.BBM_LOG_MAX_ENTRIES)], ENV)
    assert len(_entries(full)) == 254
    with pytest.raises(ChangeRejected, match="BBM log is full"):
        full.apply([RecordBadBlock(ref, 1 << 30, 1)], ENV)
    almost = c.apply([RecordBadBlock(ref, 1024 * i, 1) for i in range(253)], ENV)
    with pytest.raises(ChangeRejected, match="2 more needed"):
        almost.apply([RecordBadBlock(ref, 1 << 30, 300)], ENV)
    assert len(_entries(almost)) == 253  # the refused change left the log as it was
    # the full log still encodes and loads back (2040 bytes, mdadm's whole struct bbm_log)
    assert full.mpb.bbm_log_size == 2040
    full.validate()


@pytest.mark.parametrize(
    ("sector", "length", "why"),
    [(8200, 0, "not a range"), (-1, 8, "not a range"), ((1 << 48) - 4, 8, "not a range")],
)
def test_ranges_the_log_cannot_hold_are_refused(sector: int, length: int, why: str) -> None:
    c = container(SCENARIO)
    ref, _ = _ref_and_index(c, 0)
    with pytest.raises(ChangeRejected, match=why):
        c.apply([RecordBadBlock(ref, sector, length)], ENV)


def test_unknown_or_failed_disk_is_refused() -> None:
    c = container(SCENARIO)
    with pytest.raises(ChangeRejected, match="no such disk"):
        c.apply([RecordBadBlock("NOSUCHDISK", 8, 8)], ENV)
    ref, _ = _ref_and_index(c, 1)
    failed = c.apply([FailDisk(ref)], ENV)
    failed_ref = failed.mpb.disks[_ref_and_index(c, 1)[1]].serial_text
    with pytest.raises(ChangeRejected, match="has failed"):
        failed.apply([RecordBadBlock(failed_ref, 8, 8)], ENV)


def test_clear_drops_the_exact_entry_last_takes_its_place() -> None:
    c = container(SCENARIO)
    ref, idx = _ref_and_index(c, 2)
    three = c.apply([RecordBadBlock(ref, 10, 1), RecordBadBlock(ref, 20, 2), RecordBadBlock(ref, 30, 3)], ENV)
    assert _entries(three.apply([ClearBadBlock(ref, 20, 1)], ENV)) == _entries(three)  # not exact: kept
    assert _entries(three.apply([ClearBadBlock(ref, 10, 1)], ENV)) == [(idx, 30, 3), (idx, 20, 2)]
    empty = c.apply([RecordBadBlock(ref, 10, 1)], ENV).apply([ClearBadBlock(ref, 10, 1)], ENV)
    assert empty.mpb.bbm is None and empty.mpb.bbm_log_size == 0
    assert not empty.mpb.attributes & S.MPB_ATTRIB_BBM
    assert empty.mpb.mpb_size == c.mpb.mpb_size


def test_failing_the_disk_drops_its_entries() -> None:
    c = container(SCENARIO)
    ref0, _ = _ref_and_index(c, 0)
    ref2, idx2 = _ref_and_index(c, 2)
    both = c.apply([RecordBadBlock(ref0, 10, 1), RecordBadBlock(ref2, 20, 2)], ENV)
    assert _entries(both.apply([FailDisk(ref0)], ENV)) == [(idx2, 20, 2)]
