"""Whole-sector access to disks, disk images and in-memory disks.

The format code reads and writes through the small ``Disk`` protocol so that the
same parser serves a block device, an image file, an in-memory copy in a test
and a copy-on-write overlay in a dry run.  Every access is bounds-checked and
sized by the caller, so corrupt metadata can never make us allocate or read
more than the disk holds.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import struct
from typing import Protocol

from .errors import DiskIOError

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268

#: Largest single read the format layer ever asks for.  IMSM's reserved area is
#: about 1.1 MiB and DDF's largest section is 1024 sectors; anything larger is a
#: corrupt length field, refused before any allocation.
MAX_READ = 64 * 1024 * 1024


class Disk(Protocol):
    """What the format layer needs of a disk."""

    @property
    def name(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def sector_size(self) -> int: ...

    @property
    def serial(self) -> str | None:
        """The drive's serial number as the drive reports it, or None where there is none.

        IMSM finds a disk's own entry in its table by serial, so an image needs
        one named for it; normalising it is the format's business.
        """
        ...

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> None: ...


def check_span(disk: Disk, offset: int, length: int) -> None:
    """Refuse a read or write outside the disk or of an absurd size."""
    if offset < 0 or length < 0 or length > MAX_READ or offset + length > disk.size_bytes:
        raise DiskIOError(
            f"access of {length} bytes is outside the disk ({disk.size_bytes} bytes)",
            disk=disk.name,
            offset=offset,
        )


def check_aligned(disk: Disk, offset: int, data: bytes) -> None:
    """Writes are whole logical sectors, as the kernel requires for O_DIRECT."""
    ss = disk.sector_size
    if offset % ss or len(data) % ss or not data:
        raise DiskIOError(f"write of {len(data)} bytes is not whole {ss}-byte sectors", disk=disk.name, offset=offset)


class MemoryDisk:
    """A disk held in memory: tests, fuzzing, and the basis of dry-run overlays."""

    def __init__(
        self, data: bytes | bytearray, *, name: str = "<memory>", sector_size: int = 512, serial: str | None = None
    ) -> None:
        if len(data) % sector_size:
            raise ValueError(f"{name}: size {len(data)} is not a multiple of {sector_size}")
        self._data = bytearray(data)
        self._name = name
        self._sector_size = sector_size
        self.serial = serial
        self.writes: list[tuple[int, int]] = []  # (offset, length) log, for tests and benchmarks

    @property
    def name(self) -> str:
        return self._name

    @property
    def size_bytes(self) -> int:
        return len(self._data)

    @property
    def sector_size(self) -> int:
        return self._sector_size

    @property
    def data(self) -> bytes:
        return bytes(self._data)

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        return bytes(self._data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        check_span(self, offset, len(data))
        check_aligned(self, offset, data)
        self._data[offset : offset + len(data)] = data
        self.writes.append((offset, len(data)))

    def flush(self) -> None:
        pass


class OverlayDisk:
    """Copy-on-write view of another disk: reads see our writes, the base is never written.

    This is what a dry run over an administrator's disk images uses: the daemon
    behaves exactly as on the real disks and nothing reaches the originals.
    """

    def __init__(self, base: Disk) -> None:
        self.base = base
        self.sectors: dict[int, bytes] = {}  # sector number -> contents
        self.writes: list[tuple[int, int]] = []

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def size_bytes(self) -> int:
        return self.base.size_bytes

    @property
    def sector_size(self) -> int:
        return self.base.sector_size

    @property
    def serial(self) -> str | None:
        return self.base.serial

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        if not self.sectors:
            return self.base.read(offset, length)
        ss = self.sector_size
        first, last = offset // ss, (offset + length - 1) // ss if length else offset // ss
        raw = bytearray(self.base.read(first * ss, (last - first + 1) * ss)) if length else bytearray()
        for n in range(first, last + 1):
            if n in self.sectors:
                raw[(n - first) * ss : (n - first + 1) * ss] = self.sectors[n]
        start = offset - first * ss
        return bytes(raw[start : start + length])

    def write(self, offset: int, data: bytes) -> None:
        check_span(self, offset, len(data))
        check_aligned(self, offset, data)
        ss = self.sector_size
        for i in range(0, len(data), ss):
            self.sectors[(offset + i) // ss] = bytes(data[i : i + ss])
        self.writes.append((offset, len(data)))

    def flush(self) -> None:
        pass


class FileDisk:
    """A regular file or a block device.

    Block devices report their own size and logical sector size; an image file
    is taken to have 512-byte sectors unless told otherwise (a 4Kn image must be
    named as such, exactly as ``losetup --sector-size 4096`` would).  Writes to a
    block device go through a second descriptor opened with ``O_DIRECT`` from a
    page-aligned buffer, then ``fsync``, so the metadata is on the platter and
    not in the page cache when we tell the kernel to proceed.
    """

    def __init__(
        self,
        path: str,
        *,
        writable: bool = False,
        sector_size: int | None = None,
        name: str | None = None,
        serial: str | None = None,
    ) -> None:
        self._path = path
        self._name = name or path
        self._writable = writable
        self.serial = serial
        try:
            self._fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        except OSError as e:
            raise DiskIOError(f"cannot open: {e.strerror}", disk=path) from e
        self._direct_fd: int | None = None
        try:
            st = os.fstat(self._fd)
            self.is_block_device = stat.S_ISBLK(st.st_mode)
            if self.is_block_device:
                buf = fcntl.ioctl(self._fd, BLKGETSIZE64, b"\0" * 8)
                self._size = int(struct.unpack("Q", buf)[0])
                buf = fcntl.ioctl(self._fd, BLKSSZGET, b"\0" * 4)
                self._sector_size = sector_size or int(struct.unpack("i", buf)[0])
            elif stat.S_ISREG(st.st_mode):
                self._size = st.st_size
                self._sector_size = sector_size or 512
            else:
                raise DiskIOError("not a block device or a regular file", disk=path)
        except OSError as e:
            os.close(self._fd)
            raise DiskIOError(f"cannot query size: {e.strerror}", disk=path) from e
        except DiskIOError:
            os.close(self._fd)
            raise
        if self._sector_size not in (512, 4096):
            os.close(self._fd)
            raise DiskIOError(f"unsupported logical sector size {self._sector_size}", disk=path)
        if self.is_block_device:
            if serial is None:
                self.serial = block_device_serial(path)
            if writable:
                # Opened now, not at the first write: the first write may be the
                # one a blocked array is waiting for.
                try:
                    self._direct_fd = os.open(path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
                except OSError as e:
                    os.close(self._fd)
                    raise DiskIOError(f"cannot open for direct I/O: {e.strerror}", disk=path) from e

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def sector_size(self) -> int:
        return self._sector_size

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as e:
            raise DiskIOError(f"read of {length} bytes failed: {e.strerror}", disk=self._name, offset=offset) from e
        if len(data) != length:
            raise DiskIOError(f"short read: {len(data)} of {length} bytes", disk=self._name, offset=offset)
        return data

    def write(self, offset: int, data: bytes) -> None:
        if not self._writable:
            raise DiskIOError("opened read-only", disk=self._name, offset=offset)
        check_span(self, offset, len(data))
        check_aligned(self, offset, data)
        try:
            if self._direct_fd is not None:
                # O_DIRECT wants an aligned buffer; an anonymous mmap is page-aligned.
                with mmap.mmap(-1, len(data)) as buf:
                    buf.write(data)
                    written = os.pwritev(self._direct_fd, [buf], offset)
            else:
                written = os.pwrite(self._fd, data, offset)
        except OSError as e:
            raise DiskIOError(f"write of {len(data)} bytes failed: {e.strerror}", disk=self._name, offset=offset) from e
        if written != len(data):
            raise DiskIOError(f"short write: {written} of {len(data)} bytes", disk=self._name, offset=offset)

    def flush(self) -> None:
        try:
            os.fsync(self._direct_fd if self._direct_fd is not None else self._fd)
        except OSError as e:
            raise DiskIOError(f"fsync failed: {e.strerror}", disk=self._name) from e

    def close(self) -> None:
        for fd in (self._direct_fd, self._fd):
            if fd is not None:
                os.close(fd)
        self._direct_fd = None

    def __enter__(self) -> FileDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def block_device_serial(path: str) -> str | None:
    """The serial a SCSI/SATA/NVMe device reports, read from sysfs as mdadm reads it.

    The unit serial number VPD page (0x80) is what mdadm asks a SCSI or SATA
    disk for; NVMe and some drivers only offer ``device/serial``.  The text is
    returned raw (latin-1) for the format to normalise.
    """
    name = os.path.basename(os.path.realpath(path))
    base = f"/sys/class/block/{name}/device"
    try:
        with open(f"{base}/vpd_pg80", "rb") as f:
            page = f.read(4 + 255)
        if len(page) >= 4:
            return page[4 : 4 + page[3]].decode("latin-1")
    except OSError:
        pass
    try:
        with open(f"{base}/serial", "rb") as f:
            return f.read(256).decode("latin-1").strip()
    except OSError:
        return None
