"""Golden DDF disks, small disk views for corrupting and truncating them cheaply, and states for mdadm's messages."""

from __future__ import annotations

from formats.blockio import Disk, OverlayDisk, check_span
from formats.ddf import HANDLER
from formats.ddf import structs as S
from formats.ddf import updates as U
from formats.ddf.container import DDFContainer
from formats.ddf.disk import DDFDiskCopy
from tests.golden import disk_count, open_disk, overlay


def load(scenario: str, n: int) -> DDFDiskCopy:
    return HANDLER.load(open_disk(scenario, n))


def writable(scenario: str) -> list[OverlayDisk]:
    return [overlay(scenario, n) for n in range(disk_count(scenario))]


def container(scenario: str, disks: list[OverlayDisk] | None = None) -> DDFContainer:
    ds = disks if disks is not None else writable(scenario)
    return HANDLER.assemble([HANDLER.load(d) for d in ds])


def poke(disk: OverlayDisk, offset: int, data: bytes) -> None:
    """Change bytes of an overlay at any offset (read-modify-write of the sectors involved)."""
    ss = disk.sector_size
    first = offset // ss
    last = (offset + len(data) - 1) // ss
    buf = bytearray(disk.read(first * ss, (last - first + 1) * ss))
    start = offset - first * ss
    buf[start : start + len(data)] = data
    for i in range(last - first + 1):
        disk.sectors[first + i] = bytes(buf[i * ss : (i + 1) * ss])


class Window:
    """The first ``size`` bytes of another disk (a truncated copy), read-only, with its own sector size."""

    def __init__(self, base: Disk, size: int, sector_size: int | None = None) -> None:
        self.base = base
        self._size = size
        self._ss = sector_size or base.sector_size
        self.serial: str | None = None

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def sector_size(self) -> int:
        return self._ss

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        return self.base.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("read-only")

    def flush(self) -> None:
        pass


def without_volume(after: DDFContainer, index: int) -> DDFContainer:
    """The container as it was before mdadm created VD ``index`` (mdmon running).

    Creating a VD over the socket touches only: the VD entry (an unused, all-0xFF
    entry before), ``populated_vdes``, the VD's config records, the slot lists of
    its disks (the new VD takes slot 0), the PD types of disks that were global
    spares, and the header seq (one write).  Undo exactly those.
    """
    guid = after.vd_guid(index)
    before = after.copy()
    refs = {r for bvd in after.bvds(guid) for r in bvd.phys_refnum}
    before.virt.entries[index] = None
    before.virt.header.populated_vdes -= 1
    for k in [k for k in before.configs if k[0] == guid]:
        del before.configs[k]
    for m in before.members:
        m.vlist = [g for g in m.vlist if g != guid]
        pd = before.pd(m.refnum)
        if m.refnum in refs and not m.vlist and pd is not None:
            pd.type = (pd.type | S.PD_GLOBAL_SPARE) & ~S.PD_ACTIVE
    before.header.seq -= 1
    before.header.timestamp = 0
    before.validate()
    return before


def creation_messages(after: DDFContainer, index: int) -> list[bytes]:
    """What write_init_super_ddf queues: VIRT_RECORDS, then VD_CONF (the CRC field is mdadm's garbage)."""
    guid = after.vd_guid(index)
    return [
        U.virt_add(after.virt.header, after.virt.entries[index], index),
        U.vd_conf(after.bvds(guid), after, crc=0xDEADBEEF),
    ]
