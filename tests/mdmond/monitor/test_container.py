"""The container monitor against the simulated md driver, over real IMSM metadata.

Every transition of mdmon.md §2.3-2.7, and failures in each step; the
ordering invariants are checked by ``rig.CheckedArray`` as they happen.
"""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from formats.changes import ActivateSpare, AddSpare, SetDirty
from formats.errors import ChangeRejected
from formats.model import MemberState, MigrationType, VolumeState
from mdmond.kernel.values import MAX_SECTOR, SyncAction
from mdmond.kernel.values import ArrayState as S

from .rig import Rig, make_rig


async def running(rig: Rig, body):  # type: ignore[no-untyped-def]
    """Run the kernel side and the monitor around ``body``; return what it returns."""
    result = None
    async with trio.open_nursery() as n:
        n.start_soon(rig.md.run)
        await n.start(rig.monitor.run)
        result = await body()
        n.cancel_scope.cancel()
    assert rig.md.violations == []
    return result


async def test_write_to_clean_array_is_released_only_after_dirty_is_on_disk(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        await trio.sleep(1)
        with trio.fail_after(0.001):  # simulated time: the monitor answers at once
            await rig.md.submit_write()
        assert rig.model().volume(0).dirty
        await trio.sleep(10)  # idle past safe_mode_delay
        assert rig.md.array_state is S.CLEAN
        assert not rig.model().volume(0).dirty

    await running(rig, body)
    assert rig.md.history == [S.CLEAN, S.WRITE_PENDING, S.ACTIVE, S.ACTIVE_IDLE, S.CLEAN]
    assert rig.monitor.events.kinds().count("metadata") == 2


async def test_concurrent_writers_share_one_dirty_record(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        async with trio.open_nursery() as writers:
            for i in range(20):
                writers.start_soon(rig.md.submit_write, 0.01 * i)

    await running(rig, body)
    assert rig.store.commits == 1


async def test_dirty_clean_cycle_writes_few_sectors(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> int:
        await rig.md.submit_write(0.1)
        await trio.sleep(10)
        before = rig.store.bytes_written
        await rig.md.submit_write(0.1)
        await trio.sleep(10)
        return rig.store.bytes_written - before

    cycle = await running(rig, body)
    assert rig.store.commits == 4
    assert 0 < cycle <= 2 * 2 * 512 * len(rig.disks)  # two flips, at most two sectors per disk each


async def test_stopped_array_is_marked_clean_and_released(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5", state=S.ACTIVE, safe_mode_delay=0)

    async def body() -> None:
        await rig.md.submit_write()
        await trio.testing.wait_all_tasks_blocked()
        rig.md.write("array_state", "inactive")  # mdadm --stop
        await trio.testing.wait_all_tasks_blocked()

    await running(rig, body)
    assert rig.monitor.arrays == {}
    assert rig.md.array_state is S.CLEAR
    assert not rig.model().volume(0).dirty


async def test_takeover_of_readonly_array_goes_read_auto(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5", state=S.READONLY)
    await rig.monitor.pass_once()
    assert rig.md.array_state is S.READ_AUTO
    assert rig.store.commits == 0  # already clean on disk


async def test_readonly_array_blocked_by_mdadm_is_left_alone(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5", state=S.READONLY)
    rig.md.metadata_version = "external:-md127/0"
    await rig.monitor.pass_once()
    assert rig.md.array_state is S.READONLY


async def test_mdadm_freeze_for_grow_is_undone_at_its_ping_and_reported(autojump_clock: MockClock) -> None:
    """mdadm 4.2's block_monitor: freeze, set external:-, ping, then it needs sync_action to read frozen."""
    rig = make_rig("imsm-raid5")
    await rig.monitor.pass_once()
    before = rig.store.commits
    rig.md.write("sync_action", "frozen")
    rig.md.write("metadata_version", "external:-md127/0")
    await rig.monitor.pass_once()  # what mdadm's ping waits for
    assert rig.md.read("sync_action").strip() == "idle"  # mdadm: "failed to freeze", exit 1
    refused = [e.fields for e in rig.monitor.events.records if e.kind == "update-refused"]
    assert len(refused) == 1 and refused[0]["operation"] == "reshape" and refused[0]["array"] == rig.md.name
    assert rig.store.commits == before  # nothing recorded for it


async def test_a_freeze_the_manager_holds_is_not_undone(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")
    rig.monitor.held.add(rig.md.name)
    rig.md.write("sync_action", "frozen")
    rig.md.write("metadata_version", "external:-md127/0")
    await rig.monitor.pass_once()
    assert rig.md.read("sync_action").strip() == "frozen"
    assert "update-refused" not in rig.monitor.events.kinds()


async def test_readonly_array_owing_a_resync_goes_active_and_dirty(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid1-resync-killed", state=S.READONLY, resync_start=37376)
    await rig.monitor.pass_once()
    assert rig.md.array_state is S.ACTIVE
    assert rig.model().volume(0).dirty


async def test_failed_member_is_recorded_before_writes_are_released(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        await rig.md.submit_write(0.1)
        rig.md.fail_device("sdb")
        with trio.fail_after(0.001):
            await rig.md.submit_write()  # held by md until -blocked

    await running(rig, body)
    m = rig.model()
    assert m.volume(0).member(1).state is MemberState.FAILED
    assert m.volume(0).state is VolumeState.DEGRADED
    assert "blocked" not in rig.md.devs["sdb"].flags
    kinds = [(r.kind, r.device) for r in rig.requests]
    assert ("remove", "sdb") in kinds and ("spare", None) in kinds


@pytest.mark.parametrize("when", ["before-writes", "under-writes"])
async def test_failure_on_a_clean_array_under_write_load_is_recorded_then_ends_clean(
    when: str, autojump_clock: MockClock
) -> None:
    # md's error handler sets MD_SB_CHANGE_PENDING: the clean array reads write-pending (Debian
    # 6.1, tests/vm/test_sysfs_driver.py) and holds every write until "active" and "-blocked".
    rig = make_rig("imsm-raid5")
    finished: list[int] = []

    async def writer(i: int) -> None:
        await rig.md.submit_write(0.05)
        finished.append(i)

    async def body() -> None:
        await trio.sleep(1)
        assert rig.md.array_state is S.CLEAN and not rig.model().volume(0).dirty
        async with trio.open_nursery() as load:
            if when == "before-writes":
                rig.md.fail_device("sdb")  # clean: nothing in flight yet
            for i in range(40):
                load.start_soon(writer, i)
                await trio.sleep(0.02)
                if when == "under-writes" and i == 10:
                    rig.md.fail_device("sdb")  # writes in flight and waiting
        with trio.fail_after(1):
            while len(finished) < 40:
                await trio.sleep(0.01)
        vol = rig.model().volume(0)
        assert vol.member(1).state is MemberState.FAILED and vol.state is VolumeState.DEGRADED
        assert vol.dirty  # writes went on after the failure
        await trio.sleep(10)  # idle past safe_mode_delay

    await running(rig, body)
    assert sorted(finished) == list(range(40))
    assert rig.md.violations == []  # dirty on disk before active, failure on disk before -blocked
    assert "blocked" not in rig.md.devs["sdb"].flags
    # The failure's write-pending: at once on the clean array, or after the first writes' cycle.
    start = (
        [S.CLEAN, S.WRITE_PENDING, S.ACTIVE] if when == "before-writes" else [S.CLEAN, *[S.WRITE_PENDING, S.ACTIVE] * 2]
    )
    assert rig.md.history[: len(start)] == start, rig.md.history
    assert rig.md.history[-2:] == [S.ACTIVE_IDLE, S.CLEAN]
    assert rig.md.array_state is S.CLEAN
    assert not rig.model().volume(0).dirty and rig.model().volume(0).member(1).state is MemberState.FAILED
    # One pass answered the failure: the record, then active, then -blocked.
    events = [(e.kind, e.fields.get("state")) for e in rig.monitor.events.records]
    unblocked = events.index(("unblocked", None))
    assert ("state-written", "active") in events[:unblocked]
    assert any(k == "metadata" for k, _ in events[:unblocked])


async def test_failure_on_an_idle_clean_array_is_recorded_and_left_clean(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        await trio.sleep(1)
        rig.md.fail_device("sdb")
        await trio.sleep(10)

    await running(rig, body)
    # write-pending -> dirty on disk, active -> reads clean again -> clean on disk
    assert rig.md.history == [S.CLEAN, S.WRITE_PENDING, S.CLEAN]
    vol = rig.model().volume(0)
    assert vol.member(1).state is MemberState.FAILED and not vol.dirty
    assert "blocked" not in rig.md.devs["sdb"].flags


async def test_failure_on_a_read_auto_array_makes_it_writable(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5", state=S.READ_AUTO)
    rig.md.fail_device("sdc")
    await rig.monitor.pass_once()
    assert rig.md.array_state is S.ACTIVE
    assert rig.model().volume(0).member(2).state is MemberState.FAILED
    assert rig.model().volume(0).dirty


async def test_metadata_write_failure_keeps_md_waiting_then_retries(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")
    rig.fail_writes.extend([0, 0])  # the first two commits fail

    async def body() -> float:
        t0 = trio.current_time()
        await rig.md.submit_write(0.1)
        return trio.current_time() - t0

    waited = await running(rig, body)
    assert waited > 0  # the write stayed blocked through the failed commits
    assert rig.monitor.events.kinds().count("commit-failed") == 2
    assert rig.model().volume(0).dirty


async def test_attribute_write_failure_is_retried(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")
    rig.md.inject_write_error("array_state", errno.EIO)

    async def body() -> None:
        await rig.md.submit_write(0.1)

    await running(rig, body)
    assert "attr-write-failed" in rig.monitor.events.kinds()
    assert rig.md.array_state in (S.ACTIVE, S.ACTIVE_IDLE)


async def test_spare_rebuild_checkpoints_at_a_bounded_rate_then_completes(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5-spare", checkpoint_interval=2.0, sync_speed=20480)
    vol_size = rig.store.model().volume(0).component_sectors
    checkpoints: list[int] = []

    async def body() -> None:
        await rig.md.submit_write(0.1)
        rig.md.fail_device("sdb")
        await trio.testing.wait_all_tasks_blocked()
        # The manager's part: the spare joins the volume (queue), then md gets it.
        await rig.monitor.queue.submit([ActivateSpare(0, 1, "MDVM00000003")])
        rig.md.write("dev-sdb/state", "remove")
        rig.md.add_spare("sdd")
        rig.md.refs["sdd"] = "MDVM00000003"
        rig.md.write("dev-sdd/slot", "1")
        rig.md.write("dev-sdd/recovery_start", "0")
        while rig.md.sync_action is not SyncAction.RECOVER:
            await trio.sleep(0.01)
        while rig.md.sync_action is SyncAction.RECOVER:
            await trio.sleep(0.5)
            mig = rig.store.model().volume(0).migration
            if mig and mig.checkpoint_sectors and (not checkpoints or checkpoints[-1] != mig.checkpoint_sectors):
                checkpoints.append(mig.checkpoint_sectors)
        await trio.testing.wait_all_tasks_blocked()

    await running(rig, body)
    seconds = vol_size / 20480
    assert 2 <= len(checkpoints) <= seconds / 2 + 2  # bounded by the interval
    assert checkpoints == sorted(checkpoints)
    vol = rig.model().volume(0)
    assert vol.member(1).disk_ref == "MDVM00000003"
    assert vol.member(1).state is MemberState.IN_SYNC
    assert vol.state is VolumeState.NORMAL and vol.migration is None


async def test_interrupted_rebuild_records_md_position_when_sync_goes_idle(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5-rebuild-stopped", state=S.READONLY, checkpoint_interval=1000.0)
    start = rig.store.model().volume(0).migration
    assert start is not None and start.type is MigrationType.REBUILD

    async def body() -> None:
        while rig.md.sync_action is not SyncAction.RECOVER:
            await trio.sleep(0.01)
        await trio.sleep(0.5)
        rig.md.write("sync_action", "frozen")
        await trio.testing.wait_all_tasks_blocked()

    await running(rig, body)
    mig = rig.model().volume(0).migration
    assert mig is not None and mig.checkpoint_sectors is not None
    assert mig.checkpoint_sectors > (start.checkpoint_sectors or 0)
    assert mig.checkpoint_sectors <= rig.md.devs["sdd"].recovery_start


async def test_resync_is_recorded_checkpointed_and_closed(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid1", state=S.READONLY, resync_start=0)

    async def body() -> list[MigrationType | None]:
        seen = []
        while True:
            await trio.sleep(0.5)
            mig = rig.store.model().volume(0).migration
            seen.append(mig.type if mig else None)
            if rig.md.resync_start == MAX_SECTOR and rig.md.sync_action is SyncAction.IDLE:
                break
        await trio.testing.wait_all_tasks_blocked()
        return seen

    seen = await running(rig, body)
    assert MigrationType.REPAIR in seen
    assert rig.model().volume(0).migration is None


async def test_queued_update_refused_alone(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        async def bad() -> None:
            with pytest.raises(ChangeRejected):
                await rig.monitor.queue.submit([SetDirty(9, True)])

        async with trio.open_nursery() as n:
            n.start_soon(bad)
            n.start_soon(rig.monitor.queue.submit, [AddSpare("NEWDISK", 200000)])

    await running(rig, body)
    assert "NEWDISK" in {d.ref for d in rig.store.model().disks}
    assert "update-refused" in rig.monitor.events.kinds()


async def test_ping_returns_after_a_whole_later_pass_with_queued_updates_committed(autojump_clock: MockClock) -> None:
    rig = make_rig("imsm-raid5")

    async def body() -> None:
        async def producer() -> None:
            await rig.monitor.queue.submit([AddSpare("PINGDISK", 200000)])

        async with trio.open_nursery() as n:
            n.start_soon(producer)
            await trio.testing.wait_all_tasks_blocked()
            begun = rig.monitor.passes
            await rig.monitor.ping()
            assert rig.monitor.finished > begun
            assert "PINGDISK" in {d.ref for d in rig.store.model().disks}  # committed

    await running(rig, body)
