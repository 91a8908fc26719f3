"""On-disk metadata formats for md external-metadata containers.

This package knows bytes and nothing of the daemon.  Each format is a
sub-package (``imsm``, ``ddf``) with its ``construct`` structure definitions in
``structs.py`` apart from the logic that uses them; all of them meet the daemon
through ``formats.base`` and speak in ``formats.model`` terms.
"""

from __future__ import annotations

from .base import ContainerMetadata, DiskMetadata, FormatHandler, Write
from .blockio import Disk, FileDisk, MemoryDisk, OverlayDisk
from .errors import ChangeRejected, DiskIOError, MetadataError, NoMetadata


def handlers() -> tuple[FormatHandler, ...]:
    """Every format this build knows, most specific first."""
    from .ddf import HANDLER as DDF
    from .imsm import HANDLER as IMSM

    return (IMSM, DDF)


def handler(name: str) -> FormatHandler:
    for h in handlers():
        if h.name == name:
            return h
    raise KeyError(f"unknown metadata format {name!r}")


def load(disk: Disk) -> DiskMetadata:
    """Load whichever format's metadata the disk carries.

    Raises ``NoMetadata`` when no format recognises the disk, and the format's
    ``MetadataError`` when one recognises it but the metadata is bad.
    """
    for h in handlers():
        if h.probe(disk):
            return h.load(disk)
    raise NoMetadata("no IMSM or DDF metadata found", format="any", disk=disk.name)


__all__ = [
    "ChangeRejected",
    "ContainerMetadata",
    "Disk",
    "DiskIOError",
    "DiskMetadata",
    "FileDisk",
    "FormatHandler",
    "MemoryDisk",
    "MetadataError",
    "NoMetadata",
    "OverlayDisk",
    "Write",
    "handler",
    "handlers",
    "load",
]
