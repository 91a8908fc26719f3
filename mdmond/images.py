"""Opening what an administrator names on the command line: devices and disk images.

Besides block devices and raw image files, ``.xz`` compressed images (how the
project ships its sample and golden images) are opened in memory, read-only
in effect, so a dry run or an examine never needs a decompression step first.
"""

from __future__ import annotations

import lzma

from formats.blockio import Disk, FileDisk, MemoryDisk
from formats.errors import DiskIOError

#: A compressed image larger than this once decompressed is refused: the
#: metadata tools have no business holding a real disk in memory.
MAX_XZ_IMAGE = 4 << 30


def split_spec(spec: str) -> tuple[str, str | None]:
    """``PATH[,serial=SERIAL]`` -> (path, serial).

    An image file has no drive to ask for its serial, and IMSM finds a disk's
    own entry by serial, so the administrator names it (as qemu's
    ``-device scsi-hd,serial=`` does).
    """
    path, sep, opt = spec.rpartition(",serial=")
    if not sep:
        return spec, None
    if not path or not opt:
        raise DiskIOError("expected PATH,serial=SERIAL", disk=spec)
    return path, opt


def open_image(spec: str, *, sector_size: int | None = None, name: str | None = None) -> Disk:
    """Open a device or an image file read-only (``.xz`` images are decompressed in memory).

    ``spec`` is a path, optionally followed by ``,serial=SERIAL``.
    """
    path, serial = split_spec(spec)
    if path.endswith(".xz"):
        try:
            with lzma.open(path) as f:
                data = f.read(MAX_XZ_IMAGE + 1)
        except EOFError:  # lzma's word for a stream cut short (a copy interrupted, a partial download)
            raise DiskIOError("truncated .xz image: the compressed data ends early", disk=path) from None
        except OSError as e:
            raise DiskIOError(f"cannot read: {e.strerror or e}", disk=path) from None
        except lzma.LZMAError as e:
            raise DiskIOError(f"cannot decompress: {e}", disk=path) from None
        if len(data) > MAX_XZ_IMAGE:
            raise DiskIOError(f"decompressed image is larger than {MAX_XZ_IMAGE} bytes", disk=path)
        ss = sector_size or 512
        if len(data) % ss:
            raise DiskIOError(f"image size {len(data)} is not a multiple of {ss}", disk=path)
        return MemoryDisk(data, name=name or path, sector_size=ss, serial=serial)
    return FileDisk(path, sector_size=sector_size, serial=serial, name=name)
