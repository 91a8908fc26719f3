"""The harness's host-side pieces that need no VM: cpio, module metadata, the guest's run script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed import golden, initramfs, vm


def test_cpio_is_readable_by_cpio_tools(tmp_path: Path) -> None:
    c = initramfs.Cpio()
    c.add("bin", 0o040755)
    c.add("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n")
    c.add("odd", 0o100644, b"x" * 5)
    out = tmp_path / "a.cpio"
    c.write(out)
    raw = out.read_bytes()
    assert raw.startswith(b"070701") and b"TRAILER!!!" in raw
    listing = subprocess.run(["busybox", "cpio", "-t"], input=raw, capture_output=True)
    if listing.returncode != 0:
        pytest.skip("busybox cpio not available")
    assert listing.stdout.decode().split() == ["bin", "bin/hello", "odd"]


def test_strip_signature() -> None:
    body = b"\x7fELF" + b"m" * 100
    sig = b"S" * 40
    tail = b"\0" * 8 + (40).to_bytes(4, "big") + b"~Module signature appended~\n"
    assert initramfs.strip_signature(body + sig + tail) == body
    assert initramfs.strip_signature(body) == body


def test_modinfo_deps() -> None:
    data = b"junk\0license=GPL\0depends=raid6_pq,libcrc32c,async_xor\0softdep=pre: crc32c\0name=raid456\0"
    assert initramfs.modinfo_deps(data) == ["raid6_pq", "libcrc32c", "async_xor", "crc32c"]
    assert initramfs.modinfo_deps(b"\0depends=\0") == []


def test_run_script_binds_mdmond_only_when_asked() -> None:
    env = {"A": "b c"}
    plain = vm._run_sh("echo hi", env, Path("/w"), "mdmon")
    assert "export A='b c'" in plain and "mount --bind" not in plain and "cd /w" in plain
    swapped = vm._run_sh("echo hi", env, Path("/w"), "mdmond")
    assert f"mount --bind {vm.MDMOND_SHIM} {vm.MDMON_PATH}" in swapped
    assert vm.MDMOND_SHIM.stat().st_mode & 0o111, "the mdmon entry point must be executable"


def test_nonzero_extents_and_examine_split() -> None:
    raw = bytes(8192) + b"x" * 10 + bytes(4086) + bytes(4096) + b"y"
    assert golden.nonzero_extents(raw) == [[8192, 4096], [16384, 4096]]
    per, scan = golden._split_examine(
        "@@examine /dev/sda\n/dev/sda:\n  a : b\n@@examine /dev/sdb\nno\n@@scan\nARRAY x\n"
    )
    assert per == {"/dev/sda": "/dev/sda:\n  a : b\n", "/dev/sdb": "no\n"} and scan == "ARRAY x\n"


def test_blkdebug_drive_keeps_the_image_and_writes_the_config(tmp_path: Path) -> None:
    plain = vm.Disk(tmp_path / "d0.img", "MDVM00000000")
    assert vm._drive(plain, 0, tmp_path) == f"file={tmp_path}/d0.img,format=raw,if=none,id=d0,cache=unsafe"
    conf = '[inject-error]\nevent = "write_aio"\nerrno = "5"\nsector = "8200"\n'
    faulty = vm.Disk(tmp_path / "d2.img", "MDVM00000002", conf)
    opt = vm._drive(faulty, 2, tmp_path)
    assert opt == f"file=blkdebug:{tmp_path}/blkdebug2.conf:{tmp_path}/d2.img,format=raw,if=none,id=d2,cache=unsafe"
    assert (tmp_path / "blkdebug2.conf").read_text() == conf
    with pytest.raises(ValueError, match="':' or ','"):
        vm._drive(vm.Disk(tmp_path / "a:b.img", "MDVM00000003", conf), 3, tmp_path)
