"""One disk's DDF copy (``DiskMetadata``): what the disk says, and its bytes rebuilt."""

from __future__ import annotations

from typing import Any

from ..base import DiskMetadata, Write
from ..blockio import Disk
from . import structs as S
from .codec import FORMAT, Sections
from .examine import examine_text
from .image import anchor_write, config_bytes, copy_writes, global_bytes, header_bytes, header_copies, sections_bytes
from .load import RawCopy, effective_mppe, read_raw

ORDER = ("secondary", "primary")  # see image.py: the secondary copy is written first


def disk_writes(
    disk_bytes: int,
    ss: int,
    headers: dict[str, Any],
    sections: Sections,
    slots: list[bytes],
    templates: dict[str, tuple[int, bytes]],
    shared: dict[str, bytes] | None = None,
) -> list[Write]:
    """Every write for one disk, in the crash-safe order of ``image.py``.

    ``headers`` holds the "primary", "secondary" and "anchor" header fields to
    write; the sections are laid out after each copy's header as it says.
    """
    writes: list[Write] = []
    for label in ORDER:
        h = headers[label]
        lba = int(h.primary_lba if label == "primary" else h.secondary_lba)
        if lba == S.NO_LBA:
            continue
        t = templates.get(label)
        start = lba * S.SECTOR
        within = t[1][start - t[0] :] if t is not None and t[0] <= start else b""
        if shared is None:
            offs = (int(h.phys_section_offset) * S.SECTOR, int(h.virt_section_offset) * S.SECTOR)
            shared = global_bytes(sections.controller, sections.phys, sections.virt, within, offs)
        body = sections_bytes(h, shared, slots, sections.disk_data, within)
        writes.extend(copy_writes(lba, header_bytes(h), body, ss, t))
    writes.append(anchor_write(disk_bytes, header_bytes(headers["anchor"]), ss, templates.get("anchor")))
    return writes


def slot_bytes(raw: RawCopy) -> list[bytes]:
    h = raw.header.fields
    crl_bytes = int(h.config_record_len) * S.SECTOR
    mppe = effective_mppe(h)
    return [config_bytes(s, s.config, crl_bytes, mppe) for s in raw.sections.slots]


class DDFDiskCopy(DiskMetadata):
    """What one disk says, parsed and validated, with the raw extents kept for the round trip."""

    format = FORMAT

    def __init__(self, disk: Disk, raw: RawCopy) -> None:
        self.disk = disk
        self.raw = raw

    @classmethod
    def read(cls, disk: Disk) -> DDFDiskCopy:
        return cls(disk, read_raw(disk))

    @property
    def sector_size(self) -> int:
        return self.raw.sector_size

    @property
    def sections(self) -> Sections:
        return self.raw.sections

    @property
    def header(self) -> Any:
        return self.raw.header.fields

    @property
    def refnum(self) -> int:
        return int(self.raw.sections.disk_data.refnum)

    @property
    def pd_index(self) -> int | None:
        """This disk's PD entry, found by GUID as mdadm finds it (the last match wins, as in mdadm)."""
        found = None
        for i, e in enumerate(self.raw.sections.phys.entries):
            if e is not None and e.guid == self.raw.sections.disk_data.guid:
                found = i
        return found

    def encode(self) -> list[Write]:
        """Its headers as read (a bad one rebuilt from the active one); the active sections in both copies."""
        raw = self.raw
        headers = header_copies(raw.header.fields)
        headers["anchor"] = raw.anchor
        for label, copy in (("primary", raw.primary), ("secondary", raw.secondary)):
            if copy is not None and copy.valid:
                headers[label] = copy.fields
        return disk_writes(raw.sectors * S.SECTOR, raw.sector_size, headers, raw.sections, slot_bytes(raw), raw.extents)

    def regions(self) -> list[Write]:
        out: list[Write] = []
        for w in self.encode():
            for off, data in self.raw.extents.values():
                if off <= w.offset and w.end <= off + len(data):
                    out.append(Write(w.offset, data[w.offset - off : w.end - off]))
                    break
        return out

    def examine(self) -> str:
        return examine_text(self.raw, self.disk.name)
