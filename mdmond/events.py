"""The daemon's structured events: what it did and why, for the log and its consumers.

Emitting must never block or fail on the monitor's path, so events go into a
bounded in-memory buffer; writers (journald, the JSON event log) drain it from
the manager's side.  When the buffer is full the oldest events are dropped and
counted, never the monitor delayed.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Events kept for consumers that have not caught up.
BUFFER = 10_000

#: Every event kind the daemon and the dry run emit, with what it means: the
#: vocabulary ``mdmond events --kind`` accepts (a test holds the code to it).
KINDS: dict[str, str] = {
    "adopt-failed": "an array of the container could not be taken into service",
    "array-adopted": "an array of the container is now served",
    "array-released": "an array stopped and is no longer served",
    "attr-write-failed": "writing an md sysfs attribute failed",
    "bad-block-recorded": "a member's bad block was recorded in the metadata",
    "bad-block-refused": "a member's bad block could not be recorded (the member is failed instead)",
    "commit-failed": "a metadata write failed",
    "container-disk-added": "a disk joined the container",
    "container-disk-known": "a disk joining the container is one the metadata already records",
    "container-disk-member": "a disk of ours joined late: the service reloads from every disk",
    "container-disk-open-failed": "a disk joining the container could not be opened",
    "container-disk-refused": "a disk joining the container was refused",
    "container-disk-remove-refused": "a disk could not be removed from the container",
    "container-disk-removed": "a disk left the container",
    "control-bad-frame": "mdadm sent a malformed message on the control socket",
    "control-overflow": "a control-socket client sent more updates than may be held before a ping: closed",
    "control-refused": "a control-socket request was refused",
    "control-timeout": "a control-socket client stopped mid-message, or stayed silent too long: closed",
    "device-disappeared": "a member's disk left the system (udev remove)",
    "device-reappeared": "a disk that had left came back",
    "disk-watch-unavailable": "udev cannot be watched; disks leaving are seen only when I/O fails",
    "events-lost": "events were dropped because a consumer fell behind",
    "exiting": "a container's service stopped",
    "fail-propagated": "a disk failed in one volume was failed in the container's other volumes",
    "member-failed": "a member was recorded failed in the metadata",
    "member-removed": "a failed member was removed from its array",
    "memory-locked": "the process memory was locked (mlockall)",
    "memory-lock-failed": "locking the process memory failed",
    "metadata": "a metadata change was written (change=SetDirty, SetCheckpoint, ...)",
    "no-spare": "a degraded volume has no usable spare",
    "rebuild-resumed": "an interrupted rebuild resumed from its checkpoint",
    "remove-failed": "removing a failed member from md failed",
    "resume-failed": "resuming a rebuild from its checkpoint failed",
    "script-fail": "dry run: the scripted failure of a member (--fail)",
    "script-write": "dry run: a scripted write (--write-at)",
    "script-write-refused": "dry run: md refused the scripted write",
    "service-failed": "a container's service crashed (it is restarted from the on-disk metadata)",
    "service-reloading": "a container's service reloads from its disks",
    "serving": "a container is served",
    "spare-activated": "a spare took a degraded volume's empty slot",
    "spare-add-failed": "md refused a spare",
    "spare-refused": "a spare was set aside for an array (md or the format refused it)",
    "state-written": "an md array_state was written (routine)",
    "takeover-skipped": "a takeover left a pid alone (its pid file names another program)",
    "terminating": "the process was asked to stop (SIGTERM)",
    "took-over": "this process took over a container from another mdmon or mdmond",
    "unblocked": "a member's blocked I/O was released once the metadata recorded why",
    "update-dropped": "updates from mdadm were dropped while stopping (the successor reloads)",
    "update-refused": "an update from mdadm was refused (e.g. a reshape)",
    "WRITE-HUNG": "dry run: a scripted write did not complete within 60 simulated seconds",
}


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    fields: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # wall-clock seconds

    def json(self) -> dict[str, Any]:
        return {"event": self.kind, "time": self.at, **self.fields}


class EventLog:
    """Bounded buffer of events, newest last."""

    def __init__(
        self,
        size: int = BUFFER,
        clock: Callable[[], float] = time.time,
        *,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.records: collections.deque[Event] = collections.deque(maxlen=size)
        self.dropped = 0
        #: Events ever emitted: a reader's cursor counts in these.
        self.total = 0
        self.clock = clock  # a dry run stamps events with simulated time
        #: Fields every event carries (the container a service answers for).
        self.context = dict(context or {})
        #: Called after each emit (the writer's wake-up); must not block.
        self.on_emit: Callable[[], None] = lambda: None

    def emit(self, kind: str, **fields: Any) -> None:
        if len(self.records) == self.records.maxlen:
            self.dropped += 1
        self.records.append(Event(kind, {**self.context, **fields}, self.clock()))
        self.total += 1
        self.on_emit()

    def since(self, cursor: int) -> tuple[list[Event], int, int]:
        """Events emitted after ``cursor``: (events, new cursor, how many were lost to the bound)."""
        new = self.total - cursor
        kept = min(new, len(self.records))
        events = list(self.records)[len(self.records) - kept :] if kept else []
        return events, self.total, new - kept

    def kinds(self) -> list[str]:
        return [e.kind for e in self.records]
