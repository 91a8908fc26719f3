"""Which disk-table entry is this disk: the serial, as mdadm reads and normalises it.

mdadm matches a disk to its entry by serial (formats.md §1.12).  Every ``Disk``
reports the serial its drive gave (a block device's is read from sysfs; an
image's is named by whoever opens it); IMSM keeps a normalised form.  With no
serial the entry cannot be known, and ``examine`` says so as mdadm would.
"""

from __future__ import annotations

from ..blockio import Disk

MAX_RAID_SERIAL_LEN = 16


def normalise_serial(raw: bytes) -> str:
    """Drop bytes <= 0x20 and >= 0x80, ':' -> ';', keep the last 16 characters."""
    kept = bytes(b for b in raw if 0x20 < b < 0x80).replace(b":", b";")
    return kept[-MAX_RAID_SERIAL_LEN:].decode("ascii")


def disk_serial(disk: Disk) -> str | None:
    """The disk's serial as IMSM stores it, or None when the disk has none."""
    raw = disk.serial
    return None if raw is None else normalise_serial(raw.encode("latin-1", "replace"))
