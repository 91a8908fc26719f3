"""The monitor of one container: every member array's pass, and the one writer of its metadata.

One loop per container, as in mdmon: a pass runs whenever any array notifies a
change, an update is queued, or a deferred checkpoint or a retry falls due.
Each pass, in the order that keeps external metadata crash-safe
(mdmon.md §2.7):

1. apply the queued updates (refused ones alone), as one commit;
2. read every array (``snapshot``) and decide (``rules.plan``);
3. commit every array's changes to every disk, as one write;
4. only then answer the kernel: ``array_state``, then ``-blocked``; refuse
   mdadm's freeze for a reshape mdmond cannot carry (``rules``); acknowledge
   each recorded bad block (``bad_blocks``), then ``-blocked``; fail a member
   whose bad blocks the metadata refused;
5. propagate a member failure to the container's other arrays;
6. hand blocking work (removing a failed member, finding a spare) to the
   manager as requests.

If the commit fails, nothing of step 4 happens: the kernel keeps waiting and
the pass is retried, because telling md ``active`` or ``-blocked`` without the
record on disk is exactly what external metadata must never do.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio

from formats.changes import Change
from formats.errors import ChangeRejected, DiskIOError, MetadataError

from ..events import EventLog
from ..kernel.interface import MdArray
from ..kernel.snapshot import ArraySnapshot, read_snapshot
from ..kernel.values import ArrayState
from ..metadata import CommitFailed, MetadataStore
from ..updates import UpdateQueue
from .rules import BadBlock, Plan, Progress, plan

#: Default minimum time between two recorded checkpoints of a running sync.
CHECKPOINT_INTERVAL = 1.0

#: Retry delay after a failed commit or attribute write (doubles up to the cap).
RETRY_FIRST, RETRY_CAP = 0.02, 2.0


@dataclass
class Watched:
    """One member array under the monitor."""

    md: MdArray
    volume: int
    before: ArraySnapshot = field(default_factory=lambda: ArraySnapshot(ArrayState.INACTIVE))
    progress: Progress = field(default_factory=Progress)
    wake_at: float = math.inf
    #: Devices whose bad blocks md has acknowledged but whose ``-blocked`` write failed.
    unblock_owed: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Request:
    """Work for the manager, which may block: ``remove`` a failed member, ``spare`` for a degraded array."""

    kind: str
    array: str
    volume: int
    device: str | None = None


class ContainerMonitor:
    """Keeps a container's metadata in step with its member arrays."""

    def __init__(
        self,
        store: MetadataStore,
        *,
        queue: UpdateQueue | None = None,
        events: EventLog | None = None,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.store = store
        self.queue = queue or UpdateQueue()
        self.queue.connect(self.wake)
        self.events = events or EventLog()
        self.checkpoint_interval = checkpoint_interval
        self.on_request = on_request or (lambda r: None)
        self.arrays: dict[str, Watched] = {}
        self.release_when_clean = False  # SIGTERM: let go of each array once it is clean
        #: Arrays the manager holds frozen itself (spare activation): that freeze is not mdadm's.
        self.held: set[str] = set()
        self.passes = 0  # passes begun
        self.finished = 0  # passes completed
        self._woken = trio.Event()
        self._passed = trio.Event()
        self._retry_at = math.inf
        self._retry_delay = RETRY_FIRST
        self._nursery: trio.Nursery | None = None

    # -- what the manager calls --------------------------------------------------

    def adopt(self, md: MdArray, volume: int) -> None:
        """Start monitoring an array (the manager opened it; nothing here may block)."""
        w = Watched(md, volume)
        self.arrays[md.name] = w
        if self._nursery is not None:
            self._nursery.start_soon(self._watch, w)
        self.wake()

    def wake(self) -> None:
        self._woken.set()

    async def ping(self) -> None:
        """Return once a whole pass begun after this call has finished (mdadm's "ping monitor").

        Everything notified or queued before the call has then been handled
        and is on disk.
        """
        target = self.passes + 1
        self.wake()
        while self.finished < target:
            await self._passed.wait()

    async def next_pass(self) -> None:
        """Return when the pass after the current one has finished (no wake-up of its own)."""
        await self._passed.wait()

    # -- the loop ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for w in self.arrays.values():
                nursery.start_soon(self._watch, w)
            task_status.started()
            while True:
                await self.pass_once()
                deadline = min([self._retry_at, *(w.wake_at for w in self.arrays.values())])
                with trio.move_on_at(deadline):
                    await self._woken.wait()

    async def _watch(self, w: Watched) -> None:
        """Turn one array's notifications into passes; a pass re-arms by reading."""
        while self.arrays.get(w.md.name) is w:
            await w.md.wait_change()
            passed = self._passed
            self.wake()
            await passed.wait()

    async def pass_once(self) -> None:
        """One pass over the queue and every array."""
        self._woken = trio.Event()
        self.passes += 1
        now = trio.current_time()
        if now >= self._retry_at:
            self._retry_at = math.inf
        await self._apply_queue()
        plans: dict[str, tuple[Watched, ArraySnapshot, Plan]] = {}
        model = self.store.model()
        for name, w in list(self.arrays.items()):
            vol = model.volume(w.volume)
            snap = read_snapshot(w.md, w.before, listed=frozenset(m.slot for m in vol.members if m.bad_blocks))
            plans[name] = (w, snap, plan(snap, w.before, vol, w.progress, clock=now, interval=self.checkpoint_interval))
        self._screen_bad_blocks(plans)
        committed = await self._commit(plans)
        for name, (w, snap, p) in plans.items():
            if name not in committed:
                continue
            for c in p.changes:
                self.events.emit("metadata", array=name, volume=w.volume, change=type(c).__name__, detail=repr(c))
            if not self._answer(w, p):
                continue
            w.before, w.progress, w.wake_at = snap, p.progress, p.wake_at
            self._record(w, p)
            if p.stop or (self.release_when_clean and snap.array_state.rank < ArrayState.ACTIVE.rank):
                del self.arrays[name]
                self.events.emit("array-released", array=name, volume=w.volume)
        self._propagate_failures(plans)
        self.finished = self.passes
        passed, self._passed = self._passed, trio.Event()
        passed.set()

    async def _apply_queue(self) -> None:
        updates = self.queue.take()
        if not updates:
            return
        accepted = []
        changes: list[Change] = []
        for u in updates:
            try:
                self.store.check([*changes, *u.changes])
            except (ChangeRejected, MetadataError) as e:
                self.events.emit("update-refused", changes=[repr(c) for c in u.changes], error=str(e))
                u.fail(e)
                continue
            accepted.append(u)
            changes.extend(u.changes)
        if not accepted:
            return
        try:
            result = await self.store.commit(changes)
        except (CommitFailed, DiskIOError, MetadataError, ChangeRejected) as e:
            self.events.emit("commit-failed", error=str(e), source="update-queue")
            for u in accepted:
                u.fail(e)
            return
        for c in changes:
            self.events.emit("metadata", source="update-queue", change=type(c).__name__, detail=repr(c))
        for u in accepted:
            u.succeed(result)

    def _screen_bad_blocks(self, plans: dict[str, tuple[Watched, ArraySnapshot, Plan]]) -> None:
        """Move the bad blocks the format refuses (log full, no log) to ``bad_blocks_refused``.

        Device by device, each device's ranges tried on top of those already
        accepted, so that one refused range neither holds back the pass's other
        changes nor lets part of a device's list through: a device with any range
        refused is failed as a whole.
        """
        accepted: list[Change] = []
        for name, (w, snap, p) in plans.items():
            if not p.bad_blocks:
                continue
            by_dev: dict[str, list[BadBlock]] = {}
            for b in p.bad_blocks:
                by_dev.setdefault(b.device, []).append(b)
            refused: dict[str, str] = {}
            for dev, blocks in by_dev.items():
                mine = [c for b in blocks if (c := b.change) is not None]
                try:
                    self.store.check([*accepted, *mine])
                except (ChangeRejected, MetadataError) as e:
                    refused[dev] = str(e)
                    continue
                accepted.extend(mine)
            if not refused:
                continue
            dropped = {b.change for b in p.bad_blocks if b.device in refused}
            p = replace(
                p,
                changes=tuple(c for c in p.changes if c not in dropped),
                bad_blocks=tuple(b for b in p.bad_blocks if b.device not in refused),
                bad_blocks_refused=(
                    *p.bad_blocks_refused,
                    *((b, refused[b.device]) for b in p.bad_blocks if b.device in refused),
                ),
            )
            plans[name] = (w, snap, p)

    async def _commit(self, plans: dict[str, tuple[Watched, ArraySnapshot, Plan]]) -> set[str]:
        """Commit the arrays' changes: together if possible, else array by array. Returns who succeeded."""
        together = [c for _, _, p in plans.values() for c in p.changes]
        if not together:
            return set(plans)
        try:
            await self.store.commit(_unique(together))
            self._retry_delay = RETRY_FIRST
            return set(plans)
        except ChangeRejected:
            pass  # one array's changes do not fit: isolate it below
        except (CommitFailed, DiskIOError, MetadataError) as e:
            self._failed("commit-failed", error=str(e), arrays=sorted(plans))
            return {name for name, (_, _, p) in plans.items() if not p.changes}
        ok = set()
        for name, (_, _, p) in plans.items():
            try:
                if p.changes:
                    await self.store.commit(p.changes)
                ok.add(name)
            except (ChangeRejected, CommitFailed, DiskIOError, MetadataError) as e:
                self._failed("commit-failed", error=str(e), arrays=[name], changes=[repr(c) for c in p.changes])
        return ok

    def _answer(self, w: Watched, p: Plan) -> bool:
        """Tell the kernel, now that the metadata is on disk. False: retry the pass."""
        md = w.md
        if p.write_state is not None:
            try:
                md.write("array_state", p.write_state.value)
                self.events.emit("state-written", array=md.name, state=p.write_state.value)
            except OSError as e:
                # active-idle -> clean is refused while writes are in flight: they will
                # bring the array back to active and safe mode will come round again.
                benign = e.errno == errno.EBUSY and p.write_state is ArrayState.CLEAN
                if not benign and not p.stop:
                    self._failed("attr-write-failed", array=md.name, attr="array_state", error=str(e))
                    return False
        ok = True
        for dev in p.unblock:
            try:
                md.write(f"dev-{dev}/state", "-blocked")
                self.events.emit("unblocked", array=md.name, device=dev)
            except OSError as e:
                self._failed("attr-write-failed", array=md.name, attr=f"dev-{dev}/state", error=str(e))
                ok = False
        ok = self._answer_bad_blocks(w, p) and ok
        if p.refuse_reshape and md.name not in self.held:
            ok = self._refuse_reshape(w) and ok
        return ok

    def _answer_bad_blocks(self, w: Watched, p: Plan) -> bool:
        """Acknowledge what is now on every disk, then release the device; fail what was refused."""
        md = w.md
        ok = True
        acked: list[str] = []
        failed: set[str] = set()
        for b in p.bad_blocks:
            if b.device in failed:
                continue
            fields = {"array": md.name, "device": b.device, "sector": b.sector, "length": b.length}
            try:
                md.write(f"dev-{b.device}/bad_blocks", f"{b.sector} {b.length}")
            except OSError as e:
                # Recorded but md would not take the acknowledgement: it keeps the member
                # blocked for ever, so fail it, as mdmon's process_ubb does.
                self.events.emit("bad-block-refused", **fields, error=f"dev-{b.device}/bad_blocks: {e}")
                failed.add(b.device)
                ok = self._fail_member(md, b.device) and ok
                continue
            self.events.emit("bad-block-recorded", **fields, disk=b.disk_ref)
            if b.device not in acked:
                acked.append(b.device)
        for b, why in p.bad_blocks_refused:
            self.events.emit(
                "bad-block-refused", array=md.name, device=b.device, sector=b.sector, length=b.length, error=why
            )
            if b.device not in failed:
                failed.add(b.device)
                ok = self._fail_member(md, b.device) and ok
        owed = [d for d in [*sorted(w.unblock_owed), *acked] if d not in failed]
        w.unblock_owed.clear()
        for dev in dict.fromkeys(owed):
            try:
                md.write(f"dev-{dev}/state", "-blocked")
                self.events.emit("unblocked", array=md.name, device=dev, reason="bad-blocks-acknowledged")
            except OSError as e:
                w.unblock_owed.add(dev)  # acknowledged: the state no longer says blocked, so remember it
                self._failed("attr-write-failed", array=md.name, attr=f"dev-{dev}/state", error=str(e))
                ok = False
        return ok

    def _fail_member(self, md: MdArray, dev: str) -> bool:
        """Fail a member held blocked for bad blocks that cannot be recorded.

        ``faulty`` first: md fails the device and keeps it blocked (as for any
        failure), so the next pass records the failure on disk before
        ``-blocked`` lets writes go on degraded.  mdmon writes
        ``-external_bbl`` instead, after which md fails the device only on the
        next ``-blocked`` and releases the writes in the same step, before any
        metadata says the member failed.  That is the fallback, for when md
        refuses to fail it (the last working member of its array): then there is
        nothing to protect, and md must not stay blocked.
        """
        try:
            md.write(f"dev-{dev}/state", "faulty")
            self.events.emit("member-failed", array=md.name, device=dev, reason="bad blocks not recorded")
            return True
        except OSError as e:
            first = str(e)
        try:
            md.write(f"dev-{dev}/state", "-external_bbl")
            md.write(f"dev-{dev}/state", "-blocked")
        except OSError as e:
            self._failed("attr-write-failed", array=md.name, attr=f"dev-{dev}/state", error=f"{first}; {e}")
            return False
        self.events.emit(
            "member-failed",
            array=md.name,
            device=dev,
            reason="bad blocks not recorded",
            detail=f"md refused faulty ({first}); external_bbl turned off and the device released",
        )
        return True

    def _refuse_reshape(self, w: Watched) -> bool:
        """Undo mdadm's freeze, so that its ``--grow`` stops before md reshapes (``rules``)."""
        try:
            w.md.write("sync_action", "idle")
        except OSError as e:
            self._failed("attr-write-failed", array=w.md.name, attr="sync_action", error=str(e))
            return False
        self.events.emit(
            "update-refused",
            array=w.md.name,
            volume=w.volume,
            operation="reshape",
            error="mdadm froze the array for --grow; mdmond does not carry reshapes yet, so the freeze was "
            "undone and mdadm stops with 'failed to freeze' before md changes the geometry",
        )
        return True

    def _record(self, w: Watched, p: Plan) -> None:
        for dev in p.remove:
            self.on_request(Request("remove", w.md.name, w.volume, dev))
        if p.check_degraded:
            self.on_request(Request("spare", w.md.name, w.volume))

    def _propagate_failures(self, plans: dict[str, tuple[Watched, ArraySnapshot, Plan]]) -> None:
        """A disk failed in one volume fails in every volume of the container (mdmon's reconcile_failed)."""
        faulty = {d.name for _, snap, _ in plans.values() for d in snap.devs if d.state.faulty}
        for name, (w, snap, _) in plans.items():
            if name not in self.arrays:
                continue
            for d in snap.devs:
                if d.name in faulty and not d.state.faulty:
                    try:
                        w.md.write(f"dev-{d.name}/state", "faulty")
                        self.events.emit("fail-propagated", array=name, device=d.name)
                    except OSError as e:
                        self._failed("attr-write-failed", array=name, attr=f"dev-{d.name}/state", error=str(e))

    def _failed(self, kind: str, **fields: object) -> None:
        self.events.emit(kind, **fields)
        self._retry_at = min(self._retry_at, trio.current_time() + self._retry_delay)
        self._retry_delay = min(RETRY_CAP, self._retry_delay * 2)


def _unique(changes: list[Change]) -> list[Change]:
    out: list[Change] = []
    for c in changes:
        if c not in out:
            out.append(c)
    return out


__all__ = ["CHECKPOINT_INTERVAL", "ContainerMonitor", "Request", "Watched"]
