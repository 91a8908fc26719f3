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

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import trio
import trio.testing

import formats
from formats.base import DiskMetadata
from formats.blockio import OverlayDisk
from formats.changes import Environment
from formats.model import Container, DiskState, MemberState, MigrationType, Volume

from .events import Event, EventLog
from .examine import container_json, warnings_of
from .images import open_image, split_spec
from .kernel.simulated import SimArray, SimDevice, SimKernel
from .kernel.values import MAX_SECTOR, ArrayState
from .manager import Manager
from .metadata import MetadataStore
from .monitor.container import ContainerMonitor
from .usage import CommandError, Problem, problem_of


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
    errors: list[Problem] = field(default_factory=list)  # an image or container that could not be run
    warnings: list[Problem] = field(default_factory=list)  # run anyway: members or spares not given, ...

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
            "errors": [p.json() for p in self.errors],
            "warnings": [p.json() for p in self.warnings],
        }


@dataclass
class _Image:
    """One image named on the command line, as the dry run knows it."""

    spec: str  # as given: PATH[,serial=S]
    path: str
    device: str  # the name the simulated kernel gives it: sdb
    copy: DiskMetadata | None = None  # None: it could not be read
    ref: str | None = None  # its own entry in its container's disk table
    serial: str | None = None  # as the metadata records it (DDF: the PD GUID)
    key: tuple[str, str] | None = None  # (format, container uuid)


async def _sleep_until(t: float) -> None:
    await trio.sleep_until(t)


def dry_run(
    specs: Sequence[str],
    *,
    duration: float = 30.0,
    actions: Sequence[Action] = (),
    sector_size: int | None = None,
) -> Report:
    """Run the daemon over the images in simulated time; nothing reaches the originals.

    Raises ``CommandError`` when the command line cannot mean what it says (an
    action outside the run, an unknown device to fail, an image named twice, an
    image whose drive serial is missing); an image that cannot be read, or a
    volume with too few members to start, is reported and the rest still run.
    """
    _check_times(actions, duration)
    report = Report()
    images: list[_Image] = []
    for i, spec in enumerate(specs):
        name = f"/dev/sd{chr(ord('a') + i)}" if i < 26 else f"/dev/sd{i}"
        img = _Image(spec, spec, name.removeprefix("/dev/"))
        images.append(img)
        try:
            img.path = split_spec(spec)[0]
            disk = OverlayDisk(open_image(spec, sector_size=sector_size, name=name))
            copy = formats.load(disk)
            metadata = formats.handler(copy.format).assemble([copy])
        except (formats.MetadataError, formats.DiskIOError) as e:
            report.errors.append(problem_of(spec, e))
            continue
        model = metadata.model()
        own = list(metadata.disks())
        if not own:  # IMSM knows its own entry only by the drive's serial
            recorded = ", ".join(d.serial for d in model.disks) or "none"
            msg = (
                f"serial {disk.serial!r} is not one of the disks its {copy.format} metadata records ({recorded})"
                if disk.serial
                else f"an {copy.format} image needs its drive's serial, one of {recorded}: name it as IMAGE,serial=S"
            )
            raise CommandError(Problem(msg, what=spec))
        img.copy, img.ref, img.key = copy, own[0], (copy.format, model.uuid)
        img.serial = model.disk(own[0]).serial
    _refuse_duplicates(images)
    copies: dict[tuple[str, str], list[DiskMetadata]] = defaultdict(list)
    for img in images:
        if img.copy is not None and img.key is not None:
            copies[img.key].append(img.copy)
    _join_floating_spares(copies)
    home = {id(c): key for key, group in copies.items() for c in group}
    for img in images:  # a floating spare now belongs to the container that took it in
        if img.copy is not None:
            img.key = home[id(img.copy)]
    models = {key: formats.handler(key[0]).assemble(group).model() for key, group in copies.items()}
    actions = [_resolve(a, images, models) for a in actions]
    for n, ((fmt, _uuid), group) in enumerate(sorted(copies.items())):
        container = f"md{127 - 10 * n}"
        model = models[(fmt, _uuid)]
        problems = _incomplete(container, model)
        report.warnings.extend(p for p, fatal in problems if not fatal)
        if any(fatal for _, fatal in problems):
            report.errors.extend(p for p, fatal in problems if fatal)
            continue
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
            report.errors.append(problem_of(container, e))
            continue
        report.containers.append(result)
    if not report.containers and not report.errors:
        report.errors.append(Problem("no container to run", what="dry-run"))
    for img in images:
        if img.copy is not None:
            one = formats.handler(img.copy.format).assemble([img.copy]).model()
            report.warnings.extend(warnings_of(img.spec, one, img.copy.disk.name))
    return report


def _check_times(actions: Sequence[Action], duration: float) -> None:
    """An action at or after the end would silently never happen."""
    for a in actions:
        if not a.at < duration:
            option = "--fail" if a.kind == "fail" else "--write-at"
            raise CommandError(
                Problem(f"{a.at:g} s is not before the end of the run (--duration {duration:g})", what=option)
            )


