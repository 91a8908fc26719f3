"""``mdadm --examine`` text for one disk's DDF copy, as mdadm 4.2 prints it (``examine_super_ddf``).

Timestamps inside GUIDs are printed in UTC (mdadm uses the local zone; the
golden images were examined on a UTC machine).
"""

from __future__ import annotations

import time
from typing import Any

from . import structs as S
from .codec import crc_ok
from .load import RawCopy

DDF_STATE = ["Optimal", "Degraded", "Deleted", "Missing", "Failed", "Partially Optimal", "-reserved-", "-reserved-"]
DDF_INIT = ["Not Initialised", "QuickInit in Progress", "Fully Initialised", "*UNKNOWN*"]
DDF_ACCESS = ["Read/Write", "Reserved", "Read Only", "Blocked (no access)"]
DDF_LEVEL = {
    S.PRL_RAID0: "RAID0",
    S.PRL_RAID1: "RAID1",
    S.PRL_RAID3: "RAID3",
    S.PRL_RAID4: "RAID4",
    S.PRL_RAID5: "RAID5",
    S.PRL_RAID1E: "RAID1E",
    S.PRL_JBOD: "JBOD",
    S.PRL_CONCAT: "CONCAT",
    S.PRL_RAID5E: "RAID5E",
    S.PRL_RAID5EE: "RAID5EE",
    S.PRL_RAID6: "RAID6",
}
DDF_SEC_LEVEL = {S.SRL_STRIPED: "Striped", S.SRL_MIRRORED: "Mirrored", S.SRL_CONCAT: "Concat", S.SRL_SPANNED: "Spanned"}


def guid_text(guid: bytes, tstamp: bool) -> str:
    """print_guid: hex in groups of four bytes, then the leading ASCII and the embedded date."""
    hexed = ":".join(guid[i : i + 4].hex().upper() for i in range(0, len(guid), 4))
    trimmed = guid.rstrip(b" ")
    ascii_part = ""
    for b in trimmed:
        if not 0x20 <= b < 0x7F:
            break
        ascii_part += chr(b)
    if tstamp:
        then = int.from_bytes(guid[16:20], "big") + S.DECADE
        ascii_part += time.strftime(" %m/%d/%y %H:%M:%S", time.gmtime(then))
    return f"{hexed}\n                  ({ascii_part})"


def _vd_lines(n: int, raw: RawCopy, guid: bytes) -> list[str]:
    """examine_vd: details from this disk's config record for the VD, if it has one whose CRC holds."""
    secs = raw.sections
    crl_bytes = int(raw.header.fields.config_record_len) * S.SECTOR
    # mdadm keeps one record per GUID: the first on the disk unless a later one
    # of the same BVD has a higher seqnum (load_ddf_local).
    best: dict[bytes, tuple[Any, bytes]] = {}
    for slot in secs.slots:
        c = slot.config
        if c is None:
            continue
        key = bytes(c.guid)
        if key in best:
            b = best[key][0]
            if (b.sec_elmnt_count > 1 and b.sec_elmnt_seq != c.sec_elmnt_seq) or c.seqnum <= b.seqnum:
                continue
        best[key] = (c, slot.raw[:crl_bytes])
    lines: list[str] = []
    if guid in best and crc_ok(best[guid][1]):
        c = best[guid][0]
        refs: dict[int, int] = {}
        for j, e in enumerate(secs.phys.entries):
            refs.setdefault(0xFFFFFFFF if e is None else int(e.refnum), j)
        parts = []
        for i in range(c.prim_elmnt_count):
            at = refs.get(c.phys_refnum[i])
            parts.append(f"{'--' if at is None else at}@{c.lba_offset[i] // 2}K")
        lines.append(f" Raid Devices[{n}] : {c.prim_elmnt_count} ({' '.join(parts)})")
        if c.chunk_shift != 255:
            lines.append(f"   Chunk Size[{n}] : {1 << c.chunk_shift} sectors")
        lines.append(f"   Raid Level[{n}] : {DDF_LEVEL.get(c.prl, '-unknown-')}")
        if c.sec_elmnt_count != 1:
            lines.append(f"  Secondary Position[{n}] : {c.sec_elmnt_seq} of {c.sec_elmnt_count}")
            lines.append(f"  Secondary Level[{n}] : {DDF_SEC_LEVEL.get(c.srl, '-unknown-')}")
        lines.append(f"  Device Size[{n}] : {c.blocks // 2}")
        lines.append(f"   Array Size[{n}] : {c.array_blocks // 2}")
    return lines


