"""Command line entry point: ``mdmond <command> ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import formats
from formats.base import first_difference
from formats.errors import DiskIOError, MetadataError

from . import __version__
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
            model = h.assemble([copy]).model()
        except (MetadataError, DiskIOError) as e:
            status = 1
            if args.json:
                results.append(error_json(path, e))
            else:
                print(f"mdmond: {e}", file=sys.stderr)
            continue
        entry = container_json(model, path)
        if args.check_roundtrip:
            diff = first_difference(disk, copy.encode())
            entry["roundtrip"] = {"identical": diff is None, "first_difference": diff}
            if diff is not None:
                status = 2
                print(
                    f"mdmond: {path}: re-encoded {copy.format} metadata differs from the disk at byte {diff:#x}",
                    file=sys.stderr,
                )
        if args.json:
            results.append(entry)
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
    ex.add_argument(
        "--check-roundtrip",
        action="store_true",
        help="re-encode the parsed metadata and fail (exit 2) naming the first byte that differs from the disk",
    )
    ex.add_argument(
        "--sector-size", type=int, choices=(512, 4096), help="logical sector size of image files (default 512)"
    )
    ex.set_defaults(func=_examine)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return result
