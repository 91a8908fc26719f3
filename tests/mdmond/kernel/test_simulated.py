"""The simulated array's array_state machine, against md.rst and mdmon.md §2.3/§7.1.

These pin the documented kernel behaviour; the recorded real-kernel transcripts
(test bed, issue 3) will replay against the same simulator.
"""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from mdmond.kernel.simulated import SimArray
from mdmond.kernel.values import ArrayState as S


def state(a: SimArray) -> S:
    """array_state read afresh (a call, so a type checker keeps no narrowing from an earlier read)."""
    return a.array_state


async def test_write_to_clean_array_waits_for_active(autojump_clock: trio.testing.MockClock) -> None:
    a = SimArray("md126")
    done = trio.Event()

    async def writer() -> None:
        await a.submit_write(0.01)
        done.set()

    async with trio.open_nursery() as n:
        n.start_soon(writer)
        await a.wait_change()
        assert a.array_state is S.WRITE_PENDING
        await trio.sleep(3600)  # nothing but user space can release it
        assert not done.is_set() and a.array_state is S.WRITE_PENDING
        a.write("array_state", "active")
        await done.wait()
    assert a.history == [S.CLEAN, S.WRITE_PENDING, S.ACTIVE]


async def test_idle_array_goes_active_idle_after_safe_mode_delay_then_clean(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126", state=S.ACTIVE, safe_mode_delay=5.0)
    async with trio.open_nursery() as n:
        n.start_soon(a.run)
        t0 = trio.current_time()
        await a.wait_change()
        assert a.array_state is S.ACTIVE_IDLE  # notified: external metadata must react
        assert trio.current_time() - t0 == pytest.approx(5.0)
        a.write("array_state", "clean")
        assert state(a) is S.CLEAN
        n.cancel_scope.cancel()


async def test_write_during_active_idle_returns_to_active_unnotified(autojump_clock: trio.testing.MockClock) -> None:
    a = SimArray("md126", state=S.ACTIVE_IDLE)
    notified = False

    async def watch() -> None:
        nonlocal notified
        await a.wait_change()
        notified = True

    async with trio.open_nursery() as n:
        n.start_soon(watch)
        await trio.sleep(0)
        await a.submit_write()
        await trio.sleep(1)
        assert a.array_state is S.ACTIVE and not notified
        n.cancel_scope.cancel()


async def test_clean_is_refused_while_writes_are_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    a = SimArray("md126", state=S.ACTIVE)
    async with trio.open_nursery() as n:
        n.start_soon(a.submit_write, 10.0)
        await trio.sleep(1)
        with pytest.raises(OSError) as e:
            a.write("array_state", "clean")
        assert e.value.errno == errno.EBUSY
    a.write("array_state", "clean")
    assert a.array_state is S.CLEAN


@pytest.mark.parametrize("word", ["write-pending", "active-idle", "suspended", "broken", "bogus"])
def test_kernel_only_states_cannot_be_written(word: str) -> None:
    a = SimArray("md126")
    with pytest.raises(OSError) as e:
        a.write("array_state", word + "\n")
    assert e.value.errno == errno.EINVAL
    assert a.array_state is S.CLEAN


async def test_read_auto_array_goes_write_pending_on_first_write(autojump_clock: trio.testing.MockClock) -> None:
    a = SimArray("md126", state=S.READ_AUTO)
    async with trio.open_nursery() as n:
        n.start_soon(a.submit_write)
        await a.wait_change()
        assert a.array_state is S.WRITE_PENDING
        a.write("array_state", "active")
    assert state(a) is S.ACTIVE


async def test_readonly_array_refuses_writes() -> None:
    a = SimArray("md126", state=S.READONLY)
    with pytest.raises(OSError) as e:
        await a.submit_write()
    assert e.value.errno == errno.EROFS


def test_attributes_read_as_sysfs_prints_them() -> None:
    a = SimArray("md126", safe_mode_delay=5.0)
    assert a.read("array_state") == "clean\n"
    assert a.read("safe_mode_delay") == "5.000\n"
    with pytest.raises(OSError):
        a.read("nonexistent")


# -- members, failures and the sync thread ----------------------------------------


async def test_failed_member_holds_writes_until_unblocked_then_leaves_its_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126", state=S.ACTIVE, level=5, devices=("sda", "sdb", "sdc"))
    a.fail_device("sdb")
    assert a.read("dev-sdb/state") == "faulty,blocked\n" and a.read("degraded") == "1\n"
    # The error handler sets MD_SB_CHANGE_PENDING (tests/vm/test_sysfs_driver.py on Debian 6.1:
    # after --fail the array reads write-pending until user space writes "active").
    assert a.read("array_state") == "write-pending\n"
    with pytest.raises(OSError) as e:
        a.write("dev-sdb/state", "remove")
    assert e.value.errno == errno.EBUSY
    async with trio.open_nursery() as n:
        n.start_soon(a.submit_write)
        await trio.sleep(100)
        assert a._in_flight == 1  # held: the failure is not acknowledged
        a.write("dev-sdb/state", "-blocked")
        await trio.sleep(100)
        assert a._in_flight == 1  # still held: md_write_start waits for MD_SB_CHANGE_PENDING to clear
        a.write("array_state", "active")
    assert a.array_state is S.ACTIVE
    assert a.read("dev-sdb/slot") == "none\n"
    a.write("dev-sdb/state", "remove")
    assert a.devices() == ("dev-sda", "dev-sdc")


async def test_active_alone_does_not_release_writes_to_a_blocked_member(autojump_clock: trio.testing.MockClock) -> None:
    a = SimArray("md126", state=S.ACTIVE, level=5, devices=("sda", "sdb", "sdc"))
    a.fail_device("sdb")
    async with trio.open_nursery() as n:
        n.start_soon(a.submit_write)
        await trio.sleep(1)
        a.write("array_state", "active")
        await trio.sleep(100)
        assert a._in_flight == 1  # md_wait_for_blocked_rdev: the failure is not recorded yet
        a.write("dev-sdb/state", "-blocked")
    assert a._in_flight == 0


async def test_failure_on_a_clean_array_reads_write_pending_then_clean_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # As on Debian 6.1 (tests/vm/test_sysfs_driver.py): clean, --fail, write-pending; "-blocked"
    # and "remove" work while it is pending; "active" clears the pending bit, in_sync is untouched.
    a = SimArray("md126")
    a.read("array_state")
    a.fail_device("sdb")
    await a.wait_change()  # notified
    assert a.read("array_state") == "write-pending\n"
    a.write("dev-sdb/state", "-blocked")
    a.write("dev-sdb/state", "remove")
    assert a.array_state is S.WRITE_PENDING
    a.write("array_state", "active")
    assert state(a) is S.CLEAN
    assert a.history == [S.CLEAN, S.WRITE_PENDING, S.CLEAN]


async def test_write_arriving_while_a_failure_is_pending_leaves_the_array_active(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126")
    a.fail_device("sdb")
    a.write("dev-sdb/state", "-blocked")
    async with trio.open_nursery() as n:
        n.start_soon(a.submit_write)
        await trio.sleep(1)
        assert a.array_state is S.WRITE_PENDING and a._in_flight == 1
        with pytest.raises(OSError) as e:
            a.write("array_state", "clean")  # the waiting writer counts in writes_pending
        assert e.value.errno == errno.EBUSY
        a.write("array_state", "active")
    assert state(a) is S.ACTIVE  # md_write_start cleared in_sync


async def test_write_in_flight_across_a_failure_completes_only_after_active(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126", state=S.ACTIVE)
    done = trio.Event()

    async def writer() -> None:
        await a.submit_write(1.0)
        done.set()

    async with trio.open_nursery() as n:
        n.start_soon(writer)
        await trio.sleep(0.5)
        a.fail_device("sdb")
        await trio.sleep(100)
        assert not done.is_set()  # raid1d holds bio_end_io_list while MD_SB_CHANGE_PENDING is set
        a.write("array_state", "active")
    assert done.is_set()


async def test_failure_on_a_read_auto_array_shows_read_auto() -> None:
    a = SimArray("md126", state=S.READ_AUTO)
    a.fail_device("sdb")
    assert a.array_state is S.READ_AUTO  # array_state_show tests ro before the pending bit


def test_failure_on_a_raid0_sets_no_pending_change() -> None:
    a = SimArray("md126", level=0)
    a.fail_device("sdb")
    assert a.array_state is S.CLEAN  # raid0 sets no sb_flags


async def test_recovery_onto_a_new_member_publishes_progress_and_ends_in_sync(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126", state=S.ACTIVE, level=5, devices=("sda", "sdb", "sdc"), component_sectors=49152)
    a.fail_device("sdb")
    a.write("dev-sdb/state", "-blocked")
    a.write("dev-sdb/state", "remove")
    a.add_spare("sdd")
    a.write("dev-sdd/slot", "1")
    a.write("dev-sdd/recovery_start", "0")
    a.read("array_state")  # consume the notifications so far
    seen = []
    async with trio.open_nursery() as n:
        n.start_soon(a.run)
        while True:
            await a.wait_change()
            a.read("array_state")
            seen.append((a.read("sync_action").strip(), a.read("sync_completed").strip()))
            if seen[-1][0] == "idle" and len(seen) > 1:
                break
        n.cancel_scope.cancel()
    assert seen[0] == ("recover", "0 / 49152")
    assert seen[1] == ("recover", "3072 / 49152")  # 1/16 of the device per notification
    assert seen[-1] == ("idle", "none")
    assert a.read("dev-sdd/state") == "in_sync\n" and a.read("dev-sdd/recovery_start") == "none\n"
    assert a.read("degraded") == "0\n"


async def test_interrupted_resync_keeps_its_position_and_resumes_from_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = SimArray("md126", state=S.ACTIVE, component_sectors=16 * 1024, resync_start=0, sync_speed=1024)
    async with trio.open_nursery() as n:
        n.start_soon(a.run)
        await trio.sleep(5.5)
        a.write("sync_action", "frozen")
        await trio.sleep(1)
        assert a.read("sync_action") == "frozen\n" and a.read("resync_start") == "5120\n"
        a.write("sync_action", "resync")
        await trio.testing.wait_all_tasks_blocked()
        assert a.read("sync_completed") == "5120 / 16384\n"
        await trio.sleep(20)
        n.cancel_scope.cancel()
    assert a.read("resync_start") == "none\n" and a.read("sync_action") == "idle\n"


def test_injected_attribute_write_error_fails_that_write_only() -> None:
    a = SimArray("md126", state=S.ACTIVE)
    a.inject_write_error("array_state", errno.EIO)
    with pytest.raises(OSError) as e:
        a.write("array_state", "clean")
    assert e.value.errno == errno.EIO
    a.write("array_state", "clean")
    assert a.array_state is S.CLEAN
