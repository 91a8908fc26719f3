"""Monitor benchmark: how fast mdmond answers write-pending, what it writes, what it costs idle.

For each format, over copies of the golden images (real files, written with
``pwrite`` + ``fsync`` from a worker thread, as the daemon writes), on the
simulated md driver in real time:

* write-pending -> active latency: the time a writer to a clean array is
  held (median, p99, max over many dirty/clean cycles);
* bytes and writes per transition (dirty, then clean), against the whole
  metadata that a full rewrite would cost;
* CPU time while idle with arrays adopted.

Run: ``.venv/bin/python benchmarks/monitor.py [--cycles N] [--idle SECONDS]``.
Figures only; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import importlib
import lzma
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

# Run as a script, this file's folder comes first on sys.path, and its neighbour
# benchmarks/formats.py would shadow the ``formats`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))  # a checkout without the project installed

from formats.blockio import FileDisk, MemoryDisk  # noqa: E402
from mdmond.kernel.simulated import SimArray  # noqa: E402
from mdmond.kernel.values import ArrayState  # noqa: E402
from mdmond.metadata import MetadataStore, Runner, in_thread  # noqa: E402
from mdmond.monitor.container import ContainerMonitor  # noqa: E402

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"
SCENARIOS = {"imsm": "imsm-raid5", "ddf": "ddf-raid5"}


def image_copies(scenario: str, into: Path) -> list[FileDisk]:
    disks = []
    for n, src in enumerate(sorted((GOLDEN / scenario).glob("disk*.img.xz"))):
        dst = into / f"{scenario}-{n}.img"
        dst.write_bytes(lzma.decompress(src.read_bytes()))
        disks.append(FileDisk(str(dst), writable=True, name=f"/dev/sd{chr(97 + n)}", serial=f"MDVM{n:08d}"))
    return disks


def manager_work(h: object, copies: list[MemoryDisk]) -> float:
    """One slice of what a manager does: re-read and merge the container's metadata."""
    t0 = time.perf_counter()
    h.assemble([h.load(c) for c in copies]).model()  # type: ignore[attr-defined]
    return time.perf_counter() - t0


async def load_on_loop(h: object, copies: list[MemoryDisk], slices: list[float]) -> None:
    """Manager work on the monitor's own event loop, yielding between slices."""
    while True:
        slices.append(manager_work(h, copies))
        await trio.sleep(0)


async def inline(fn: Callable[[], None]) -> None:
    fn()


async def measure(
    scenario: str, cycles: int, idle: float, tmp: Path, *, runner: Runner = in_thread, load_here: bool = False
) -> dict[str, float]:
    """Dirty/clean cycles against the simulated md; ``load_here`` adds manager work to this loop."""
    disks = image_copies(scenario, tmp)
    h = importlib.import_module(f"formats.{scenario.split('-')[0]}").HANDLER
    store = MetadataStore(h.assemble([h.load(d) for d in disks]), runner=runner)
    total_metadata = sum(len(w.data) for ws in store.metadata.encode().values() for w in ws)
    vol = store.model().volume(0)
    names = [f"sd{chr(97 + i)}" for i in range(vol.raid_disks)]
    md = SimArray("md126", state=ArrayState.CLEAN, level=vol.level, devices=names, safe_mode_delay=0.005)
    monitor = ContainerMonitor(store)
    monitor.adopt(md, 0)
    latencies: list[float] = []
    slices: list[float] = []
    async with trio.open_nursery() as n:
        n.start_soon(md.run)
        await n.start(monitor.run)
        if load_here:
            n.start_soon(load_on_loop, h, copies_of(disks), slices)
        # The first cycle reads every disk's metadata once (rollback bytes); not counted.
        await md.submit_write()
        while md.array_state is not ArrayState.CLEAN or store.model().volume(0).dirty:
            await trio.sleep(0.001)
        b0, w0 = store.bytes_written, store.writes
        for _ in range(cycles):
            t0 = time.perf_counter()
            await md.submit_write()
            latencies.append(time.perf_counter() - t0)
            while md.array_state is not ArrayState.CLEAN or store.model().volume(0).dirty:
                await trio.sleep(0.001)
        transitions = 2 * cycles
        bytes_per = (store.bytes_written - b0) / transitions
        writes_per = (store.writes - w0) / transitions
        c0, t0 = time.process_time(), time.perf_counter()
        await trio.sleep(idle)
        cpu_idle = (time.process_time() - c0) / (time.perf_counter() - t0)
        n.cancel_scope.cancel()
    for d in disks:
        d.close()
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "bytes_per_transition": bytes_per,
        "writes_per_transition": writes_per,
        "sectors_per_disk_per_transition": bytes_per / 512 / len(disks),
        "full_metadata_bytes": total_metadata,
        "idle_cpu_percent": cpu_idle * 100,
        "load_slice_ms": statistics.median(slices) * 1e3 if slices else 0.0,
    }


