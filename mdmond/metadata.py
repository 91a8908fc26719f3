"""The monitor's metadata: the one place that changes it and writes it.

Every change goes the same way, so the ordering rules hold by construction:

1. ``apply`` the changes to a *copy* (the format validates the result); if
   that fails nothing has been built, let alone written;
2. read back what each disk holds where the new bytes will go (the "T0" image,
   kept for rollback);
3. write every disk, in the format's order, off the event loop (a slow or
   dying disk must not stall the monitor's other arrays);
4. if any write fails, write the T0 bytes back to the disks already touched
   and report; the in-memory metadata stays at T0, so memory never claims
   more than the disks say;
5. only when every disk holds the new bytes does the new metadata replace
   the old.

Only when ``commit`` returns may the monitor tell the kernel to proceed
(``active`` after dirty, ``-blocked`` after a failure).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import trio

from formats.base import ContainerMetadata, Write, write_all
from formats.blockio import Disk
from formats.changes import AddSpare, Change, Environment
from formats.errors import ChangeRejected, DiskIOError
from formats.model import Container

#: How blocking disk work is run: in a worker thread by default; tests and the
#: dry run may run it inline.
Runner = Callable[[Callable[[], None]], Awaitable[None]]


async def in_thread(fn: Callable[[], None]) -> None:
    await trio.to_thread.run_sync(fn)


class CommitFailed(Exception):
    """A write failed; the disks were restored to their previous metadata (or say which were not)."""

    def __init__(self, cause: DiskIOError, restored: tuple[str, ...], not_restored: tuple[str, ...]) -> None:
        super().__init__(cause, restored, not_restored)
        self.cause = cause
        self.restored = restored
        self.not_restored = not_restored

    def __str__(self) -> str:
        if not self.restored and not self.not_restored:
            return f"metadata write failed before anything was written: {self.cause}"
        msg = f"metadata write failed: {self.cause}; restored previous metadata on {len(self.restored)} disk(s)"
        if self.not_restored:
            msg += f"; could NOT restore {', '.join(self.not_restored)}"
        return msg


class MetadataStore:
    """The current metadata of one container and the disks it lives on.

    The store remembers what it last wrote (or read) in each region, so a
    commit writes only the sectors that changed, in the format's order, and
    has the rollback bytes in hand without reading the disks first.  A
    dirty/clean flip is then a few sectors per disk, not the whole metadata.
    """

    def __init__(
        self,
        metadata: ContainerMetadata,
        *,
        env: Environment | None = None,
        runner: Runner = in_thread,
    ) -> None:
        metadata.validate()
        self._metadata = metadata
        self._model = metadata.model()
        self._env = env or Environment()
        self._run = runner
        self._on_disk: dict[str, dict[tuple[int, int], bytes]] = {}  # ref -> (offset, length) -> bytes
        self.commits = 0
        self.writes = 0
        self.bytes_written = 0

    @property
    def metadata(self) -> ContainerMetadata:
        return self._metadata

    def model(self) -> Container:
        """The neutral model of what is on disk (cached: the monitor asks on every pass)."""
        return self._model

    async def prime(self) -> None:
        """Read what is on each disk where the metadata lives, before serving.

        Otherwise the first commit reads it (to write only what differs, and
        to have the rollback bytes): measured in the test bed, that made the
        first write after assembly wait 0.2-0.4 s.  A disk that cannot be read
        now is simply read at its first commit, as before.
        """
        full = self._metadata.encode()
        disks = self._metadata.disks()
        seen: dict[str, dict[tuple[int, int], bytes]] = {}

        def work() -> None:
            for ref, writes in full.items():
                disk = disks.get(ref)
                if disk is None:
                    continue
                try:
                    seen[ref] = {(w.offset, len(w.data)): disk.read(w.offset, len(w.data)) for w in writes}
                except (OSError, DiskIOError):
                    continue

        await self._run(work)
        for ref, regions in seen.items():
            self._on_disk.setdefault(ref, regions)

    def check(self, changes: Sequence[Change]) -> ContainerMetadata:
        """Apply to a copy and validate, writing nothing (``ChangeRejected``/``MetadataError``)."""
        return self._apply(changes)

    async def commit(self, changes: Sequence[Change]) -> ContainerMetadata:
        """Apply, validate, write to every disk, then adopt. Raises and changes nothing on failure."""
        new = self._apply(changes)  # ChangeRejected / MetadataError: nothing written
        await self._write(new)
        self._metadata = new
        self._model = new.model()
        self.commits += 1
        return new

    def _apply(self, changes: Sequence[Change]) -> ContainerMetadata:
        """The format's ``apply``, then each new spare that came with its disk attached to the result.

        Attaching touches only the new copy, before anything is encoded, so the
        spare's own metadata goes out in the same write as its record on the
        other disks; a disk the format cannot place (wrong sector size) refuses
        the change like any other misfit.
        """
        new = self._metadata.apply(changes, self._env)
        for c in changes:
            if isinstance(c, AddSpare) and c.disk is not None:
                try:
                    new.attach(c.serial, c.disk)
                except (KeyError, ValueError) as e:
                    raise ChangeRejected(f"{c.disk.name}: cannot attach as spare {c.serial}: {e}") from e
        return new

    async def _write(self, new: ContainerMetadata) -> None:
        full = new.encode()
        disks = new.disks()
        missing = sorted(set(full) - set(disks))
        if missing:
            raise DiskIOError(f"no open disk for metadata of {', '.join(missing)}", disk=missing[0])
        plan: dict[str, list[Write]] = {}
        before: dict[str, list[Write] | None] = {}
        for ref, writes in full.items():
            known = self._on_disk.get(ref, {})
            if all((w.offset, len(w.data)) in known for w in writes):
                old = [Write(w.offset, known[(w.offset, len(w.data))]) for w in writes]
                plan[ref], before[ref] = changed_runs(old, writes, disks[ref].sector_size)
            else:
                plan[ref], before[ref] = list(writes), None  # T0 is read from the disk first
        plan = {ref: ws for ref, ws in plan.items() if ws}
        written: dict[str, list[Write]] = {}

        def work() -> None:
            written.update(_write_with_rollback(plan, before, disks))

        try:
            await self._run(work)
        except CommitFailed as e:
            for ref in e.not_restored:
                self._on_disk.pop(ref, None)  # no longer known: read it back next time
            raise
        for ref, writes in full.items():
            self._on_disk[ref] = {(w.offset, len(w.data)): w.data for w in writes}
        for ref in set(self._on_disk) - set(full):
            del self._on_disk[ref]  # a disk that left the container
        self.writes += sum(len(ws) for ws in written.values())
        self.bytes_written += sum(len(w.data) for ws in written.values() for w in ws)


def changed_runs(old: Sequence[Write], new: Sequence[Write], sector: int) -> tuple[list[Write], list[Write]]:
    """The runs of whole sectors where ``new`` differs from ``old`` (same extents), in ``new``'s order.

    Returns (writes, the old bytes of the same runs) so a failure can put back
    exactly what the runs replaced.
    """
    writes: list[Write] = []
    undo: list[Write] = []
    block = sector * _BLOCK_SECTORS
    for o, n in zip(old, new, strict=True):
        if o.data == n.data:  # the usual case for most extents: one memcmp
            continue
        start: int | None = None
        size = len(n.data)
        for base in range(0, size, block):
            if n.data[base : base + block] == o.data[base : base + block]:
                # a whole block unchanged: close any run at its start, skip its sectors
                if start is not None:
                    writes.append(Write(n.offset + start, n.data[start:base]))
                    undo.append(Write(n.offset + start, o.data[start:base]))
                    start = None
                continue
            for pos in range(base, min(base + block, size), sector):
                same = n.data[pos : pos + sector] == o.data[pos : pos + sector]
                if not same and start is None:
                    start = pos
                elif same and start is not None:
                    writes.append(Write(n.offset + start, n.data[start:pos]))
                    undo.append(Write(n.offset + start, o.data[start:pos]))
                    start = None
        if start is not None:
            writes.append(Write(n.offset + start, n.data[start:size]))
            undo.append(Write(n.offset + start, o.data[start:size]))
    return writes, undo


#: ``changed_runs`` compares this many sectors at once before looking sector by sector.
_BLOCK_SECTORS = 64


def _write_with_rollback(
    full: Mapping[str, list[Write]], known: Mapping[str, list[Write] | None], disks: Mapping[str, Disk]
) -> dict[str, list[Write]]:
    """Write every disk's plan; on failure put back what was there (runs in a worker thread).

    Where the previous bytes are not yet known, they are read first (for the
    rollback) and only the sectors that differ are written.  Disks are written
    one after another, each flushed before the next, so at most one disk's
    copy can be torn by a crash: mdadm takes the newest intact copy.  Returns
    what was written.
    """
    plan: dict[str, list[Write]] = {}
    before: dict[str, list[Write]] = {}
    for ref, ws in full.items():
        k = known.get(ref)
        if k is None:
            try:
                t0 = [Write(w.offset, disks[ref].read(w.offset, len(w.data))) for w in ws]
            except DiskIOError as e:
                # Nothing is written yet: a disk whose T0 cannot be read fails the commit, not the caller.
                raise CommitFailed(e, (), ()) from e
            plan[ref], before[ref] = changed_runs(t0, ws, disks[ref].sector_size)
        else:
            plan[ref], before[ref] = list(ws), k
    plan = {ref: ws for ref, ws in plan.items() if ws}
    done: dict[str, int] = {}  # writes each disk has taken (a failed flush counts them all as possibly taken)
    try:
        for ref, writes in plan.items():
            done[ref] = 0
            for w in writes:
                disks[ref].write(w.offset, w.data)
                done[ref] += 1
            disks[ref].flush()
    except DiskIOError as e:
        # The write that failed may have been torn part-way: restore through it too.
        done[ref] = min(done[ref] + 1, len(plan[ref]))
        restored, failed = [], []
        for r, n in done.items():
            if n == 0:
                continue  # nothing reached this disk
            try:
                # T0 goes back in the format's order, so an anchor is again written last.
                write_all(disks[r], before[r][:n])
                restored.append(r)
            except DiskIOError:
                failed.append(r)
        raise CommitFailed(e, tuple(restored), tuple(failed)) from e
    return plan
