"""Golden DDF disks, and small disk views for corrupting and truncating them cheaply."""

from __future__ import annotations

from formats.blockio import OverlayDisk
from formats.ddf import HANDLER
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
