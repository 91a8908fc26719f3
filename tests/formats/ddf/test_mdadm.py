"""The real mdadm 4.2 reads what we write: ``mdadm --examine`` of our images equals our examine text.

mdadm examines image files too (it then cannot name the device, so it lists
the disk under "Physical disks not in metadata!"); these tests run only where
an mdadm binary is installed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from formats.base import Write, write_all
from formats.blockio import FileDisk
from formats.changes import ActivateSpare, AddSpare, Change, Environment, FailDisk, MemberInSync, RemoveDisk, SetDirty
from formats.ddf import HANDLER, VolumeSpec, create
from formats.ddf.container import DDFContainer
from tests.golden import disk_count, image_path

MDADM = shutil.which("mdadm") or ("/usr/sbin/mdadm" if os.path.exists("/usr/sbin/mdadm") else None)
pytestmark = pytest.mark.skipif(MDADM is None, reason="mdadm is not installed")


def mdadm_examine(path: Path) -> str:
    assert MDADM is not None
    out = subprocess.run(
        [MDADM, "--examine", str(path)], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def ours_as_mdadm_prints_a_file(path: Path) -> str:
    """Our examine text, with the device shown as mdadm shows an image file (no device number to name)."""
    with FileDisk(str(path), name=str(path)) as d:
        copy = HANDLER.load(d)
        text = copy.examine()
        refnum = copy.refnum
    lines = []
    for line in text.splitlines():
        lines.append(line.replace(f" {path!s:<15s} ", " " + " " * 15 + " ") if "K " in line else line)
    lines += [" Physical disks not in metadata!:", f"   {refnum:08x} -unknown-", ""]
    return "\n".join(lines) + "\n"


def copies(scenario: str, tmp: Path) -> list[Path]:
    out = []
    for n in range(disk_count(scenario)):
        dst = tmp / f"{scenario}-{n}.img"
        subprocess.run(["cp", "--sparse=always", str(image_path(scenario, n)), str(dst)], check=True)
        out.append(dst)
    return out


def open_all(paths: list[Path]) -> list[FileDisk]:
    return [FileDisk(str(p), writable=True, name=str(p)) for p in paths]


def write(c: DDFContainer) -> None:
    writes = c.encode()
    for ref, disk in c.disks().items():
        write_all(disk, writes[ref])


def assert_mdadm_agrees(paths: list[Path]) -> None:
    for p in paths:
        assert mdadm_examine(p) == ours_as_mdadm_prints_a_file(p), p


def env(t: float) -> Environment:
    return Environment(now=lambda: t, rng=random.Random(int(t)))


def test_golden_images_as_files(tmp_path: Path) -> None:
    assert_mdadm_agrees(copies("ddf-two-volumes", tmp_path))


def test_mdadm_reads_every_step_of_a_rebuild(tmp_path: Path) -> None:
    paths = copies("ddf-raid5-spare", tmp_path)
    spare_path = tmp_path / "new.img"
    with open(spare_path, "wb") as f:
        f.truncate(64 << 20)
    disks = open_all(paths)
    c = HANDLER.assemble([HANDLER.load(d) for d in disks])
    steps: list[list[Change]] = [
        [SetDirty(0, True)],
        [FailDisk("4624ee28")],
        [ActivateSpare(0, 1, "34175d40")],
        [MemberInSync(0, 1), SetDirty(0, False)],
        [RemoveDisk("4624ee28"), AddSpare("NEW", 131072)],
    ]
    for i, changes in enumerate(steps):
        c = c.apply(changes, env(1_800_000_000 + 10 * i))
        if any(isinstance(ch, AddSpare) for ch in changes):
            c.attach("NEW", FileDisk(str(spare_path), writable=True, name=str(spare_path)))
        write(c)
        present = [Path(d.name) for d in c.disks().values()]
        assert_mdadm_agrees(present)
    assert "Global-Spare/Online" in mdadm_examine(spare_path)
    assert "Offline, Failed, Missing" in mdadm_examine(paths[0])


def changed_sectors(c: DDFContainer) -> list[tuple[str, Write]]:
    plan = []
    for ref, ws in c.encode().items():
        disk = c.disks()[ref]
        for w in ws:
            have = disk.read(w.offset, len(w.data))
            for i in range(0, len(w.data), 512):
                if have[i : i + 512] != w.data[i : i + 512]:
                    plan.append((ref, Write(w.offset + i, w.data[i : i + 512])))
    return plan


def test_mdadm_after_a_crash_at_any_sector(tmp_path: Path) -> None:
    """Stop the writes of a dirty flip + failure after each sector: mdadm reads every disk as all old or all new."""
    paths = copies("ddf-raid5", tmp_path)
    disks = open_all(paths)
    old = HANDLER.assemble([HANDLER.load(d) for d in disks])
    new = old.apply([SetDirty(0, True), FailDisk("f5bb70b9")], env(1_800_000_000))
    plan = changed_sectors(new)
    names = {ref: Path(d.name) for ref, d in new.disks().items()}

    def state_after(stop: int) -> dict[Path, str]:
        for n, p in enumerate(paths):
            subprocess.run(["cp", "--sparse=always", str(image_path("ddf-raid5", n)), str(p)], check=True)
        for ref, w in plan[:stop]:
            with FileDisk(str(names[ref]), writable=True) as d:
                d.write(w.offset, w.data)
        texts = {p: mdadm_examine(p) for p in paths}
        for p, t in texts.items():
            assert t == ours_as_mdadm_prints_a_file(p)
        return texts

    before, after = state_after(0), state_after(len(plan))
    assert all(before[p] != after[p] for p in paths)
    assert all("Not Consistent" in after[p] and "Failed" in after[p] for p in paths)
    for stop in range(1, len(plan)):
        for p, text in state_after(stop).items():
            assert text in (before[p], after[p]), (stop, p)


def test_mdadm_reads_a_created_container(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"c{i}.img"
        with open(p, "wb") as f:
            f.truncate((64 << 20) + 8192 * i)
        paths.append(p)
    c = create(
        [(f"S{i}", ((64 << 20) + 8192 * i) // 512) for i in range(4)],
        [VolumeSpec("r6", 6, (0, 1, 2, 3), size_sectors=16384), VolumeSpec("r10", 10, (3, 2, 1, 0))],
        env(1_800_000_000),
        hostname="builder",
    )
    for i, p in enumerate(paths):
        c.attach(f"S{i}", FileDisk(str(p), writable=True, name=str(p)))
    write(c)
    assert_mdadm_agrees(paths)
    text = mdadm_examine(paths[0])
    assert "Raid Level[0] : RAID6" in text and "Secondary Level[1] : Spanned" in text
