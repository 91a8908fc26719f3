"""mdmon's command line, option for option and status for status (mdmon.md §1.1), and ``mdmond run``."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdmond import cli, entry, host
from mdmond.daemon import Options
from mdmond.sinks import JsonLines, Stderr

# parse_mdmon


@pytest.mark.parametrize(
    ("argv", "flags", "container"),
    [
        (["md127"], set(), "md127"),
        (
            ["--takeover", "--foreground", "--offroot", "/dev/md/imsm0"],
            {"takeover", "foreground", "offroot"},
            "/dev/md/imsm0",
        ),
        (["-Ft", "md127"], {"foreground", "takeover"}, "md127"),
        (["-t", "-F", "initrd/md127"], {"foreground", "takeover"}, "initrd/md127"),
        (["md127", "--takeover"], {"takeover"}, "md127"),  # getopt permutes
        (["--all"], {"all"}, None),
        (["-a", "--takeover"], {"all", "takeover"}, None),
        (["--all-active-arrays", "-t"], {"all", "takeover"}, None),  # room for the container name in ps
        (["/proc/mdstat"], {"all"}, None),
        (["--takeover", "/proc/mdstat"], {"all", "takeover"}, None),
        (["--", "md127"], set(), "md127"),
        (["--take", "--fore", "--off", "md127"], {"takeover", "foreground", "offroot"}, "md127"),  # getopt_long
        (["--a"], {"all"}, None),
        (["--help"], {"help"}, None),
        (["-h", "md127"], {"help"}, None),
    ],
)
def test_accepted_command_lines(argv: list[str], flags: set[str], container: str | None) -> None:
    assert entry.parse_mdmon(argv) == (flags, container)


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--takeover", "--takeover", "md127"], 1),
        (["-t", "--takeover", "md127"], 1),
        (["-tt", "md127"], 1),
        (["-F", "--foreground", "md127"], 1),
        (["--offroot", "--offroot", "md127"], 1),
        (["--all", "-a"], 1),
        (["--all", "--all-active-arrays"], 1),
        (["-h", "--help"], 1),
        (["--bogus", "md127"], 2),
        (["-x", "md127"], 2),
        (["-Fx", "md127"], 2),
        (["--takeover=yes", "md127"], 2),
        ([], 2),
        (["--takeover"], 2),
        (["-Ft"], 2),
        (["md127", "md128"], 2),
        (["--all", "md127", "md128"], 2),  # mdmon: argc - optind > 1 is usage, --all or not
    ],
)
def test_refused_command_lines_carry_mdmons_status(argv: list[str], status: int) -> None:
    with pytest.raises(entry.UsageError) as e:
        entry.parse_mdmon(argv)
    assert e.value.status == status


def test_a_duplicate_is_reported_before_a_later_unknown_option() -> None:
    with pytest.raises(entry.UsageError) as e:
        entry.parse_mdmon(["-t", "-t", "--bogus", "md127"])
    assert e.value.status == 1 and "duplicate" in str(e.value)


# mdmon_main


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest process must never fork a daemon: a foreground path that tries is a failure."""

    def refuse(*a: object) -> None:
        raise AssertionError("forked")

    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(entry, "fork_and_wait", refuse)

    def mark() -> bool:
        marks.append(True)
        return True

    monkeypatch.setattr(entry, "mark_root_storage_daemon", mark)
    monkeypatch.setattr(entry, "in_initrd", lambda: False)
    marks.clear()


marks: list[bool] = []


REAL_RESOLVE, REAL_INSPECT = host.resolve, host.inspect


def fake_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sysfs = tmp_path / "sys"
    md = sysfs / "md127" / "md"
    md.mkdir(parents=True)
    (md / "metadata_version").write_text("external:imsm\n")
    (md / "level").write_text("\n")
    (md / "dev-sda").mkdir()
    member = sysfs / "md126" / "md"
    member.mkdir(parents=True)
    (member / "metadata_version").write_text("external:/md127/0\n")
    (member / "level").write_text("raid1\n")
    (member / "dev-sda").mkdir()
    monkeypatch.setattr(host, "resolve", functools.partial(REAL_RESOLVE, sysfs=str(sysfs)))
    monkeypatch.setattr(host, "inspect", functools.partial(REAL_INSPECT, sysfs=str(sysfs)))
    return sysfs


def capture_serve(monkeypatch: pytest.MonkeyPatch, status: int = 0) -> list[tuple[list[str], Options]]:
    calls: list[tuple[list[str], Options]] = []

    def serve(names: list[str], options: Options, ready: Callable[[int], None] = lambda s: None) -> int:
        calls.append((list(names), options))
        ready(status)
        return status

    monkeypatch.setattr(entry, "serve", serve)
    return calls


def test_help_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.mdmon_main(["--help"]) == 0
    assert "Usage: mdmon [options] CONTAINER" in capsys.readouterr().out


