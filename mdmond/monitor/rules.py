"""What to do about an array's state: the table of mdmon.md §2.3, as code.

``decide`` is pure: given what the kernel shows and what the metadata says,
it returns what must be recorded and what must be written back, and nothing
else.  The loop that carries it out (``container.py``) keeps the ordering that
makes external metadata crash-safe: metadata is on disk *before* the state
write that lets the kernel proceed, and ``clean`` is written to md *before*
the metadata is marked clean.

| observed                         | record in metadata        | then write to md |
| -------------------------------- | ------------------------- | ---------------- |
| clear / inactive / unreadable,   | clean                     | clear, and stop  |
|   having been running            |                           |                  |
| write-pending                    | dirty                     | active           |
| active-idle                      | (nothing yet)             | clean            |
| clean, broken                    | clean                     |                  |
| active, suspended                | (already dirty)           |                  |
| readonly (not blocked)           | dirty only if a resync is | read-auto if     |
|                                  | owed                      | clean, else      |
|                                  |                           | active           |
| readonly, blocked by mdadm       |                           |                  |
| read-auto                        |                           |                  |

Beside the state, members: a faulty device is recorded failed, then
unblocked, then removed; a member the metadata holds in sync whose slot md
never filled (missing at assembly) is recorded failed in the same commit as
the pass's other changes; either way the manager is asked for a spare.

Beside the state, one row for mdadm's ``--grow`` (mdmon.md §3.9): mdadm
freezes every member array (``sync_action`` = ``frozen``, then the
``external:-`` flag) and pings; it goes on only if ``sync_action`` still
reads ``frozen`` after the ping.  That is the one answer mdadm 4.2 checks
before it reshapes: the acknowledgement of its reshape update is not looked
at, and it reshapes from its own copy of the metadata.  mdmond does not carry
reshapes yet, so an array found blocked *and* frozen gets ``idle`` written to
``sync_action`` (``refuse_reshape``): mdadm reports "failed to freeze" and
exits 1 before md reshapes anything, and the metadata stays true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from formats.changes import (
    Change,
    ClearBadBlock,
    EndMigration,
    FailDisk,
    MemberInSync,
    RecordBadBlock,
    SetCheckpoint,
    SetDirty,
    StartResync,
)
from formats.model import Member, MemberState, MigrationType, Volume, VolumeState

from ..kernel.snapshot import ArraySnapshot
from ..kernel.values import MAX_SECTOR, ArrayState, SyncAction


@dataclass(frozen=True)
class Decision:
    """What one pass does for one array."""

    dirty: bool | None = None  # record the volume dirty (True) / clean (False); None: leave it
    write_state: ArrayState | None = None  # written to array_state after the metadata is on disk
    stop: bool = False  # the array has been stopped: release it


def decide(
    observed: ArrayState,
    previous: ArrayState,
    *,
    needs_resync: bool = False,
    blocked: bool = False,
) -> Decision:
    """The array_state rules.

    ``needs_resync``: the metadata says the volume owes a resync or rebuild
    (so taking it over from ``readonly`` must leave it dirty).  ``blocked``:
    mdadm flagged the array ``external:-`` (leave a readonly array alone).
    """
    s = ArrayState
    if observed in (s.CLEAR, s.INACTIVE, s.UNREADABLE):
        if previous.running:
            return Decision(dirty=False, write_state=s.CLEAR, stop=True)
        return Decision()
    if observed is s.WRITE_PENDING:
        return Decision(dirty=True, write_state=s.ACTIVE)
    if observed is s.ACTIVE_IDLE:
        # clean goes to md first; the kernel refuses it (EBUSY) if writes are in flight, and
        # its notification brings us back here as "clean", where the metadata follows.
        return Decision(write_state=s.CLEAN)
    if observed in (s.CLEAN, s.BROKEN):
        return Decision(dirty=False)
    if observed is s.READONLY:
        if blocked:
            return Decision()
        if needs_resync:
            return Decision(dirty=True, write_state=s.ACTIVE)
        return Decision(dirty=False, write_state=s.READ_AUTO)
    return Decision()  # active, suspended, read-auto: nothing to do


# -- the whole pass: array state, failed members, sync progress ----------------

#: Migrations that a resync (md's ``resync``) carries out.
_RESYNC_MIGRATIONS = (MigrationType.INIT, MigrationType.REPAIR, MigrationType.VERIFY)


@dataclass(frozen=True)
class Progress:
    """What the monitor remembers between passes about one volume's sync."""

    last_checkpoint: int = 0  # sectors recorded in the metadata
    recorded_at: float = -math.inf  # when (trio time)


