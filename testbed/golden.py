"""Regenerate the golden disk images (``tests/data/golden/<scenario>/``) with the real mdadm and kernel.

    python -m testbed.golden [SCENARIO...] [--out DIR]

For each scenario: boot a guest with fresh sparse 64 MiB disks and run
``guest/golden.sh SCENARIO`` (its output becomes ``log.txt``); boot again and
take ``mdadm --examine`` of every disk read-only (``diskN.examine.txt``, and
``mdadm --examine --scan`` for the manifest); store every disk as
``diskN.img.xz`` (the metadata lives near the start and the end of each disk;
the rest is zeros, which xz reduces to almost nothing) and write
``manifest.json``.  Disk N keeps serial ``MDVM%08d`` % N: IMSM finds its disks by
serial, so the images only make sense attached in that order.

The metadata holds random UUIDs and timestamps: a regenerated set is
equivalent, never identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import provision, vm

GOLDEN = vm.PROJECT / "tests" / "data" / "golden"
GUEST = Path(__file__).resolve().parent / "guest"
DISK_MIB = 64
#: The guest's hostname, which DDF stores in its controller GUID: the name under
#: which the committed sets were made, so that regenerated ones stay comparable.
HOSTNAME = "mdvm"

#: name -> (disks, ends with a clean stop, description)
SCENARIOS: dict[str, tuple[int, bool, str]] = {
    "imsm-raid0": (
        2,
        True,
        "IMSM container (2 disks) with one RAID0 volume (vol0, whole disks); 1 MiB pattern; clean stop.",
    ),
    "imsm-raid1": (
        2,
        True,
        "IMSM container (2 disks) with one RAID1 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "imsm-raid5": (
        3,
        True,
        "IMSM container (3 disks) with one RAID5 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "imsm-raid10": (
        4,
        True,
        "IMSM container (4 disks) with one RAID10 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "imsm-two-volumes": (
        2,
        True,
        "IMSM 2-disk container: vol0 = RAID1 24 MiB, vol1 = RAID0 on the rest; 1 MiB pattern in each; clean stop.",
    ),
    "imsm-raid5-raid1": (
        4,
        True,
        "IMSM 4-disk container: vol0 = RAID5 over 3 disks (16 MiB/disk), vol1 = RAID1 8 MiB placed "
        "by mdadm; clean stop.",
    ),
    "imsm-raid5-spare": (
        4,
        True,
        "IMSM 4-disk container: RAID5 on disks 0-2, disk3 a container spare; 1 MiB pattern; clean stop.",
    ),
    "imsm-spare-only": (
        2,
        True,
        "IMSM container of 2 disks without any volume (both spares); clean stop.",
    ),
    "imsm-raid1-degraded": (
        2,
        True,
        "IMSM RAID1, 1 MiB pattern, disk1 --fail'ed and --remove'd; clean stop (disk1 keeps stale metadata).",
    ),
    "imsm-raid5-degraded": (
        3,
        True,
        "IMSM RAID5, 1 MiB pattern, disk1 --fail'ed and --remove'd; clean stop (disk1 keeps stale metadata).",
    ),
    "imsm-raid5-rebuild-stopped": (
        4,
        True,
        "IMSM RAID5 on disks 0-2 (24 MiB/disk) + spare; disk1 failed, rebuild onto disk3 throttled,"
        " volume and container stopped at ~50%.",
    ),
    "imsm-raid5-rebuild-killed": (
        4,
        False,
        "As imsm-raid5-rebuild-stopped, but the VM is killed (sysrq b) at ~50% of the rebuild.",
    ),
    "imsm-raid1-resync-killed": (
        2,
        False,
        "IMSM RAID1 just created, resync throttled to 2 MB/s, VM killed ~8 s into the initial resync; no data.",
    ),
    "imsm-raid5-init-killed": (
        3,
        False,
        "IMSM RAID5 just created, resync throttled to 2 MB/s, VM killed ~8 s into the initialization; no data.",
    ),
    "ddf-raid0": (
        2,
        True,
        "DDF container (2 disks) with one RAID0 volume; 1 MiB pattern; clean stop.",
    ),
    "ddf-raid1": (
        2,
        True,
        "DDF container (2 disks) with one RAID1 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "ddf-raid5": (
        3,
        True,
        "DDF container (3 disks) with one RAID5 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "ddf-raid10": (
        4,
        True,
        "DDF container (4 disks) with one RAID10 volume; resync finished; 1 MiB pattern; clean stop.",
    ),
    "ddf-two-volumes": (
        3,
        True,
        "DDF 3-disk container: vol0 = RAID5 (12 MiB/disk), vol1 = RAID1 over 2 disks (8 MiB); clean stop.",
    ),
    "ddf-raid5-spare": (
        4,
        True,
        "DDF 4-disk container: RAID5 on disks 0-2, disk3 a global spare; 1 MiB pattern; clean stop.",
    ),
    "ddf-raid1-degraded": (
        2,
        True,
        "DDF RAID1, 1 MiB pattern, disk1 --fail'ed and --remove'd; clean stop.",
    ),
    "ddf-raid5-degraded": (
        3,
        True,
        "DDF RAID5, 1 MiB pattern, disk1 --fail'ed and --remove'd; clean stop.",
    ),
    "ddf-raid5-rebuild-stopped": (
        4,
        True,
        "DDF RAID5 on disks 0-2 (24 MiB/disk) + spare; disk1 failed, rebuild throttled, volume and "
        "container stopped at ~50%.",
    ),
    "ddf-raid5-rebuild-killed": (
        4,
        False,
        "As ddf-raid5-rebuild-stopped, but the VM is killed (sysrq b) at ~50% of the rebuild.",
    ),
    "ddf-raid5-init-killed": (
        3,
        False,
        "DDF RAID5 just created, resync throttled to 2 MB/s, VM killed ~8 s into the initial resync; no data.",
    ),
}

_EXAMINE_ALL = r"""
for d in $TESTBED_DISKS; do
  echo "@@examine $d"; mdadm --examine "$d" 2>&1
