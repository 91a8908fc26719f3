"""Record one step of a scenario, inside the guest (stdlib only: runs under the guest's python3).

    snap.py OUTDIR INDEX STEP ACTION

Writes ``OUTDIR/INDEX-STEP.json`` (mdstat, the md sysfs attributes of every
array and member, ``mdadm --examine`` of every disk) and
``OUTDIR/INDEX-STEP/diskN.img``: a sparse copy, full size, of each disk's
metadata regions only, so that the host can run ``mdmond examine`` on exactly
what mdadm examined.  One process per step: every exec costs 30-80 ms under TCG.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time

ARRAY_ATTRS = (
    "array_state",
    "metadata_version",
    "level",
    "raid_disks",
    "chunk_size",
    "component_size",
    "sync_action",
    "sync_completed",
    "resync_start",
    "degraded",
    "mismatch_cnt",
    "reshape_position",
    "consistency_policy",
)
DEV_ATTRS = ("state", "slot", "recovery_start", "offset", "size")
BLOCK = 4096
IMSM_SIG = b"Intel Raid ISM Cfg Sig. "
DDF_MAGIC = bytes.fromhex("de11de11")


def read_attr(path: str) -> str | None:
    """The attribute's text without its final newline (None when absent or unreadable)."""
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def arrays() -> dict[str, dict[str, object]]:
    names: dict[str, list[str]] = {}
    if os.path.isdir("/dev/md"):
        for link in sorted(os.listdir("/dev/md")):
            target = os.path.basename(os.path.realpath("/dev/md/" + link))
            names.setdefault(target, []).append("/dev/md/" + link)
    out: dict[str, dict[str, object]] = {}
    for md in sorted(os.listdir("/sys/block")):
        base = f"/sys/block/{md}/md"
        if not md.startswith("md") or not os.path.isdir(base):
            continue
        entry: dict[str, object] = {a: read_attr(f"{base}/{a}") for a in ARRAY_ATTRS}
        entry["names"] = names.get(md, [])
        devs: dict[str, dict[str, str | None]] = {}
        for d in sorted(os.listdir(base)):
            if d.startswith("dev-"):
                devs[d[4:]] = {a: read_attr(f"{base}/{d}/{a}") for a in DEV_ATTRS}
        entry["devs"] = devs
        out[md] = entry
    return out


def metadata_regions(fd: int, size: int) -> list[list[int]]:
    """``[offset, length]`` of each metadata area: IMSM's last MiB; DDF's two headers (2 MiB each) and its anchor."""
    last = os.pread(fd, 1024, size - 1024)
    tail = size - BLOCK
    if last[:24] == IMSM_SIG:
        return [[max(0, size - (1 << 20)), min(size, 1 << 20)]]
    if last[512:516] != DDF_MAGIC:
        return [[tail, BLOCK]]
    regions: list[list[int]] = []
    for at in (96, 104):  # primary_lba, secondary_lba (big-endian) in the anchor
        lba = int.from_bytes(last[512 + at : 512 + at + 8], "big") * 512
        if 0 < lba < tail:
            lba -= lba % BLOCK
            regions.append([lba, min(2 << 20, tail - lba)])
    regions.append([tail, BLOCK])
    regions.sort()
    merged: list[list[int]] = []
    for off, length in regions:
        if merged and off <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], off + length - merged[-1][0])
        else:
            merged.append([off, length])
    return merged


def read_regions(dev: str) -> tuple[int, list[list[int]], list[tuple[int, bytes]]]:
    """(size, regions, non-zero 4 KiB blocks) of the metadata of ``dev``, read with O_DIRECT (no stale cache)."""
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        regions = metadata_regions(fd, size)
        buf = mmap.mmap(-1, 1 << 20)
        zero = bytes(BLOCK)
        blocks: list[tuple[int, bytes]] = []
        for start, length in regions:
            off = start
            while off < start + length:
                n = os.preadv(fd, [buf], off)
                if n <= 0:
                    break
                n = min(n, start + length - off)
                for i in range(0, n, BLOCK):
                    blk = buf[i : i + BLOCK]
                    if blk != zero[: len(blk)]:
                        blocks.append((off + i, blk))
                off += n
        return size, regions, blocks
    finally:
        os.close(fd)


def examine_and_copy(dev: str, dst: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """``mdadm --examine`` of ``dev`` and a sparse copy of the very metadata it read.

    mdmon may rewrite the metadata at any moment (a rebuild checkpoints every few
    seconds), so the regions are read before and after the examine and the pair
    is retried until both reads agree.
    """
    for _attempt in range(5):
        before = read_regions(dev)
        r = subprocess.run(["mdadm", "--examine", dev], capture_output=True, text=True)
        after = read_regions(dev)
        if before == after:
            break
    size, regions, blocks = after
    with open(dst, "wb") as out:
        out.truncate(size)
        for off, blk in blocks:
            out.seek(off)
            out.write(blk)
    return r, {"size": size, "regions": regions, "stable": before == after}


def mdstat() -> str:
    with open("/proc/mdstat") as f:
        return f.read()


def main() -> int:
    outdir, index, step, action = sys.argv[1:5]
    disks = os.environ.get("TESTBED_DISKS", "").split()
    name = f"{int(index):02d}-{step}"
    imgdir = os.path.join(outdir, name)
    os.makedirs(imgdir, exist_ok=True)
    rec: dict[str, object] = {
        "step": step,
        "action": action,
        "uptime": float((read_attr("/proc/uptime") or "0").split()[0]),
        "mdstat": mdstat(),
        "arrays": arrays(),
    }
    examine: dict[str, str] = {}
    examine_rc: dict[str, int] = {}
    regions: dict[str, dict[str, object]] = {}
    for i, dev in enumerate(disks):
        r, regions[dev] = examine_and_copy(dev, os.path.join(imgdir, f"disk{i}.img"))
        examine[dev] = r.stdout + r.stderr
        examine_rc[dev] = r.returncode
    scan = subprocess.run(["mdadm", "--examine", "--scan"], capture_output=True, text=True)
    rec["examine"] = examine
    rec["examine_scan"] = scan.stdout
    rec["examine_rc"] = examine_rc
    rec["regions"] = regions
    rec["snap_seconds"] = round(time.monotonic() - T0, 3)
    tmp = os.path.join(outdir, name + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(tmp, os.path.join(outdir, name + ".json"))
    return 0


T0 = time.monotonic()
if __name__ == "__main__":
    sys.exit(main())
