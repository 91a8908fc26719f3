"""The harness itself: boot, exit status, output streams, disks and serials, timeouts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import vm

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]


def test_boot_runs_the_script_as_root_with_md_and_the_disks(run_vm: RunVm) -> None:
    r = run_vm(
        'id -u; cat /proc/mdstat | head -1; echo "$TESTBED_DISKS"; cat /sys/block/sdb/device/vpd_pg80 | tail -c 12; '
        "echo; pwd; echo oops >&2; exit 7",
        disks=2,
        disk_size_mib=8,
        timeout=120,
    )
    print(f"boot {r.boot_seconds:.2f} s, total {r.seconds:.2f} s")
    assert r.returncode == 7, r.stderr + r.console
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].startswith("Personalities : [linear] [raid0] [raid1] [raid10]")
    assert lines[2] == "/dev/sda /dev/sdb"
    assert lines[3] == "MDVM00000001"  # SCSI serial (INQUIRY page 0x80), what IMSM records
    assert lines[4] == str(vm.PROJECT)
    assert r.stderr.strip() == "oops"
    assert r.boot_seconds is not None and 0 < r.boot_seconds < 60
    assert not r.timed_out


def test_project_is_shared_read_write_and_root_is_not(run_vm: RunVm, tmp_path: Path) -> None:
    r = run_vm(
        f"echo from-guest > {tmp_path}/out.txt && touch /usr/testbed-probe",
        shares=[tmp_path],
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.txt").read_text() == "from-guest\n"
    assert not Path("/usr/testbed-probe").exists()  # the guest's root is an overlay: nothing reaches the host


def test_given_images_are_written_and_kept(run_vm: RunVm, tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    r = run_vm(
        "printf hello | dd of=/dev/sda bs=512 seek=1 conv=notrunc oflag=direct status=none", disks=[img], timeout=120
    )
    assert r.returncode == 0, r.stderr
    with open(img, "rb") as f:
        f.seek(512)
        assert f.read(5) == b"hello"


def test_timeout_kills_the_vm_and_removes_fresh_disks(run_vm: RunVm) -> None:
    t0 = time.monotonic()
    r = run_vm("sleep 600", disks=1, disk_size_mib=8, timeout=12)
    assert r.timed_out and r.returncode == vm.TIMEOUT_RC
    assert time.monotonic() - t0 < 30
    disk = r.disks[0].path
    assert not disk.parent.exists(), "the fresh disks' folder was left behind"
    # no qemu of this run is left behind (other runs may be going on: look for our disk)
    for p in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        assert not (b"qemu-system" in cmd and str(disk).encode() in cmd), f"qemu {p.name} still running"


def test_guest_that_dies_reports_no_status(run_vm: RunVm) -> None:
    r = run_vm("echo b > /proc/sysrq-trigger; sleep 30", timeout=90)
    assert r.returncode == vm.NO_STATUS_RC
    assert "without an exit status" in r.stderr


def test_cli_runs_a_command(kernel: object, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(vm.PROJECT))
    r = subprocess.run(
        [sys.executable, "-m", "testbed", "run", "--disks", "0", "--time", "--timeout", "120", "--", "uname", "-r"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("-amd64")
    assert "testbed: boot" in r.stderr