@dataclass(frozen=True)
class BadBlock:
    """An unacknowledged bad-block range of a member md holds blocked (mdmon.md §2.5)."""

    device: str  # "sdc"
    sector: int
    length: int
    disk_ref: str | None  # the metadata's disk; None: the device names no member to record it for

    @property
    def change(self) -> RecordBadBlock | None:
        return None if self.disk_ref is None else RecordBadBlock(self.disk_ref, self.sector, self.length)


@dataclass(frozen=True)
class Plan:
    """Everything one pass does for one array, in the order it is done.

    ``changes`` are committed to every disk first; only then is ``write_state``
    written, then ``-blocked`` to each of ``unblock``.  ``remove`` and
    ``check_degraded`` are requests to the manager, which may block.
    ``refuse_reshape``: mdadm is freezing the array for ``--grow``; refuse it.

    ``bad_blocks``: each range is recorded by its ``RecordBadBlock`` in
    ``changes``; after the commit it is acknowledged (written to the device's
    ``bad_blocks``), then ``-blocked`` is written to the device.
    ``bad_blocks_refused``: ranges that cannot be recorded (the metadata
    cannot keep them, or no member is there to keep them for): their device is
    failed instead, so that it is never left blocked.  The monitor moves a
    range here when the format refuses it.
    """

    changes: tuple[Change, ...] = ()
    write_state: ArrayState | None = None
    unblock: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    stop: bool = False
    check_degraded: bool = False
    refuse_reshape: bool = False
    progress: Progress = Progress()
    wake_at: float = math.inf  # a deferred checkpoint falls due then
    bad_blocks: tuple[BadBlock, ...] = ()
    bad_blocks_refused: tuple[tuple[BadBlock, str], ...] = ()


def keeps_checkpoint(vol: Volume) -> bool:
    """The format records how far the volume's current sync has got (DDF does not)."""
    return vol.migration is not None and vol.migration.checkpoint_sectors is not None


def resync_owed(snap: ArraySnapshot, vol: Volume) -> bool:
    """md or the metadata says some stripes may be inconsistent."""
    return snap.resync_start != MAX_SECTOR or vol.migration is not None or vol.state is VolumeState.UNINITIALIZED


def plan(
    now: ArraySnapshot,
    before: ArraySnapshot,
    vol: Volume,
    progress: Progress,
    *,
    clock: float,
    interval: float,
) -> Plan:
    """mdmon's ``read_and_act`` for one array, as a pure function of what was read.

    ``interval`` bounds how often a running sync's progress is recorded; a
    return to idle is always recorded.
    """
    d = decide(now.array_state, before.array_state, needs_resync=resync_owed(now, vol), blocked=now.blocked)
    changes: list[Change] = []
    dirty = d.dirty
    if dirty is False and now.resync_start != MAX_SECTOR and not keeps_checkpoint(vol):
        # Clean would lose the owed resync: the format has nowhere else to keep it.
        dirty = None
    if d.stop:
        if dirty is False and vol.dirty:
            changes.append(SetDirty(vol.index, False))
        return Plan(tuple(changes), d.write_state, stop=True, progress=progress)

    write_state = d.write_state
    unblock: list[str] = []
    remove: list[str] = []
    check_degraded = False
    for dev in now.devs:
        if not dev.state.faulty:
            continue
        check_degraded = True
        member = _member(vol, dev.slot)
        if member is not None and member.state is not MemberState.FAILED and member.disk_ref is not None:
            changes.append(FailDisk(member.disk_ref))
        if dev.state.blocked and member is not None:
            # Written after the commit, so the failure is on disk first.  A blocked
            # device that names no member stays blocked: releasing writes with the
            # failure unrecorded could resurrect stale data after a crash.
            unblock.append(dev.name)
        if now.array_state is ArrayState.READ_AUTO:
            dirty, write_state = True, ArrayState.ACTIVE  # writable, so the member can be removed
        if now.array_state.rank > ArrayState.READONLY.rank:
            remove.append(dev.name)
    for m in absent_members(now, vol):
        assert m.disk_ref is not None
        changes.append(FailDisk(m.disk_ref))
        check_degraded = True
    bad, refused = _bad_blocks(now, vol)
    changes.extend(c for b in bad if (c := b.change) is not None)
    changes.extend(cleared_bad_blocks(now, before, vol))
    if dirty is not None and dirty != vol.dirty:
        changes.insert(0, SetDirty(vol.index, dirty))

    p_changes, progress, wake_at, done = _progress(now, before, vol, progress, clock, interval)
    changes.extend(p_changes)
    return Plan(
        tuple(_unique(changes)),
        write_state,
        tuple(unblock),
        tuple(remove),
        check_degraded=check_degraded or done,
        refuse_reshape=now.blocked and now.sync_action is SyncAction.FROZEN,
        progress=progress,
        wake_at=wake_at,
        bad_blocks=bad,
        bad_blocks_refused=refused,
    )


