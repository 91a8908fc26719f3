"""Golden disks with the serials the guest saw (IMSM matches a disk to its entry by serial)."""

from __future__ import annotations

from formats.blockio import FileDisk, OverlayDisk
from formats.imsm import HANDLER
from formats.imsm.container import IMSMContainer
from formats.imsm.disk import IMSMDiskCopy
from tests.golden import disk_count, open_disk, overlay


def disk(scenario: str, n: int) -> FileDisk:
    return open_disk(scenario, n)


def writable(scenario: str, n: int) -> OverlayDisk:
    return overlay(scenario, n)


def load(scenario: str, n: int) -> IMSMDiskCopy:
    return HANDLER.load(disk(scenario, n))


def container(scenario: str, disks: list[OverlayDisk] | None = None) -> IMSMContainer:
    ds = disks if disks is not None else [writable(scenario, n) for n in range(disk_count(scenario))]
    return HANDLER.assemble([HANDLER.load(d) for d in ds])
