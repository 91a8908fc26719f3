"""Reading one disk's DDF metadata as mdadm 4.2 reads it (formats.md §2.11, §2.14).

Order of trust: the anchor in the last 512-byte block (magic, CRC, revision),
then the primary and secondary headers, each valid only if its magic and CRC
are right and it agrees with the anchor; mdadm's rule picks the active one.
Only then are the section offsets and lengths of the active header checked
against the disk and each other, and the sections read and parsed, every
count bounded by its section's length before use.

DDF counts in 512-byte units even on a 4Kn disk (mdadm computes every offset
as ``lba << 9``), so a 4Kn disk has the same layout; we read whole logical
sectors around each metadata extent so that writes can be whole sectors too.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any

from ..blockio import Disk
from ..errors import DiskIOError, MetadataError, NoMetadata
from . import structs as S
from .codec import (
    CONTROLLER,
    DISK_DATA,
    FORMAT,
    HEADER,
    PHYS_ENTRY,
    PHYS_HEADER,
    SPARE_ASSIGN,
    SPARE_ENTRY,
    VIRT_ENTRY,
    VIRT_HEADER,
    Sections,
    Slot,
    Where,
    crc_ok,
    parse,
    parse_table,
    vd_config_struct,
)

MIN_DISK_BYTES = 32 * 1024 * 1024  # mdadm: a DDF device must be larger than this
POWERS = (2, 8, 32, 128, 512)  # allowed PD/VD section lengths
MAX_SECTION = 1024  # sectors; mdadm refuses longer sections
SECTIONS = ("controller", "phys", "virt", "config", "data")


@dataclass
class HeaderCopy:
    """A primary or secondary header as read, and whether mdadm would accept it."""

    lba: int
    raw: bytes
    fields: Any  # parsed header (None when it could not be parsed)
    problem: str | None  # None: valid

    @property
    def valid(self) -> bool:
        return self.problem is None


@dataclass
class RawCopy:
    """What was read from one disk, with the active header's sections parsed."""

    sector_size: int
    sectors: int  # disk size in 512-byte units
    anchor: Any  # parsed anchor
    anchor_raw: bytes
    primary: HeaderCopy | None  # None: no primary LBA on the disk
    secondary: HeaderCopy | None  # None: no secondary (all-FF LBA)
    active: str  # "primary" or "secondary"
    sections: Sections
    extents: dict[str, tuple[int, bytes]]  # "primary"/"secondary"/"anchor" -> (byte offset, bytes as read)
    problems: list[str]  # tolerated defects (bad section CRCs, bad secondary), for display

    @property
    def header(self) -> HeaderCopy:
        h = self.primary if self.active == "primary" else self.secondary
        assert h is not None
        return h


def _read(disk: Disk, offset: int, length: int, what: str) -> bytes:
    try:
        return disk.read(offset, length)
    except DiskIOError as e:
        raise MetadataError(
            f"cannot read: {e.message}", format=FORMAT, structure=what, disk=disk.name, offset=offset
        ) from e


def probe(disk: Disk) -> bool:
    n = disk.size_bytes
    if n < S.SECTOR:
        return False
    try:
        return disk.read(n - S.SECTOR, 4) == struct.pack(">I", S.HEADER_MAGIC)
    except DiskIOError:
        return False


def metadata_span(h: Any) -> int:
    """Sectors from a header's LBA to the end of its last section (mdadm: 618)."""
    end = 1
    for name in SECTIONS:
        off, length = _section(h, name)
        if off != S.NO_SECTION:
            end = max(end, off + length)
    return end


def _section(h: Any, name: str) -> tuple[int, int]:
    return int(getattr(h, f"{name}_section_offset")), int(getattr(h, f"{name}_section_length"))


