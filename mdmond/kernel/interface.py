"""The md kernel interface the daemon is written against.

Two implementations: ``sysfs.SysfsArray`` (the real kernel, through
``/sys/block/mdX/md``) and ``simulated.SimArray`` (an in-process model of md
for tests and dry runs).  Attribute names are relative to the array's ``md``
directory, so ``"array_state"`` and ``"dev-sda/state"`` mean what the kernel's
md documentation says they mean; values are the kernel's own text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BlockEvent:
    """A whole disk came or went (a udev ``add``/``remove`` of subsystem ``block``, type ``disk``)."""

    action: str  # "add" | "remove"
    device: str  # kernel name: "sdb"
    serial: str | None = None  # ID_SERIAL_SHORT or ID_SCSI_SERIAL, where udev knows it


class MdArray(Protocol):
    """One md member array, as the monitor sees it."""

    @property
    def name(self) -> str:
        """The kernel's name for it: ``md126``."""
        ...

    def read(self, attr: str) -> str:
        """The attribute's current text; ``OSError`` if it is gone (the array or device vanished).

        Reading ``array_state`` re-arms change notification, as re-reading a
        sysfs file does.
        """
        ...

    def write(self, attr: str, value: str) -> None:
        """Write the attribute; the kernel's refusals arrive as ``OSError`` (EBUSY, EINVAL ...)."""
        ...

    def devices(self) -> tuple[str, ...]:
        """The member device directories currently watched (``dev-sda`` ...)."""
        ...

    async def wait_change(self) -> None:
        """Return when the kernel has notified a change since the last read.

        The notification is level-triggered: one that arrives between a read
        and this call is not lost.
        """
        ...


class ManagedArray(MdArray, Protocol):
    """An array as the manager holds it: it also opens and closes what the monitor reads."""

    def add_device(self, entry: str) -> None:
        """Open a member's attributes ahead of the monitor's first read (``dev-sdX``)."""
        ...

    def drop_device(self, entry: str) -> None: ...

    def write_once(self, attr: str, value: str) -> None:
        """Write an attribute the monitor does not hold open (``new_dev``, ``dev-X/slot`` ...)."""
        ...


class Kernel(Protocol):
    """The md driver as the manager sees it: arrays come and go, devices are added and removed."""

    def mdstat(self) -> str: ...

    async def wait_mdstat(self) -> None:
        """Return when md's event counter has moved since the last ``mdstat`` read."""
        ...

    def open_array(self, name: str) -> ManagedArray:
        """Open an array's attributes (may block: manager only)."""
        ...

    def device_number(self, dev: str) -> str:
        """``major:minor`` of a block device by kernel name (``sdd`` -> ``8:48``)."""
        ...

    def remove_member(self, array: str, dev: str) -> None:
        """Write ``remove`` to the member's state through a fresh descriptor.

        This can block in the kernel (it takes the array's suspend lock), so it
        is called from a worker thread, never on the monitor's path.
        """
        ...

    def block_events(self) -> AsyncIterator[BlockEvent]:
        """Disks appearing and disappearing, as the kernel reports them, from now on."""
        ...
