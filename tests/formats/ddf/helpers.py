"""Golden DDF disks, small disk views for corrupting and truncating them cheaply, and states for mdadm's messages."""

from __future__ import annotations

from formats.blockio import OverlayDisk
from formats.ddf import HANDLER
from formats.ddf import structs as S
from formats.ddf import updates as U
from formats.ddf.container import DDFContainer
from formats.ddf.disk import DDFDiskCopy
from tests.fuzzing import Window, poke
from tests.golden import disk_count, open_disk, overlay

__all__ = ["Window", "container", "load", "poke", "writable"]


def load(scenario: str, n: int) -> DDFDiskCopy:
    return HANDLER.load(open_disk(scenario, n))


def writable(scenario: str) -> list[OverlayDisk]:
    return [overlay(scenario, n) for n in range(disk_count(scenario))]


def container(scenario: str, disks: list[OverlayDisk] | None = None) -> DDFContainer:
    ds = disks if disks is not None else writable(scenario)
    return HANDLER.assemble([HANDLER.load(d) for d in ds])


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
