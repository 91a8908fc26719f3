"""Where events go: the JSON-lines log, standard error, the journal, and the writer that drains the buffers."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from mdmond.events import Event, EventLog
from mdmond.sinks import Journal, JsonLines, Stderr, Writer, message, priority


def test_json_lines_appends_one_valid_object_per_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"earlier","time":0}\n')  # appended to, never truncated
    sink = JsonLines(str(path))
    sink.write([Event("dirty", {"container": "md127", "array": "md126"}, 1.5), Event("clean", {}, 2.0)])
    sink.write([Event("odd", {"path": Path("/dev/sda")}, 3.0)])  # not JSON-native: written as its str
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    got = [json.loads(line) for line in lines]
    assert got[0]["event"] == "earlier"
    assert got[1] == {"event": "dirty", "time": 1.5, "container": "md127", "array": "md126"}
    assert got[2] == {"event": "clean", "time": 2.0}
    assert got[3] == {"event": "odd", "time": 3.0, "path": "/dev/sda"}


def test_priorities_and_the_human_line() -> None:
    assert priority(Event("commit-failed")) == 3
    assert priority(Event("service-failed")) == 2
    assert priority(Event("metadata", {"change": "SetDirty"})) == 7
    assert priority(Event("metadata", {"change": "SetMemberState"})) == 5
    assert priority(Event("something-new")) == 6
    assert (
        message(Event("disk-failed", {"container": "md127", "disk": "sdb"})) == "disk-failed container=md127 disk=sdb"
    )


def test_stderr_hides_debug_events_unless_verbose() -> None:
    events = [
        Event("metadata", {"change": "SetDirty", "array": "md126"}),
        Event("commit-failed", {"array": "md126"}),
        Event("state-written", {"value": "active"}),
    ]
    quiet = io.StringIO()
    Stderr(quiet).write(events)
    assert quiet.getvalue() == "mdmond: err: commit-failed array=md126\n"
    loud = io.StringIO()
    Stderr(loud, verbose=True).write(events)
    assert loud.getvalue().splitlines() == [
        "mdmond: debug: metadata change=SetDirty array=md126",
        "mdmond: err: commit-failed array=md126",
        "mdmond: debug: state-written value=active",
    ]
    nothing = io.StringIO()
    Stderr(nothing).write(events[:1])
    assert nothing.getvalue() == ""


def test_journal_gets_the_priority_and_the_fields_as_journal_fields() -> None:
    pytest.importorskip("systemd.journal", reason="systemd-python is not installed")
    j = Journal()
    sent: list[tuple[str, dict[str, Any]]] = []
    j.send = lambda msg, **kw: sent.append((msg, kw))
    j.write([Event("disk-failed", {"container": "md127", "sync-action": "idle"})])
    assert sent == [
        (
            "disk-failed container=md127 sync-action=idle",
            {
                "PRIORITY": 6,
                "SYSLOG_IDENTIFIER": "mdmond",
                "MDMOND_EVENT": "disk-failed",
                "MDMOND_CONTAINER": "md127",
                "MDMOND_SYNC_ACTION": "idle",
            },
        )
    ]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def write(self, events: Sequence[Event]) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device")


async def wait_for(cond, limit: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(limit):
        while not cond():
            await trio.sleep(0.005)


async def test_writer_drains_every_log_and_a_failing_sink_stops_no_other() -> None:
    broken, good = Broken(), Recorder()
    writer = Writer([broken, good])
    a = EventLog(context={"container": "md127"})
    b = EventLog(context={"container": "md130"})
    writer.follow(a)
    writer.follow(b)
    async with trio.open_nursery() as n:
        n.start_soon(writer.run)
        a.emit("dirty", array="md126")
        b.emit("clean", array="md125")
        await wait_for(lambda: len(good.events) == 2)
        a.emit("disk-failed", disk="sdb")
        await wait_for(lambda: len(good.events) == 3)
        await trio.sleep(0.05)
        n.cancel_scope.cancel()
    assert sorted((e.kind, e.fields["container"]) for e in good.events[:2]) == [("clean", "md130"), ("dirty", "md127")]
    assert good.events[2].kind == "disk-failed" and good.events[2].fields == {"container": "md127", "disk": "sdb"}
    assert broken.calls == 2 and writer.failures == 2  # tried with every batch, failed each time, counted


async def test_events_lost_to_the_bound_are_reported_as_an_event() -> None:
    got = Recorder()
    writer = Writer([got])
    log = EventLog(size=2, clock=lambda: 42.0, context={"container": "md127"})
    writer.follow(log)
    for i in range(5):  # before the writer runs: three are pushed out
        log.emit("checkpoint", n=i)
    async with trio.open_nursery() as n:
        n.start_soon(writer.run)
        await wait_for(lambda: len(got.events) == 3)
        log.emit("checkpoint", n=5)
        await wait_for(lambda: len(got.events) == 4)
        n.cancel_scope.cancel()
    lost, *rest = got.events
    assert lost.kind == "events-lost" and lost.fields == {"container": "md127", "count": 3} and lost.at == 42.0
    assert [e.fields["n"] for e in rest] == [3, 4, 5]  # and nothing reported lost the second time
    assert priority(lost) == 4


async def test_writer_without_sinks_still_advances() -> None:
    writer = Writer([])
    log = EventLog()
    writer.follow(log)
    async with trio.open_nursery() as n:
        n.start_soon(writer.run)
        log.emit("a")
        await wait_for(lambda: writer.logs[0][1][0] == 1)
        n.cancel_scope.cancel()
