"""The systemd units start a command mdmond really has, with options it accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from mdmond.cli import build_parser

UNITS = Path(__file__).resolve().parents[2] / "units"
FILES = [UNITS / "mdmond@.service", UNITS / "mdmon@.service.d" / "mdmond.conf"]


def _service(path: Path) -> dict[str, list[str]]:
    """The [Service] keys, each with every value it is given (ExecStart= may repeat)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_execstart_is_a_valid_mdmond_command(path: Path) -> None:
    svc = _service(path)
    cmd = [v for v in svc["ExecStart"] if v][-1]  # an empty ExecStart= resets the list
    argv = shlex.split(cmd.replace("%I", "md127"))
    assert argv[0].endswith("/mdmond")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.containers == ["md127"]
    assert args.takeover and args.offroot  # never a moment unserved; survive the final kill
    assert svc["Type"] == ["notify"]  # mdmond sends READY=1 once it answers for the container


def test_the_unit_stays_out_of_shutdown_conflicting_slices() -> None:
    """mdadm's lesson (mdmon.md §1.6): the default slice conflicts with shutdown and kills us too early."""
    text = (UNITS / "mdmond@.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text)
    assert unit["Service"]["Slice"] == "system.slice"
    assert unit["Unit"]["IgnoreOnIsolate"] == "true"
    assert unit["Unit"]["DefaultDependencies"] == "no"
    assert "KillMode" not in unit["Service"]  # SIGTERM is how arrays get marked clean
