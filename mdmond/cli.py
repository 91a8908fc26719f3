"""Command line entry point: ``mdmond <command> ...``."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO, cast

import formats
from formats.base import first_difference
from formats.errors import DiskIOError, MetadataError

from . import __version__, eventlog
from .dryrun import Action, describe, dry_run
from .entry import add_run_parser, mdmon_main
from .eventlog import Filter
from .examine import container_json, error_json, warnings_of
from .images import open_image
from .usage import (
    BROKEN_PIPE,
    DIFFERS,
    FAILED,
    INTERRUPTED,
    OK,
    OUTPUT,
    STATUSES,
    CommandError,
    Parser,
    error_object,
    problem_of,
    seconds,
)


def _examine(args: argparse.Namespace) -> int:
    status = OK
    results: list[dict[str, object]] = []
    for path in args.devices:
        try:
            disk = open_image(path, sector_size=args.sector_size)
            copy = formats.load(disk)
            h = formats.handler(copy.format)
            assembled = h.assemble([copy])
            model = assembled.model()
        except (MetadataError, DiskIOError) as e:
            status = max(status, FAILED)
            if args.json:
                results.append(error_json(path, e))
            else:
                print(f"mdmond: {problem_of(path, e)}", file=sys.stderr)
            continue
        entry = container_json(model, path)
        warnings = warnings_of(path, model, disk.name)
        for w in warnings:  # mdadm --examine warns too, and still shows the copy it could use
            print(f"mdmond: warning: {w}", file=sys.stderr)
        if args.json:
            entry["warnings"] = [w.json() for w in warnings]
        try:
            # What the daemon would refuse to serve is shown (as mdadm --examine shows it) and said.
            assembled.validate()
        except MetadataError as e:
            status = max(status, FAILED)
            entry["invalid"] = error_json(path, e)["error"]
            print(f"mdmond: {path}: the daemon would refuse this metadata: {e}", file=sys.stderr)
        if args.check_roundtrip:
            try:
                diff = first_difference(disk, copy.encode())
            except (MetadataError, DiskIOError) as e:
                status = 1
                if args.json:
                    results.append(error_json(path, e))
                else:
                    print(f"mdmond: {path}: cannot re-encode the {copy.format} metadata: {e}", file=sys.stderr)
                continue
            entry["roundtrip"] = {"identical": diff is None, "first_difference": diff}
            if diff is not None:
                status = DIFFERS
                print(
                    f"mdmond: {path}: re-encoded {copy.format} metadata differs from the disk at byte {diff:#x}",
                    file=sys.stderr,
                )
        if args.json:
            results.append(entry)
        elif args.brief:
            vols = ", ".join(
                f"{v.name} raid{v.level} {v.state.value}{' dirty' if v.dirty else ''}" for v in model.volumes
            )
            line = f"{path}: {model.format} {model.uuid} [{vols or 'spare'}]"
            if args.check_roundtrip:
                rt = entry["roundtrip"]
                assert isinstance(rt, dict)
                line += " round trip " + ("identical" if rt["identical"] else f"DIFFERS at {rt['first_difference']:#x}")
            print(line)
        else:
            text = copy.examine()
            print(text if text.endswith("\n") else text + "\n", end="")
            if args.check_roundtrip:
                rt = entry["roundtrip"]
                assert isinstance(rt, dict)
                verdict = "identical" if rt["identical"] else f"DIFFERS at byte {rt['first_difference']:#x}"
                print(f"      Round trip : {verdict}")
            print()
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    return status


def _dry_run(args: argparse.Namespace) -> int:
    actions = [Action(t, "write") for t in args.write_at]
    actions += [Action(t, "fail", dev) for t, dev in args.fail]
    report = dry_run(args.devices, duration=args.duration, actions=actions, sector_size=args.sector_size)
    if args.json:
        json.dump(report.json(), sys.stdout, indent=2)
        print()
    else:
        print(describe(report), end="")
    for p in report.warnings:
        print(f"mdmond: warning: {p}", file=sys.stderr)
    for p in report.errors:
        print(f"mdmond: {p}", file=sys.stderr)
    hung = any(e.kind == "WRITE-HUNG" for c in report.containers for e in c.events)
    return FAILED if report.errors or hung else OK


def _events(args: argparse.Namespace) -> int:
    eventlog.check_kinds(args.kind)
    flt = Filter(set(args.kind), set(args.container), args.since, routine=not args.quiet)
    return eventlog.main(args.path, flt, follow=args.follow, as_json=args.json)


def _at_dev(value: str) -> tuple[float, str]:
    """argparse type of ``--fail``: SECONDS:DEVICE; which devices exist is known only once the images are read."""
    t, _, dev = value.partition(":")
    if not dev:
        raise argparse.ArgumentTypeError(f"expected SECONDS:DEVICE (10:sdb), not {value!r}")
    return seconds(t), dev


def _epilog() -> str:
    rows = "\n".join(f"  {code:<4} {meaning}" for code, meaning in STATUSES)
    return (
        "exit status (examine, dry-run, events):\n" + rows + "\n\n"
        "Every refusal is one line on stderr, 'mdmond: WHAT: MESSAGE'; with --json also\n"
        '{"error": {"kind", "message", "what", "where"}} on stdout.'
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="mdmond",
        description="Metadata daemon for md external-metadata RAID",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mdmond {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    # Each command's --help ends with the exit statuses too.
    common: dict[str, Any] = {"epilog": _epilog(), "formatter_class": argparse.RawDescriptionHelpFormatter}
    ex = sub.add_parser("examine", help="show the IMSM/DDF metadata of devices or disk images", **common)
    ex.add_argument(
        "devices",
        nargs="+",
        metavar="DEVICE_OR_IMAGE",
        help="block device, raw image or .xz image; an image may name its drive's serial as IMAGE,serial=S",
    )
    ex.add_argument("--json", action="store_true", help="one JSON object per device, in order")
    ex.add_argument("--brief", action="store_true", help="one line per device")
    ex.add_argument(
        "--check-roundtrip",
        action="store_true",
        help="re-encode the parsed metadata and fail (exit 3) naming the first byte that differs from the disk",
    )
    ex.add_argument(
        "--sector-size", type=int, choices=(512, 4096), help="logical sector size of image files (default 512)"
    )
    ex.set_defaults(func=_examine)

    dr = sub.add_parser(
        "dry-run",
        help="run the daemon over disk images on a simulated md driver; nothing is written to them",
        **common,
    )
    dr.add_argument("devices", nargs="+", metavar="DEVICE_OR_IMAGE", help="as for examine (IMAGE,serial=S)")
    dr.add_argument("--duration", type=seconds, default=30.0, help="simulated seconds to run (default 30)")
    dr.add_argument(
        "--write-at", type=seconds, action="append", default=[], metavar="SECONDS", help="a write to every array then"
    )
    dr.add_argument(
        "--fail",
        type=_at_dev,
        action="append",
        default=[],
        metavar="SECONDS:DEVICE",
        help="a member fails then; DEVICE is sdb (the second image), /dev/sdb, the disk's serial or its image path",
    )
    dr.add_argument("--json", action="store_true", help="the report as JSON (events, before, after, would-write)")
    dr.add_argument("--sector-size", type=int, choices=(512, 4096))
    dr.set_defaults(func=_dry_run)
    add_run_parser(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))  # the run parser is a Parser too
    ev = sub.add_parser("events", help="read the JSON event log written by mdmond run --event-log", **common)
    ev.add_argument("path", metavar="LOG", help="the event log, or - for standard input")
    ev.add_argument("-f", "--follow", action="store_true", help="keep reading as the daemon appends")
    ev.add_argument(
        "--kind", action="append", default=[], metavar="EVENT", help="only these events (repeatable; see README)"
    )
    ev.add_argument("--container", action="append", default=[], metavar="MD", help="only these containers")
    ev.add_argument("--since", type=seconds, metavar="EPOCH", help="only events at or after this time")
    ev.add_argument("--quiet", action="store_true", help="leave out routine dirty/clean/checkpoint events")
    ev.add_argument("--json", action="store_true", help="print the events as JSON lines")
    ev.set_defaults(func=_events)
    sub.add_parser("mdmon", help="mdmon's own command line, for stock mdadm: mdmond mdmon [--takeover] ... CONTAINER")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mdmon"]:  # mdmon's options are its own (mdmon -Ft md127), not argparse's
        return mdmon_main(argv[1:])
    as_json = "--json" in argv  # known before parsing, so that a refused command line is JSON too
    try:
        with _checked_stdout():
            try:
                args = build_parser().parse_args(argv)
                status: int = args.func(args)
            except CommandError as e:
                if as_json:
                    json.dump(error_object(e.problem), sys.stdout)
                    print()
                print(f"mdmond: {e.problem}", file=sys.stderr)
                return e.status
    except _OutputError as e:
        if e.errno == errno.EPIPE:
            return BROKEN_PIPE
        print(f"mdmond: standard output: {e.strerror}", file=sys.stderr)
        return OUTPUT
    except KeyboardInterrupt:
        return _interrupted()
    except BaseExceptionGroup as eg:  # trio gathers a Ctrl-C inside its nurseries into a group
        if eg.subgroup(KeyboardInterrupt) is None:
            raise
        return _interrupted()
    return status


def _interrupted() -> int:
    print("mdmond: interrupted", file=sys.stderr)
    return INTERRUPTED


class _OutputError(Exception):
    """Standard output failed (full disk, reader gone): not one of the command's own OSErrors."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror)
        self.errno = err.errno
        self.strerror = err.strerror or str(err)


class _CheckedStdout:
    """Standard output whose write errors are ``_OutputError``s, whichever print or dump made them."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, s: str) -> int:
        try:
            return self.inner.write(s)
        except OSError as e:
            raise _OutputError(e) from None

    def flush(self) -> None:
        try:
            self.inner.flush()
        except OSError as e:
            raise _OutputError(e) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def _checked_stdout() -> Iterator[None]:
    inner = sys.stdout
    sys.stdout = _CheckedStdout(inner)
    try:
        yield
        sys.stdout.flush()  # a full disk shows on the last flush, after the command returned
    except _OutputError:
        _discard_output(inner)
        raise
    finally:
        sys.stdout = inner


def _discard_output(stream: TextIO) -> None:
    """Point fd 1 at /dev/null so that the interpreter's own last flush fails no more (and prints nothing)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no fd under a test capture
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
