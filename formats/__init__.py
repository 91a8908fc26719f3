"""On-disk metadata formats for md external-metadata containers.

This package knows bytes and nothing of the daemon.  Each format is a
sub-package (``imsm``, ``ddf``) with its ``construct`` structure definitions in
``structs.py`` apart from the logic that uses them; all of them meet the daemon
through ``formats.base`` and speak in ``formats.model`` terms.
"""

from __future__ import annotations

import importlib

from .base import ContainerMetadata, DiskMetadata, FormatHandler, Write
from .blockio import Disk, FileDisk, MemoryDisk, OverlayDisk
from .errors import ChangeRejected, DiskIOError, MetadataError, NoMetadata

#: The formats this build knows, in probing order.  Each module exports
#: ``HANDLER``, its ``FormatHandler``; nothing else of a format is public.
FORMAT_MODULES = ("formats.imsm", "formats.ddf")


def handlers() -> tuple[FormatHandler, ...]:
    """Every format's handler, in probing order."""
    found: list[FormatHandler] = []
    for name in FORMAT_MODULES:
        h = importlib.import_module(name).HANDLER
        assert isinstance(h, FormatHandler), f"{name}.HANDLER is not a FormatHandler"
        found.append(h)
    return tuple(found)


def handler(name: str) -> FormatHandler:
    """The named format's handler (``imsm``, ``ddf``); only that format is imported."""
    module = f"formats.{name}"
    if module not in FORMAT_MODULES:
        raise KeyError(f"unknown metadata format {name!r}")
    h = importlib.import_module(module).HANDLER
    assert isinstance(h, FormatHandler) and h.name == name, f"{module}.HANDLER is not the {name} handler"
    return h


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
