"""Reading the JSON event log (``mdmond run --event-log``): filter, print, follow.

The log is JSON lines, appended by the daemon; a consumer may start while it
is written, so a last line without its newline is left for the next read, and
a line that is not JSON, not an event, or whose ``time`` is not seconds since
the epoch (a string, null, NaN, 1e20) is reported as a one-line warning with
the file and line number and skipped, never fatal: a monitoring script must
not die of one torn or foreign line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .events import KINDS
from .sinks import ROUTINE
from .usage import FAILED, CommandError, Problem

#: Times at or past year 10000 are no time a daemon wrote (and the C library cannot show them).
MAX_TIME = 253402300800.0


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
            yield n, f"line {n}: not JSON ({err.msg} at column {err.colno}); skipped"
            continue
        if not isinstance(e, dict) or not isinstance(e.get("event"), str):
            yield n, f"line {n}: not an event object; skipped"
            continue
        t = e.get("time")
        # bool is an int to Python, NaN fails every comparison: both refused here.
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < MAX_TIME:
            yield n, f"line {n}: time {json.dumps(t)} is not seconds since the epoch; skipped"
            continue
        yield n, e


def human(e: dict[str, Any]) -> str:
    """``2026-11-29 23:04:59.331 md127 array-adopted array=md126 volume=0``."""
    t = float(e.get("time", 0))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "time", "container"))
    return f"{stamp} {e.get('container', '-')} {e['event']}" + (f" {rest}" if rest else "")


def check_kinds(kinds: list[str]) -> None:
    """``--kind`` names must be kinds the daemon emits: a misspelt one would silently match nothing."""
    for k in kinds:
        if k not in KINDS:
            raise CommandError(
                Problem(f"unknown event kind; the kinds are: {', '.join(sorted(KINDS))}", what="--kind", where=k)
            )


def main(path: str, flt: Filter, *, follow: bool, as_json: bool) -> int:
    """Print the log's events that pass ``flt``; 0, with a warning on stderr for each line skipped.

    Raises ``CommandError`` (``FAILED``) if the file cannot be opened.
    """
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as err:
        raise CommandError(Problem(err.strerror or str(err), what=path, kind="io"), status=FAILED) from None
    with stream:
        for _, item in read(stream, follow=follow):
            if isinstance(item, str):
                print(f"mdmond: warning: {path}: {item}", file=sys.stderr)
                continue
            if flt.wants(item):
                print(json.dumps(item, separators=(",", ":")) if as_json else human(item), flush=follow)
    return 0


__all__ = ["Filter", "check_kinds", "human", "main", "read"]
