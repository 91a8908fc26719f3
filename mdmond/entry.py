"""Starting the daemon: ``mdmond run`` and the mdmon-compatible ``mdmon`` command.

``mdmon [--all] [--takeover] [--foreground] [--offroot] CONTAINER`` is what
stock mdadm (``util.c: start_mdmon``) and mdadm's systemd unit run, with
mdmon's option rules and exit statuses (mdmon.md §1.1): duplicate options
exit 1, unknown ones exit 2, a bad device exits 1, anything that prevents
serving exits 3.  Without ``--foreground`` it forks and the parent exits only
once the child serves (or with the child's failure status).  ``--all`` serves
every container in ``/proc/mdstat``, one forked process each, as mdmon does.

``mdmond run`` is the native form: always in the foreground (systemd's
``Type=notify``), any number of containers in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from . import host
from .daemon import Daemon, Options
from .process import detach, fork_and_wait, in_initrd, mark_root_storage_daemon, name_as_mdmon
from .service import RUN_DIR
from .sinks import Journal, JsonLines, Sink, Stderr

MDMON_USAGE = """\
Usage: mdmon [options] CONTAINER

Options are:
  --help        -h   : This message
  --all         -a   : All devices (served one process each)
  --foreground  -F   : Run in foreground (do not fork)
  --takeover    -t   : Takeover container
  --offroot          : Set first character of argv[0] to @ to indicate the
                       application was launched from initrd/initramfs and
                       should not be shutdown by systemd as part of the
                       regular shutdown process.
"""

_MDMON_OPTS = {
    "--all": "all",
    "-a": "all",
    "--takeover": "takeover",
    "-t": "takeover",
    "--foreground": "foreground",
    "-F": "foreground",
    "--offroot": "offroot",
    "--help": "help",
    "-h": "help",
}


class UsageError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_mdmon(argv: Sequence[str]) -> tuple[set[str], str | None]:
    """mdmon's command line: (flags, container). ``--all-active-arrays`` is ``--all`` with room for a name."""
    flags: set[str] = set()
    positional: list[str] = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--":
            positional += args
            break
        if a.startswith("--all"):
            a = "--all"
        elif a.startswith("--") and a not in _MDMON_OPTS:
            # getopt_long takes an unambiguous abbreviation: --take is --takeover.
            longer = [o for o in _MDMON_OPTS if o.startswith(a) and o.startswith("--")]
            if len(longer) == 1 and len(a) > 2:
                a = longer[0]
        if a.startswith("-") and len(a) > 2 and not a.startswith("--"):
            args[:0] = [f"-{c}" for c in a[1:]]  # -Ft
            continue
        if a.startswith("-"):
            flag = _MDMON_OPTS.get(a)
            if flag is None:
                raise UsageError(f"mdmon: unknown option {a}", 2)
            if flag in flags:
                raise UsageError(f"mdmon: '{a}' - duplicate options", 1)
            flags.add(flag)
        else:
            positional.append(a)
    if len(positional) > 1:  # mdmon: argc - optind > 1, even with --all
        raise UsageError("mdmon: only one CONTAINER may be named", 2)
    if "help" in flags:
        return flags, None
    if "all" in flags:
        return flags, None
    if not positional:
        raise UsageError("mdmon: exactly one CONTAINER is required", 2)
    if positional[0] == "/proc/mdstat":
        flags.add("all")
        return flags, None
    return flags, positional[0]


#: Read for ``--all``.
MDSTAT = "/proc/mdstat"


def _read_mdstat() -> str:
    """``/proc/mdstat``, or nothing where md is not loaded (mdmon: no containers, exit 0)."""
    try:
        with open(MDSTAT) as f:
            return f.read()
    except OSError:
        return ""


def _sinks(event_log: str | None, *, journal: bool, stderr: bool, verbose: bool) -> list[Sink]:
    sinks: list[Sink] = []
    if event_log:
        sinks.append(JsonLines(event_log))
    if journal:
        with contextlib.suppress(ImportError):  # no systemd-python: the other sinks still work
            sinks.append(Journal())
    if stderr:
        sinks.append(Stderr(verbose=verbose))
    return sinks


def _under_journal() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def serve(names: Sequence[str], options: Options, ready: Callable[[int], None] = lambda status: None) -> int:
    return trio.run(Daemon(names, options).run, ready)


