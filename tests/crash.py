"""Crash-consistency harness: every crash point of every metadata change the daemon makes.

A scenario starts from a container (a golden image set, or a state built from
one), then commits its steps through the daemon's own ``MetadataStore``, so the
writes are exactly the ones mdmond makes: the runs of changed sectors, in the
format's order, disk after disk.  Every disk is a ``RecordingDisk`` that logs
each write, in order, for the whole container.

For each commit the replayer then builds the disks as a crash would leave
them after every prefix of that write order and, for each write of more than
one sector, after each of its first 1..n-1 sectors (a torn write), and loads
them as assembly would: every disk read with the format's loader, a disk whose
copy does not load left out (``mdadm -I`` refuses it and goes on with the
others), the rest merged by the format's rules -- in the disks' order and
reversed, or in every rotation of both, since a merge that cannot tell two
copies apart keeps the first it meets.  The failed disks stay present: the
worst case, a disk md failed that still reads.  Each crash point is
classified (the worst over the loader orders):

``before``/``after``
    the loaded container (its disks' states and every volume, field for
    field) is exactly what the disks said before or after the commit (``recorded``);
``mixed``
    it is neither;
``unassemblable``
    no disk loads, or the copies do not merge.

and two invariants are counted on their own: a disk recorded failed in any
earlier state is never in sync again (``failed_trusted``), and a volume dirty
both before and after the commit never reads clean (``dirty_lost``; a commit
that marks a volume clean may land either way, md being clean already, and one
that marks it dirty may too, md waiting for it).

Used by ``tests/formats/test_crash.py`` (every scenario, two loader orders)
and by ``scripts/crash-harness`` (every order, counts per scenario and step).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import trio

import formats
from formats.base import ContainerMetadata, DiskMetadata, FormatHandler
from formats.blockio import Disk, OverlayDisk, check_span
from formats.changes import Change, Environment
from formats.errors import MetadataError
from formats.model import Container, DiskState, MemberState
from mdmond.metadata import MetadataStore

NOW = 1_800_000_000.0


def environment(seed: int = 12) -> Environment:
    return Environment(now=lambda: NOW, rng=random.Random(seed))


# -- disks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Logged:
    """One write as it reached a disk."""

    disk: str
    offset: int
    data: bytes


class Recorder:
    """The container-wide write order."""

    def __init__(self) -> None:
        self.log: list[Logged] = []


class RecordingDisk(OverlayDisk):
    """A copy-on-write view of a disk whose writes are also logged, in order, with the container's others."""

    def __init__(self, base: Disk, recorder: Recorder) -> None:
        super().__init__(base)
        self.recorder = recorder

    def write(self, offset: int, data: bytes) -> None:
        super().write(offset, data)
        self.recorder.log.append(Logged(self.name, offset, bytes(data)))


class BlankDisk:
    """A disk of zeros (a new spare as it arrives): reads only, writes go to a view over it."""

    def __init__(self, name: str, size_bytes: int, serial: str, sector_size: int = 512) -> None:
        self._name = name
        self._size = size_bytes
        self._ss = sector_size
        self.serial: str | None = serial

    @property
    def name(self) -> str:
        return self._name

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def sector_size(self) -> int:
        return self._ss

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        return bytes(length)

    def write(self, offset: int, data: bytes) -> None:
        raise AssertionError("a blank base disk is never written")

    def flush(self) -> None:
        pass


# -- states and classification --------------------------------------------------------------
def state_of(c: Container, generation: bool = False) -> tuple[object, ...]:
    """What must be exactly before or after: each recorded disk's state and every volume, field for field.

    Where a disk's copy was read from (``path``) is left out: it says which copies
    loaded, not what the metadata records.  The generation (IMSM generation
    number, DDF header seq) is left out too, unless asked for: it is a version
    stamp, not state, and an IMSM spare's own record carries none of the
    container's.  It is asked for where the neutral model cannot tell the two
    sides apart (a bad-block record, a policy bit), so that those commits are
    still counted before or after by the copy that won.
    """
    disks = tuple(sorted((replace(d, path=None) for d in c.disks), key=lambda d: d.ref))
    return (c.generation if generation else None, disks, c.volumes)


def trusted(c: Container) -> set[str]:
    """Disks some volume holds in sync: by ref, and by the device their copy was read from."""
    refs = {m.disk_ref for v in c.volumes for m in v.members if m.state is MemberState.IN_SYNC and m.disk_ref}
    return refs | _paths(c, refs)


def failed(c: Container) -> set[str]:
    """Disks recorded failed: by ref, and by device.

    By device too because a ref need not survive the failure: IMSM renames a
    failed disk's entry (serial + ``:0``), while its own stale copy still names
    it by the plain serial.
    """
    refs = {d.ref for d in c.disks if d.state is DiskState.FAILED}
    refs |= {m.disk_ref for v in c.volumes for m in v.members if m.state is MemberState.FAILED and m.disk_ref}
    return refs | _paths(c, refs)


