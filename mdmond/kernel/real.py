"""The real md driver for the manager: ``/proc/mdstat``, arrays in sysfs, member removal.

``/proc/mdstat`` is held open and polled for EPOLLPRI, which md raises when
its event counter moves (an array starts or stops, a device comes or goes, a
sync starts or ends); it is re-read through the same descriptor, which is
what re-arms it.
"""

from __future__ import annotations

import contextlib
import os
import select

import trio

from .sysfs import SysfsArray


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

    def close(self) -> None:
        self._epoll.close()
        os.close(self._fd)
