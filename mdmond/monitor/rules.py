"""What to do about an array's state: the table of mdmon.md §2.3, as code.

``decide`` is pure: given what the kernel shows and what the metadata says,
it returns what must be recorded and what must be written back, and nothing
else.  The loop that carries it out (``array.py``) keeps the ordering that
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
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernel.values import ArrayState


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
