"""The array_state table, row by row (mdmon.md §2.3), and its safety invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formats.changes import EndMigration, FailDisk, MemberInSync, SetCheckpoint, SetDirty, StartResync
from formats.model import Member, MemberState, Migration, MigrationType, Volume, VolumeState
from mdmond.kernel.snapshot import ArraySnapshot, DevSnapshot
from mdmond.kernel.values import MAX_SECTOR, SyncAction, parse_dev_state
from mdmond.kernel.values import ArrayState as S
from mdmond.monitor.rules import Decision, Plan, Progress, decide, plan


@pytest.mark.parametrize(
    ("observed", "previous", "kw", "expected"),
    [
        (S.WRITE_PENDING, S.CLEAN, {}, Decision(dirty=True, write_state=S.ACTIVE)),
        (S.ACTIVE_IDLE, S.ACTIVE, {}, Decision(write_state=S.CLEAN)),
        (S.CLEAN, S.ACTIVE_IDLE, {}, Decision(dirty=False)),
        (S.BROKEN, S.CLEAN, {}, Decision(dirty=False)),
        (S.ACTIVE, S.WRITE_PENDING, {}, Decision()),
        (S.READ_AUTO, S.READONLY, {}, Decision()),
        (S.READONLY, S.INACTIVE, {}, Decision(dirty=False, write_state=S.READ_AUTO)),
        (S.READONLY, S.INACTIVE, {"needs_resync": True}, Decision(dirty=True, write_state=S.ACTIVE)),
        (S.READONLY, S.INACTIVE, {"blocked": True}, Decision()),
        (S.CLEAR, S.CLEAN, {}, Decision(dirty=False, write_state=S.CLEAR, stop=True)),
        (S.INACTIVE, S.ACTIVE, {}, Decision(dirty=False, write_state=S.CLEAR, stop=True)),
        (S.UNREADABLE, S.ACTIVE, {}, Decision(dirty=False, write_state=S.CLEAR, stop=True)),
        (S.INACTIVE, S.INACTIVE, {}, Decision()),  # not yet started: nothing to release
    ],
)
def test_table(observed: S, previous: S, kw: dict[str, bool], expected: Decision) -> None:
    assert decide(observed, previous, **kw) == expected


@pytest.mark.parametrize("observed", list(S))
@pytest.mark.parametrize("previous", list(S))
@pytest.mark.parametrize("needs_resync", [False, True])
def test_never_lets_writes_through_without_recording_dirty(observed: S, previous: S, needs_resync: bool) -> None:
    d = decide(observed, previous, needs_resync=needs_resync)
    if d.write_state is S.ACTIVE:
        assert d.dirty is True, "active is written only with the dirty record ahead of it"
    if d.dirty is False:
        # Clean is recorded only where md itself is (or is about to be) clean/stopped/read-auto.
        assert observed in (S.CLEAN, S.BROKEN, S.READONLY, S.CLEAR, S.INACTIVE, S.UNREADABLE)
    if d.write_state is not None:
        assert d.write_state.writable_by_us


# -- the whole pass (plan) -------------------------------------------------------

VOL = Volume(
    index=0,
    name="vol0",
    uuid="u",
    level=5,
    layout=0,
    raid_disks=3,
    chunk_sectors=256,
    size_sectors=2 * 49152,
    component_sectors=49152,
    members=tuple(Member(i, f"D{i}", MemberState.IN_SYNC) for i in range(3)),
    state=VolumeState.NORMAL,
    dirty=True,
)


def dev(name: str, flags: str, slot: int | None, rs: int = MAX_SECTOR) -> DevSnapshot:
    return DevSnapshot(name, parse_dev_state(flags), slot, rs)


def snap(state: S = S.ACTIVE, *devs: DevSnapshot, empty: tuple[int, ...] = (), **kw: object) -> ArraySnapshot:
    """The array with ``devs``; every other slot of VOL holds an in-sync device unless listed ``empty``."""
    taken = {d.slot for d in devs} | set(empty)
    whole = [dev(f"sd{'abc'[i]}", "in_sync", i) for i in range(VOL.raid_disks) if i not in taken]
    return ArraySnapshot(state, devs=(*devs, *whole), **kw)  # type: ignore[arg-type]


def run(now: ArraySnapshot, before: ArraySnapshot | None = None, vol: Volume = VOL, **kw: object) -> Plan:
    args: dict[str, object] = {"clock": 100.0, "interval": 1.0, **kw}
    progress = args.pop("progress", Progress())
    return plan(now, before or snap(), vol, progress, **args)  # type: ignore[arg-type]


def test_faulty_blocked_member_is_failed_then_unblocked_and_removal_requested() -> None:
    p = run(snap(S.ACTIVE, dev("sda", "in_sync", 0), dev("sdb", "faulty,blocked", 1)))
    assert p.changes == (FailDisk("D1"),)
    assert p.unblock == ("sdb",) and p.remove == ("sdb",) and p.check_degraded


def test_failure_already_recorded_is_not_recorded_again_but_still_unblocked() -> None:
    failed = replace(VOL, members=(VOL.members[0], replace(VOL.members[1], state=MemberState.FAILED), VOL.members[2]))
    p = run(snap(S.ACTIVE, dev("sdb", "faulty,blocked", 1)), vol=failed)
    assert p.changes == () and p.unblock == ("sdb",)


def test_blocked_device_that_names_no_member_stays_blocked() -> None:
    p = run(snap(S.ACTIVE, dev("sdx", "faulty,blocked", None)))
    assert p.unblock == () and p.changes == ()


def test_failure_on_read_auto_array_marks_dirty_and_writes_active() -> None:
    clean = replace(VOL, dirty=False)
    p = run(snap(S.READ_AUTO, dev("sdb", "faulty,blocked", 1)), before=snap(S.READ_AUTO), vol=clean)
    assert p.changes[0] == SetDirty(0, True) and FailDisk("D1") in p.changes
    assert p.write_state is S.ACTIVE
    assert p.remove == ("sdb",)  # read-auto ranks above readonly: md can let it go


REBUILD = replace(
    VOL,
    members=(VOL.members[0], replace(VOL.members[1], disk_ref="D3", state=MemberState.REBUILDING), VOL.members[2]),
    state=VolumeState.DEGRADED,
    migration=Migration(MigrationType.REBUILD, 0),
)


def test_running_recovery_is_checkpointed_no_more_often_than_the_interval() -> None:
    now = snap(S.ACTIVE, dev("sdd", "", 1, 3080), sync_action=SyncAction.RECOVER, sync_completed=3080)
    p = run(now, vol=REBUILD, progress=Progress(0, 99.5), clock=100.0)
    assert p.changes == () and p.wake_at == 100.5  # due later: the loop wakes for it
    p = run(now, vol=REBUILD, progress=Progress(0, 99.0), clock=100.0)
    assert p.changes == (SetCheckpoint(0, 3080),) and p.progress == Progress(3080, 100.0)


def test_interrupted_recovery_records_the_rebuild_targets_position() -> None:
    before = snap(S.ACTIVE, sync_action=SyncAction.RECOVER)
    now = snap(S.ACTIVE, dev("sda", "in_sync", 0), dev("sdd", "", 1, 12288), sync_action=SyncAction.IDLE)
    p = run(now, before, vol=REBUILD, progress=Progress(6160, 0.0))
    assert p.changes == (SetCheckpoint(0, 12288),) and p.check_degraded


def test_finished_recovery_puts_the_member_in_sync_even_after_a_missed_transition() -> None:
    now = snap(S.ACTIVE, dev("sda", "in_sync", 0), dev("sdd", "in_sync", 1), sync_action=SyncAction.IDLE)
    p = run(now, now, vol=REBUILD, progress=Progress(40000, 0.0))
    assert p.changes == (MemberInSync(0, 1),) and p.progress == Progress()


def test_resync_md_started_is_recorded_then_closed_when_resync_start_is_none() -> None:
    p = run(snap(S.ACTIVE, sync_action=SyncAction.RESYNC, resync_start=0))
    assert p.changes == (StartResync(0),)
    resyncing = replace(VOL, migration=Migration(MigrationType.REPAIR, 0))
    p = run(snap(S.ACTIVE, sync_action=SyncAction.IDLE), snap(S.ACTIVE, sync_action=SyncAction.RESYNC), vol=resyncing)
    assert p.changes == (EndMigration(0),)


def test_an_initial_resync_finished_unseen_is_recorded_as_initialised() -> None:
    """Seen on the real kernel: a 24 MiB RAID1's first resync ended before any pass saw it."""
    fresh = replace(VOL, state=VolumeState.UNINITIALIZED)
    synced = snap(S.ACTIVE, sync_action=SyncAction.IDLE)  # resync_start none: md has nothing left
    assert run(synced, synced, vol=fresh).changes == (StartResync(0), EndMigration(0))
    # not while md still owes it, nor before the array is writable (readonly: the readonly rule decides)
    assert run(snap(S.ACTIVE, sync_action=SyncAction.IDLE, resync_start=0), vol=fresh).changes == ()
    assert EndMigration(0) not in run(snap(S.READ_AUTO, sync_action=SyncAction.IDLE), vol=fresh).changes