def mdmon_main(argv: Sequence[str] | None = None) -> int:
    """``mdmon ...``: the drop-in for stock mdadm."""
    try:
        flags, spec = parse_mdmon(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        if e.status == 2:
            print(MDMON_USAGE, end="", file=sys.stderr)
        return e.status
    if "help" in flags:
        print(MDMON_USAGE, end="")
        return 0
    name_as_mdmon()  # before the '@' mark, which then reads "@dmon"
    if "offroot" in flags or in_initrd():
        mark_root_storage_daemon()
    run_dir = Path(os.environ.get("MDMOND_RUN_DIR", str(RUN_DIR)))
    event_log = os.environ.get("MDMOND_EVENT_LOG")
    if "all" in flags:
        status = 0
        for name in host.containers(_read_mdstat()):  # one process each: a takeover of one touches no other
            # Every container is tried even after one failed (mdmon: status |= mdmon(...)).
            one = _mdmon_one(name, flags, run_dir, event_log, fork=True)
            status = status or one
        return status
    assert spec is not None
    try:
        name = host.resolve(spec)
    except host.HostError as e:
        print(f"mdmon: {e}", file=sys.stderr)
        return e.status
    return _mdmon_one(name, flags, run_dir, event_log, fork="foreground" not in flags)


def _mdmon_one(name: str, flags: set[str], run_dir: Path, event_log: str | None, *, fork: bool) -> int:
    try:
        host.inspect(name)  # refuse a non-container before forking, with mdmon's status
    except host.HostError as e:
        print(f"mdmon: {e}", file=sys.stderr)
        return e.status
    report: Callable[[int], None] = _no_report
    if fork:
        pid = os.fork()
        if pid:  # the caller of --all goes on to the next container once this one serves
            _, st = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(st)
        child_report = fork_and_wait()  # the intermediate parent exits with the readiness status
        assert child_report is not None
        report = child_report
    sinks = _sinks(event_log, journal=_under_journal(), stderr=not fork, verbose=False)
    options = Options(takeover="takeover" in flags, run_dir=run_dir, sinks=sinks)

    def ready(status: int) -> None:
        report(status)
        if fork and status == 0:
            detach()

    status = serve([name], options, ready)
    if fork:
        os._exit(status)
    return status


def _no_report(status: int) -> None:
    """Foreground: nobody waits on a pipe."""


def run_main(args: argparse.Namespace) -> int:
    """``mdmond run``: the foreground daemon for systemd or a terminal."""
    if args.offroot or in_initrd():
        mark_root_storage_daemon()
    if args.all:
        names = host.containers(_read_mdstat())
        if not names:
            print("mdmond: no containers in /proc/mdstat", file=sys.stderr)
            return 0
    else:
        names = []
        for spec in args.containers:
            try:
                names.append(host.resolve(spec))
            except host.HostError as e:
                print(f"mdmond: {e}", file=sys.stderr)
                return e.status
    journal = args.journal if args.journal is not None else _under_journal()
    sinks = _sinks(args.event_log, journal=journal, stderr=not journal, verbose=args.verbose)
    options = Options(takeover=args.takeover, run_dir=Path(args.run_dir), sinks=sinks)
    return serve(names, options)


def add_run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="serve containers (foreground; the systemd unit runs this)")
    r.add_argument("containers", nargs="*", metavar="CONTAINER", help="/dev/md/imsm0, md127, ...")
    r.add_argument("--all", action="store_true", help="every container in /proc/mdstat")
    r.add_argument("--takeover", action="store_true", help="replace a running mdmon or mdmond")
    r.add_argument("--offroot", action="store_true", help="mark argv[0] with '@' (survive systemd's final kill)")
    r.add_argument("--event-log", metavar="PATH", help="append JSON events to PATH (read with mdmond events)")
    r.add_argument(
        "--journal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log to the journal (default: when under systemd)",
    )
    r.add_argument("--run-dir", default=str(RUN_DIR), help=f"pid and socket files (default {RUN_DIR})")
    r.add_argument("-v", "--verbose", action="store_true", help="also routine events (dirty, clean, checkpoints)")
    r.set_defaults(func=_run_checked)


def _run_checked(args: argparse.Namespace) -> int:
    if not args.all and not args.containers:
        print("mdmond run: name at least one CONTAINER, or --all", file=sys.stderr)
        return 2
    return run_main(args)


__all__ = ["add_run_parser", "mdmon_main", "parse_mdmon", "run_main"]
