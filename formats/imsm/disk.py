"""One disk's IMSM copy (``DiskMetadata``) and the sector layout of its writes."""

from __future__ import annotations

from ..base import DiskMetadata, Write
from ..blockio import Disk
from .codec import FORMAT, mpb_bytes_for_disk
from .examine import examine_text
from .load import RawCopy, parse_raw, read_raw, self_index
from .records import MpbRec


def mpb_writes(disk_sectors: int, ss: int, mpb: bytes, tail_source: bytes, migr_sector: bytes | None) -> list[Write]:
    """mdadm's order (§1.13): migration-record sector, extension sectors, then the anchor.

    The bytes after ``mpb_size`` in the last MPB sector come from ``tail_source``
    (the buffer the MPB was read into), as they do from mdadm's buffer.
    """
    sectors = -(-len(mpb) // ss)
    buf = bytearray(tail_source[: sectors * ss].ljust(sectors * ss, b"\0"))
    buf[: len(mpb)] = mpb
    writes: list[Write] = []
    if migr_sector is not None:
        writes.append(Write((disk_sectors - 1) * ss, migr_sector))
    if sectors > 1:
        writes.append(Write((disk_sectors - 1 - sectors) * ss, bytes(buf[ss:])))
    writes.append(Write((disk_sectors - 2) * ss, bytes(buf[:ss])))
    return writes


class IMSMDiskCopy(DiskMetadata):
    """What one disk says, parsed and validated, with the raw sectors kept for the round trip."""

    format = FORMAT

    def __init__(self, disk: Disk, raw: RawCopy, mpb: MpbRec, own: int | None) -> None:
        self.disk = disk
        self.raw = raw
        self.mpb = mpb
        self.own = own  # this disk's entry in its own table, when its serial is known

    @classmethod
    def read(cls, disk: Disk) -> IMSMDiskCopy:
        raw = read_raw(disk)
        mpb = parse_raw(raw, disk.name)
        return cls(disk, raw, mpb, self_index(mpb, disk))

    @property
    def sector_size(self) -> int:
        return self.raw.sector_size

    def encode(self) -> list[Write]:
        data = mpb_bytes_for_disk(self.mpb, self.raw.sector_size)
        return mpb_writes(self.raw.disk_sectors, self.raw.sector_size, data, self.raw.buffer, self.raw.migr_sector)

    def regions(self) -> list[Write]:
        ss, n, k = self.raw.sector_size, self.raw.disk_sectors, self.raw.mpb_sectors
        writes = [Write((n - 1) * ss, self.raw.migr_sector)]
        if k > 1:
            writes.append(Write((n - 1 - k) * ss, self.raw.buffer[ss:]))
        writes.append(Write((n - 2) * ss, self.raw.buffer[:ss]))
        return writes

    def examine(self) -> str:
        return examine_text(self.mpb, self.own, self.disk.name, self.raw.sector_size)
