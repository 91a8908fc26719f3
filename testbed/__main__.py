"""``python -m testbed``: prepare the test bed, run a command in a guest, regenerate reference data.

python -m testbed setup                      # install + prepare the kernel (idempotent)
python -m testbed run -- cat /proc/mdstat    # 4 fresh 64 MiB disks, deleted afterwards
python -m testbed run --disk a.img --disk b.img --mdmon mdmond -- mdadm --assemble --scan
python -m testbed transcripts [SCENARIO...]  # tests/data/transcripts/*.json
python -m testbed golden [SCENARIO...]       # tests/data/golden/* (python -m testbed.golden)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from . import provision, vm


def _setup(args: argparse.Namespace) -> int:
    try:
        k = provision.prepare(install=True, check_package=args.check)
    except provision.Unavailable as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 1
    print(f"testbed ready: kernel {k.version} ({k.package}), cache {provision.cache_dir()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.script:
        script = Path(args.script).read_text()
    elif args.command:
        script = shlex.join(args.command)
    else:
        print("testbed run: give a command after -- or --script FILE", file=sys.stderr)
        return 2
    disks: int | list[str] = args.disk if args.disk else args.disks
    env = dict(kv.split("=", 1) for kv in args.env)
    try:
        k = provision.prepare(install=True)
    except provision.Unavailable as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 1
    r = vm.run(
        script,
        disks=disks,
        disk_size_mib=args.size,
        timeout=args.timeout,
        env=env,
        shares=args.share,
        workdir=args.workdir or Path.cwd(),
        mdmon=args.mdmon,
        echo=True,
        kernel=k,
    )
    if r.returncode == vm.NO_STATUS_RC or args.console:
        sys.stderr.write("---- kernel console (tail)\n" + r.console + "\n")
    if r.timed_out or r.returncode == vm.NO_STATUS_RC:
        sys.stderr.write(r.stderr[r.stderr.rfind("\ntestbed:") :])
    if args.time:
        boot = f"{r.boot_seconds:.2f} s" if r.boot_seconds is not None else "?"
        print(f"testbed: boot {boot}, total {r.seconds:.2f} s, exit {r.returncode}", file=sys.stderr)
    return r.returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m testbed", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="install the Debian packages and prepare the kernel + initramfs")
    s.add_argument("--check", action="store_true", help="also rebuild if apt offers a newer kernel package")
    s.set_defaults(func=_setup)
    r = sub.add_parser("run", help="boot a guest and run a command or script in it as root")
    r.add_argument("--disks", type=int, default=4, help="number of fresh disks (default 4)")
    r.add_argument("--size", type=int, default=64, help="size of fresh disks, MiB (default 64)")
    r.add_argument(
        "--disk",
        action="append",
        default=[],
        help="attach this existing image (repeatable; disk N gets serial MDVM%%08d)",
    )
    r.add_argument("--timeout", type=float, default=600, help="kill the VM after this many seconds (exit 124)")
    r.add_argument(
        "--mdmon",
        choices=("mdmon", "mdmond"),
        help="what mdadm starts as mdmon (default: env MDMOND_TESTBED_MDMON or mdmon)",
    )
    r.add_argument("-e", "--env", action="append", default=[], metavar="VAR=VALUE", help="extra guest environment")
    r.add_argument("--share", action="append", default=[], help="also share this host folder read-write (same path)")
    r.add_argument("--workdir", help="folder shared read-write and used as cwd (default: the current one)")
    r.add_argument("--script", help="run this bash script instead of a command")
    r.add_argument("--console", action="store_true", help="print the kernel console afterwards")
    r.add_argument("--time", action="store_true", help="print boot and total time")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=_run)
    t = sub.add_parser("transcripts", help="record tests/data/transcripts/<scenario>.json")
    t.add_argument("scenarios", nargs="*")
    t.add_argument("--out", help="folder for the JSON files (default tests/data/transcripts)")
    t.set_defaults(func=lambda a: _delegate("transcript", a))
    g = sub.add_parser("golden", help="regenerate tests/data/golden/<scenario>/")
    g.add_argument("scenarios", nargs="*")
    g.add_argument("--out", help="folder to write into (default tests/data/golden)")
    g.set_defaults(func=lambda a: _delegate("golden", a))
    return p


def _delegate(module: str, args: argparse.Namespace) -> int:
    import importlib

    mod = importlib.import_module(f"testbed.{module}")
    argv = list(args.scenarios) + (["--out", args.out] if args.out else [])
    rc: int = mod.main(argv)
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