def examine_text(raw: RawCopy, device: str) -> str:
    secs = raw.sections
    a = raw.anchor
    active = raw.header.fields
    redundant = raw.secondary is not None and raw.secondary.raw[:4] == b"\xde\x11\xde\x11"
    out = [
        f"{device}:",
        f"          Magic : {a.magic:08x}",
        f"        Version : {a.revision.decode('latin-1')}",
        f"Controller GUID : {guid_text(secs.controller.guid, False)}",
        f" Container GUID : {guid_text(a.guid, True)}",
        f"            Seq : {active.seq:08x}",
        f"  Redundant hdr : {'yes' if redundant else 'no'}",
        f"  Virtual Disks : {secs.virt.header.populated_vdes}",
    ]
    for i, ve in enumerate(secs.virt.entries):
        if ve is None or ve.guid == b"\xff" * S.GUID_LEN:
            continue
        st = ve.state
        out += [
            "",
            f"      VD GUID[{i}] : {guid_text(ve.guid, True)}",
            f"         unit[{i}] : {ve.unit}",
            f"        state[{i}] : {DDF_STATE[st & 7]}, {'Morphing, ' if st & S.VD_MORPHING else ''}"
            f"{'Not Consistent' if st & S.VD_INCONSISTENT else 'Consistent'}",
            f"   init state[{i}] : {DDF_INIT[ve.init_state & S.INIT_MASK]}",
            f"       access[{i}] : {DDF_ACCESS[(ve.init_state & S.ACCESS_MASK) >> 6]}",
            f"         Name[{i}] : {_name(ve.name)}",
        ]
        out += _vd_lines(i, raw, ve.guid)
    if secs.virt.header.populated_vdes:
        out.append("")
    out += _pd_lines(raw, device)
    return "\n".join(out) + "\n"


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _pd_lines(raw: RawCopy, device: str) -> list[str]:
    secs = raw.sections
    own = secs.disk_data.refnum
    out = [
        f" Physical Disks : {secs.phys.header.max_pdes}",
        "      Number    RefNo      Size       Device      Type/State",
    ]
    displayed = False
    for i, e in enumerate(secs.phys.entries):
        if e is None or e.refnum == 0xFFFFFFFF:
            continue
        t, st = e.type, e.state
        dev = ""
        if e.refnum == own:
            dev, displayed = device, True
        if st & S.PD_FAILED:
            st &= ~(S.PD_ONLINE | S.PD_REBUILDING | S.PD_TRANSITION)
        kind = (
            ("active" if t & 2 else "")
            + ("Global-Spare" if t & 4 else "")
            + ("spare" if t & 8 else "")
            + (", foreign" if t & 16 else "")
            + ("pass-through" if t & 32 else "")
        )
        state = (
            ("Online" if st & 1 else "Offline")
            + (", Failed" if st & 2 else "")
            + (", Rebuilding" if st & 4 else "")
            + (", in-transition" if st & 8 else "")
            + (", SMART-errors" if st & 16 else "")
            + (", Unrecovered-Read-Errors" if st & 32 else "")
            + (", Missing" if st & 64 else "")
        )
        out.append(f"       {i:3d}    {e.refnum:08x}  {e.config_size >> 1:8d}K {dev:<15s} {kind}/{state}")
    if not displayed:
        out += [" Physical disks not in metadata!:", f"   {own:08x} {device}", ""]
    return out
