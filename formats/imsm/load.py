"""Reading one disk's IMSM metadata: anchor, extension sectors, migration record.

Order of trust (formats.md §1.1, §1.4, §1.16): the signature, then ``mpb_size``
bounded by the reserved area, then the checksum over exactly ``mpb_size``
bytes (in the disk's own units), and only then the walk of the structures,
which checks every count against ``mpb_size`` before using it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..blockio import Disk
from ..errors import DiskIOError, MetadataError, NoMetadata
from . import structs as S
from .codec import FORMAT, Locator, checksum, parse_mpb, scale_units
from .records import MpbRec
from .serial import disk_serial


@dataclass
class RawCopy:
    """What was read from one disk, before interpretation."""

    sector_size: int
    disk_sectors: int  # N, in logical sectors
    mpb_sectors: int  # anchor + extension sectors
    buffer: bytes  # logical MPB buffer: anchor sector then the extension sectors, sector-rounded
    migr_sector: bytes  # the disk's last logical sector, as read

    @property
    def anchor_offset(self) -> int:
        return (self.disk_sectors - 2) * self.sector_size

    @property
    def extension_offset(self) -> int:
        return (self.disk_sectors - 1 - self.mpb_sectors) * self.sector_size

    @property
    def migr_offset(self) -> int:
        return (self.disk_sectors - 1) * self.sector_size

    def disk_offset(self, mpb_offset: int) -> int:
        """Byte offset on the disk of a byte of the logical MPB."""
        ss = self.sector_size
        sector, within = divmod(mpb_offset, ss)
        if sector == 0:
            return self.anchor_offset + within
        return self.extension_offset + (sector - 1) * ss + within


def _read(disk: Disk, offset: int, length: int) -> bytes:
    try:
        return disk.read(offset, length)
    except DiskIOError as e:
        raise MetadataError(f"cannot read: {e.message}", format=FORMAT, disk=disk.name, offset=offset) from e


def probe(disk: Disk) -> bool:
    ss = disk.sector_size
    n = disk.size_bytes // ss
    if n < 2:
        return False
    try:
        return disk.read((n - 2) * ss, len(S.SIGNATURE)) == S.SIGNATURE
    except DiskIOError:
        return False


def read_raw(disk: Disk) -> RawCopy:
    """Read and check signature, size and checksum; return the raw sectors."""
    ss = disk.sector_size
    if ss not in (512, 4096):
        raise MetadataError(f"unsupported logical sector size {ss}", format=FORMAT, disk=disk.name)
    n = disk.size_bytes // ss
    if n < 3:
        raise NoMetadata("disk too small to hold IMSM metadata", format=FORMAT, disk=disk.name)
    anchor_off = (n - 2) * ss
    anchor = _read(disk, anchor_off, ss)
    if anchor[: len(S.SIGNATURE)] != S.SIGNATURE:
        raise NoMetadata(
            "no IMSM signature", format=FORMAT, structure="mpb", field="sig", disk=disk.name, offset=anchor_off
        )
    mpb_size = struct.unpack_from("<I", anchor, 0x24)[0]
    loc = Locator(disk.name, lambda o: anchor_off + o)
    if mpb_size < S.MPB_HEADER_SIZE or mpb_size > S.MAX_MPB_SIZE or mpb_size % 4:
        raise loc.error(f"mpb_size {mpb_size} is impossible", "mpb", "mpb_size", 0x24)
    sectors = -(-mpb_size // ss)
    if sectors + 1 > n:
        raise loc.error(f"mpb_size {mpb_size} does not fit on the disk", "mpb", "mpb_size", 0x24)
    ext = _read(disk, (n - 2 - (sectors - 1)) * ss, (sectors - 1) * ss) if sectors > 1 else b""
    migr = _read(disk, (n - 1) * ss, ss)
    raw = RawCopy(sector_size=ss, disk_sectors=n, mpb_sectors=sectors, buffer=anchor + ext, migr_sector=migr)
    stored = struct.unpack_from("<I", anchor, 0x20)[0]
    computed = checksum(raw.buffer, mpb_size)
    if stored != computed:
        raise MetadataError(
            f"checksum {stored:#010x} does not match the computed {computed:#010x}",
            format=FORMAT,
            structure="mpb",
            field="check_sum",
            disk=disk.name,
            offset=anchor_off + 0x20,
        )
    return raw


def parse_raw(raw: RawCopy, disk_name: str) -> MpbRec:
    loc = Locator(disk_name, raw.disk_offset)
    size = struct.unpack_from("<I", raw.buffer, 0x24)[0]
    mpb = parse_mpb(raw.buffer[:size], loc)
    if mpb.computed_size() != mpb.mpb_size:
        raise loc.error(
            f"mpb_size {mpb.mpb_size} does not match its contents ({mpb.computed_size()} bytes)",
            "mpb",
            "mpb_size",
            0x24,
        )
    if raw.sector_size == 4096:
        scale_units(mpb, to_4k=False)
    return mpb


def self_index(mpb: MpbRec, disk: Disk) -> int | None:
    """This disk's entry in the table: by serial (as mdadm matches it), or the lone spare-record entry."""
    serial = disk_serial(disk)
    if serial is not None:
        want = serial.encode("latin-1")[:16].ljust(16, b"\0")
        for i, d in enumerate(mpb.disks):
            if d.serial == want:
                return i
    if mpb.num_raid_devs == 0 and mpb.num_disks == 1:
        return 0
    return None
