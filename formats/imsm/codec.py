"""MPB bytes <-> records: the bounds-checked walk, the checksum, the 4Kn units.

Parsing works on the *logical* MPB buffer (anchor first, then the extension
sectors), so offsets here are MPB offsets; ``Locator`` turns them into byte
offsets on the disk for error messages.  Nothing is allocated from a count
before the count has been checked against ``mpb_size``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from construct import ConstructError

from ..errors import MetadataError
from . import structs as S
from .records import BbmEntryRec, BbmLogRec, DevRec, DiskRec, MapRec, MpbRec, VolRec, as_build_dict, from_parsed

FORMAT = "imsm"


@dataclass(frozen=True)
class Locator:
    """Maps MPB offsets to disk byte offsets for error messages."""

    disk: str | None
    to_disk: Callable[[int], int | None]

    def error(self, message: str, structure: str, field: str | None, mpb_offset: int | None) -> MetadataError:
        off = None if mpb_offset is None else self.to_disk(mpb_offset)
        return MetadataError(message, format=FORMAT, structure=structure, field=field, disk=self.disk, offset=off)


def checksum(buf: bytes | bytearray, mpb_size: int) -> int:
    """mdadm's checksum: LE u32 sum over mpb_size bytes with the check_sum word taken as 0."""
    n = mpb_size // 4
    words: tuple[int, ...] = struct.unpack_from(f"<{n}I", buf, 0)
    total = sum(words) - words[8]  # word 8 = offset 0x20, check_sum
    return total & 0xFFFFFFFF


def _parse(structure: Any, name: str, buf: bytes, off: int, size: int, loc: Locator) -> Any:
    if off + size > len(buf):
        # the structure is named in the message; the field at fault is the size that leaves it no room
        raise loc.error(f"{name} at MPB offset {off} runs past the MPB", "mpb", "mpb_size", 0x24)
    try:
        return structure.parse(buf[off : off + size])
    except ConstructError as e:  # only possible on a short buffer, checked above
        raise loc.error(f"cannot parse {name}: {e}", name, None, off) from e


def _u8(buf: bytes, off: int) -> int:
    return buf[off]


def parse_mpb(buf: bytes, loc: Locator) -> MpbRec:
    """Parse an MPB whose signature and checksum were already checked.

    ``buf`` holds exactly ``mpb_size`` bytes.  Every structure is checked to lie
    inside it before it is parsed, and every count before it sizes anything.
    """
    size = len(buf)
    hdr = _parse(S.MpbHeader, "mpb", buf, 0, S.MPB_HEADER_SIZE, loc)
    mpb = from_parsed(MpbRec, hdr)
    off = S.MPB_HEADER_SIZE
    table_end = off + S.DISK_ENTRY_SIZE * mpb.num_disks
    if table_end > size:
        raise loc.error(
            f"{mpb.num_disks} disk entries need {table_end} bytes, mpb_size is {size}", "mpb", "num_disks", 0x38
        )
    for i in range(mpb.num_disks):
        mpb.disks.append(from_parsed(DiskRec, _parse(S.DiskEntry, f"disk[{i}]", buf, off, S.DISK_ENTRY_SIZE, loc)))
        off += S.DISK_ENTRY_SIZE
    if mpb.bbm_log_size > size - off:
        raise loc.error(f"BBM log of {mpb.bbm_log_size} bytes does not fit", "mpb", "bbm_log_size", 0x48)
    devs_end = size - mpb.bbm_log_size
    for i in range(mpb.num_raid_devs):
        name = f"dev[{i}]"
        dev_off = off
        dev = from_parsed(DevRec, _parse(S.DevHeader, name, buf, off, S.DEV_HEADER_SIZE, loc))
        off += S.DEV_HEADER_SIZE
        vol = from_parsed(VolRec, _parse(S.Vol, f"{name}.vol", buf, off, S.VOL_SIZE, loc))
        dev._vol = vol
        off += S.VOL_SIZE
        if vol.migr_state > 1:
            raise loc.error(f"migr_state {vol.migr_state} is not 0 or 1", f"{name}.vol", "migr_state", off - 24)
        if vol.migr_type > S.MIGR_STATE_CHANGE:
            raise loc.error(f"migr_type {vol.migr_type} is unknown", f"{name}.vol", "migr_type", off - 23)
        for m in range(1 + vol.migr_state):
            mname = f"{name}.map[{m}]"
            if off + S.MAP_FIXED_SIZE > devs_end:
                raise loc.error(f"{mname} at MPB offset {off} runs past the devs area", "mpb", "mpb_size", 0x24)
            n = _u8(buf, off + 16)
            msize = S.MAP_FIXED_SIZE + 4 * n
            if off + msize > devs_end:
                raise loc.error(f"{n} members' ord table runs past the devs area", mname, "num_members", off + 16)
            mp = from_parsed(MapRec, _parse(S.Map, mname, buf, off, msize, loc))
            _check_map(mp, mpb, mname, off, loc)
            dev.maps.append(mp)
            off += msize
        if off > devs_end:
            raise loc.error(f"{name} at MPB offset {dev_off} runs past the devs area", "mpb", "mpb_size", 0x24)
        mpb.devs.append(dev)
    if mpb.bbm_log_size:
        mpb.bbm = _parse_bbm(buf, size - mpb.bbm_log_size, mpb.bbm_log_size, loc)
    return mpb


