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


@dataclass(frozen=True)
class Event:
    kind: str  # "dirty", "clean", "disk-failed", "checkpoint", "commit-failed", ...
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
