"""The real md driver for the manager: ``/proc/mdstat``, arrays in sysfs, member removal, disk events.

``/proc/mdstat`` is held open and polled for EPOLLPRI, which md raises when
its event counter moves (an array starts or stops, a device comes or goes, a
sync starts or ends); it is re-read through the same descriptor, which is
what re-arms it.

Disks coming and going are read from the kernel's uevent netlink socket
through pyudev: from udevd's re-broadcast when udevd runs (the events then
carry udev's properties, the serial among them), from the kernel's own
otherwise (an initrd or a rescue shell without udevd).  md itself learns that
a member is gone only when I/O to it fails; this lets the daemon record it at
once.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import AsyncIterator

import pyudev
import trio

from .interface import BlockEvent
from .sysfs import SysfsArray

#: Present while udevd runs (it is udevd's control socket).
UDEV_CONTROL = "/run/udev/control"


class RealKernel:
    def __init__(self, *, sysfs: str = "/sys/block", mdstat: str = "/proc/mdstat") -> None:
        self.sysfs = sysfs
        self._fd = os.open(mdstat, os.O_RDONLY | os.O_CLOEXEC)
        self._epoll = select.epoll()
        # Not procfs (a test file): no notifications; callers rescan on their own schedule.
        with contextlib.suppress(PermissionError):
            self._epoll.register(self._fd, select.EPOLLPRI | select.EPOLLERR)

    def mdstat(self) -> str:
        chunks = []
        offset = 0
        while chunk := os.pread(self._fd, 65536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode("ascii", "replace")

    async def wait_mdstat(self) -> None:
        while not self._epoll.poll(0):
            await trio.lowlevel.wait_readable(self._epoll.fileno())

    def open_array(self, name: str) -> SysfsArray:
        return SysfsArray(name, sysfs=self.sysfs)

    def device_number(self, dev: str) -> str:
        with open(os.path.join(self.sysfs, dev, "dev")) as f:
            return f.read().strip()

    def remove_member(self, array: str, dev: str) -> None:
        """A fresh descriptor: the monitor's may be blocked in the kernel (mdmon.md §3.5)."""
        fd = os.open(os.path.join(self.sysfs, array, "md", f"dev-{dev}", "state"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"remove")
        finally:
            os.close(fd)

    def container_members(self, container: str) -> list[str]:
        """Kernel names of the container's member disks (``sda`` ...)."""
        md = os.path.join(self.sysfs, container, "md")
        return sorted(e[4:] for e in os.listdir(md) if e.startswith("dev-"))

    def metadata_version(self, name: str) -> str:
        with open(os.path.join(self.sysfs, name, "md", "metadata_version")) as f:
            return f.read().strip()

    async def block_events(self) -> AsyncIterator[BlockEvent]:
        """Whole disks added and removed, from udevd when it runs, else from the kernel (``OSError`` if neither)."""
        source = "udev" if os.path.exists(UDEV_CONTROL) else "kernel"
        monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=source)
        monitor.filter_by("block")
        monitor.start()
        # The socket is libudev's: it closes it when the monitor is freed (closing it here as well
        # made libudev abort the process at exit on EBADF, seen in the VM with run --all).
        while True:
            await trio.lowlevel.wait_readable(monitor.fileno())
            while (device := monitor.poll(timeout=0)) is not None:
                if device.action in ("add", "remove") and device.device_type == "disk":
                    serial = device.properties.get("ID_SERIAL_SHORT") or device.properties.get("ID_SCSI_SERIAL")
                    yield BlockEvent(device.action, device.sys_name, serial)

    def close(self) -> None:
        self._epoll.close()
        os.close(self._fd)