def _refuse_duplicates(images: Sequence[_Image]) -> None:
    """The same disk twice would be assembled as two members (or two copies of one)."""
    seen: dict[tuple[str, object], _Image] = {}
    for img in images:
        keys: list[tuple[str, object]] = []
        try:
            st = os.stat(img.path)
            keys.append(("the same file", (st.st_dev, st.st_ino)))
        except OSError:
            pass  # reported as unreadable already
        if img.key is not None and img.ref is not None:  # a copy of one disk's image
            keys.append((f"the same disk of the container ({img.serial})", (img.key, img.ref)))
        for k in keys:
            first = seen.setdefault(k, img)
            if first is not img:
                same = k[0]
                raise CommandError(
                    Problem(f"{same} as {first.spec} ({first.device}); name each disk once", what=img.spec)
                )


def _resolve(act: Action, images: Sequence[_Image], models: dict[tuple[str, str], Container]) -> Action:
    """A ``--fail`` target (sdb, /dev/sdb, a serial, an image path) as the device name the kernel knows."""
    if act.kind != "fail":
        return act
    t = act.target
    matches = [
        img
        for img in images
        if t in (img.device, f"/dev/{img.device}", img.spec, img.path, img.serial, img.ref)
        or os.path.realpath(t) == os.path.realpath(img.path)
    ]
    known = ", ".join(f"{i.device}={i.path}" + (f" (serial {i.serial})" if i.serial else "") for i in images)
    if not matches:
        raise CommandError(Problem(f"names no disk among the images ({known})", what="--fail", where=t))
    img = matches[0]
    if img.copy is None or img.key is None:
        raise CommandError(Problem(f"names {img.spec}, which could not be read", what="--fail", where=t))
    model = models.get(img.key)
    if model is None:  # a spare-only disk no container took in
        raise CommandError(Problem(f"{img.device} belongs to no container being run", what="--fail", where=t))
    started = {m.disk_ref for v in model.volumes for m in v.members if m.state is MemberState.IN_SYNC}
    if img.ref not in started:
        recorded = {m.disk_ref for v in model.volumes for m in v.members}
        what = "a spare" if img.ref not in recorded else "a member that is not in sync (failed or being rebuilt)"
        raise CommandError(
            Problem(
                f"{img.device} ({img.serial}) is {what}; only an in-sync member of a started array can fail",
                what="--fail",
                where=t,
            )
        )
    return replace(act, target=img.device)


def _incomplete(container: str, model: Container) -> list[tuple[Problem, bool]]:
    """Members and spares the metadata records but no image holds: (problem, whether the volume cannot start)."""
    given = {d.ref for d in model.disks if d.path is not None}
    out: list[tuple[Problem, bool]] = []

    def problem(message: str, fatal: bool) -> None:
        where = f"{model.format} container {model.uuid}"
        out.append((Problem(message, what=container, where=where, kind="incomplete"), fatal))

    for v in model.volumes:
        absent = [
            f"{model.serial_of(m.disk_ref)} (slot {m.slot})"
            for m in v.members
            if m.state is MemberState.IN_SYNC and m.disk_ref not in given
        ]
        # A slot no given image describes at all (DDF RAID10: each mirror's record is on its own disks).
        absent += [f"slot {s}" for s in sorted(set(range(v.raid_disks)) - {m.slot for m in v.members})]
        if not absent:
            continue
        present = {m.slot for m in v.members if m.state is MemberState.IN_SYNC and m.disk_ref in given}
        have = f"{len(present)} of {v.raid_disks} members among the images; missing {', '.join(absent)}"
        if _can_start(v, present):
            problem(f"volume {v.name!r} starts degraded: {have}", False)
        else:
            problem(f"volume {v.name!r} (raid{v.level}) cannot start (mdadm would refuse): {have}; not run", True)
    # A disk the daemon would take up (a spare, a rebuild to resume) is missed too; a failed one is not.
    roles = {m.disk_ref: m.state for v in model.volumes for m in v.members}
    for d in model.disks:
        role = roles.get(d.ref)
        if d.path is not None or d.state in (DiskState.FAILED, DiskState.MISSING) or role is MemberState.IN_SYNC:
            continue
        if role in (MemberState.REBUILDING, MemberState.OUT_OF_SYNC):
            problem(f"member {d.serial} ({role.value}) is not among the images: its rebuild cannot resume", False)
        elif d.state is DiskState.SPARE:
            problem(f"spare {d.serial} is not among the images", False)
        elif role is None:
            problem(f"disk {d.serial}, {d.state.value} in the container, is not among the images", False)
    return out


def _can_start(v: Volume, present: set[int]) -> bool:
    """Whether md would run the volume on these slots (mdadm --assemble --run)."""
    missing = v.raid_disks - len(present)
    if v.level in (4, 5, 6):
        return missing <= (2 if v.level == 6 else 1)
    if v.level == 1:
        return bool(present)
    if v.level == 10:  # near copies: every group of ``copies`` adjacent slots keeps one
        copies = max(1, v.layout & 0xFF)
        return all(any(s in present for s in range(g, g + copies)) for g in range(0, v.raid_disks, copies))
    return missing == 0  # raid0, linear


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
    """The report for a person: a timeline per container, then what changed (errors and warnings: stderr)."""
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
    return "\n".join(out) + "\n"
