"""Reading the JSON event log (``mdmond run --event-log``): filter, print, follow.

The log is JSON lines, appended by the daemon; a consumer may start while it
is written, so a last line without its newline is left for the next read, and
a line that is not JSON is reported with its line number and skipped, never
fatal: a monitoring script must not die of one torn line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .sinks import ROUTINE


@dataclass
class Filter:
    kinds: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    since: float | None = None
    routine: bool = True  # dirty/clean/checkpoint metadata events and state writes

    def wants(self, e: dict[str, Any]) -> bool:
        if self.kinds and e.get("event") not in self.kinds:
            return False
        if self.containers and e.get("container") not in self.containers:
            return False
        if self.since is not None and float(e.get("time", 0)) < self.since:
            return False
        return self.routine or not _routine(e)


def _routine(e: dict[str, Any]) -> bool:
    return e.get("event") == "state-written" or (e.get("event") == "metadata" and e.get("change") in ROUTINE)


def read(stream: IO[str], *, follow: bool = False, poll: float = 0.5) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, event) for each complete line; (line number, error text) for a bad one."""
    n = 0
    pending = ""
    while True:
        chunk = stream.readline()
        if not chunk:
            if not follow:
                if pending:
                    yield n + 1, f"line {n + 1}: incomplete last line (the daemon may be writing it)"
                return
            time.sleep(poll)
            continue
        pending += chunk
        if not pending.endswith("\n"):
            continue
        n += 1
        line, pending = pending.strip(), ""
        if not line:
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            yield n, f"line {n}: not JSON ({err.msg} at column {err.colno})"
            continue
        if not isinstance(e, dict) or "event" not in e:
            yield n, f"line {n}: not an event object"
            continue
        yield n, e


def human(e: dict[str, Any]) -> str:
    """``2026-11-29 23:04:59.331 md127 array-adopted array=md126 volume=0``."""
    t = float(e.get("time", 0))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "time", "container"))
    return f"{stamp} {e.get('container', '-')} {e['event']}" + (f" {rest}" if rest else "")


def main(path: str, flt: Filter, *, follow: bool, as_json: bool) -> int:
    """Print the log's events that pass ``flt``; 1 if the file cannot be read, 0 otherwise."""
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as err:
        print(f"mdmond events: {path}: {err.strerror}", file=sys.stderr)
        return 1
    with stream:
        for _, item in read(stream, follow=follow):
            if isinstance(item, str):
                print(f"mdmond events: {path}: {item}", file=sys.stderr)
                continue
            if flt.wants(item):
                print(json.dumps(item, separators=(",", ":")) if as_json else human(item), flush=follow)
    return 0


__all__ = ["Filter", "human", "main", "read"]
