"""The golden disk images: metadata written by the real mdadm and md driver.

``tests/data/golden/<scenario>/diskN.img.xz`` are whole disk images (mostly
zeros, so a few KiB each), with ``diskN.examine.txt`` holding what ``mdadm
--examine`` printed for them.  They are decompressed once per machine into a
cache folder as sparse files and opened read-only; tests that write go through
an ``OverlayDisk`` so the cached originals never change.
"""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path
from typing import Any

from formats.blockio import FileDisk, OverlayDisk

from .mdadm_examine import Examine, parse

GOLDEN = Path(__file__).parent / "data" / "golden"
CACHE = Path(os.environ.get("MDMOND_TEST_CACHE", "/tmp/mdmond-test-cache")) / "golden"


def scenarios(prefix: str = "") -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name.startswith(prefix))


def manifest(scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / scenario / "manifest.json").read_text())
    return data


def disk_count(scenario: str) -> int:
    return len(list((GOLDEN / scenario).glob("disk*.img.xz")))


def image_path(scenario: str, n: int) -> Path:
    """Decompress (once) and return the path of a golden raw image."""
    src = GOLDEN / scenario / f"disk{n}.img.xz"
    dst = CACHE / scenario / f"disk{n}.img"
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".tmp{os.getpid()}")
    raw = lzma.decompress(src.read_bytes())
    block = 1 << 16
    zero = bytes(block)
    with open(tmp, "wb") as f:
        for off in range(0, len(raw), block):
            chunk = raw[off : off + block]
            if chunk != zero[: len(chunk)]:
                f.seek(off)
                f.write(chunk)
        f.truncate(len(raw))
    os.replace(tmp, dst)
    return dst


def open_disk(scenario: str, n: int) -> FileDisk:
    """Read-only access to a golden image, named and serialled as the guest saw it (``/dev/sda``, ``MDVM00000000``)."""
    return FileDisk(str(image_path(scenario, n)), name=guest_device(scenario, n), serial=golden_serial(n))


def image_spec(scenario: str, n: int) -> str:
    """How an administrator names golden disk ``n`` to mdmond: its ``.xz`` image with the drive's serial."""
    return f"{GOLDEN / scenario / f'disk{n}.img.xz'},serial={golden_serial(n)}"


def image_specs(scenario: str) -> list[str]:
    return [image_spec(scenario, n) for n in range(disk_count(scenario))]


def golden_serial(n: int) -> str:
    """The SCSI serial the test bed gives disk ``n``."""
    return f"MDVM{n:08d}"


def overlay(scenario: str, n: int) -> OverlayDisk:
    return OverlayDisk(open_disk(scenario, n))


def guest_device(scenario: str, n: int) -> str:
    return f"/dev/sd{chr(ord('a') + n)}"


def examine(scenario: str, n: int) -> Examine:
    return parse((GOLDEN / scenario / f"disk{n}.examine.txt").read_text())
