"""Every subcommand over a table of bad inputs (issue 16): no traceback, one-line refusals, the documented status.

Each row runs ``python -m mdmond`` in a child process, as an administrator
would, so that what the interpreter itself prints (a traceback, an error at
its last flush of standard output) is seen too.  Paths in a row's argv are
templates filled from the ``files`` fixture: ``{golden}`` (the golden images),
``{tmp}`` (bad images and event logs made for the test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import formats
from formats.blockio import MemoryDisk
from mdmond.usage import BROKEN_PIPE, DIFFERS, FAILED, INTERRUPTED, OK, OUTPUT, STATUSES, USAGE
from tests.golden import GOLDEN, image_path, image_spec, image_specs

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    id: str
    argv: list[str]
    status: int
    stderr: str  # a fragment of standard error ("" for none expected)
    stdout: str = ""  # a fragment of standard output, where it matters
    stdout_to: str = "pipe"  # pipe | full (/dev/full) | closed (a pipe nobody reads)


def spare5() -> list[str]:
    """imsm-raid5-spare: sda-sdc members of vol0, sdd the spare."""
    return image_specs("imsm-raid5-spare")


def raid5(n: int) -> str:
    return image_spec("imsm-raid5", n)


def xz(scenario: str, n: int) -> str:
    return str(GOLDEN / scenario / f"disk{n}.img.xz")


def log_line(time_json: str) -> str:
    return f'{{"event": "serving", "time": {time_json}, "container": "md127"}}\n'


EVENT_OK = '{"event": "member-failed", "time": 1795993461.5, "container": "md127", "device": "sdb"}\n'

ROWS = [
    # dry-run: numbers, checked by argparse
    Row("fail-no-device", ["dry-run", "--fail", "10", *spare5()], USAGE, "argument --fail: expected SECONDS:DEVICE"),
    Row("fail-no-time", ["dry-run", "--fail", "sdb", *spare5()], USAGE, "argument --fail: expected SECONDS:DEVICE"),
    Row("fail-bad-time", ["dry-run", "--fail", "abc:sdb", *spare5()], USAGE, "not 'abc'"),
    Row("duration-negative", ["dry-run", "--duration", "-5", *spare5()], USAGE, "argument --duration"),
    Row("write-at-negative", ["dry-run", "--write-at", "-1", *spare5()], USAGE, "argument --write-at"),
    Row("duration-nan", ["dry-run", "--duration", "nan", *spare5()], USAGE, "not 'nan'"),
    Row("duration-inf", ["dry-run", "--duration", "inf", *spare5()], USAGE, "not 'inf'"),
    Row("fail-past-end", ["dry-run", "--fail", "100:sdb", *spare5()], USAGE, "--fail: 100 s is not before the end"),
    Row("write-past-end", ["dry-run", "--duration", "5", "--write-at", "5", *spare5()], USAGE, "--write-at: 5 s"),
    # dry-run: what --fail names
    Row("fail-unknown", ["dry-run", "--fail", "10:sdz", *spare5()], USAGE, "--fail: sdz: names no disk"),
    Row("fail-spare", ["dry-run", "--fail", "10:sdd", *spare5()], USAGE, "sdd (MDVM00000003) is a spare"),
    Row(
        "fail-by-serial",
        ["dry-run", "--fail", "10:MDVM00000001", *spare5()],
        OK,
        "",
        "script-fail        array=md126 device=sdb",
    ),
    Row(
        "fail-by-path",
        ["dry-run", "--fail", f"10:{xz('imsm-raid5-spare', 1)}", *spare5()],
        OK,
        "",
        "script-fail        array=md126 device=sdb",
    ),
    Row("fail-by-dev", ["dry-run", "--fail", "10:/dev/sdb", *spare5()], OK, "", "device=sdb"),
    # dry-run: the images
    Row("dry-run-truncated-xz", ["dry-run", "{tmp}/trunc.img.xz"], FAILED, "{tmp}/trunc.img.xz: truncated .xz image"),
    Row("imsm-no-serial", ["dry-run", xz("imsm-raid5", 0), xz("imsm-raid5", 1)], USAGE, "needs its drive's serial"),
    Row("imsm-wrong-serial", ["dry-run", f"{xz('imsm-raid5', 0)},serial=X1"], USAGE, "serial 'X1' is not one of"),
    Row("one-of-three", ["dry-run", raid5(0)], FAILED, "volume 'vol0' (raid5) cannot start"),
    Row("two-of-three", ["dry-run", raid5(0), raid5(1)], OK, "warning: md127: ", "normal -> degraded"),
    Row(
        "raid10-mirror-lost",
        ["dry-run", image_spec("ddf-raid10", 0), image_spec("ddf-raid10", 2)],
        FAILED,
        "missing slot 0, slot 1; not run",
    ),
    Row("raid10-one-each", ["dry-run", *image_specs("ddf-raid10")[:2]], OK, "volume 'vol0' starts degraded: 2 of 4"),
    Row("spare-not-given", ["dry-run", *image_specs("ddf-raid5-spare")[:3]], OK, "spare Linux-MD"),
    Row(
        "rebuilding-not-given",
        ["dry-run", *image_specs("imsm-raid5-rebuild-stopped")[:3]],
        OK,
        "member MDVM00000003 (rebuilding) is not among the images",
    ),
    Row("same-image-twice", ["dry-run", raid5(0), raid5(0), raid5(1)], USAGE, "the same file as"),
    Row("same-disk-twice", ["dry-run", raid5(0), "{tmp}/copy0.img.xz,serial=MDVM00000000"], USAGE, "the same disk"),
    Row("dry-run-json-refusal", ["dry-run", "--json", "--duration", "-1", raid5(0)], USAGE, "--duration", '"error"'),
    Row("dry-run-full-disk", ["dry-run", *image_specs("imsm-raid1")], OUTPUT, "standard output: No space", "", "full"),
    # examine
    Row("examine-truncated-xz", ["examine", "{tmp}/trunc.img.xz"], FAILED, "{tmp}/trunc.img.xz: truncated .xz image"),
    Row("examine-json-truncated", ["examine", "--json", "{tmp}/trunc.img.xz"], FAILED, "", '"kind": "io"'),
    Row("examine-missing", ["examine", "{tmp}/none.img"], FAILED, "{tmp}/none.img"),
    Row("examine-sector-size", ["examine", "--sector-size", "1000", raid5(0)], USAGE, "argument --sector-size"),
    Row("ddf-bad-secondary", ["examine", "{tmp}/ddf-badsec.img"], OK, "secondary header unusable (bad CRC)"),
    Row("examine-full-disk", ["examine", raid5(0)], OUTPUT, "standard output: No space left on device", "", "full"),
    Row("examine-brief-full-disk", ["examine", "--brief", raid5(0)], OUTPUT, "standard output: No space", "", "full"),
    Row("examine-broken-pipe", ["examine", raid5(0)], BROKEN_PIPE, "", "", "closed"),
    # events
    Row(
        "time-string",
        ["events", "{tmp}/time-abc.jsonl"],
        OK,
        '{tmp}/time-abc.jsonl: line 1: time "abc" is not',
        "serving",
    ),
    Row("time-null", ["events", "{tmp}/time-null.jsonl"], OK, "line 1: time null is not seconds", "serving"),
    Row("time-huge", ["events", "--since", "1", "{tmp}/time-huge.jsonl"], OK, "line 1: time 1e+20 is not", "serving"),
    Row("kind-readme", ["events", "--kind", "member-failed", "{tmp}/ok.jsonl"], OK, "", "member-failed device=sdb"),
    Row("kind-unknown", ["events", "--kind", "disk-failed", "{tmp}/ok.jsonl"], USAGE, "--kind: disk-failed: unknown"),
    Row(
        "kind-unknown-json", ["events", "--json", "--kind", "x", "{tmp}/ok.jsonl"], USAGE, "unknown", '"what": "--kind"'
    ),
    Row("since-nan", ["events", "--since", "nan", "{tmp}/ok.jsonl"], USAGE, "argument --since"),
    Row("log-missing", ["events", "{tmp}/none.jsonl"], FAILED, "{tmp}/none.jsonl: No such file"),
    Row("events-full-disk", ["events", "{tmp}/ok.jsonl"], OUTPUT, "standard output: No space", "", "full"),
    # the command line itself
    Row("no-command", [], USAGE, "command line: the following arguments are required"),
    Row("unknown-command", ["bogus"], USAGE, "invalid choice: 'bogus'"),
    Row("help-full-disk", ["--help"], OUTPUT, "standard output: No space", "", "full"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "trunc.img.xz").write_bytes((GOLDEN / "imsm-raid5" / "disk0.img.xz").read_bytes()[:2000])
    shutil.copy(GOLDEN / "imsm-raid5" / "disk0.img.xz", tmp / "copy0.img.xz")
    raw = bytearray(image_path("ddf-raid5", 0).read_bytes())
    secondary = formats.load(MemoryDisk(bytes(raw))).raw.secondary  # type: ignore[attr-defined]
    raw[secondary.lba * 512 + 100] ^= 0xFF  # inside the header: its CRC no longer matches
    (tmp / "ddf-badsec.img").write_bytes(raw)
    for name, t in (("abc", '"abc"'), ("null", "null"), ("huge", "1e20")):
        (tmp / f"time-{name}.jsonl").write_text(log_line(t) + log_line("5"))
    (tmp / "ok.jsonl").write_text(EVENT_OK)
    return {"tmp": str(tmp), "golden": str(GOLDEN)}


def run(argv: list[str], stdout_to: str = "pipe", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mdmond", *argv]
    if stdout_to == "pipe":
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if stdout_to == "full":
        with open("/dev/full", "w") as full:
            p = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT, env=env)
        return subprocess.CompletedProcess(cmd, p.returncode, "", p.stderr)
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write fails with EPIPE
    try:
        p = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT, env=env)
    finally:
        os.close(w)
    return subprocess.CompletedProcess(cmd, p.returncode, "", p.stderr)


def check_quiet_refusal(p: subprocess.CompletedProcess[str]) -> None:
    """No traceback anywhere; every line on stderr is one of mdmond's own."""
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert "Exception ignored" not in p.stderr, p.stderr
    for line in p.stderr.splitlines():
        assert line.startswith("mdmond: "), p.stderr


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, files: dict[str, str]) -> None:
    if row.stdout_to == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    p = run([a.format(**files) for a in row.argv], row.stdout_to)
    check_quiet_refusal(p)
    assert p.returncode == row.status, p.stderr
    assert row.stderr.format(**files) in p.stderr
    if row.stderr == "":
        assert "mdmond: warning" not in p.stderr and (p.returncode == OK or p.stderr == ""), p.stderr
    assert row.stdout in p.stdout
    if "--json" in row.argv and row.status == USAGE:
        assert set(json.loads(p.stdout)["error"]) == {"kind", "message", "what", "where"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (proc(5): fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ctrl_c_of_a_long_dry_run_is_one_line_and_status_130() -> None:
    # Writes 10 s apart, each a dirty/clean cycle: several seconds of CPU.
    writes = [a for i in range(1, 3001) for a in ("--write-at", str(10 * i))]
    cmd = [sys.executable, "-m", "mdmond", "dry-run", "--duration", "30001", *writes, *image_specs("imsm-raid1")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        # Inside the run, not the imports (a Ctrl-C there is Python's own): wait for CPU time, which a
        # loaded machine does not inflate as it does wall-clock time.
        deadline = time.monotonic() + 60
        while cpu_seconds(proc.pid) < 1.5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == INTERRUPTED, err
    assert err == "mdmond: interrupted\n"


def test_every_exit_status_is_documented_in_the_readme_and_the_help() -> None:
    readme = (ROOT / "README.md").read_text()
    helptext = run(["--help"]).stdout
    for code, _meaning in STATUSES:
        assert f"| {code} |" in readme and f"  {code} " in helptext, code
    assert {c for c, _ in STATUSES} == {OK, FAILED, USAGE, DIFFERS, OUTPUT, INTERRUPTED, BROKEN_PIPE}
