"""The sysfs driver over a tree of plain files laid out as ``/sys/block/mdX/md``.

Plain files cannot notify (only sysfs raises EPOLLPRI), so change
notification is exercised against the real kernel in the test bed; here:
what is opened ahead of time, reads and writes on open descriptors only,
devices coming and going, and a snapshot read through the driver.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mdmond.kernel.snapshot import read_snapshot
from mdmond.kernel.sysfs import ARRAY_ATTRS, ARRAY_OPTIONAL, DEV_ATTRS, SysfsArray
from mdmond.kernel.values import ArrayState, SyncAction


def tree(tmp_path: Path, devs: dict[str, tuple[str, str, str]]) -> Path:
    md = tmp_path / "md126" / "md"
    md.mkdir(parents=True)
    values = {
        "array_state": "active\n",
        "sync_action": "recover\n",
        "sync_completed": "3080 / 49152\n",
        "resync_start": "none\n",
        "metadata_version": "external:/md127/0\n",
        "degraded": "1\n",
        "safe_mode_delay": "4.000\n",
        "consistency_policy": "ppl\n",
    }
    for attr in ARRAY_ATTRS:
        (md / attr).write_text(values[attr])
    for dev, (state, slot, rs) in devs.items():
        (md / dev).mkdir()
        for attr, v in zip(DEV_ATTRS, (state, slot, rs), strict=True):
            (md / dev / attr).write_text(v + "\n")
    return tmp_path


def test_reads_what_the_kernel_prints_and_snapshots_it(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {"dev-sda": ("in_sync,external_bbl", "0", "none"), "dev-sdd": ("spare,external_bbl", "1", "3080")},
    )
    a = SysfsArray("md126", sysfs=str(root))
    assert a.devices() == ("dev-sda", "dev-sdd")
    snap = read_snapshot(a)
    assert snap.array_state is ArrayState.ACTIVE and snap.sync_action is SyncAction.RECOVER
    assert snap.sync_completed == 3080
    sdd = snap.dev("sdd")
    assert sdd is not None and sdd.slot == 1 and sdd.recovery_start == 3080 and not sdd.state.in_sync
    a.close()


def test_nothing_is_opened_on_the_monitor_path(tmp_path: Path) -> None:
    root = tree(tmp_path, {"dev-sda": ("in_sync", "0", "none")})
    a = SysfsArray("md126", sysfs=str(root))
    before = sorted(os.listdir("/proc/self/fd"))
    read_snapshot(a)
    a.write("array_state", "clean")
    a.write("dev-sda/state", "-blocked")
    assert sorted(os.listdir("/proc/self/fd")) == before
    # (a plain file keeps the tail of the longer old text; sysfs takes the whole write)
    assert (root / "md126/md/array_state").read_text().startswith("clean")
    with pytest.raises(OSError) as e:
        a.read("suspend_lo")  # not opened ahead of time: refused, not opened now
    assert e.value.errno == errno.ENOENT
    a.close()


def test_devices_come_and_go(tmp_path: Path) -> None:
    root = tree(tmp_path, {"dev-sda": ("in_sync", "0", "none")})
    a = SysfsArray("md126", sysfs=str(root))
    md = root / "md126" / "md"
    (md / "dev-sde").mkdir()
    for attr in DEV_ATTRS:
        (md / "dev-sde" / attr).write_text("spare\n" if attr == "state" else "none\n")
    a.add_device("dev-sde")
    assert a.devices() == ("dev-sda", "dev-sde")
    a.drop_device("dev-sda")
    assert a.devices() == ("dev-sde",)
    snap = read_snapshot(a)
    assert [d.name for d in snap.devs] == ["sde"]
    a.close()


def test_vanished_array_reads_as_stopped(tmp_path: Path) -> None:
    root = tree(tmp_path, {})
    a = SysfsArray("md126", sysfs=str(root))
    a.close()  # every descriptor gone, as after the kernel deleted the array
    assert read_snapshot(a).array_state is ArrayState.UNREADABLE


def test_missing_array_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SysfsArray("md9", sysfs=str(tmp_path))


def test_raid0_has_no_redundancy_attributes(tmp_path: Path) -> None:
    """A RAID0 has no sync_action, sync_completed or degraded at all (real kernel: tests/vm/test_sysfs_driver.py)."""
    root = tree(tmp_path, {"dev-sda": ("in_sync", "1", "none"), "dev-sdb": ("in_sync", "0", "none")})
    md = root / "md126" / "md"
    for attr in ARRAY_OPTIONAL:
        (md / attr).unlink()
    a = SysfsArray("md126", sysfs=str(root))
    with pytest.raises(OSError) as e:
        a.read("sync_action")
    assert e.value.errno == errno.ENOENT
    snap = read_snapshot(a)
    assert snap.array_state is ArrayState.ACTIVE and snap.sync_action is SyncAction.UNKNOWN
    assert [d.slot for d in snap.devs] == [1, 0]
    a.close()


def test_a_required_attribute_missing_is_still_an_error(tmp_path: Path) -> None:
    root = tree(tmp_path, {})
    (root / "md126" / "md" / "resync_start").unlink()
    with pytest.raises(FileNotFoundError):
        SysfsArray("md126", sysfs=str(root))
