"""The disk access layer: bounds, alignment, and copy-on-write overlays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats.blockio import MAX_READ, FileDisk, MemoryDisk, OverlayDisk
from formats.errors import DiskIOError


def pattern(size: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(size))


def test_memory_disk_refuses_reads_outside_the_disk() -> None:
    d = MemoryDisk(bytes(4096), name="m")
    with pytest.raises(DiskIOError, match="outside the disk") as e:
        d.read(4000, 200)
    assert e.value.disk == "m" and e.value.offset == 4000
    with pytest.raises(DiskIOError):
        d.read(-1, 1)


def test_absurd_lengths_are_refused_before_any_allocation() -> None:
    d = MemoryDisk(bytes(512))
    with pytest.raises(DiskIOError):
        d.read(0, MAX_READ + 1)


def test_writes_must_be_whole_sectors() -> None:
    d = MemoryDisk(bytes(8192), sector_size=4096)
    with pytest.raises(DiskIOError, match="whole 4096-byte sectors"):
        d.write(512, bytes(512))
    d.write(4096, b"\1" * 4096)
    assert d.read(4096, 4096) == b"\1" * 4096 and d.writes == [(4096, 4096)]


@given(
    writes=st.lists(st.tuples(st.integers(0, 15), st.integers(1, 3), st.integers(0, 255)), max_size=8),
    read=st.tuples(st.integers(0, 8191), st.integers(0, 2048)),
)
def test_overlay_reads_exactly_what_a_copy_would_hold(
    writes: list[tuple[int, int, int]], read: tuple[int, int]
) -> None:
    base = MemoryDisk(pattern(8192), name="base")
    copy = MemoryDisk(base.data, name="copy")
    over = OverlayDisk(base)
    for sector, count, fill in writes:
        if (sector + count) * 512 > 8192:
            continue
        data = bytes([fill]) * (512 * count)
        over.write(sector * 512, data)
        copy.write(sector * 512, data)
    off, length = read
    length = min(length, 8192 - off)
    assert over.read(off, length) == copy.read(off, length)
    assert base.data == pattern(8192), "the overlay wrote through to its base"


def test_file_disk_reads_and_writes_an_image(tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    img.write_bytes(pattern(16384))
    with FileDisk(str(img)) as ro:
        assert ro.size_bytes == 16384 and ro.sector_size == 512
        assert ro.read(1000, 10) == pattern(16384)[1000:1010]
        with pytest.raises(DiskIOError, match="read-only"):
            ro.write(0, bytes(512))
    with FileDisk(str(img), writable=True) as rw:
        rw.write(512, b"\xaa" * 512)
        rw.flush()
    assert img.read_bytes()[512:1024] == b"\xaa" * 512


def test_file_disk_names_the_disk_when_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(DiskIOError, match="cannot open") as e:
        FileDisk(str(tmp_path / "absent.img"))
    assert e.value.disk.endswith("absent.img")


def test_file_disk_refuses_a_fifo(tmp_path: Path) -> None:
    p = tmp_path / "fifo"
    os.mkfifo(p)
    fd = os.open(p, os.O_RDWR | os.O_NONBLOCK)  # a writer exists, so opening it read-only cannot block
    try:
        with pytest.raises(DiskIOError, match="not a block device"):
            FileDisk(str(p))
    finally:
        os.close(fd)


def test_first_difference_finds_the_exact_byte_in_a_large_extent() -> None:
    from formats.base import Write, first_difference

    data = bytes(range(256)) * 4096  # 1 MiB
    disk = MemoryDisk(data)
    assert first_difference(disk, [Write(0, data)]) is None
    for at in (0, 1, 63, 64, 65, 500_000, len(data) - 1):
        changed = bytearray(data)
        changed[at] ^= 0xFF
        changed[-1] ^= 0x01 if at != len(data) - 1 else 0
        assert first_difference(disk, [Write(0, bytes(changed))]) == at
