"""``mdadm --examine`` text for one disk's IMSM copy, laid out as mdadm 4.2 prints it."""

from __future__ import annotations

import time

from . import structs as S
from .geometry import blocks_per_migr_unit, container_uuid, volume_uuid
from .records import DevRec, DiskRec, MpbRec

_MAP_STATE = ("normal", "uninitialized", "degraded", "failed")
_MIGR = {
    S.MIGR_INIT: "initialize",
    S.MIGR_REBUILD: "rebuild",
    S.MIGR_VERIFY: "check",
    S.MIGR_GEN_MIGR: "general migration",
    S.MIGR_STATE_CHANGE: "state change",
}
_RWH = {
    0: "off",
    5: "off",
    1: "PPL distributed",
    2: "PPL journaling drive",
    3: "Multiple distributed PPLs",
    4: "Multiple PPLs on journaling drive",
    6: "Write-intent bitmap",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def human_size(nbytes: int) -> str:
    """mdadm's human_size: centi-units rounded half up, MiB below 2 GiB, GiB below 2 TiB."""
    if nbytes < 5000 * 1024:
        return ""
    if nbytes < 2 << 30:
        a, b, u1, u2 = (nbytes * 200 // (1 << 20) + 1) // 2, (nbytes // 5000 + 1) // 2, "MiB", "MB"
    elif nbytes < 2 << 40:
        a, b, u1, u2 = (nbytes * 200 // (1 << 30) + 1) // 2, (nbytes // 5000000 + 1) // 2, "GiB", "GB"
    else:
        a, b, u1, u2 = (nbytes * 200 // (1 << 40) + 1) // 2, (nbytes // 5000000000 + 1) // 2, "TiB", "TB"
    return f" ({a // 100}.{a % 100:02d} {u1} {b // 100}.{b % 100:02d} {u2})"


def ctime_utc(t: int) -> str:
    """ctime(3) without the newline, in UTC (the golden images were written in a UTC guest)."""
    try:
        tm = time.gmtime(t)
    except (OverflowError, OSError, ValueError):
        return "Unknown"
    return (
        f"{_DAYS[tm.tm_wday]} {_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year}"
    )


def reserved_sectors(mpb: MpbRec, own: int) -> int:
    """imsm_reserved_sectors for this disk (index -1 = spare)."""
    if own < 0:
        return S.MPB_SECTOR_CNT
    d = mpb.disks[own]
    hi = mpb.hi_valid
    reservation = S.MPB_SECTOR_CNT + S.IMSM_RESERVED_SECTORS
    extents = []
    for dev in mpb.devs:
        m = dev.map0
        if m.slot_of(own) >= 0:
            per_dev = m.num_data_stripes(hi) * m.blocks_per_strip * (2 if m.level in (1, 10) else 1)
            extents.append((m.pba_of_lba0(hi), per_dev))
    total = d.total_blocks(hi)
    if extents:
        start, size = max(extents)
        remainder = max(total - (start + size), 0) & ~1
        floor = -(-mpb.mpb_size // 512)
        remainder = max(remainder, floor)
        reservation = min(reservation, remainder)
    return reservation


def _disk_lines(d: DiskRec, index: int, reserved: int, ss: int, hi: bool) -> list[str]:
    if index < -1:
        return []
    lines = [""]
    serial = d.serial.split(b"\0", 1)[0].decode("latin-1")
    lines.append(f"  Disk{index:02d} Serial : {serial}" if index >= 0 else f"    Disk Serial : {serial}")
    state = (
        (" spare" if d.is_spare else "")
        + (" active" if d.is_configured else "")
        + (" failed" if d.is_failed else "")
        + (" journal" if d.is_journal else "")
    )
    lines.append(f"          State :{state}")
    lines.append(f"             Id : {d.scsi_id:08x}")
    sz = d.total_blocks(hi) - reserved
    lines.append(f"    Usable Size : {sz * 512 // ss}{human_size(sz * 512)}")
    return lines


def _dev_lines(mpb: MpbRec, i: int, dev: DevRec, own: int, ss: int, gen_bpu: int | None) -> list[str]:
    m, m2 = dev.map0, dev.map1
    hi = mpb.hi_valid
    out = ["", f"[{dev.name[:16]}]:", f"       Subarray : {i}", f"           UUID : {volume_uuid(mpb, i)}"]
    out.append(f"     RAID Level : {m.level}" + (f" <-- {m2.level}" if m2 else ""))
    out.append(f"        Members : {m.num_members}" + (f" <-- {m2.num_members}" if m2 else ""))
    slots = "".join("_" if m.rebuilding(s) else "U" for s in range(m.num_members))
    line = f"          Slots : [{slots}]"
    if m2:
        line += " <-- [" + "".join("_" if m2.rebuilding(s) else "U" for s in range(m2.num_members)) + "]"
    out.append(line)
    out.append("    Failed disk : " + ("none" if m.failed_disk_num == 0xFF else str(m.failed_disk_num)))
    slot = m.slot_of(own) if own >= 0 else -1
    if slot >= 0:
        mx = dev.map_x
        rb = slot < mx.num_members and mx.rebuilding(slot)
        out.append(f"      This Slot : {slot}" + (" (out-of-sync)" if rb else ""))
    else:
        out.append("      This Slot : ?")
    out.append(f"    Sector Size : {ss}")
    sz = dev.size_sectors
    out.append(f"     Array Size : {sz * 512 // ss}{human_size(sz * 512)}")
    sz = m.blocks_per_member(hi)
    out.append(f"   Per Dev Size : {sz * 512 // ss}{human_size(sz * 512)}")
    out.append(f"  Sector Offset : {m.pba_of_lba0(hi) * 512 // ss}")
    out.append(f"    Num Stripes : {m.num_data_stripes(hi)}")
    chunk = f"     Chunk Size : {m.blocks_per_strip // 2} KiB"
    out.append(chunk + (f" <-- {m2.blocks_per_strip // 2} KiB" if m2 else ""))
    out.append(f"       Reserved : {dev.reserved_blocks}")
    if dev.vol.migr_state:
        t = dev.vol.migr_type
        name = "repair" if t == S.MIGR_VERIFY and dev.status & S.DEV_VERIFY_AND_FIX else _MIGR.get(t, f"<unknown:{t}>")
        out.append(f"  Migrate State : {name}")
    else:
        out.append("  Migrate State : idle")
    line = f"      Map State : {_MAP_STATE[m.map_state]}"
    if m2:
        line += f" <-- {_MAP_STATE[m2.map_state]}"
        out.append(line)
        line = f"     Checkpoint : {dev.vol.curr_migr_unit} "
        if dev.vol.migr_type == S.MIGR_GEN_MIGR and (slot > 1 or slot < 0):
            line += "(N/A)"
        else:
            line += f"({blocks_per_migr_unit(dev, gen_bpu)})"
    out.append(line)
    out.append("    Dirty State : " + ("dirty" if dev.vol.dirty & S.RAIDVOL_DIRTY else "clean"))
    out.append("     RWH Policy : " + _RWH.get(dev.rwh_policy, f"<unknown:{dev.rwh_policy}>"))
    out.append(f"      Volume ID : {dev.my_vol_raid_dev_num}")
    return out


def examine_text(mpb: MpbRec, own: int | None, device: str, ss: int, gen_bpu: int | None = None) -> str:
    """``own``: this disk's table entry, None if unknown.

    As in mdadm, a disk whose own entry says SPARE has index -1 (printed last as
    "Disk Serial") and one whose entry says FAILED has index -2 (not printed).
    """
    own_i = -3
    if own is not None:
        entry = mpb.disks[own]
        own_i = -1 if entry.is_spare or entry.is_journal else -2 if entry.is_failed else own
    own_sync = own_i >= 0 and not mpb.disks[own_i].is_spare
    reserved = reserved_sectors(mpb, own_i if own_i >= -1 else 0) if mpb.disks else S.MPB_SECTOR_CNT
    attrs_ok = not (mpb.attributes & ~(S.MPB_ATTRIB_SUPPORTED | S.MPB_ATTRIB_IGNORED))
    sig = mpb.sig[:31].split(b"\0", 1)[0].decode("latin-1")
    check = "correct"  # a copy that loaded has a verified checksum
    lines = [
        f"{device}:",
        f"          Magic : {sig[: len(S.SIGNATURE) - 1]}",
        f"        Version : {mpb.version}",
        f"    Orig Family : {mpb.orig_family_num:08x}",
        f"         Family : {mpb.family_num:08x}",
        f"     Generation : {mpb.generation_num:08x}",
        "  Creation Time : " + (ctime_utc(mpb.creation_time) if mpb.creation_time else "Unknown"),
        "     Attributes : " + ("All supported" if attrs_ok else "not supported"),
        f"           UUID : {container_uuid(mpb, own_sync)}",
        f"       Checksum : {mpb.check_sum:08x} {check}",
        f"    MPB Sectors : {-(-mpb.mpb_size // ss)}",
        f"          Disks : {mpb.num_disks}",
        f"   RAID Devices : {mpb.num_raid_devs}",
    ]
    hi = mpb.hi_valid
    if own_i >= 0:
        lines += _disk_lines(mpb.disks[own_i], own_i, reserved, ss, hi)
    if mpb.bbm is not None and mpb.bbm.entries:
        lines += [
            "",
            "Bad Block Management Log:",
            f"       Log Size : {mpb.bbm_log_size}",
            f"      Signature : {mpb.bbm.signature:x}",
            f"    Entry Count : {len(mpb.bbm.entries)}",
        ]
    for i, dev in enumerate(mpb.devs):
        lines += _dev_lines(mpb, i, dev, own_i, ss, gen_bpu)
    for i, d in enumerate(mpb.disks):
        if i != own_i:
            lines += _disk_lines(d, i, reserved, ss, hi)
    if own_i == -1 and own is not None:
        lines += _disk_lines(mpb.disks[own], -1, reserved, ss, hi)
    return "\n".join(lines) + "\n"
