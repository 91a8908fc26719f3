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
from formats.changes import Change, Environment
from formats.errors import DiskIOError
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
        msg = f"metadata write failed: {self.cause}; restored previous metadata on {len(self.restored)} disk(s)"
        if self.not_restored:
            msg += f"; could NOT restore {', '.join(self.not_restored)}"
        return msg


class MetadataStore:
    """The current metadata of one container and the disks it lives on."""

    def __init__(
        self,
        metadata: ContainerMetadata,
        *,
        env: Environment | None = None,
        runner: Runner = in_thread,
    ) -> None:
        metadata.validate()
        self._metadata = metadata
        self._env = env or Environment()
        self._run = runner
        self.commits = 0
        self.sectors_written = 0

    @property
    def metadata(self) -> ContainerMetadata:
        return self._metadata

    def model(self) -> Container:
        return self._metadata.model()

    async def commit(self, changes: Sequence[Change]) -> ContainerMetadata:
        """Apply, validate, write to every disk, then adopt. Raises and changes nothing on failure."""
        new = self._metadata.apply(changes, self._env)  # ChangeRejected / MetadataError: nothing written
        plan = new.encode()
        disks = new.disks()
        missing = sorted(set(plan) - set(disks))
        if missing:
            raise DiskIOError(f"no open disk for metadata of {', '.join(missing)}", disk=missing[0])
        await self._run(lambda: _write_with_rollback(plan, disks))
        self._metadata = new
        self.commits += 1
        self.sectors_written += sum(len(w.data) for ws in plan.values() for w in ws) // 512
        return new


def _write_with_rollback(plan: Mapping[str, list[Write]], disks: Mapping[str, Disk]) -> None:
    """Write every disk's plan; on failure put back what was there (runs in a worker thread)."""
    before = {ref: [Write(w.offset, disks[ref].read(w.offset, len(w.data))) for w in ws] for ref, ws in plan.items()}
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
