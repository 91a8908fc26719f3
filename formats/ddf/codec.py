"""DDF bytes <-> parsed sections: mdadm's CRC, GUID helpers and the section codecs.

Every section is parsed from, and built back to, exactly its on-disk size.
Table entries that are entirely 0xFF (unused) are kept as ``None`` rather
than parsed: a 1023-entry PD table is mostly empty, and this keeps a load and
an encode cheap enough to run on every metadata write.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from construct import ConstructError
from construct import Container as CContainer

from ..errors import MetadataError
from . import structs as S

FORMAT = "ddf"

# Compiled once: a compiled construct parses and builds about 5x faster.
HEADER: Any = S.Header.compile()
CONTROLLER: Any = S.Controller.compile()
PHYS_HEADER: Any = S.PhysHeader.compile()
PHYS_ENTRY: Any = S.PhysEntry.compile()
VIRT_HEADER: Any = S.VirtHeader.compile()
VIRT_ENTRY: Any = S.VirtEntry.compile()
SPARE_ASSIGN: Any = S.SpareAssign.compile()
SPARE_ENTRY: Any = S.SpareEntry.compile()
DISK_DATA: Any = S.DiskData.compile()

FF_ENTRY = b"\xff" * S.ENTRY_SIZE


@functools.lru_cache(maxsize=8)
def vd_config_struct(mppe: int) -> Any:
    """The compiled VD config record structure for ``mppe`` entries (a few sizes cached, whatever a disk claims)."""
    return S.vd_config(mppe).compile()


def crc(buf: bytes | bytearray) -> int:
    """mdadm's DDF CRC: reflected CRC-32, initial 0, no final XOR, with bytes 4..7 read as FF.

    (zlib's CRC with both inversions undone; verified on every golden section.)
    """
    return zlib.crc32(bytes(buf[:4]) + b"\xff\xff\xff\xff" + bytes(buf[8:]), 0xFFFFFFFF) ^ 0xFFFFFFFF


def seal(buf: bytearray) -> bytearray:
    """Store the CRC of ``buf`` at offset 4 (big-endian), as every DDF structure keeps it."""
    struct.pack_into(">I", buf, 4, crc(buf))
    return buf


def stored_crc(buf: bytes | bytearray) -> int:
    return int(struct.unpack_from(">I", buf, 4)[0])


def crc_ok(buf: bytes | bytearray) -> bool:
    return stored_crc(buf) == crc(buf)


def guid_crc16(guid: bytes) -> int:
    """The VD entry's ``guid_crc``: low 16 bits of mdadm's CRC of the header GUID."""
    return (zlib.crc32(guid, 0xFFFFFFFF) ^ 0xFFFFFFFF) & 0xFFFF


def all_ff(b: bytes) -> bool:
    return b == b"\xff" * len(b)


@dataclass(frozen=True)
class Where:
    """Turns an offset inside a copy's metadata into an error naming the disk byte."""

    disk: str | None
    base: int | None  # byte offset on the disk of the structure's first byte

    def error(self, message: str, structure: str, field: str | None = None, at: int = 0) -> MetadataError:
        off = None if self.base is None else self.base + at
        return MetadataError(message, format=FORMAT, structure=structure, field=field, disk=self.disk, offset=off)

    def at(self, delta: int) -> Where:
        return Where(self.disk, None if self.base is None else self.base + delta)


def parse(structure: Any, buf: bytes, name: str, where: Where) -> Any:
    try:
        return structure.parse(buf)
    except ConstructError as e:  # only a short buffer can fail; sizes are checked first
        raise where.error(f"cannot parse: {e}", name) from e


@dataclass
class Table:
    """A PD or VD records section: its 64-byte header and one slot per possible entry."""

    header: Any
    entries: list[Any | None]  # None: the entry is all 0xFF
    size: int  # bytes, the section length

    def copy(self) -> Table:
        return Table(CContainer(self.header), [None if e is None else CContainer(e) for e in self.entries], self.size)


def parse_table(buf: bytes, head: Any, entry: Any, count_field: str, name: str, where: Where) -> Table:
    """Parse a records section; the entry count is bounded by the section length."""
    header = parse(head, buf[: S.PD_SECTION_HEADER_SIZE], name, where)
    room = (len(buf) - S.PD_SECTION_HEADER_SIZE) // S.ENTRY_SIZE
    count = header[count_field]
    if count > room:
        raise where.error(f"{count} entries do not fit in {len(buf) // S.SECTOR} sectors", name, count_field, 10)
    entries: list[Any | None] = []
    for i in range(count):
        off = S.PD_SECTION_HEADER_SIZE + i * S.ENTRY_SIZE
        raw = buf[off : off + S.ENTRY_SIZE]
        entries.append(None if raw == FF_ENTRY else parse(entry, raw, f"{name}[{i}]", where.at(off)))
    return Table(header, entries, len(buf))


def build_table(t: Table, head: Any, entry: Any, tail: bytes = b"") -> bytes:
    """Rebuild a records section with a fresh CRC; bytes past the last entry come from ``tail``."""
    out = bytearray(head.build(t.header))
    for e in t.entries:
        out += FF_ENTRY if e is None else entry.build(e)
    if len(out) < t.size:
        rest = tail[len(out) : t.size]
        out += rest + b"\xff" * (t.size - len(out) - len(rest))
    return bytes(seal(out))


@dataclass
class Slot:
    """One config record slot: a VD config (parsed), or kept as raw bytes (spare assignment, vendor, empty)."""

    raw: bytes
    config: Any | None = None  # parsed vd_config when the magic is 0xEEEEEEEE
    spare: Any | None = None  # parsed spare assignment header when the magic is 0x55555555
    spare_guids: list[bytes] = field(default_factory=list)  # the VDs a spare assignment record names

    @property
    def magic(self) -> int:
        return int(struct.unpack_from(">I", self.raw, 0)[0])


@dataclass
class Sections:
    """Everything a header points at, parsed, for one copy (primary or secondary) of one disk."""

    controller: Any
    phys: Table
    virt: Table
    slots: list[Slot]
    disk_data: Any
    raw: dict[str, bytes] = field(default_factory=dict)  # each section's bytes as read (for the round trip)


def timestamp_of(guid: bytes) -> int:
    """The 1980-based timestamp mdadm puts in bytes 16..19 of header and VD GUIDs."""
    return int(struct.unpack_from(">I", guid, 16)[0])


def text(raw: bytes) -> str:
    """A NUL/space padded ASCII field as text."""
    return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")
