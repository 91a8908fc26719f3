"""Parsing md's sysfs words: every word the kernel documents, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdmond.kernel.values import (
    MAX_SECTOR,
    ArrayState,
    SyncAction,
    parse_array_state,
    parse_dev_state,
    parse_sectors,
    parse_sync_action,
    parse_sync_completed,
)

KERNEL_ARRAY_STATES = [
    "clear",
    "inactive",
    "suspended",
    "readonly",
    "read-auto",
    "clean",
    "active",
    "write-pending",
    "active-idle",
    "broken",
]


@pytest.mark.parametrize("word", KERNEL_ARRAY_STATES)
def test_every_documented_array_state_is_known(word: str) -> None:
    assert parse_array_state(word + "\n").value == word


def test_array_states_rank_in_kernel_order() -> None:
    # The monitor's rules compare ranks ("previous state above inactive" means it ran).
    ranks = [parse_array_state(w).rank for w in KERNEL_ARRAY_STATES]
    assert ranks == sorted(ranks)
    assert not ArrayState.INACTIVE.running and ArrayState.READONLY.running


def test_unreadable_array_state_means_stopped() -> None:
    s = parse_array_state(b"")
    assert s is ArrayState.UNREADABLE and not s.running


def test_only_writable_states_are_marked_writable() -> None:
    # The kernel answers EINVAL to these four (md.rst); the daemon must never try them.
    for word in ("suspended", "write-pending", "active-idle", "broken"):
        assert not parse_array_state(word).writable_by_us
    for word in ("clear", "inactive", "readonly", "read-auto", "clean", "active"):
        assert parse_array_state(word).writable_by_us


@pytest.mark.parametrize("word", ["idle", "frozen", "resync", "recover", "check", "repair", "reshape"])
def test_sync_actions(word: str) -> None:
    a = parse_sync_action(word + "\n")
    assert a.value == word
    assert a.syncing == (word not in ("idle", "frozen"))


def test_unknown_sync_action() -> None:
    assert parse_sync_action("resync-later") is SyncAction.UNKNOWN


def test_dev_state_keeps_unknown_words() -> None:
    d = parse_dev_state("faulty,blocked,newflag\n")
    assert d.faulty and d.blocked and not d.in_sync
    assert d.unknown == frozenset({"newflag"})
    assert "newflag" not in d


def test_empty_dev_state() -> None:
    d = parse_dev_state("\n")
    assert not d.flags and not d.unknown


def test_sectors() -> None:
    assert parse_sectors("none\n") == MAX_SECTOR
    assert parse_sectors("24576\n") == 24576
    assert parse_sectors("garbage") is None


def test_sync_completed() -> None:
    assert parse_sync_completed("12288 / 49152\n") == (12288, 49152)
    for word in ("none", "delayed", "", "1/", "a / b"):
        assert parse_sync_completed(word) is None


@given(st.binary(max_size=64))
def test_parsers_are_total(raw: bytes) -> None:
    # Whatever a vanished or future device returns, the monitor gets a value, not an exception.
    parse_array_state(raw)
    parse_sync_action(raw)
    parse_dev_state(raw)
    parse_sectors(raw)
    parse_sync_completed(raw)
