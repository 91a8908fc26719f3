"""Everything one monitor pass reads of an array, read once, in mdmon's order (mdmon.md §2.2).

The monitor decides from a snapshot, never from a live attribute, so one pass
acts on one consistent picture and a rule can be tested as a pure function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .interface import MdArray
from .values import (
    MAX_SECTOR,
    ArrayState,
    DevState,
    SyncAction,
    parse_array_state,
    parse_bad_blocks,
    parse_dev_state,
    parse_sectors,
    parse_sync_action,
    parse_sync_completed,
)


@dataclass(frozen=True)
class DevSnapshot:
    """One member device: ``dev-<name>/{state,slot,recovery_start}``."""

    name: str  # "sda"
    state: DevState
    slot: int | None  # None: "none" (not an active member, or already taken out)
    recovery_start: int  # MAX_SECTOR: "none" (in sync)
    #: ``unacknowledged_bad_blocks``, read only of a working member md holds blocked with
    #: ``external_bbl`` (mdmon.md §2.5); None: not read, or unreadable.
    unacked: tuple[tuple[int, int], ...] | None = None
    #: ``bad_blocks`` (the acknowledged list), read only of a member the metadata records bad
    #: blocks for, to forget those md has cleared (mdmon's check_for_cleared_bb); None: not read.
    acked: tuple[tuple[int, int], ...] | None = None

    @property
    def awaits_bad_block_ack(self) -> bool:
        """md holds writes until user space records and acknowledges this member's bad blocks."""
        s = self.state
        return "external_bbl" in s and s.blocked and not s.faulty


@dataclass(frozen=True)
class ArraySnapshot:
    """One array at one moment."""

    array_state: ArrayState
    sync_action: SyncAction = SyncAction.IDLE
    sync_completed: int = 0  # sectors done of the running pass; 0 when none
    resync_start: int = MAX_SECTOR
    devs: tuple[DevSnapshot, ...] = ()
    #: metadata_version "external:-...": mdadm asked us to leave it alone (read only of a readonly
    #: or a frozen array, off the write-pending path)
    blocked: bool = False

    def dev(self, name: str) -> DevSnapshot | None:
        return next((d for d in self.devs if d.name == name), None)

    def at_slot(self, slot: int) -> DevSnapshot | None:
        return next((d for d in self.devs if d.slot == slot), None)


#: Where the blocked flag sits in ``metadata_version`` (mdmon.md §2.8).
_BLOCKED_IDX = len("external:")


def read_snapshot(
    md: MdArray, previous: ArraySnapshot | None = None, *, listed: frozenset[int] = frozenset()
) -> ArraySnapshot:
    """Read the array as one pass of mdmon's ``read_and_act`` does.

    ``listed``: the slots whose member the metadata records bad blocks for; only
    their acknowledged lists are read (none at all in the usual case, so the
    write-pending path reads nothing more).

    ``array_state`` first (it re-arms notification); ``resync_start`` is not
    read of a ``clear`` array (the kernel may already have reset it, which would
    make a clean array look unsynced), and a failed read keeps the previous
    value.  A device whose attributes are gone is left out: it has been removed.
    """
    try:
        state = parse_array_state(md.read("array_state"))
    except OSError:
        state = ArrayState.UNREADABLE
    if not state.running:
        return ArraySnapshot(state, resync_start=previous.resync_start if previous else MAX_SECTOR)
    action = _read(md, "sync_action", parse_sync_action, SyncAction.UNKNOWN)
    completed = _read(md, "sync_completed", parse_sync_completed, None)
    resync = _read(md, "resync_start", parse_sectors, None)
    if resync is None:
        resync = previous.resync_start if previous else MAX_SECTOR
    blocked = False
    if state is ArrayState.READONLY or action is SyncAction.FROZEN:
        # Read only where it matters, off the write-pending path: a readonly array mdadm
        # keeps for itself, and a frozen one (mdadm's freeze for --grow sets both).
        version = _read(md, "metadata_version", str.strip, "")
        blocked = version[_BLOCKED_IDX : _BLOCKED_IDX + 1] == "-"
    devs = []
    for entry in md.devices():
        try:
            dstate = parse_dev_state(md.read(f"{entry}/state"))
            slot_text = md.read(f"{entry}/slot").strip()
            recovery = parse_sectors(md.read(f"{entry}/recovery_start"))
        except OSError:
            continue
        slot = int(slot_text) if slot_text.isdigit() else None
        unacked = None
        if "external_bbl" in dstate and dstate.blocked and not dstate.faulty:
            # Only then: the hot write-pending path never reads the bad-block lists.
            unacked = _read(md, f"{entry}/unacknowledged_bad_blocks", parse_bad_blocks, None)
        acked = None
        if slot in listed and "external_bbl" in dstate and not dstate.faulty:
            acked = _read(md, f"{entry}/bad_blocks", parse_bad_blocks, None)
        devs.append(
            DevSnapshot(
                entry.removeprefix("dev-"),
                dstate,
                slot,
                MAX_SECTOR if recovery is None else recovery,
                unacked,
                acked,
            )
        )
    return ArraySnapshot(
        array_state=state,
        sync_action=action,
        sync_completed=completed[0] if completed else 0,
        resync_start=resync,
        devs=tuple(devs),
        blocked=blocked,
    )


T = TypeVar("T")
D = TypeVar("D")


def _read(md: MdArray, attr: str, parse: Callable[[str], T], default: D) -> T | D:
    try:
        return parse(md.read(attr))
    except OSError:
        return default