def _bad_blocks(now: ArraySnapshot, vol: Volume) -> tuple[tuple[BadBlock, ...], tuple[tuple[BadBlock, str], ...]]:
    """The members md holds blocked for unacknowledged bad blocks: what to record, what to refuse."""
    record: list[BadBlock] = []
    refused: list[tuple[BadBlock, str]] = []
    for dev in now.devs:
        if not dev.awaits_bad_block_ack or not dev.unacked:
            continue
        member = _member(vol, dev.slot)
        usable = member is not None and member.state is not MemberState.FAILED and member.disk_ref is not None
        for sector, length in dev.unacked:
            if usable:
                assert member is not None
                record.append(BadBlock(dev.name, sector, length, member.disk_ref))
            else:
                why = "no member of the volume" if member is None else f"member is {member.state.value}"
                refused.append((BadBlock(dev.name, sector, length, None), why))
    return tuple(record), tuple(refused)


def cleared_bad_blocks(now: ArraySnapshot, before: ArraySnapshot, vol: Volume) -> list[Change]:
    """What md has cleared of the recorded bad blocks: forget it (mdmon's check_for_cleared_bb).

    md clears a bad block once a write to it succeeds.  A recorded range is
    cleared when md listed it at the previous read and no longer does; where it
    spanned what md still lists, that part is recorded again.  Unlike mdmon,
    which compares against the metadata whenever the list changes, a range md
    never listed is kept: the first read of a device only sets the baseline, so
    a kernel that was never given the recorded list (an older mdadm, a test
    assembly) cannot empty the log; and a range md lists that the metadata
    lacks is not recorded here, since mdmond records bad blocks as it
    acknowledges them.
    """
    out: list[Change] = []
    for dev in now.devs:
        prev = before.dev(dev.name)
        if dev.acked is None or prev is None or prev.acked is None or prev.acked == dev.acked:
            continue
        if dev.awaits_bad_block_ack:
            continue  # its new ranges are recorded first
        member = _member(vol, dev.slot)
        if member is None or member.disk_ref is None or member.state is MemberState.FAILED:
            continue
        ref = member.disk_ref

        def within(s: int, n: int, ranges: tuple[tuple[int, int], ...]) -> bool:
            return any(k <= s and s + n <= k + kn for k, kn in ranges)

        for s, n in member.bad_blocks:
            if within(s, n, dev.acked) or not within(s, n, prev.acked):
                continue
            out.append(ClearBadBlock(ref, s, n))
            out.extend(RecordBadBlock(ref, k, kn) for k, kn in dev.acked if s <= k and k + kn <= s + n)
    return out