def aligned_extent(offset: int, length: int, ss: int) -> tuple[int, int]:
    """The whole logical sectors covering a byte range."""
    start = offset - offset % ss
    end = -(-(offset + length) // ss) * ss
    return start, end - start


def read_raw(disk: Disk) -> RawCopy:
    ss = disk.sector_size
    name = disk.name
    if ss not in (512, 4096):
        raise MetadataError(f"unsupported logical sector size {ss}", format=FORMAT, disk=name)
    size = disk.size_bytes
    if size < S.SECTOR or size % S.SECTOR:
        raise NoMetadata("disk too small to hold DDF metadata", format=FORMAT, disk=name)
    n = size // S.SECTOR
    anchor_off = size - S.SECTOR
    anchor_raw = _read(disk, anchor_off, S.SECTOR, "anchor")
    where = Where(name, anchor_off)
    if struct.unpack_from(">I", anchor_raw, 0)[0] != S.HEADER_MAGIC:
        raise NoMetadata(
            "no DDF anchor", format=FORMAT, structure="anchor", field="magic", disk=name, offset=anchor_off
        )
    if size <= MIN_DISK_BYTES:
        raise where.error(f"disk of {size} bytes is too small for DDF (mdadm needs > 32 MiB)", "anchor")
    if not crc_ok(anchor_raw):
        raise where.error("CRC does not match (mdadm's CRC variant)", "anchor", "crc", 4)
    anchor = parse(HEADER, anchor_raw, "anchor", where)
    if anchor.revision not in S.REVISIONS:
        raise where.error(f"revision {anchor.revision!r} is not one mdadm supports", "anchor", "revision", 32)
    primary = _header(disk, anchor, anchor_raw, int(anchor.primary_lba), S.HEADER_PRIMARY, n)
    secondary = None
    if anchor.secondary_lba != S.NO_LBA:
        secondary = _header(disk, anchor, anchor_raw, int(anchor.secondary_lba), S.HEADER_SECONDARY, n)
    active = _choose(primary, secondary)
    if active is None:
        h = primary if primary is not None else secondary
        problem = (h.problem if h is not None else None) or "no primary header"
        raise MetadataError(
            f"neither the primary nor the secondary header is valid ({problem})",
            format=FORMAT,
            structure="primary header",
            field=_PROBLEM_FIELD.get(problem, "primary_lba" if "beyond" in problem else "magic"),
            disk=name,
            offset=None if primary is None else primary.lba * S.SECTOR,
        )
    problems: list[str] = []
    if active == "secondary":
        problems.append(f"primary header unusable ({primary.problem if primary else 'absent'}); using the secondary")
    elif secondary is not None and not secondary.valid:
        problems.append(f"secondary header unusable ({secondary.problem})")
    hc = primary if active == "primary" else secondary
    assert hc is not None and hc.fields is not None
    check_layout(hc.fields, hc.lba, n, Where(name, hc.lba * S.SECTOR))
    span = metadata_span(hc.fields)
    check_header_lbas(anchor, span, n, where)
    extents: dict[str, tuple[int, bytes]] = {}
    for label, copy in (("primary", primary), ("secondary", secondary)):
        if copy is not None and copy.lba + span <= n - 1:
            off, length = aligned_extent(copy.lba * S.SECTOR, span * S.SECTOR, ss)
            if off + length <= size:
                extents[label] = (off, _read(disk, off, length, f"{label} metadata"))
    a_off, a_len = aligned_extent(anchor_off, S.SECTOR, ss)
    extents["anchor"] = (a_off, _read(disk, a_off, a_len, "anchor"))
    base, buf = extents[active]
    start = hc.lba * S.SECTOR - base
    sections = parse_sections(buf[start : start + span * S.SECTOR], hc.fields, Where(name, hc.lba * S.SECTOR), problems)
    return RawCopy(ss, n, anchor, anchor_raw, primary, secondary, active, sections, extents, problems)


#: The header field each of ``_header``'s problems is about, for the error naming it.
_PROBLEM_FIELD = {"bad magic": "magic", "bad CRC": "crc", "does not match the anchor": "guid"}


def _header(disk: Disk, anchor: Any, anchor_raw: bytes, lba: int, kind: int, n: int) -> HeaderCopy:
    """load_ddf_header: a copy is valid if it is in range, sealed, and agrees with the anchor."""
    if lba >= n - 1:
        return HeaderCopy(lba, b"", None, f"LBA {lba} is beyond the disk")
    raw = _read(disk, lba * S.SECTOR, S.SECTOR, "header")
    if struct.unpack_from(">I", raw, 0)[0] != S.HEADER_MAGIC:
        return HeaderCopy(lba, raw, None, "bad magic")
    if not crc_ok(raw):
        return HeaderCopy(lba, raw, None, "bad CRC")
    h = parse(HEADER, raw, "header", Where(disk.name, lba * S.SECTOR))
    if (
        h.guid != anchor.guid
        or h.revision != anchor.revision
        or h.primary_lba != anchor.primary_lba
        or h.secondary_lba != anchor.secondary_lba
        or h.type != kind
        or raw[S.HEADER_TAIL :] != anchor_raw[S.HEADER_TAIL :]
    ):
        return HeaderCopy(lba, raw, h, "does not match the anchor")
    return HeaderCopy(lba, raw, h, None)


def check_header_lbas(anchor: Any, span: int, n: int, where: Where) -> None:
    """Every header copy the anchor records must lie, with its sections, on the disk and apart.

    mdadm's loader merely skips a copy beyond the disk (load_ddf_header), but
    every write rewrites both copies where the anchor says, so such a disk can
    never be written: it is refused here, before anything is built for it.
    mdadm always writes both copies inside the disk, so this refuses nothing it wrote.
    """
    spans: list[tuple[int, int, str]] = []
    for label, lba, at in (("primary", int(anchor.primary_lba), 96), ("secondary", int(anchor.secondary_lba), 104)):
        if lba == S.NO_LBA:
            continue
        if lba + span > n - 1:
            raise where.error(
                f"the {label} header at LBA {lba} with its {span} sectors of sections does not fit"
                f" before the anchor (LBA {n - 1})",
                "anchor",
                f"{label}_lba",
                at,
            )
        spans.append((lba, lba + span, label))
    if len(spans) == 2 and spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]:
        raise where.error(
            f"the primary (LBA {spans[0][0]}) and secondary (LBA {spans[1][0]}) copies overlap",
            "anchor",
            "secondary_lba",
            104,
        )