def test_usage_errors_print_the_usage_and_duplicates_only_the_complaint(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.mdmon_main(["--bogus", "md127"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --bogus" in err and "Usage: mdmon" in err
    assert entry.mdmon_main(["-t", "-t", "md127"]) == 1
    err = capsys.readouterr().err
    assert "duplicate" in err and "Usage" not in err


def test_a_device_that_does_not_exist_is_status_1_with_a_message(
    no_fork: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = capture_serve(monkeypatch)
    assert entry.mdmon_main(["/dev/md/no-such-container"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mdmon: ") and "/dev/md/no-such-container" in err
    assert entry.mdmon_main(["--foreground", "md98765"]) == 1
    assert "md98765" in capsys.readouterr().err
    assert calls == []


def test_a_member_array_is_refused_with_status_3_before_forking(
    no_fork: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_sysfs(tmp_path, monkeypatch)
    calls = capture_serve(monkeypatch)
    assert entry.mdmon_main(["md126"]) == 3  # without -F: it would fork after the check
    assert "member array" in capsys.readouterr().err and calls == []


def test_foreground_serves_the_container_with_the_options_given(
    no_fork: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_sysfs(tmp_path, monkeypatch)
    monkeypatch.setenv("MDMOND_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MDMOND_EVENT_LOG", str(tmp_path / "events.jsonl"))
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    calls = capture_serve(monkeypatch, status=0)
    assert entry.mdmon_main(["-Ft", "initrd/md127"]) == 0
    ((names, options),) = calls
    assert names == ["md127"] and options.takeover and options.run_dir == tmp_path / "run"
    assert [type(s) for s in options.sinks] == [JsonLines, Stderr]
    assert marks == []  # no --offroot, not in an initrd
    calls.clear()
    assert entry.mdmon_main(["--offroot", "-F", "md127"]) == 0
    assert marks == [True] and not calls[0][1].takeover


def test_foreground_returns_the_daemons_status(no_fork: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sysfs(tmp_path, monkeypatch)
    capture_serve(monkeypatch, status=3)
    assert entry.mdmon_main(["-F", "md127"]) == 3


def test_all_serves_every_container_even_after_one_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mdstat = tmp_path / "mdstat"
    mdstat.write_text(
        "Personalities : [raid1]\n"
        "md126 : active raid1 sdb[1] sda[0]\n      8192 blocks super external:/md127/0 [2/2] [UU]\n      \n"
        "md127 : inactive sdb[1](S) sda[0](S)\n      2210 blocks super external:imsm\n       \n"
        "md130 : inactive sdd[1](S) sdc[0](S)\n      65536 blocks super external:ddf\n       \n"
        "unused devices: <none>\n"
    )
    monkeypatch.setattr(entry, "MDSTAT", str(mdstat))
    monkeypatch.setattr(entry, "in_initrd", lambda: False)
    started: list[tuple[str, bool, frozenset[str]]] = []
    results = {"md127": 3, "md130": 0}

    def one(name: str, flags: set[str], run_dir: Path, event_log: str | None, *, fork: bool) -> int:
        started.append((name, fork, frozenset(flags)))
        return results[name]

    monkeypatch.setattr(entry, "_mdmon_one", one)
    assert entry.mdmon_main(["--all", "--takeover", "--foreground"]) == 3
    # Forking for each even with --foreground, as mdmon; the failure of the first stops no other.
    assert started == [
        ("md127", True, frozenset({"all", "takeover", "foreground"})),
        ("md130", True, frozenset({"all", "takeover", "foreground"})),
    ]
    started.clear()
    results["md127"] = 0
    assert entry.mdmon_main(["/proc/mdstat"]) == 0
    assert [s[0] for s in started] == ["md127", "md130"]


def test_all_without_md_loaded_serves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entry, "MDSTAT", str(tmp_path / "no-mdstat"))
    monkeypatch.setattr(entry, "in_initrd", lambda: False)
    started: list[Any] = []

    def one(*a: Any, **k: Any) -> int:
        started.append(a)
        return 3

    monkeypatch.setattr(entry, "_mdmon_one", one)
    assert entry.mdmon_main(["--all"]) == 0 and started == []


# mdmond run


def test_run_needs_a_container_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run"]) == 2
    assert "CONTAINER" in capsys.readouterr().err


def test_run_refuses_a_bad_name(
    no_fork: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = capture_serve(monkeypatch)
    assert cli.main(["run", "/dev/md/no-such-container"]) == 1
    assert "no-such-container" in capsys.readouterr().err and calls == []


def test_run_all_without_containers_exits_0(
    no_fork: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(entry, "MDSTAT", str(tmp_path / "no-mdstat"))
    calls = capture_serve(monkeypatch)
    assert cli.main(["run", "--all"]) == 0
    assert "no containers" in capsys.readouterr().err and calls == []


def test_run_serves_every_named_container_in_one_process(
    no_fork: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysfs = fake_sysfs(tmp_path, monkeypatch)
    (sysfs / "md130" / "md").mkdir(parents=True)
    calls = capture_serve(monkeypatch, status=0)
    args = ["run", "md127", "md130", "--takeover", "--run-dir", str(tmp_path / "run"), "--no-journal", "-v"]
    args += ["--event-log", str(tmp_path / "ev.jsonl"), "--offroot"]
    assert cli.main(args) == 0
    ((names, options),) = calls
    assert names == ["md127", "md130"] and options.takeover and options.run_dir == tmp_path / "run"
    assert [type(s) for s in options.sinks] == [JsonLines, Stderr]
    stderr_sink = options.sinks[1]
    assert isinstance(stderr_sink, Stderr) and stderr_sink.verbose
    assert marks == [True]
