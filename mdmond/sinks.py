"""Where events go: a JSON-lines event log, the systemd journal, standard error.

Events are emitted into bounded in-memory buffers (``events``) on the
monitor's path; a single writer drains them here.  Every write happens in a
worker thread, never on the event loop: the log file or the journal may live
on an array whose writes are blocked until we answer it (mdmon.md §1.8), and
the monitor must stay free to answer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

import trio

from .events import Event, EventLog

#: syslog priorities by event kind; everything else is informational.
PRIORITY = {
    "service-failed": 2,
    "commit-failed": 3,
    "update-refused": 3,
    "remove-failed": 3,
    "resume-failed": 3,
    "spare-add-failed": 3,
    "attr-write-failed": 3,
    "adopt-failed": 3,
    "events-lost": 4,
    "fail-propagated": 4,
    "no-spare": 4,
    "spare-refused": 4,
    "control-refused": 4,
    "control-bad-frame": 4,
    "control-timeout": 4,
    "control-overflow": 4,
    "update-dropped": 4,
    "state-written": 7,
}
#: Metadata changes that happen all the time on a busy array: debug, not info.
ROUTINE = {"SetDirty", "SetCheckpoint"}
LEVEL = {2: "crit", 3: "err", 4: "warning", 5: "notice", 6: "info", 7: "debug"}


def priority(e: Event) -> int:
    if e.kind == "metadata":
        return 7 if e.fields.get("change") in ROUTINE else 5
    return PRIORITY.get(e.kind, 6)


def message(e: Event) -> str:
    """One human line: the kind, then the fields as key=value."""
    parts = [e.kind]
    parts += [f"{k}={v}" for k, v in e.fields.items()]
    return " ".join(parts)


class Sink(Protocol):
    def write(self, events: Sequence[Event]) -> None: ...


class JsonLines:
    """Appends one JSON object per event to a file (``--event-log``); ``mdmond events`` reads it."""

    def __init__(self, path: str) -> None:
        # Opened now, before serving: opening later might block behind the array.
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, events: Sequence[Event]) -> None:
        data = "".join(json.dumps(e.json(), default=str, separators=(",", ":")) + "\n" for e in events)
        os.write(self.fd, data.encode())


class Stderr:
    """Human lines, for a foreground run at a terminal; debug events only when verbose."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose

    def write(self, events: Sequence[Event]) -> None:
        lines = [
            f"mdmond: {LEVEL.get(priority(e), 'info')}: {message(e)}\n"
            for e in events
            if self.verbose or priority(e) < 7
        ]
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()


class Journal:
    """The systemd journal, with the event's fields as ``MDMOND_*`` journal fields."""

    def __init__(self) -> None:
        from systemd import journal  # imported before serving, like everything else

        self.send = journal.send

    def write(self, events: Sequence[Event]) -> None:
        for e in events:
            fields: dict[str, Any] = {f"MDMOND_{k.upper().replace('-', '_')}": v for k, v in e.fields.items()}
            self.send(
                message(e),
                PRIORITY=priority(e),
                SYSLOG_IDENTIFIER="mdmond",
                MDMOND_EVENT=e.kind,
                **fields,
            )


class Writer:
    """Drains event buffers into sinks, from a worker thread, on each emit."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.logs: list[tuple[EventLog, list[int]]] = []
        self.token: trio.lowlevel.TrioToken | None = None
        self._wake = trio.Event()
        self.failures = 0
        #: A batch taken from the buffers is being written (a flush must wait for it too).
        self.writing = False

    def follow(self, log: EventLog) -> None:
        self.logs.append((log, [0]))
        log.on_emit = self.wake

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch: list[Event] = []
            self.writing = True
            for log, cursor in self.logs:
                events, cursor[0], lost = log.since(cursor[0])
                if lost:
                    batch.append(Event("events-lost", {**log.context, "count": lost}, log.clock()))
                batch.extend(events)
            try:
                if batch and self.sinks:
                    # abandon_on_cancel: a write stuck behind a blocked array must not hold up exit.
                    await trio.to_thread.run_sync(self._write, batch, abandon_on_cancel=True)
            finally:
                self.writing = False

    def _write(self, batch: list[Event]) -> None:
        for sink in self.sinks:
            try:
                sink.write(batch)
            except Exception:  # a full disk or a gone journal must not stop the daemon
                self.failures += 1


__all__ = ["Journal", "JsonLines", "Stderr", "Writer", "message", "priority"]