def test_clean_is_withheld_while_a_resync_is_owed_and_the_format_cannot_record_it() -> None:
    ddf_like = replace(VOL, migration=Migration(MigrationType.INIT, None))  # no checkpoint in this format
    p = run(snap(S.CLEAN, resync_start=1024), vol=ddf_like)
    assert SetDirty(0, False) not in p.changes
    imsm_like = replace(VOL, migration=Migration(MigrationType.INIT, 0))
    assert SetDirty(0, False) in run(snap(S.CLEAN, resync_start=1024), vol=imsm_like).changes


def test_stop_records_clean_and_does_nothing_else() -> None:
    p = run(ArraySnapshot(S.INACTIVE), snap(S.ACTIVE, dev("sdb", "faulty,blocked", 1)))
    assert p.stop and p.changes == (SetDirty(0, False),) and p.write_state is S.CLEAR and p.unblock == ()


def test_mdadm_freeze_for_grow_is_refused_and_nothing_else_is() -> None:
    """mdadm's --grow freezes (sync_action frozen) and blocks (external:-): mdmond cannot carry it."""
    assert run(snap(S.CLEAN, sync_action=SyncAction.FROZEN, blocked=True)).refuse_reshape
    assert run(snap(S.ACTIVE, sync_action=SyncAction.FROZEN, blocked=True)).refuse_reshape
    assert not run(snap(S.CLEAN, sync_action=SyncAction.FROZEN)).refuse_reshape  # a freeze of our own, or --add's
    assert not run(snap(S.READONLY, blocked=True)).refuse_reshape  # mdadm keeps a readonly array: leave it


def test_member_missing_from_a_started_array_is_recorded_failed_and_a_spare_asked_for() -> None:
    """Assembled without sdb (mdadm -I --run): slot 1 has no device, the metadata says in sync."""
    p = run(snap(S.READ_AUTO, empty=(1,)), before=ArraySnapshot(S.INACTIVE))
    assert p.changes == (FailDisk("D1"),) and p.check_degraded
    # a faulty device still holds its slot: the failure path records it, once
    p = run(snap(S.ACTIVE, dev("sdb", "faulty", 1)))
    assert p.changes == (FailDisk("D1"),)
    # nothing for an array not started yet, a member already failed, or a RAID0
    assert run(ArraySnapshot(S.INACTIVE), before=ArraySnapshot(S.INACTIVE)).changes == ()
    failed = replace(VOL, members=(VOL.members[0], replace(VOL.members[1], state=MemberState.FAILED), VOL.members[2]))
    assert run(snap(S.ACTIVE, empty=(1,)), vol=failed).changes == ()
    assert run(snap(S.ACTIVE, empty=(1,)), vol=replace(VOL, level=0)).changes == ()