def _choose(p: HeaderCopy | None, s: HeaderCopy | None) -> str | None:
    """mdadm's pick: the primary, unless the secondary is valid and newer-and-closed, or it is the only one."""
    active = "primary" if p is not None and p.valid else None
    if s is not None and s.valid:
        sf, pf = s.fields, p.fields if p is not None else None
        if (
            active is None
            or pf is None
            or (pf.seq < sf.seq and not sf.openflag)
            or (pf.seq == sf.seq and pf.openflag and not sf.openflag)
        ):
            active = "secondary"
    return active


def check_layout(h: Any, lba: int, n: int, where: Where) -> None:
    """The active header's geometry (formats.md §2.14), before any section is read."""
    offsets = {"controller": 192, "phys": 200, "virt": 208, "config": 216, "data": 224}
    spans = []
    for name in SECTIONS:
        off, length = _section(h, name)
        if off == S.NO_SECTION or length == 0:
            raise where.error(f"the {name} section is missing", "header", f"{name}_section_offset", offsets[name])
        if length > MAX_SECTION:
            raise where.error(
                f"{length} sectors (max {MAX_SECTION})", "header", f"{name}_section_length", offsets[name] + 4
            )
        if name in ("phys", "virt") and length not in POWERS:
            raise where.error(
                f"{length} sectors is not one of {POWERS}", "header", f"{name}_section_length", offsets[name] + 4
            )
        if off < 1 or lba + off + length > n - 1:
            raise where.error(
                f"section at +{off} runs past the anchor", "header", f"{name}_section_offset", offsets[name]
            )
        spans.append((off, off + length, name))
    spans.sort()
    for (_, e1, n1), (s2, _, n2) in itertools.pairwise(spans):
        if s2 < e1:
            raise where.error(f"the {n1} and {n2} sections overlap", "header", f"{n2}_section_offset", offsets[n2])
    crl = int(h.config_record_len)
    mppe = effective_mppe(h)
    config_len = _section(h, "config")[1]
    if crl == 0 or config_len % crl:
        raise where.error(
            f"config_record_len {crl} does not divide the config section", "header", "config_record_len", 134
        )
    if mppe == 0 or crl * S.SECTOR < S.VD_CONFIG_FIXED + 12 * mppe:
        raise where.error(
            f"{mppe} primary elements do not fit in {crl} sectors", "header", "max_primary_element_entries", 136
        )
    if (int(h.max_partitions) + 1) * crl > config_len:
        raise where.error(
            "max_partitions + 1 records do not fit in the config section", "header", "max_partitions", 132
        )
    if _section(h, "controller")[1] < 1 or _section(h, "data")[1] < 1:
        raise where.error("controller/data sections need a sector each", "header", "data_section_length", 228)


