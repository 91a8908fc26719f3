"""The event-log consumer: filters, human lines, torn and bad lines, following an appended file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdmond.cli import main
from mdmond.eventlog import Filter, human, read

EVENTS = [
    {"event": "array-adopted", "time": 1795993459.33, "container": "md127", "array": "md126", "volume": 0},
    {"event": "metadata", "time": 1795993460.0, "container": "md127", "change": "SetDirty", "volume": 0},
    {"event": "member-failed", "time": 1795993461.5, "container": "md125", "device": "sdb"},
]


def _log(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "events.jsonl"
    p.write_text("".join(json.dumps(e) + "\n" for e in EVENTS) + extra)
    return p


def test_filters_by_kind_container_time_and_routine() -> None:
    assert [Filter(kinds={"member-failed"}).wants(e) for e in EVENTS] == [False, False, True]
    assert [Filter(containers={"md127"}).wants(e) for e in EVENTS] == [True, True, False]
    assert [Filter(since=1795993460.0).wants(e) for e in EVENTS] == [False, True, True]
    assert [Filter(routine=False).wants(e) for e in EVENTS] == [True, False, True]


def test_a_bad_line_is_named_and_skipped_and_a_torn_last_line_is_not_an_event() -> None:
    text = json.dumps(EVENTS[0]) + "\n{not json\n[1, 2]\n" + json.dumps(EVENTS[2]) + "\n" + '{"event": "half'
    got = list(read(io.StringIO(text)))
    assert got[0] == (1, EVENTS[0]) and got[3] == (4, EVENTS[2])
    assert "line 2: not JSON" in str(got[1][1]) and "line 3: not an event" in str(got[2][1])
    assert got[4] == (5, "line 5: incomplete last line (the daemon may be writing it)")


def test_human_line_carries_time_container_kind_and_fields() -> None:
    line = human(EVENTS[0])
    assert line.endswith(" md127 array-adopted array=md126 volume=0") and line[:2] == "20"


def test_command_prints_json_or_human_and_reports_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _log(tmp_path, "garbage\n")
    assert main(["events", "--json", "--kind", "member-failed", str(log)]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x) for x in out.splitlines()] == [EVENTS[2]]
    assert "line 4: not JSON" in err
    assert main(["events", "--quiet", str(log)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["events", str(tmp_path / "nope.jsonl")]) == 1
    assert "nope.jsonl" in capsys.readouterr().err


def test_follow_prints_what_the_daemon_appends_later(tmp_path: Path) -> None:
    log = _log(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdmond", "events", "--follow", "--json", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for want in EVENTS:
            assert json.loads(proc.stdout.readline()) == want
        late = {"event": "spare-activated", "time": time.time(), "container": "md127", "slot": 1}
        with log.open("a") as f:
            f.write(json.dumps(late)[:20])  # torn: written in two pieces
            f.flush()
            time.sleep(0.6)
            f.write(json.dumps(late)[20:] + "\n")
        assert json.loads(proc.stdout.readline()) == late
    finally:
        proc.kill()
        proc.wait()
