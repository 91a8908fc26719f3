"""Formats benchmark: parse + validate + build, for a typical container and the largest each format allows.

* typical: a golden RAID5 container (3 or 4 disks, written by mdadm 4.2),
  loaded from memory: probe + parse + validate every disk, merge, model,
  encode every disk;
* largest: IMSM 255 disks with two 255-member RAID5 volumes; DDF 1023 disks
  with 255 volumes.  Built with ``create``, written to memory disks, then the
  same load/merge/encode cycle, for one disk's copy (each disk holds the whole
  table) and for the container;
* a dirty flip (``apply`` + ``encode``) on each.

Run: ``.venv/bin/python benchmarks/formats.py [--runs N]``.  Median of N runs
(default 5), wall time; figures only.
"""

from __future__ import annotations

import argparse
import lzma
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would
# shadow the ``formats`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import formats  # noqa: E402
from formats.base import ContainerMetadata, write_all  # noqa: E402
from formats.blockio import Disk, MemoryDisk, OverlayDisk  # noqa: E402
from formats.changes import Environment, SetDirty  # noqa: E402
from formats.ddf import create as ddf_create  # noqa: E402
from formats.ddf.create import VolumeSpec as DDFVolume  # noqa: E402
from formats.imsm.create import largest as imsm_largest  # noqa: E402

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"
ENV = Environment(now=lambda: 1_800_000_000.0, rng=random.Random(1))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def golden_disks(scenario: str) -> list[MemoryDisk]:
    return [
        MemoryDisk(lzma.decompress(p.read_bytes()), name=f"/dev/sd{chr(97 + n)}", serial=f"MDVM{n:08d}")
        for n, p in enumerate(sorted((GOLDEN / scenario).glob("disk*.img.xz")))
    ]


class ZeroDisk:
    """A disk of zeros that stores nothing: the base of a sparse in-memory disk."""

    def __init__(self, name: str, size: int, serial: str) -> None:
        self.name, self.size_bytes, self.serial, self.sector_size = name, size, serial, 512

    def read(self, offset: int, length: int) -> bytes:
        return bytes(length)

    def write(self, offset: int, data: bytes) -> None:
        raise OSError("read-only")

    def flush(self) -> None:
        pass


def materialise(c: ContainerMetadata, refs: list[str], size: int) -> list[OverlayDisk]:
    """Write a created container's bytes to sparse memory disks (only what is written is kept)."""
    disks = []
    for ref in refs:
        d = OverlayDisk(ZeroDisk(ref, size, ref))
        c.attach(ref, d)
        disks.append(d)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    return disks


def cycle(disks: Sequence[Disk]) -> ContainerMetadata:
    copies = [formats.load(d) for d in disks]
    c = formats.handler(copies[0].format).assemble(copies)
    c.validate()
    c.model()
    c.encode()
    return c


def report(label: str, disks: Sequence[Disk], runs: int) -> None:
    one = median_ms(lambda: formats.load(disks[0]).encode(), runs)
    whole = median_ms(lambda: cycle(disks), runs)
    c = cycle(disks)
    flip = median_ms(lambda: c.apply([SetDirty(0, True)], ENV).encode(), runs)
    tracemalloc.start()
    cycle(disks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = sum(len(w.data) for w in formats.load(disks[0]).encode())
    print(
        f"  {label:42} {len(disks):5} disks, {size / 1024:8.1f} KiB metadata/disk: "
        f"one disk {one:8.2f} ms, container {whole:9.2f} ms, dirty flip {flip:8.2f} ms, peak {peak / 2**20:6.1f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"mdmond formats benchmark (median of {args.runs} runs; parse+validate+merge+model+encode)")
    print("imsm")
    report("typical: golden imsm-raid5", golden_disks("imsm-raid5"), args.runs)
    big = imsm_largest(ENV)
    refs = sorted(d.ref for d in big.model().disks)
    report("largest: 255 disks, 2 x 255-member RAID5", materialise(big, refs, 4 << 20), max(1, args.runs // 2))
    print("ddf")
    report("typical: golden ddf-raid5", golden_disks("ddf-raid5"), args.runs)
    disks = [(f"D{i:04d}", 70_000) for i in range(1023)]
    vols = [DDFVolume(f"v{k}", 1, (2 * k, 2 * k + 1), size_sectors=64) for k in range(255)]
    big_ddf = ddf_create(disks, vols, ENV, hostname="big")
    report(
        "largest: 1023 disks, 255 volumes",
        materialise(big_ddf, [s for s, _ in disks], 70_000 * 512),
        max(1, args.runs // 2),
    )


if __name__ == "__main__":
    main()