def _progress(
    now: ArraySnapshot, before: ArraySnapshot, vol: Volume, progress: Progress, clock: float, interval: float
) -> tuple[list[Change], Progress, float, bool]:
    """Checkpoints and completion (mdmon.md §2.6): (changes, progress, wake_at, ask for a spare)."""
    changes: list[Change] = []
    wake_at = math.inf
    action = now.sync_action
    mig = vol.migration
    ended = before.sync_action in (SyncAction.RESYNC, SyncAction.RECOVER) and action in (
        SyncAction.IDLE,
        SyncAction.FROZEN,
    )
    # A resync md has started that the metadata does not know of yet.
    if action is SyncAction.RESYNC and mig is None and vol.level != 0 and vol.state is not VolumeState.DEGRADED:
        changes.append(StartResync(vol.index))
    # Completion is read from state, not only from transitions, so a pass that
    # missed the transition (a restart) still closes what md has finished.
    resync_done = now.resync_start == MAX_SECTOR and action is not SyncAction.RESYNC
    if resync_done and mig is not None and mig.type in _RESYNC_MIGRATIONS:
        changes.append(EndMigration(vol.index))
        return changes, Progress(), wake_at, True
    if (
        resync_done
        and mig is None
        and vol.state is VolumeState.UNINITIALIZED
        and now.array_state.rank > ArrayState.READ_AUTO.rank
    ):
        # md finished the initial resync before any pass saw it running (a small volume is
        # synced in well under a second): it is initialised all the same, so record it, as
        # the start and end of the initialisation in one commit.
        changes += [StartResync(vol.index), EndMigration(vol.index)]
        return changes, Progress(), wake_at, True
    if action is not SyncAction.RECOVER:
        finished = [
            dev
            for dev in now.devs
            if dev.state.in_sync
            and (m := _member(vol, dev.slot)) is not None
            and m.state in (MemberState.REBUILDING, MemberState.OUT_OF_SYNC)
        ]
        if finished:
            changes.extend(MemberInSync(vol.index, dev.slot) for dev in finished if dev.slot is not None)
            return changes, Progress(), wake_at, True
    if not keeps_checkpoint(vol):
        return changes, progress, wake_at, ended
    if ended:
        # Interrupted: md keeps its position in resync_start / recovery_start.
        pos = now.resync_start if before.sync_action is SyncAction.RESYNC else _recovery_position(now, vol)
        if pos is not None and pos != MAX_SECTOR and pos != progress.last_checkpoint:
            changes.append(SetCheckpoint(vol.index, pos))
            progress = Progress(pos, clock)
        return changes, progress, wake_at, True
    if action in (SyncAction.RESYNC, SyncAction.RECOVER) and now.sync_completed > progress.last_checkpoint:
        due = progress.recorded_at + interval
        if clock >= due:
            changes.append(SetCheckpoint(vol.index, now.sync_completed))
            progress = Progress(now.sync_completed, clock)
        else:
            wake_at = due
    return changes, progress, wake_at, False


def absent_members(now: ArraySnapshot, vol: Volume) -> list[Member]:
    """Members the metadata holds in sync whose slot md has no device in (mdmon's handle_missing).

    The disk was missing when the array was assembled, or md lost it while no
    monitor ran: either way md will never write to it again, so the metadata
    must stop calling it in sync before the array is let go writable, and a
    spare can take the slot.  Only of a started array, whose slots are md's
    final word (a device keeps its slot while faulty, until it is removed).
    A member recorded rebuilding is the resume path's (``Manager``), not this.
    """
    if not now.array_state.running or vol.level == 0:
        return []
    return [
        m
        for m in vol.members
        if m.state is MemberState.IN_SYNC and m.disk_ref is not None and now.at_slot(m.slot) is None
    ]


def _recovery_position(now: ArraySnapshot, vol: Volume) -> int | None:
    """How far md got onto the rebuild targets: the least ``recovery_start`` of them.

    Spares activated together are rebuilt in one pass and stand at the same
    place; the least is the one bound that is true of every one of them.
    """
    starts = [
        dev.recovery_start
        for dev in now.devs
        if (m := _member(vol, dev.slot)) is not None and m.state is MemberState.REBUILDING and not dev.state.faulty
    ]
    return min(starts) if starts else None


def _member(vol: Volume, slot: int | None) -> Member | None:
    if slot is None:
        return None
    return next((m for m in vol.members if m.slot == slot), None)


def _unique(changes: list[Change]) -> list[Change]:
    seen: list[Change] = []
    for c in changes:
        if c not in seen:
            seen.append(c)
    return seen
