"""The array_state table, row by row (mdmon.md §2.3), and its safety invariants."""

from __future__ import annotations

import pytest

from mdmond.kernel.values import ArrayState as S
from mdmond.monitor.rules import Decision, decide


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