def _check_map(mp: MapRec, mpb: MpbRec, name: str, off: int, loc: Locator) -> None:
    if mp.num_members < 1:
        raise loc.error("a map with no members", name, "num_members", off + 16)
    if mp.map_state > S.MAP_STATE_FAILED:
        raise loc.error(f"map_state {mp.map_state} is unknown", name, "map_state", off + 14)
    if mp.raid_level not in (0, 1, 5, 10):
        raise loc.error(f"raid_level {mp.raid_level} is not supported", name, "raid_level", off + 15)
    if mp.level in (1, 10) and mp.num_members % 2:
        raise loc.error(f"RAID{mp.level} with {mp.num_members} members", name, "num_members", off + 16)
    if mp.level == 5 and mp.num_members < 3:
        raise loc.error(f"RAID5 with {mp.num_members} members", name, "num_members", off + 16)
    if mp.blocks_per_strip == 0:
        raise loc.error("blocks_per_strip is 0", name, "blocks_per_strip", off + 12)
    if mp.num_domains == 0:
        raise loc.error("num_domains is 0", name, "num_domains", off + 17)
    for slot, ord_ in enumerate(mp.disk_ord_tbl):
        if ord_ & S.ORD_INDEX_MASK >= mpb.num_disks:
            raise loc.error(
                f"slot {slot} names disk {ord_ & S.ORD_INDEX_MASK}, the table has {mpb.num_disks}",
                name,
                f"disk_ord_tbl[{slot}]",
                off + 48 + 4 * slot,
            )


def _parse_bbm(buf: bytes, off: int, size: int, loc: Locator) -> BbmLogRec:
    if size < S.BBM_LOG_HEADER_SIZE:
        raise loc.error(f"BBM log of {size} bytes is shorter than its header", "mpb", "bbm_log_size", 0x48)
    hdr = _parse(S.BbmLogHeader, "bbm_log", buf, off, S.BBM_LOG_HEADER_SIZE, loc)
    if hdr.signature != S.BBM_LOG_SIGNATURE:
        raise loc.error(f"BBM log signature {hdr.signature:#010x}", "bbm_log", "signature", off)
    if hdr.entry_count > S.BBM_LOG_MAX_ENTRIES:
        raise loc.error(f"BBM log has {hdr.entry_count} entries (max 254)", "bbm_log", "entry_count", off + 4)
    if size != S.BBM_LOG_HEADER_SIZE + S.BBM_ENTRY_SIZE * hdr.entry_count:
        raise loc.error(f"BBM log size {size} does not match {hdr.entry_count} entries", "mpb", "bbm_log_size", 0x48)
    entries = []
    for i in range(hdr.entry_count):
        e = off + S.BBM_LOG_HEADER_SIZE + S.BBM_ENTRY_SIZE * i
        entries.append(from_parsed(BbmEntryRec, _parse(S.BbmEntry, f"bbm_log.entry[{i}]", buf, e, 8, loc)))
    if not entries:
        raise loc.error("an empty BBM log is never written", "bbm_log", "entry_count", off + 4)
    return BbmLogRec(signature=hdr.signature, entries=entries)


def build_mpb(mpb: MpbRec) -> bytes:
    """The MPB bytes exactly as the records say (mpb_size and check_sum as stored)."""
    out = bytearray(S.MpbHeader.build(as_build_dict(mpb)))
    for d in mpb.disks:
        out += S.DiskEntry.build(as_build_dict(d))
    for dev in mpb.devs:
        out += S.DevHeader.build(as_build_dict(dev))
        out += S.Vol.build(as_build_dict(dev.vol))
        for m in dev.maps:
            out += S.Map.build(as_build_dict(m))
    if mpb.bbm is not None and mpb.bbm.entries:
        out += S.BbmLogHeader.build({"signature": mpb.bbm.signature, "entry_count": len(mpb.bbm.entries)})
        for e in mpb.bbm.entries:
            out += S.BbmEntry.build(as_build_dict(e))
    return bytes(out)


def scale_units(mpb: MpbRec, to_4k: bool) -> None:
    """Convert the unit-bearing fields between 512-byte and 4 KiB units (formats.md §1.11).

    mdadm converts exactly these: disk sizes, dev size, curr_migr_unit, each
    map's pba/blocks_per_member/blocks_per_strip and the BBM entries; counts,
    byte sizes and reserved_blocks stay as they are.
    """

    def cv(v: int) -> int:
        return v // S.IMSM_4K_DIV if to_4k else v * S.IMSM_4K_DIV

    for d in mpb.disks:
        d.set_total_blocks(cv(d.total_blocks(True)))
    for dev in mpb.devs:
        dev.set_size_sectors(cv(dev.size_sectors))
        dev.vol.set_curr_migr_unit(cv(dev.vol.curr_migr_unit))
        for m in dev.maps:
            m.set_blocks_per_member(cv(m.blocks_per_member(True)))
            m.set_pba_of_lba0(cv(m.pba_of_lba0(True)))
            m.blocks_per_strip = cv(m.blocks_per_strip) & 0xFFFF
    if mpb.bbm is not None:
        for e in mpb.bbm.entries:
            e.set_start(cv(e.start))
            count = e.marked_count + 1
            e.marked_count = (max(count // 8, 1) if to_4k else min(count * 8, 256)) - 1


def mpb_bytes_for_disk(mpb: MpbRec, sector_size: int) -> bytes:
    """Set mpb_size and check_sum (after the 4Kn conversion, as mdadm does) and build."""
    work = mpb.clone()
    if sector_size == 4096:
        scale_units(work, to_4k=True)
    work.check_sum = 0
    raw = bytearray(build_mpb(work))
    struct.pack_into("<I", raw, 0x24, len(raw))
    struct.pack_into("<I", raw, 0x20, checksum(raw, len(raw)))
    return bytes(raw)
