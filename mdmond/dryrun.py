"""``mdmond dry-run``: what the daemon would do with these disks, with no kernel and nothing written.

The administrator names disk images (or devices).  Each is opened read-only
behind a copy-on-write overlay; the containers on them are assembled as mdadm
would assemble them (member arrays started read-only, disks being rebuilt
left out), on the simulated md driver; then the real manager and monitor run
against it in simulated time, through an optional script of events (writes,
a member failing).  The report is the daemon's event log, stamped with
simulated seconds, the metadata as it would end up, and every sector that
would have been written.  The originals are never opened for writing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

import formats
from formats.base import DiskMetadata
from formats.blockio import OverlayDisk
from formats.changes import Environment
from formats.model import Container, MemberState, MigrationType

from .events import Event, EventLog
from .examine import container_json
from .images import open_image
from .kernel.simulated import SimArray, SimDevice, SimKernel
from .kernel.values import MAX_SECTOR, ArrayState
from .manager import Manager
from .metadata import MetadataStore
from .monitor.container import ContainerMonitor


@dataclass(frozen=True)
class Action:
    """Something that happens during the run: ``write`` to an array, or a member device ``fail``s."""

    at: float  # simulated seconds from the start
    kind: str  # "write" | "fail"
    target: str = ""  # array for a write ("" = every array), device for a failure


@dataclass
class ContainerResult:
    name: str
    before: Container
    after: Container
    events: list[Event]
    writes: dict[str, list[tuple[int, int]]]  # device -> (byte offset, length) that would be written


@dataclass
class Report:
    containers: list[ContainerResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "containers": [
                {
                    "container": c.name,
                    "before": container_json(c.before, c.name),
                    "after": container_json(c.after, c.name),
                    "events": [e.json() for e in c.events],
                    "would_write": {d: [{"offset": o, "length": n} for o, n in w] for d, w in c.writes.items()},
                }
                for c in self.containers
            ],
            "errors": self.errors,
        }


async def _sleep_until(t: float) -> None:
    await trio.sleep_until(t)


def dry_run(
    specs: Sequence[str],
    *,
    duration: float = 30.0,
    actions: Sequence[Action] = (),
    sector_size: int | None = None,
) -> Report:
    """Run the daemon over the images in simulated time; nothing reaches the originals."""
    report = Report()
    copies: dict[tuple[str, str], list[DiskMetadata]] = defaultdict(list)
    for i, spec in enumerate(specs):
        name = f"/dev/sd{chr(ord('a') + i)}" if i < 26 else f"/dev/sd{i}"
        try:
            disk = OverlayDisk(open_image(spec, sector_size=sector_size, name=name))
            copy = formats.load(disk)
            key = (copy.format, formats.handler(copy.format).assemble([copy]).model().uuid)
        except (formats.MetadataError, formats.DiskIOError) as e:
            report.errors.append(f"{spec}: {e}")
            continue
        copies[key].append(copy)
    _join_floating_spares(copies)
    for n, ((fmt, _uuid), group) in enumerate(sorted(copies.items())):
        container = f"md{127 - 10 * n}"
        try:
            result = trio.run(
                _run_container,
                container,
                fmt,
                group,
                duration,
                actions,
                clock=trio.testing.MockClock(autojump_threshold=0),
            )
        except (formats.MetadataError, formats.DiskIOError) as e:
            report.errors.append(f"{container}: {e}")
            continue
        report.containers.append(result)
    return report


async def _run_container(
    container: str, fmt: str, copies: list[DiskMetadata], duration: float, actions: Sequence[Action]
) -> ContainerResult:
    h = formats.handler(fmt)
    metadata = h.assemble(copies)
    before = metadata.model()
    events = EventLog(clock=trio.current_time)
    # Reproducible: the same images give the same report.
    store = MetadataStore(metadata, env=Environment(now=lambda: 0.0), runner=_inline)
    kernel = SimKernel()
    kernel.add_container(container, fmt, [c.disk.name.removeprefix("/dev/") for c in copies])
    arrays = _assemble(container, before, kernel)
    monitor = ContainerMonitor(store, events=events)
    manager = Manager(container, kernel, monitor, events=events, runner=_inline)
    async with trio.open_nursery() as n:
        for a in arrays:
            n.start_soon(a.run)
        await n.start(monitor.run)
        await n.start(manager.run)
        async with trio.open_nursery() as script:
            for act in actions:
                script.start_soon(_act, act, kernel, events)
            await trio.sleep(duration)
            script.cancel_scope.cancel()
        n.cancel_scope.cancel()
    writes = {c.disk.name: list(c.disk.writes) for c in copies if isinstance(c.disk, OverlayDisk) and c.disk.writes}
    return ContainerResult(container, before, store.model(), list(events.records), writes)


async def _inline(fn: Callable[[], None]) -> None:
    # Simulated time must not run on while a worker thread works: everything runs inline.
    fn()


def _join_floating_spares(copies: dict[tuple[str, str], list[DiskMetadata]]) -> None:
    """A disk with spare records only (IMSM) belongs to no container until one takes it in.

    mdadm adds such spares to the container being assembled; with exactly one
    container of that format among the images, so does the dry run.
    """
    for key in list(copies):
        fmt = key[0]
        group = copies[key]
        if formats.handler(fmt).assemble(group).model().volumes:
            continue
        homes = [
            k for k in copies if k[0] == fmt and k != key and formats.handler(fmt).assemble(copies[k]).model().volumes
        ]
        if len(homes) == 1:
            copies[homes[0]].extend(copies.pop(key))


async def _act(act: Action, kernel: SimKernel, events: EventLog) -> None:
    await trio.sleep(act.at)
    if act.kind == "write":
        for name, a in sorted(kernel.arrays.items()):
            if act.target in ("", name):
                events.emit("script-write", array=name)
                try:
                    with trio.fail_after(60):
                        await a.submit_write(0.01)
                except trio.TooSlowError:
                    events.emit("WRITE-HUNG", array=name)
                except OSError as e:
                    events.emit("script-write-refused", array=name, error=str(e))
    elif act.kind == "fail":
        for name, a in sorted(kernel.arrays.items()):
            if act.target in a.devs:
                events.emit("script-fail", array=name, device=act.target)
                a.fail_device(act.target)


def _assemble(container: str, model: Container, kernel: SimKernel) -> list[SimArray]:
    """Start each volume as mdadm --assemble would: read-only, its in-sync members in their slots."""
    arrays = []
    for i, vol in enumerate(model.volumes):
        devs: dict[str, SimDevice] = {}
        for m in vol.members:
            if m.state is not MemberState.IN_SYNC or m.disk_ref is None:
                continue  # failed, missing or being rebuilt: the daemon decides what to do
            disk = next((d for d in model.disks if d.ref == m.disk_ref), None)
            if disk is None or disk.path is None:
                continue
            devs[disk.path.removeprefix("/dev/")] = SimDevice(disk.path.removeprefix("/dev/"), m.slot, {"in_sync"})
        mig = vol.migration
        resync = MAX_SECTOR
        if mig is not None and mig.type in (MigrationType.INIT, MigrationType.REPAIR):
            resync = mig.checkpoint_sectors or 0
        elif vol.dirty:
            resync = 0
        a = SimArray(
            f"md{126 - i}",
            state=ArrayState.READONLY,
            level=vol.level,
            devices=(),
            component_sectors=vol.component_sectors,
            resync_start=resync,
            metadata_version=f"external:/{container}/{vol.index}",
            safe_mode_delay=4.0,
        )
        a.devs = devs
        a.raid_disks = vol.raid_disks
        kernel.add_array(a)
        arrays.append(a)
    return arrays


def describe(report: Report) -> str:
    """The report for a person: a timeline per container, then what changed."""
    out = []
    for c in report.containers:
        out.append(f"{c.name}: {c.before.format} container {c.before.uuid}, {len(c.before.volumes)} volume(s)")
        for e in c.events:
            detail = " ".join(f"{k}={v}" for k, v in e.fields.items() if k != "detail")
            out.append(f"  [{e.at:8.3f}s] {e.kind:18} {detail}")
        for before, after in zip(c.before.volumes, c.after.volumes, strict=False):
            mig = after.migration
            out.append(
                f"  volume {after.index} {after.name!r}: {before.state.value} -> {after.state.value}, "
                f"{'dirty' if after.dirty else 'clean'}"
                + (f", {mig.type.value} at {mig.checkpoint_sectors}" if mig else "")
            )
        total = sum(n for w in c.writes.values() for _, n in w)
        out.append(f"  would write {total} bytes to {len(c.writes)} disk(s); nothing was written to the originals")
    out.extend(f"error: {e}" for e in report.errors)
    return "\n".join(out) + "\n"