done
echo "@@scan"; mdadm --examine --scan 2>&1
"""


def nonzero_extents(raw: bytes, block: int = 4096) -> list[list[int]]:
    """``[offset, length]`` runs of non-zero ``block``-sized blocks (what is worth looking at in an image)."""
    zero = bytes(block)
    out: list[list[int]] = []
    for off in range(0, len(raw), block):
        if raw[off : off + block] != zero[: len(raw[off : off + block])]:
            if out and out[-1][0] + out[-1][1] == off:
                out[-1][1] += block
            else:
                out.append([off, block])
    return out


def _split_examine(text: str) -> tuple[dict[str, str], str]:
    parts = re.split(r"^@@(examine \S+|scan)\n", text, flags=re.M)
    per_disk: dict[str, str] = {}
    scan = ""
    for head, body in zip(parts[1::2], parts[2::2], strict=True):
        if head == "scan":
            scan = body
        else:
            per_disk[head.split()[1]] = body
    return per_disk, scan


def generate(name: str, out: Path, *, kernel: provision.Kernel | None = None) -> dict[str, Any]:
    """Build scenario ``name`` into ``out/<name>/``; return its manifest."""
    ndisks, clean, description = SCENARIOS[name]
    k = kernel or provision.prepare(install=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"testbed-golden-{name}-", dir="/var/tmp") as td:
        images = []
        for i in range(ndisks):
            p = Path(td) / f"disk{i}.img"
            with open(p, "wb") as f:
                f.truncate(DISK_MIB << 20)
            images.append(p)
        r = vm.run(
            f"bash {GUEST / 'golden.sh'} {name}", disks=images, timeout=300, kernel=k, mdmon="mdmon", hostname=HOSTNAME
        )
        if clean and r.returncode != 0:
            raise RuntimeError(
                f"{name}: golden.sh failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            )
        if not clean and r.returncode != vm.NO_STATUS_RC:
            raise RuntimeError(f"{name}: expected the VM to be killed, got exit {r.returncode}:\n{r.stderr[-2000:]}")
        ex = vm.run(_EXAMINE_ALL, disks=images, timeout=120, kernel=k, mdmon="mdmon", hostname=HOSTNAME)
        if ex.returncode != 0:
            raise RuntimeError(f"{name}: examine boot failed (exit {ex.returncode}): {ex.stderr[-2000:]}")
        examine, scan = _split_examine(ex.stdout)

        dest = out / name
        tmp_dest = out / f".{name}.tmp"
        shutil.rmtree(tmp_dest, ignore_errors=True)
        tmp_dest.mkdir(parents=True)
        disks = []
        for i, p in enumerate(images):
            raw = p.read_bytes()
            xz = lzma.compress(raw, preset=9)
            (tmp_dest / f"disk{i}.img.xz").write_bytes(xz)
            dev = f"/dev/sd{chr(ord('a') + i)}"
            (tmp_dest / f"disk{i}.examine.txt").write_text(examine.get(dev, ""))
            disks.append(
                {
                    "file": f"disk{i}.img.xz",
                    "index": i,
                    "serial": vm.SERIAL_FORMAT.format(i),
                    "guest_device": dev,
                    "raw_size": len(raw),
                    "raw_sha256": hashlib.sha256(raw).hexdigest(),
                    "xz_size": len(xz),
                    "nonzero_extents": nonzero_extents(raw),
                }
            )
    log = r.stdout + (f"\n--- stderr\n{r.stderr}" if r.stderr.strip() else "")
    (tmp_dest / "log.txt").write_text(log)
    commands = [
        line[2:]
        for line in r.stdout.splitlines()
        if line.startswith("# ") and not line.startswith(("# -> rc=", "# mdmon still running"))
    ]
    manifest = {
        "name": name,
        "description": description,
        "disks": disks,
        "disk_size_mib": DISK_MIB,
        "clean_shutdown": clean,
        "commands": commands,
        "mdadm_examine_scan": scan,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "generator": f"python -m testbed.golden {name} (testbed/guest/golden.sh)",
        "seconds": round(time.monotonic() - t0, 1),
    }
    (tmp_dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp_dest.rename(dest)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m testbed.golden", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("scenarios", nargs="*", help="default: the scenarios already in tests/data/golden")
    ap.add_argument("--out", type=Path, default=GOLDEN, help="where to write <scenario>/ (default tests/data/golden)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = ap.parse_args(argv)
    if a.list:
        for n, (d, clean, desc) in SCENARIOS.items():
            print(f"{n:28} {d} disks  {'clean stop' if clean else 'killed    '}  {desc}")
        return 0
    names = a.scenarios or sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name in SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {' '.join(unknown)} (see --list)")
    k = provision.prepare(install=True)
    status = 0
    for n in names:
        try:
            m = generate(n, a.out, kernel=k)
        except RuntimeError as e:
            print(f"{n}: FAILED: {e}", file=sys.stderr)
            status = 1
            continue
        size = sum(d["xz_size"] for d in m["disks"]) / 1024
        print(f"{n}: {len(m['disks'])} disks, {size:.1f} KiB compressed, {m['seconds']} s -> {a.out / n}")
    return status


if __name__ == "__main__":
    sys.exit(main())
