"""Building one disk's DDF bytes, and the crash-safe order of its writes.

mdadm (``_write_super_to_disk``) writes, per disk: the primary header marked
open, the primary sections, the primary header closed, the same for the
secondary, and the anchor last.  We write the same bytes (headers closed),
in a different order, so that a crash between any two sector writes leaves a
state mdadm 4.2's loader (``load_ddf_headers``) reads as either the old or
the new metadata:

1. secondary sections (every sector after the secondary header's sector);
2. the secondary header's sector (new ``seq``, closed);
3. primary sections;
4. the primary header's sector (new ``seq``, closed);
5. the anchor (new timestamp only: it never carries ``seq``).

mdadm keeps the primary unless the secondary is newer and closed.  Before
step 2 both headers still hold the old ``seq`` and the untouched primary is
read; from step 2 until step 4 the secondary is newer and closed, so it is
read, complete, while the primary's sections are half-written; after step 4
both agree.  What makes this safe is that each header sector is written
after everything it points at and one copy is finished before the other is
begun; the primary-first order would be as safe under mdadm's rule, and
tests/formats/ddf/test_apply.py checks every crash point of this one.  The
open flag buys nothing (mdadm consults it only when both ``seq`` values are
equal), so a header is never written twice.  mdadm checks no section CRC;
no torn section is ever read under a header that vouches for it.  On a 4Kn
disk the header's logical sector also holds the first sections; it is still
written after the rest and in one piece.

A dirty/clean flip thus changes five 512-byte sectors per disk (VD section
sector and header, twice, and the anchor's timestamp), two more when the VD
entry is not among the first seven; mdadm rewrites all 1237.
"""

from __future__ import annotations

from typing import Any

from construct import Container as CContainer

from ..base import Write
from . import structs as S
from .codec import (
    CONTROLLER,
    DISK_DATA,
    HEADER,
    PHYS_ENTRY,
    PHYS_HEADER,
    VIRT_ENTRY,
    VIRT_HEADER,
    Slot,
    Table,
    build_table,
    seal,
    vd_config_struct,
)
from .load import SECTIONS, aligned_extent, metadata_span


def header_bytes(h: Any) -> bytes:
    """A header exactly as given, with a fresh CRC."""
    c = CContainer(h)
    c.crc = 0
    return bytes(seal(bytearray(HEADER.build(c))))


def header_copies(h: Any, anchor_timestamp: int | None = None) -> dict[str, Any]:
    """mdadm's three headers from the active one: primary and secondary closed, the anchor unsequenced."""
    out: dict[str, Any] = {}
    for label, kind in (("primary", S.HEADER_PRIMARY), ("secondary", S.HEADER_SECONDARY), ("anchor", S.HEADER_ANCHOR)):
        c = CContainer(h)
        c.type = kind
        c.openflag = 0
        if kind == S.HEADER_ANCHOR:
            c.seq, c.openflag = 0xFFFFFFFF, 0xFF
            if anchor_timestamp is not None:
                c.timestamp = anchor_timestamp
        out[label] = c
    return out


def config_bytes(slot: Slot, conf: Any | None, crl_bytes: int, mppe: int) -> bytes:
    """A config record slot: a VD config rebuilt and sealed, or the slot's bytes, or an empty (0xFF) slot."""
    if conf is None:
        return slot.raw if slot.raw else b"\xff" * crl_bytes
    body = vd_config_struct(mppe).build(conf)
    tail = slot.raw[len(body) : crl_bytes] if slot.raw else b""
    rec = bytearray(body + tail + b"\xff" * (crl_bytes - len(body) - len(tail)))
    return bytes(seal(rec))


def global_bytes(
    controller: Any, phys: Table, virt: Table, template: bytes = b"", offs: tuple[int, int] = (0, 0)
) -> dict[str, bytes]:
    """The sections every disk carries the same copy of, built (and sealed) once per write."""
    return {
        "controller": bytes(seal(bytearray(CONTROLLER.build(controller)))),
        "phys": build_table(phys, PHYS_HEADER, PHYS_ENTRY, template[offs[0] : offs[0] + phys.size]),
        "virt": build_table(virt, VIRT_HEADER, VIRT_ENTRY, template[offs[1] : offs[1] + virt.size]),
    }


def sections_bytes(h: Any, shared: dict[str, bytes], slots: list[bytes], disk_data: Any, template: bytes) -> bytes:
    """The metadata from a header's LBA to the end of its last section (header sector left as in template).

    ``template`` supplies whatever lies between or after the sections (nothing, in
    mdadm's back-to-back layout).
    """
    span = metadata_span(h)
    buf = bytearray(template[: span * S.SECTOR].ljust(span * S.SECTOR, b"\0"))
    offs = {name: int(getattr(h, f"{name}_section_offset")) * S.SECTOR for name in SECTIONS}

    def put(name: str, data: bytes) -> None:
        buf[offs[name] : offs[name] + len(data)] = data

    for name in ("controller", "phys", "virt"):
        put(name, shared[name])
    put("config", b"".join(slots))
    put("data", bytes(seal(bytearray(DISK_DATA.build(disk_data)))))
    return bytes(buf)


def copy_writes(
    header_lba: int, header: bytes, body: bytes, ss: int, template: tuple[int, bytes] | None
) -> tuple[Write, Write]:
    """One copy (primary or secondary) as (sections, header sector) writes in whole logical sectors."""
    off, length = aligned_extent(header_lba * S.SECTOR, len(body), ss)
    if template is not None and template[0] == off and len(template[1]) == length:
        buf = bytearray(template[1])
    else:
        buf = bytearray(length)
    start = header_lba * S.SECTOR - off
    buf[start : start + len(body)] = body
    buf[start : start + S.SECTOR] = header
    return Write(off + ss, bytes(buf[ss:])), Write(off, bytes(buf[:ss]))


def anchor_write(disk_bytes: int, anchor: bytes, ss: int, template: tuple[int, bytes] | None) -> Write:
    off = disk_bytes - ss
    buf = bytearray(template[1]) if template is not None and template[0] == off else bytearray(ss)
    buf[ss - S.SECTOR :] = anchor
    return Write(off, bytes(buf))
