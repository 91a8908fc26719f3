"""What mdadm derives from the maps: md level/layout, component size, migration units, UUIDs.

Each function mirrors the mdadm 4.2 rule named in its docstring (formats.md
§1.9, §1.12), so that the model and the examine text agree with mdadm's.
"""

from __future__ import annotations

import hashlib
import struct

from . import structs as S
from .records import DevRec, MapRec, MpbRec

ALGORITHM_LEFT_ASYMMETRIC = 0
RAID10_NEAR2 = 0x102


def md_layout(level: int) -> int:
    """imsm_level_to_layout: RAID5 left-asymmetric (md 0), RAID10 near-2 (0x102)."""
    return RAID10_NEAR2 if level == 10 else ALGORITHM_LEFT_ASYMMETRIC


def per_dev_array_size(m: MapRec, hi_valid: bool) -> int:
    return m.num_data_stripes(hi_valid) * m.blocks_per_strip * (2 if m.level in (1, 10) else 1)


def component_size(dev: DevRec, hi_valid: bool, sector_size: int) -> int:
    """calc_component_size + imsm_component_size_alignment_check (md ``component_size``)."""
    m = dev.map0
    members = m.data_members
    if members == 0:
        return 0
    comp = per_dev_array_size(m, hi_valid)
    if abs(comp * members - dev.size_sectors) > 2048 * members:
        comp = dev.size_sectors // members
    analysed = dev.map_x
    level = analysed.level
    align = (analysed.blocks_per_strip * 512) // sector_size
    if align and level != 1 and comp % align:
        comp -= comp % align
    return comp


def consistency_policy(dev: DevRec) -> str:
    """getinfo_super_imsm_volume: ``ppl`` for a RAID5 with distributed PPL(s), ``none`` for RAID0,
    ``bitmap`` for RWH_BITMAP, else ``resync`` (journaling-drive PPLs are not PPL to mdadm 4.2)."""
    level = dev.map_x.level
    if level == 5 and dev.rwh_policy in (S.RWH_DISTRIBUTED, S.RWH_MULTIPLE_DISTRIBUTED):
        return "ppl"
    if level <= 0:
        return "none"
    return "bitmap" if dev.rwh_policy == S.RWH_BITMAP else "resync"


def ppl_offset(dev: DevRec, hi_valid: bool) -> int:
    """get_ppl_sector less the data offset: the log follows the member's data stripes (first map)."""
    m = dev.map0
    return m.num_data_stripes(hi_valid) * m.blocks_per_strip


def ppl_size(dev: DevRec) -> int:
    """What mdadm 4.2 gives md as ``ppl_size``, in sectors.

    At assembly (getinfo) a single-PPL volume gets one log (header and entry
    space), but its validate_ppl_imsm then converts it to the 1 MiB multiple-PPL
    area, the size imsm_activate_spare always gives a spare; so both cases end
    with the area, and that is what a member joining a running volume gets.
    """
    return S.MULTIPLE_PPL_AREA_SIZE // 512


def _parity_segment_depth(m: MapRec) -> int:
    if m.level in (1, 10):
        return m.blocks_per_strip * m.num_domains
    if m.level == 5:
        return m.blocks_per_strip * m.num_members
    return m.blocks_per_strip


def _map_migr_block(m1: MapRec, block: int) -> int:
    chunk = m1.blocks_per_strip
    strip = block // chunk
    if m1.level in (1, 10):
        return ((strip * m1.num_domains + 1) // m1.num_members) * chunk + block % chunk
    if m1.level == 5:
        return (strip // (m1.num_members - 1)) * chunk + block % chunk
    return 0


def blocks_per_migr_unit(dev: DevRec, migr_rec_blocks_per_unit: int | None = None) -> int:
    """blocks_per_migr_unit: per-member blocks per ``curr_migr_unit`` (0 = not migrating)."""
    m0, m1 = dev.map0, dev.map1
    if m1 is None:
        return 0
    t = dev.vol.migr_type
    if t == S.MIGR_GEN_MIGR:
        return migr_rec_blocks_per_unit or 0
    if t in (S.MIGR_INIT, S.MIGR_VERIFY):
        spu = max(1, m1.blocks_per_strip // m0.blocks_per_strip)
        chunk = m0.blocks_per_strip if m0.level in (5, 10) else 256
        disks = m0.data_members
        bpu = spu * chunk * disks
        stripe = m0.blocks_per_strip * disks
        if stripe == 0:
            return 0
        seg = bpu // stripe
        rel = bpu - seg * stripe
        return _map_migr_block(m1, rel) + _parity_segment_depth(m0) * seg
    if t == S.MIGR_REBUILD:
        if m1.level in (1, 10):
            migr_chunk = 256 if m1.num_members % m1.num_domains == 0 else m1.blocks_per_strip
        elif m1.level == 5:
            migr_chunk = max(128, m1.blocks_per_strip)
        else:
            migr_chunk = 256
        spu = m1.num_domains if m0.level in (1, 10) else max(1, m1.blocks_per_strip // m0.blocks_per_strip)
        return migr_chunk * spu
    return 0


def _sha1_uuid(mpb: MpbRec, tail: bytes = b"") -> str:
    h = hashlib.sha1(S.SIGNATURE + struct.pack("<I", mpb.uuid_family) + tail).digest()[:16]
    return ":".join(f"{w:08x}" for w in struct.unpack("<4I", h))


ZERO_UUID = "00000000:00000000:00000000:00000000"


def container_uuid(mpb: MpbRec, own_is_sync: bool = True) -> str:
    """mdadm's container UUID; all zeros for a lone spare record (no volumes, not in sync)."""
    if not own_is_sync and mpb.num_raid_devs == 0:
        return ZERO_UUID
    return _sha1_uuid(mpb)


def volume_uuid(mpb: MpbRec, index: int) -> str:
    return _sha1_uuid(mpb, struct.pack("<I", index) + mpb.devs[index].volume)
