"""Command line entry point: ``mdmond <command> ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import formats
from formats.base import first_difference
from formats.errors import DiskIOError, MetadataError

from . import __version__, eventlog
from .dryrun import Action, describe, dry_run
from .entry import add_run_parser, mdmon_main
from .eventlog import Filter
from .examine import container_json, error_json
from .images import open_image


def _examine(args: argparse.Namespace) -> int:
    status = 0
    results: list[dict[str, object]] = []
    for path in args.devices:
        try:
            disk = open_image(path, sector_size=args.sector_size)
            copy = formats.load(disk)
            h = formats.handler(copy.format)
            assembled = h.assemble([copy])
            model = assembled.model()
        except (MetadataError, DiskIOError) as e:
            status = 1
            if args.json:
                results.append(error_json(path, e))
            else:
                print(f"mdmond: {e}", file=sys.stderr)
            continue
        entry = container_json(model, path)
        try:
            # What the daemon would refuse to serve is shown (as mdadm --examine shows it) and said.
            assembled.validate()
        except MetadataError as e:
            status = 1
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
                status = 2
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
    actions += [Action(t, "fail", dev) for t, dev in (_at_dev(v) for v in args.fail)]
    report = dry_run(args.devices, duration=args.duration, actions=actions, sector_size=args.sector_size)
    if args.json:
        json.dump(report.json(), sys.stdout, indent=2)
        print()
    else:
        print(describe(report), end="")
    hung = any(e.kind == "WRITE-HUNG" for c in report.containers for e in c.events)
    return 1 if report.errors or hung else 0


def _events(args: argparse.Namespace) -> int:
    flt = Filter(set(args.kind), set(args.container), args.since, routine=not args.quiet)
    return eventlog.main(args.path, flt, follow=args.follow, as_json=args.json)


def _at_dev(value: str) -> tuple[float, str]:
    t, _, dev = value.partition(":")
    if not dev:
        raise argparse.ArgumentTypeError(f"expected SECONDS:DEVICE, not {value!r}")
    return float(t), dev


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdmond", description="Metadata daemon for md external-metadata RAID")
    p.add_argument("--version", action="version", version=f"mdmond {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("examine", help="show the IMSM/DDF metadata of devices or disk images")
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
        help="re-encode the parsed metadata and fail (exit 2) naming the first byte that differs from the disk",
    )
    ex.add_argument(
        "--sector-size", type=int, choices=(512, 4096), help="logical sector size of image files (default 512)"
    )
    ex.set_defaults(func=_examine)

    dr = sub.add_parser(
        "dry-run",
        help="run the daemon over disk images on a simulated md driver; nothing is written to them",
    )
    dr.add_argument("devices", nargs="+", metavar="DEVICE_OR_IMAGE", help="as for examine (IMAGE,serial=S)")
    dr.add_argument("--duration", type=float, default=30.0, help="simulated seconds to run (default 30)")
    dr.add_argument(
        "--write-at", type=float, action="append", default=[], metavar="SECONDS", help="a write to every array then"
    )
    dr.add_argument("--fail", action="append", default=[], metavar="SECONDS:DEVICE", help="a member fails then (sdb)")
    dr.add_argument("--json", action="store_true", help="the report as JSON (events, before, after, would-write)")
    dr.add_argument("--sector-size", type=int, choices=(512, 4096))
    dr.set_defaults(func=_dry_run)
    add_run_parser(sub)
    ev = sub.add_parser("events", help="read the JSON event log written by mdmond run --event-log")
    ev.add_argument("path", metavar="LOG", help="the event log, or - for standard input")
    ev.add_argument("-f", "--follow", action="store_true", help="keep reading as the daemon appends")
    ev.add_argument("--kind", action="append", default=[], metavar="EVENT", help="only these events (repeatable)")
    ev.add_argument("--container", action="append", default=[], metavar="MD", help="only these containers")
    ev.add_argument("--since", type=float, metavar="EPOCH", help="only events at or after this time")
    ev.add_argument("--quiet", action="store_true", help="leave out routine dirty/clean/checkpoint events")
    ev.add_argument("--json", action="store_true", help="print the events as JSON lines")
    ev.set_defaults(func=_events)
    sub.add_parser("mdmon", help="mdmon's own command line, for stock mdadm: mdmond mdmon [--takeover] ... CONTAINER")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mdmon"]:  # mdmon's options are its own (mdmon -Ft md127), not argparse's
        return mdmon_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return result