def _paths(c: Container, refs: set[str]) -> set[str]:
    return {d.path for d in c.disks if d.ref in refs and d.path is not None}


@dataclass
class Counts:
    points: int = 0
    before: int = 0
    after: int = 0
    mixed: int = 0
    unassemblable: int = 0
    failed_trusted: int = 0
    dirty_lost: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("points", "before", "after", "mixed", "unassemblable", "failed_trusted", "dirty_lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])

    @property
    def bad(self) -> int:
        return self.mixed + self.unassemblable + self.failed_trusted + self.dirty_lost


# -- scenarios -------------------------------------------------------------------------------
#: A step's changes, computed from the model before it (refs of new spares are known only then)
#: and the rig (the disks a new spare is added on).
Plan = Callable[[Container, "Rig"], Sequence[Change]]


@dataclass(frozen=True)
class Step:
    label: str
    plan: Plan


@dataclass
class Rig:
    """A scenario's starting point: the metadata over recording disks, and every disk present."""

    metadata: ContainerMetadata
    disks: list[RecordingDisk]
    recorder: Recorder
    #: The store's metadata as each step is planned (set by ``run``).
    current: ContainerMetadata | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    format: str
    build: Callable[[], Rig]
    steps: tuple[Step, ...]


@dataclass
class StepReport:
    label: str
    counts: Counts
    changes: tuple[Change, ...] = ()
    #: the daemon's model after the commit is not what the disks say (a format holding something
    #: on purpose until it can be recorded); the crash points compare against the disks
    held: bool = False


async def _inline(fn: Callable[[], None]) -> None:
    fn()


def run(scenario: Scenario, *, torn: bool = True, orders: str = "both") -> list[StepReport]:
    """Commit every step and replay every crash point of each (a step the format refuses raises).

    ``orders`` is the order the copies reach the loader in, since a merge that
    cannot tell two copies apart keeps whichever it met first: ``natural``
    (the disks' order), ``both`` (and reversed), or ``all`` (every rotation of
    both).
    """
    rig = scenario.build()
    handler = formats.handler(scenario.format)
    store = MetadataStore(rig.metadata, env=environment(), runner=_inline)
    ever_failed = failed(store.model())
    reports: list[StepReport] = []
    for step in scenario.steps:
        before = store.model()
        ever_failed |= failed(before)
        rig.current = store.metadata
        changes = list(step.plan(before, rig))
        snapshots = {d.name: dict(d.sectors) for d in rig.disks}
        rig.recorder.log.clear()
        recorded_before = recorded(handler, rig.disks)
        trio.run(store.commit, changes)
        log = list(rig.recorder.log)
        recorded_after = recorded(handler, rig.disks)
        counts = replay(
            handler, rig.disks, snapshots, log, recorded_before, recorded_after, ever_failed, torn=torn, orders=orders
        )
        held = state_of(recorded_after) != state_of(store.model())
        reports.append(StepReport(step.label, counts, tuple(changes), held))
    return reports


def recorded(handler: FormatHandler, disks: Sequence[RecordingDisk]) -> Container:
    """What the disks say now, loaded as assembly would: the state a crash point must equal.

    Not the daemon's in-memory model: a format may hold on purpose what it has not written yet
    (DDF's rebuild onto a disk holding another VD, recorded once md has it in sync), and what
    must survive a crash is what was written.  That the rest of the model reaches the disks
    whole is each format's apply tests' concern (``apply`` then reload equals the model).
    """
    copies = []
    for d in disks:
        view = OverlayDisk(d.base)
        view.sectors = dict(d.sectors)
        if handler.probe(view):
            try:
                copies.append(handler.load(view))
            except MetadataError:
                continue
    return handler.assemble(copies).model()


def crash_points(log: Sequence[Logged], ss: int, torn: bool) -> Iterator[tuple[int, int]]:
    """(whole writes landed, sectors of the next one landed): every prefix, then every torn point."""
    for k in range(len(log) + 1):
        yield k, 0
        if torn and k < len(log):
            for t in range(1, len(log[k].data) // ss):
                yield k, t


def replay(
    handler: FormatHandler,
    disks: Sequence[RecordingDisk],
    snapshots: dict[str, dict[int, bytes]],
    log: Sequence[Logged],
    before: Container,
    after: Container,
    ever_failed: set[str],
    *,
    torn: bool = True,
    orders: str = "both",
) -> Counts:
    """Every crash point of one commit's ``log``, the disks starting from ``snapshots`` (their sectors before it)."""
    counts = Counts()
    bases = {d.name: d.base for d in disks}
    ss = disks[0].sector_size
    per_disk: dict[str, list[int]] = {d.name: [] for d in disks}  # disk -> indices of its writes in the log
    for i, w in enumerate(log):
        per_disk[w.disk].append(i)
    cache: dict[tuple[str, int, int], DiskMetadata | None] = {}

    def copy_at(name: str, k: int, t: int) -> DiskMetadata | None:
        """Disk ``name`` with the log's first ``k`` writes landed and ``t`` sectors of write ``k``."""
        mine = [i for i in per_disk[name] if i < k]
        partial = t if k < len(log) and log[k].disk == name else 0
        key = (name, len(mine), partial)
        if key in cache:
            return cache[key]
        view = OverlayDisk(bases[name])
        view.sectors = dict(snapshots[name])
        for i in mine:
            _land(view, log[i].offset, log[i].data)
        if partial:
            _land(view, log[k].offset, log[k].data[: partial * ss])
        got: DiskMetadata | None = None
        if handler.probe(view):
            try:
                got = handler.load(view)
            except MetadataError:
                got = None  # mdadm -I refuses this disk; assembly goes on with the others
        cache[key] = got
        return got

    by_generation = state_of(before) == state_of(after)
    want_before, want_after = state_of(before, by_generation), state_of(after, by_generation)
    both_dirty = {v.index for v in before.volumes if v.dirty} & {v.index for v in after.volumes if v.dirty}
    for k, t in crash_points(log, ss, torn):
        counts.points += 1
        where = f"after {k} write(s)" + (f" and {t} sector(s) of {log[k].disk}@{log[k].offset}" if t else "")
        copies = [c for d in disks if (c := copy_at(d.name, k, t)) is not None]
        outcomes = [
            _outcome(handler, arranged, want_before, want_after, by_generation) for arranged in _orders(copies, orders)
        ]
        worst = max(outcomes, key=lambda o: _RANK[o[0]])
        kind, got = worst
        setattr(counts, kind, getattr(counts, kind) + 1)
        if got is None:
            _note(counts, f"unassemblable {where}")
            continue
        if kind == "mixed":
            _note(counts, f"mixed {where}: {_diff(got, before, after)}")
        if any(o[1] is not None and trusted(o[1]) & ever_failed for o in outcomes):
            counts.failed_trusted += 1
            _note(counts, f"failed disk trusted {where}: {sorted(trusted(got) & ever_failed)}")
        if any(o[1] is not None and _lost(o[1], both_dirty) for o in outcomes):
            counts.dirty_lost += 1
            _note(counts, f"a dirty volume reads clean {where}")
    return counts


_RANK = {"before": 0, "after": 0, "mixed": 1, "unassemblable": 2}


def _orders(copies: list[DiskMetadata], orders: str) -> Iterator[list[DiskMetadata]]:
    yield copies
    if orders == "natural" or len(copies) < 2:
        return
    yield copies[::-1]
    if orders == "all":
        for i in range(1, len(copies)):
            rot = copies[i:] + copies[:i]
            yield rot
            yield rot[::-1]


def _outcome(
    handler: FormatHandler,
    copies: list[DiskMetadata],
    want_before: tuple[object, ...],
    want_after: tuple[object, ...],
    by_generation: bool,
) -> tuple[str, Container | None]:
    try:
        if not copies:
            raise MetadataError("no disk carries a loadable copy", format=handler.name)
        got = handler.assemble(copies).model()
    except MetadataError:
        return "unassemblable", None
    state = state_of(got, by_generation)
    if state == want_before:
        return "before", got
    if state == want_after:
        return "after", got
    return "mixed", got


def _lost(got: Container, both_dirty: set[int]) -> bool:
    return any(v.index in both_dirty and not v.dirty for v in got.volumes)


def _land(view: OverlayDisk, offset: int, data: bytes) -> None:
    ss = view.sector_size
    for i in range(0, len(data), ss):
        view.sectors[(offset + i) // ss] = data[i : i + ss]


def _note(counts: Counts, text: str) -> None:
    if len(counts.examples) < 5:
        counts.examples.append(text)


def _diff(got: Container, before: Container, after: Container) -> str:
    """A short account of what a mixed state holds: per volume and disk, which side it matches."""
    parts = []
    for v in got.volumes:
        b = next((x for x in before.volumes if x.index == v.index), None)
        a = next((x for x in after.volumes if x.index == v.index), None)
        side = "before" if v == b else "after" if v == a else "neither"
        members = ",".join(f"{m.slot}:{m.disk_ref}={m.state.value}" for m in v.members)
        parts.append(f"vol{v.index} {side} ({v.state.value}; {members})")
    bd = {d.ref: d.state.value for d in before.disks}
    ad = {d.ref: d.state.value for d in after.disks}
    gd = {d.ref: d.state.value for d in got.disks}
    side = "before" if gd == bd else "after" if gd == ad else f"neither {gd}"
    parts.append(f"disks {side}")
    return "; ".join(parts)


def total(reports: Sequence[StepReport]) -> Counts:
    out = Counts()
    for r in reports:
        out.add(r.counts)
    return out