def effective_mppe(h: Any) -> int:
    """mppe, or for Adaptec's 0xFFFF the number of entries that fit in a record (capped by max_pd)."""
    mppe = int(h.max_primary_element_entries)
    if mppe == 0xFFFF:
        mppe = min(int(h.max_pd_entries), (int(h.config_record_len) * S.SECTOR - S.SECTOR) // 12)
    return mppe


def parse_sections(buf: bytes, h: Any, where: Where, problems: list[str]) -> Sections:
    """Parse the sections a header points at; ``buf`` starts at the header's LBA."""
    raw: dict[str, bytes] = {}
    for name in SECTIONS:
        off, length = _section(h, name)
        raw[name] = buf[off * S.SECTOR : (off + length) * S.SECTOR]
    for name, label in (
        ("controller", "controller"),
        ("phys", "PD records"),
        ("virt", "VD records"),
        ("data", "disk data"),
    ):
        size = S.SECTOR if name in ("controller", "data") else len(raw[name])
        if not crc_ok(raw[name][:size]):
            problems.append(f"{label} section CRC does not match")
    sw = {name: where.at(_section(h, name)[0] * S.SECTOR) for name in SECTIONS}
    controller = parse(CONTROLLER, raw["controller"][: S.SECTOR], "controller", sw["controller"])
    phys = parse_table(raw["phys"], PHYS_HEADER, PHYS_ENTRY, "max_pdes", "phys", sw["phys"])
    virt = parse_table(raw["virt"], VIRT_HEADER, VIRT_ENTRY, "max_vdes", "virt", sw["virt"])
    disk_data = parse(DISK_DATA, raw["data"][: S.SECTOR], "disk_data", sw["data"])
    crl_bytes = int(h.config_record_len) * S.SECTOR
    mppe = effective_mppe(h)
    vdc = vd_config_struct(mppe)
    fixed = S.VD_CONFIG_FIXED + 12 * mppe
    slots: list[Slot] = []
    for i in range(int(h.max_partitions) + 1):
        rec = raw["config"][i * crl_bytes : (i + 1) * crl_bytes]
        slot = Slot(rec)
        if slot.magic == S.VD_CONF_MAGIC:
            w = sw["config"].at(i * crl_bytes)
            conf = parse(vdc, rec[:fixed], f"vd_config[{i}]", w)
            check_config(conf, mppe, w, i)
            if not crc_ok(rec):
                problems.append(f"VD config record {i} CRC does not match")
            slot.config = conf
        elif slot.magic == S.SPARE_ASSIGN_MAGIC:
            parse_spare(slot, crl_bytes, sw["config"].at(i * crl_bytes), i)
        slots.append(slot)
    return Sections(controller, phys, virt, slots, disk_data, raw)


def parse_spare(slot: Slot, crl_bytes: int, where: Where, i: int) -> None:
    """A spare assignment record: its entry counts must fit in the record."""
    name = f"spare_assign[{i}]"
    head = parse(SPARE_ASSIGN, slot.raw[: S.SPARE_ASSIGN_HEADER_SIZE], name, where)
    room = (crl_bytes - S.SPARE_ASSIGN_HEADER_SIZE) // S.SPARE_ENTRY_SIZE
    if head.max > room:
        raise where.error(f"{head.max} entries do not fit in the record ({room})", name, "max", 22)
    if head.populated > head.max:
        raise where.error(f"{head.populated} entries populated of {head.max}", name, "populated", 20)
    for k in range(head.populated):
        off = S.SPARE_ASSIGN_HEADER_SIZE + k * S.SPARE_ENTRY_SIZE
        entry = parse(SPARE_ENTRY, slot.raw[off : off + S.SPARE_ENTRY_SIZE], f"{name}.entry[{k}]", where.at(off))
        slot.spare_guids.append(bytes(entry.guid))
    slot.spare = head


def check_config(c: Any, mppe: int, where: Where, i: int) -> None:
    name = f"vd_config[{i}]"
    if not 1 <= c.prim_elmnt_count <= mppe:
        raise where.error(f"prim_elmnt_count {c.prim_elmnt_count} (mppe {mppe})", name, "prim_elmnt_count", 64)
    if c.sec_elmnt_count < 1 or c.sec_elmnt_seq >= c.sec_elmnt_count:
        raise where.error(f"secondary element {c.sec_elmnt_seq} of {c.sec_elmnt_count}", name, "sec_elmnt_seq", 70)
    members = [r for r in c.phys_refnum if r != S.NO_REFNUM]
    if len(members) < c.prim_elmnt_count:
        raise where.error(f"{len(members)} member refnums for {c.prim_elmnt_count} elements", name, "phys_refnum", 512)
    if c.chunk_shift != 0xFF and c.chunk_shift > 30:
        raise where.error(f"chunk_shift {c.chunk_shift}", name, "chunk_shift", 66)
