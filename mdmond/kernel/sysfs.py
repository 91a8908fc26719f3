"""The real md driver: ``/sys/block/mdX/md`` attributes, opened ahead of time.

Everything that may allocate or block happens when the array is opened (by
the manager): every attribute the monitor uses is opened and read once (the
kernel allocates a sysfs file's buffer on its first read, mdmon.md §1.8), and
the ones that notify are registered with an epoll set for EPOLLPRI, which is
how ``sysfs_notify`` surfaces.  On the monitor's path there is then only
``pread``/``pwrite`` on open descriptors and one ``epoll_wait(0)``: no open,
no allocation by the kernel, nothing that waits for I/O to an array.

A device's attributes are deleted by the kernel when it leaves the array; a
deleted attribute polls as permanently ready, so it is dropped from the epoll
set as soon as it is seen (mdmon learnt this the hard way: wake-up storms).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select

import trio

#: Array attributes the monitor reads, and which of them notify.
ARRAY_ATTRS = (
    "array_state",
    "sync_action",
    "sync_completed",
    "resync_start",
    "metadata_version",
    "degraded",
    "safe_mode_delay",
    "consistency_policy",  # the manager: a PPL array's new member needs its log before its slot
)
ARRAY_WATCHED = ("array_state", "sync_action", "sync_completed")
#: md's redundancy group: absent for a personality without a sync thread (RAID0; seen on the
#: real kernel in the test bed and in every transcript's RAID0), so optional.  Reading one
#: that is absent fails with ENOENT, as reading any attribute not opened does.
ARRAY_OPTIONAL = ("sync_action", "sync_completed", "degraded", "consistency_policy")  # last: old kernels lack it
#: Per-device attributes, and which notify.
DEV_ATTRS = ("state", "slot", "recovery_start")
DEV_WATCHED = ("state",)
#: Bad-block lists: absent without md's bad-block support (and in a test tree), so optional.
DEV_OPTIONAL = ("bad_blocks", "unacknowledged_bad_blocks")
#: Longest attribute text md prints (a page).
PAGE = 4096


class SysfsArray:
    """One md array through sysfs (``MdArray``)."""

    def __init__(self, name: str, *, sysfs: str = "/sys/block") -> None:
        self._name = name
        self.path = os.path.join(sysfs, name, "md")
        self._fds: dict[str, int] = {}
        self._by_fd: dict[int, str] = {}
        self._devices: list[str] = []
        self._epoll = select.epoll()
        try:
            for attr in ARRAY_ATTRS:
                try:
                    self._open(attr, watch=attr in ARRAY_WATCHED)
                except FileNotFoundError:
                    if attr not in ARRAY_OPTIONAL:
                        raise
            for entry in sorted(os.listdir(self.path)):
                if entry.startswith("dev-"):
                    self.add_device(entry)
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self._name

    # -- the manager's side (may block) ------------------------------------------

    def add_device(self, entry: str) -> None:
        """Open a member's attributes (``dev-sdX``), e.g. after ``new_dev``."""
        if entry in self._devices:
            return
        for attr in DEV_ATTRS:
            self._open(f"{entry}/{attr}", watch=attr in DEV_WATCHED)
        for attr in DEV_OPTIONAL:
            with contextlib.suppress(FileNotFoundError):
                self._open(f"{entry}/{attr}", watch=False)
        self._devices.append(entry)

    def drop_device(self, entry: str) -> None:
        """Close a member's attributes (it has been removed)."""
        if entry in self._devices:
            self._devices.remove(entry)
        for attr in (*DEV_ATTRS, *DEV_OPTIONAL):
            self._close(f"{entry}/{attr}")

    def write_once(self, attr: str, value: str) -> None:
        """Write an attribute the monitor does not keep open (``new_dev``, ``slot``...): manager only."""
        fd = os.open(os.path.join(self.path, attr), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def close(self) -> None:
        for attr in list(self._fds):
            self._close(attr)
        self._epoll.close()

    # -- the monitor's side (never blocks) ---------------------------------------

    def devices(self) -> tuple[str, ...]:
        return tuple(self._devices)

    def read(self, attr: str) -> str:
        fd = self._fds.get(attr)
        if fd is None:
            raise OSError(errno.ENOENT, f"{self._name}: {attr} is not open")
        return os.pread(fd, PAGE, 0).decode("ascii", "replace")

    def write(self, attr: str, value: str) -> None:
        fd = self._fds.get(attr)
        if fd is None:
            raise OSError(errno.ENOENT, f"{self._name}: {attr} is not open")
        os.pwrite(fd, value.encode(), 0)

    async def wait_change(self) -> None:
        """Wait for EPOLLPRI on any watched attribute, then consume it.

        The ready attributes are read once here, which is what re-arms a sysfs
        file; the pass that follows reads the current values anyway, and a
        change after this read notifies again, so nothing is lost.
        """
        while True:
            ready = self._epoll.poll(0)
            if ready:
                for fd, _events in ready:
                    self._consume(fd)
                return
            await trio.lowlevel.wait_readable(self._epoll.fileno())

    # -- internals ---------------------------------------------------------------

    def _open(self, attr: str, *, watch: bool) -> None:
        path = os.path.join(self.path, attr)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a read-only attribute
        self._fds[attr] = fd
        self._by_fd[fd] = attr
        os.pread(fd, PAGE, 0)  # the kernel allocates the file's buffer now, not on the monitor's path
        if watch:
            # Only sysfs files notify; a plain file (a test tree) cannot be watched (EPERM).
            with contextlib.suppress(PermissionError):
                self._epoll.register(fd, select.EPOLLPRI | select.EPOLLERR)

    def _close(self, attr: str) -> None:
        fd = self._fds.pop(attr, None)
        if fd is None:
            return
        del self._by_fd[fd]
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        os.close(fd)

    def _consume(self, fd: int) -> None:
        try:
            gone = os.fstat(fd).st_nlink == 0
            if not gone:
                os.pread(fd, PAGE, 0)
        except OSError:
            gone = True
        if gone:
            # Deleted by the kernel: it would poll ready for ever.
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
