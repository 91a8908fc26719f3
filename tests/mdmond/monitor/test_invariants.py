"""The monitor's safety invariants under hypothesis-chosen sequences of events.

Each rule lets simulated time run with the kernel side and the monitor live,
around one thing happening: writes, idleness, a member failing, a metadata
write failing, an attribute write failing.  ``rig.CheckedArray`` checks as they
happen that dirty is on disk before ``active``, a failure is on disk before
``-blocked``, and no clean record lands while md is active; the invariants
below check that no write hangs and that idleness always ends clean.
"""

from __future__ import annotations

import errno

import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from formats.model import MemberState
from mdmond.kernel.values import ArrayState as S
from mdmond.monitor.container import RETRY_CAP

from .rig import Rig, make_rig

SAFE_MODE = 1.0


class MonitorMachine(RuleBasedStateMachine):
    rig: Rig

    @initialize(scenario=st.sampled_from(["imsm-raid5", "imsm-raid1"]))
    def start(self, scenario: str) -> None:
        self.clock = trio.testing.MockClock(autojump_threshold=0)
        self.rig = make_rig(scenario, safe_mode_delay=SAFE_MODE)
        self.failed = 0
        self.hung: list[str] = []

    def live(self, action, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
        """Run the kernel and the monitor around ``action`` in simulated time."""

        async def main() -> None:
            async with trio.open_nursery() as n:
                n.start_soon(self.rig.md.run)
                await n.start(self.rig.monitor.run)
                with trio.move_on_after(limit) as scope:
                    await action()
                if scope.cancelled_caught:
                    self.hung.append(repr(action))
                await trio.testing.wait_all_tasks_blocked()
                n.cancel_scope.cancel()

        trio.run(main, clock=self.clock)

    @rule(duration=st.floats(0, 0.5), writers=st.integers(1, 4))
    def write(self, duration: float, writers: int) -> None:
        async def action() -> None:
            async with trio.open_nursery() as n:
                for _ in range(writers):
                    n.start_soon(self.rig.md.submit_write, duration)

        self.live(action)

    @rule(seconds=st.floats(0.01, 3 * SAFE_MODE))
    def idle(self, seconds: float) -> None:
        self.live(lambda: trio.sleep(seconds))

    @precondition(lambda self: self.failed == 0)
    @rule(data=st.data())
    def member_fails(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from(sorted(self.rig.md.devs)))
        self.rig.md.fail_device(dev)
        self.failed += 1
        self.live(lambda: trio.sleep(0.1))

    @rule(count=st.integers(1, 3))
    def metadata_writes_fail(self, count: int) -> None:
        self.rig.fail_writes.extend([0] * count)

    @rule(attr=st.sampled_from(["array_state", "dev-sda/state", "dev-sdb/state"]))
    def attribute_write_fails(self, attr: str) -> None:
        self.rig.md.inject_write_error(attr, errno.EIO)

    @invariant()
    def ordering_held(self) -> None:
        assert self.rig.md.violations == []

    @invariant()
    def no_write_hung(self) -> None:
        assert self.hung == []

    @invariant()
    def failures_are_recorded(self) -> None:
        if not hasattr(self, "rig"):
            return
        faulty = {self.rig.md.refs[d.name] for d in self.rig.md.devs.values() if "faulty" in d.flags}
        if faulty and not any("blocked" in d.flags for d in self.rig.md.devs.values()):
            vol = self.rig.store.model().volume(0)
            assert all(m.state is MemberState.FAILED for m in vol.members if m.disk_ref in faulty)

    def teardown(self) -> None:
        if not hasattr(self, "rig"):
            return
        self.rig.fail_writes.clear()
        # Idle long enough for every retry: each injected attribute error still pending costs
        # at most one retry delay (a failure on a clean array needs "active" written, so a run
        # of refused array_state writes can stand between it and the end).
        pending = sum(len(codes) for codes in self.rig.md._write_errors.values())
        self.live(lambda: trio.sleep(10 * SAFE_MODE + 5 + RETRY_CAP * pending))
        assert self.rig.md.array_state is S.CLEAN
        assert not self.rig.model().volume(0).dirty, "an idle array ends clean on disk"
        assert self.rig.md.violations == []


TestMonitorInvariants = MonitorMachine.TestCase
TestMonitorInvariants.settings = settings(
    max_examples=settings().max_examples // 6 or 10, stateful_step_count=15, deadline=None
)
