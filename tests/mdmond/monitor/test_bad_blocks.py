"""A write error on an IMSM member with ``external_bbl`` (issue 11, item 3: one bad sector hung the array).

md lists the range as unacknowledged and holds the member blocked until user
space acts.  The monitor records the range on every disk, only then
acknowledges it (``bad_blocks``) and writes ``-blocked``; a range the
metadata cannot keep fails the member instead, so it is never left blocked.
The ordering is checked as it happens by ``rig.CheckedArray``.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from formats.changes import RecordBadBlock
from formats.imsm import structs as S
from formats.model import MemberState
from mdmond.kernel.simulated import SimArray
from mdmond.kernel.snapshot import read_snapshot
from mdmond.kernel.values import ArrayState

from .rig import Rig, make_rig
from .test_container import running


def _bbl_rig(scenario: str = "imsm-raid5") -> tuple[Rig, str]:
    rig = make_rig(scenario)
    for d in rig.md.devs.values():
        d.flags.add("external_bbl")  # mdadm sets it on every IMSM member
    victim = next(name for name, d in rig.md.devs.items() if d.slot == 2)
    return rig, victim


async def test_bad_block_is_on_disk_before_it_is_acknowledged_and_released(autojump_clock: MockClock) -> None:
    rig, victim = _bbl_rig()

    async def body() -> None:
        await rig.md.submit_write()
        rig.md.media_error(victim, 8200, 8)
        assert "blocked" in rig.md.read(f"dev-{victim}/state")
        with trio.fail_after(1):  # a hang fails the test
            await rig.md.submit_write()
            await rig.monitor.ping()

    await running(rig, body)
    d = rig.md.devs[victim]
    assert (d.unacked, d.acked) == ([], [(8200, 8)])
    assert not d.holds_io and "faulty" not in d.flags
    assert rig.md.read(f"dev-{victim}/state").strip() == "in_sync,write_error,want_replacement,external_bbl"
    assert rig.md.bad_blocks_on_disk(victim) == {(8200, 8)}
    vol = rig.model().volume(0)
    assert all(m.state is MemberState.IN_SYNC for m in vol.members)
    kinds = rig.monitor.events.kinds()
    assert "bad-block-recorded" in kinds and "bad-block-refused" not in kinds
    recorded = [e for e in rig.monitor.events.records if e.kind == "bad-block-recorded"]
    assert [(e.fields["device"], e.fields["sector"], e.fields["length"]) for e in recorded] == [(victim, 8200, 8)]


async def test_writes_wait_while_the_record_cannot_be_written(autojump_clock: MockClock) -> None:
    rig, victim = _bbl_rig()
    done: list[float] = []

    async def body() -> None:
        await rig.md.submit_write()
        await trio.sleep(10)  # clean again
        rig.fail_writes[:] = [0, 1]  # the next two commits fail on disk
        rig.md.media_error(victim, 8200, 8)

        async def writer() -> None:
            await rig.md.submit_write()
            done.append(trio.current_time())

        start = trio.current_time()
        with trio.fail_after(30):  # simulated: retries come within a second, a hang fails the test
            async with trio.open_nursery() as n:
                n.start_soon(writer)
                await trio.sleep(0.01)
                assert not done  # held while the range is not on disk
                assert rig.md.devs[victim].unacked == [(8200, 8)]
        assert done and done[0] > start

    await running(rig, body)
    assert rig.md.devs[victim].acked == [(8200, 8)]
    assert "commit-failed" in rig.monitor.events.kinds()


async def test_full_log_fails_the_member_instead_of_leaving_it_blocked(autojump_clock: MockClock) -> None:
    rig, victim = _bbl_rig()
    ref = rig.md.refs[victim]
    await rig.store.commit([RecordBadBlock(ref, 100_000 + 16 * i, 1) for i in range(S.BBM_LOG_MAX_ENTRIES)])

    async def body() -> None:
        rig.md.media_error(victim, 8200, 8)
        with trio.fail_after(1):
            await rig.md.submit_write()
            await rig.monitor.ping()
            await rig.monitor.ping()

    await running(rig, body)
    d = rig.md.devs.get(victim)
    assert d is None or ("faulty" in d.flags and not d.holds_io)
    vol = rig.model().volume(0)
    assert vol.members[2].state is MemberState.FAILED
    refused = [e for e in rig.monitor.events.records if e.kind == "bad-block-refused"]
    assert [(e.fields["device"], e.fields["sector"], e.fields["length"]) for e in refused] == [(victim, 8200, 8)]
    assert "BBM log is full" in str(refused[0].fields["error"])
    assert "bad-block-recorded" not in rig.monitor.events.kinds()


@pytest.mark.parametrize("external_bbl", [True, False])
async def test_ddf_member_is_failed(autojump_clock: MockClock, external_bbl: bool) -> None:
    """DDF keeps no bad-block log: refused if md shows external_bbl; without it md fails the device itself."""
    rig = make_rig("ddf-raid5")
    victim = next(name for name, d in rig.md.devs.items() if d.slot == 2)
    if external_bbl:
        rig.md.devs[victim].flags.add("external_bbl")

    async def body() -> None:
        await rig.md.submit_write()
        rig.md.media_error(victim, 8200, 8)
        with trio.fail_after(1):
            await rig.md.submit_write()
            await rig.monitor.ping()

    await running(rig, body)
    d = rig.md.devs.get(victim)
    assert d is None or ("faulty" in d.flags and not d.holds_io)
    assert rig.model().volume(0).members[2].state is MemberState.FAILED
    assert ("bad-block-refused" in rig.monitor.events.kinds()) is external_bbl


async def test_refused_faulty_falls_back_to_turning_external_bbl_off(autojump_clock: MockClock) -> None:
    """md may refuse ``faulty`` (the last working member): the device is then released all the same."""
    rig, victim = _bbl_rig()
    ref = rig.md.refs[victim]
    await rig.store.commit([RecordBadBlock(ref, 100_000 + 16 * i, 1) for i in range(S.BBM_LOG_MAX_ENTRIES)])
    rig.md.inject_write_error(f"dev-{victim}/state")  # the "faulty" write fails

    async def body() -> None:
        rig.md.media_error(victim, 8200, 8)
        with trio.fail_after(1):
            await rig.md.submit_write()
            await rig.monitor.ping()

    await running(rig, body)
    failed = [e for e in rig.monitor.events.records if e.kind == "member-failed"]
    assert failed and "external_bbl turned off" in str(failed[0].fields["detail"])
    d = rig.md.devs.get(victim)
    # state_store: -blocked with unacknowledged ranges and external_bbl off fails the device
    assert d is None or ("faulty" in d.flags and not d.holds_io)


class CountingArray(SimArray):
    def __init__(self, **kw: object) -> None:
        super().__init__("md126", **kw)  # type: ignore[arg-type]
        self.reads: list[str] = []

    def read(self, attr: str) -> str:
        self.reads.append(attr)
        return super().read(attr)


@pytest.mark.parametrize(
    ("recorded", "cleared", "left"),
    [
        ([(8200, 8)], (8200, 8), set()),  # md rewrote the sectors: the log forgets the range
        ([(8200, 8), (9000, 16)], (9000, 16), {(8200, 8)}),  # only that range
        ([(8200, 16)], (8208, 8), {(8200, 8)}),  # half of it: the rest is recorded again
    ],
)
async def test_a_bad_block_md_clears_is_cleared_in_the_metadata(
    autojump_clock: MockClock, recorded: list[tuple[int, int]], cleared: tuple[int, int], left: set[tuple[int, int]]
) -> None:
    """check_for_cleared_bb: what md no longer lists is no longer recorded; the member stays in service."""
    rig, victim = _bbl_rig()

    async def body() -> None:
        for sector, length in recorded:
            rig.md.media_error(victim, sector, length)
            with trio.fail_after(1):
                await rig.md.submit_write()
                await rig.monitor.ping()
        assert rig.md.bad_blocks_on_disk(victim) == set(recorded)
        rig.md.clear_bad_blocks(victim, *cleared)
        await rig.monitor.ping()
        await rig.monitor.ping()

    await running(rig, body)
    assert rig.md.bad_blocks_on_disk(victim) == left
    assert sorted(rig.md.devs[victim].acked) == sorted(left)
    assert "faulty" not in rig.md.devs[victim].flags


async def test_bad_block_lists_are_read_only_of_a_blocked_member(autojump_clock: MockClock) -> None:
    md = CountingArray(devices=("sda", "sdb", "sdc"), level=5)
    for d in md.devs.values():
        d.flags.add("external_bbl")
    async with trio.open_nursery() as n:
        n.start_soon(md.submit_write)
        await trio.testing.wait_all_tasks_blocked()
        assert md.array_state is ArrayState.WRITE_PENDING
        snap = read_snapshot(md)
        assert not any("bad_blocks" in a for a in md.reads)  # the hot path reads no list
        assert all(d.unacked is None for d in snap.devs)
        md.media_error("sdc", 8200, 8)
        snap = read_snapshot(md)
        assert [a for a in md.reads if "bad_blocks" in a] == ["dev-sdc/unacknowledged_bad_blocks"]
        assert snap.dev("sdc").unacked == ((8200, 8),)  # type: ignore[union-attr]
        n.cancel_scope.cancel()


def test_simulated_acknowledgement_follows_md() -> None:
    md = SimArray("md126", devices=("sda", "sdb", "sdc"), level=5)
    for d in md.devs.values():
        d.flags.add("external_bbl")
    md.media_error("sdc", 8200, 8)
    assert md.read("dev-sdc/state").strip() == "in_sync,blocked,write_error,want_replacement,external_bbl"
    assert md.read("dev-sdc/unacknowledged_bad_blocks") == "8200 8\n"
    with pytest.raises(OSError):
        md.write("dev-sdc/bad_blocks", "8200 -8")
    md.write("dev-sdc/bad_blocks", "8200 8")
    assert md.read("dev-sdc/bad_blocks") == "8200 8\n" and md.read("dev-sdc/unacknowledged_bad_blocks") == ""
    assert "blocked" not in md.read("dev-sdc/state")
    assert md.devs["sdc"].holds_io  # until -blocked (or md's 5 s second look)
    md.write("dev-sdc/state", "-blocked")
    assert not md.devs["sdc"].holds_io and "faulty" not in md.devs["sdc"].flags
    # -blocked with a range unacknowledged and external_bbl off: md fails the device
    md.media_error("sdb", 4096, 8)
    md.write("dev-sdb/state", "-external_bbl")
    md.write("dev-sdb/state", "-blocked")
    assert "faulty" in md.devs["sdb"].flags and not md.devs["sdb"].holds_io


def test_plan_records_then_acknowledges() -> None:
    from mdmond.monitor.rules import Progress, plan

    md = SimArray("md126", devices=("sda", "sdb", "sdc"), level=5)
    for d in md.devs.values():
        d.flags.add("external_bbl")
    rig = make_rig("imsm-raid5")
    vol = rig.store.model().volume(0)
    names = sorted(md.devs)
    md.media_error(names[2], 8200, 8)
    before = read_snapshot(md)
    md.media_error(names[2], 9000, 16)
    now = read_snapshot(md)
    p = plan(now, before, vol, Progress(), clock=0.0, interval=1.0)
    ref = vol.members[2].disk_ref
    assert ref is not None
    assert [c for c in p.changes if isinstance(c, RecordBadBlock)] == [
        RecordBadBlock(ref, 8200, 8),
        RecordBadBlock(ref, 9000, 16),
    ]
    assert [(b.device, b.sector, b.length) for b in p.bad_blocks] == [(names[2], 8200, 8), (names[2], 9000, 16)]
    assert p.unblock == ()  # released only by the acknowledgement step, after the commit