def copies_of(disks: list[FileDisk]) -> list[MemoryDisk]:
    return [MemoryDisk(d.read(0, d.size_bytes), name=d.name, serial=d.serial) for d in disks]


def measure_own_thread(scenario: str, cycles: int, tmp: Path) -> dict[str, float]:
    """The monitor on its own trio loop in its own OS thread (writing inline, as mdmon's monitor
    thread does), while this thread does manager work flat out: only the GIL is shared."""
    result: dict[str, float] = {}
    done = threading.Event()

    def monitor_thread() -> None:
        result.update(trio.run(lambda: measure(scenario, cycles, 0.0, tmp, runner=inline)))
        done.set()

    t = threading.Thread(target=monitor_thread)
    h = importlib.import_module(f"formats.{scenario.split('-')[0]}").HANDLER
    copies = copies_of(image_copies(scenario, tmp / "load"))
    slices = []
    t.start()
    while not done.is_set():
        slices.append(manager_work(h, copies))
    t.join()
    result["load_slice_ms"] = statistics.median(slices) * 1e3
    return result


def report_loaded(fmt: str, label: str, r: dict[str, float]) -> None:
    print(
        f"{fmt:5}   with manager work ({r['load_slice_ms']:.2f} ms slices), {label}: "
        f"median {r['median_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (seconds) for the GIL")
    args = ap.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    known = set()
    for fmt in SCENARIOS:
        try:
            importlib.import_module(f"formats.{fmt}")
            known.add(fmt)
        except ImportError as e:
            print(f"{fmt}: cannot load the format ({e})")
    print(
        f"mdmond monitor benchmark: {args.cycles} dirty/clean cycles per format, {os.cpu_count()} CPUs, "
        f"GIL switch interval {sys.getswitchinterval() * 1e3:g} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, scenario in SCENARIOS.items():
            if fmt not in known:
                print(f"{fmt}: format not available")
                continue
            r = trio.run(partial(measure, scenario, args.cycles, args.idle, Path(tmp)))
            print(
                f"{fmt:5} ({scenario}): write-pending->active median {r['median_ms']:.3f} ms, "
                f"p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms; "
                f"{r['bytes_per_transition']:.0f} bytes in {r['writes_per_transition']:.1f} writes per transition "
                f"({r['sectors_per_disk_per_transition']:.2f} sectors per disk; full metadata "
                f"{r['full_metadata_bytes']} bytes); idle CPU {r['idle_cpu_percent']:.2f}%"
            )
            (Path(tmp) / "load").mkdir(exist_ok=True)
            for label, run in (
                ("one loop, writes in worker threads", partial(measure, load_here=True)),
                ("one loop, writes inline", partial(measure, runner=inline, load_here=True)),
            ):
                r = trio.run(partial(run, scenario, args.cycles, 0.0, Path(tmp)))
                report_loaded(fmt, label, r)
            report_loaded(fmt, "monitor in its own thread", measure_own_thread(scenario, args.cycles, Path(tmp)))


if __name__ == "__main__":
    main()
