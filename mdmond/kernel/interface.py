"""The md kernel interface the daemon is written against.

Two implementations: ``sysfs.SysfsArray`` (the real kernel, through
``/sys/block/mdX/md``) and ``simulated.SimArray`` (an in-process model of md
for tests and dry runs).  Attribute names are relative to the array's ``md``
directory, so ``"array_state"`` and ``"dev-sda/state"`` mean what the kernel's
md documentation says they mean; values are the kernel's own text.
"""

from __future__ import annotations

from typing import Protocol


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
