"""VM benchmark: stock mdmon and mdmond side by side on the real md driver.

One qemu boot (testbed, TCG) runs, for IMSM and then DDF, a RAID1 volume of two
disks under stock mdadm 4.2 with stock mdmon, then the same volume re-assembled
with mdmond bound over ``/usr/sbin/mdmon`` (both daemons serve an assembled
array: the volume is created and initialised once, stopped, then assembled for
each daemon in turn).  For each daemon:

* write-pending -> active latency: wait until ``array_state`` is ``clean``
  and ``--settle`` more (default 0.25 s: the daemon's own clean write may
  still be under way after ``clean`` shows; ``--settle 0.02`` measures that
  overlap too), time one 4 KiB ``O_DIRECT`` write (held by the kernel until the daemon has
  marked the metadata dirty and set ``active``); a second write right after it
  (the array is active: no transition) is the baseline;
* clean-return: from that second write until the daemon has set ``clean``
  again (``safe_mode_delay`` plus the daemon's clean write);
* metadata writes per cycle: member disks' write sectors, write I/Os and
  cache flushes over the loop (``/sys/block/sdX/stat``; its write I/O count
  includes the empty flush bios, subtracted here) minus the data writes; also
  split into the write-pending window (timed write + baseline write) and the
  clean window (until ``clean`` is seen + the settle pause);
* idle wake-ups: the daemon's context switches (voluntary + involuntary,
  summed over its threads) and CPU time over an idle period, per minute;
* VmRSS, VmHWM and VmLck once serving.

``safe_mode_delay`` is read as mdadm and the daemon leave it (mdadm sets 4 s for
IMSM and DDF), then set to ``--safe-mode-delay`` for both daemons.

The guest is TCG-emulated with one vCPU: absolute times are inflated many times
over; the ratios are the point.  Figures only; nothing here asserts a timing.

Run: ``.venv/bin/python benchmarks/vm_latency.py [--cycles N] [--idle SECONDS]``
(~4-6 min on a 2-core machine).  The same file runs in the guest (``--guest``)
for the measurements, with the standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import select
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
FORMATS = ("imsm", "ddf")
DAEMONS = ("mdmon", "mdmond")
BLOCK = 4096
# the guest's disks: IMSM on sda/sdb, DDF on sdc/sdd
DISKS = {"imsm": (0, 1), "ddf": (2, 3)}

GUEST_SCRIPT = r"""
set -u
. "$TESTBED_PROJECT/testbed/guest/lib.sh"
BENCH="$TESTBED_PROJECT/benchmarks/vm_latency.py"
SHIM="$TESTBED_PROJECT/testbed/guest/mdmon-mdmond"
echo "# $(mdadm --version 2>&1); kernel $(uname -r)"

# wait_gone PID: until the process has exited (bounded)
wait_gone() {
  local i=0
  while [ -d "/proc/$1" ]; do i=$((i + 1)); [ $i -gt 600 ] && die "pid $1 still there"; sleep 0.1; done
}
volume_of() {
  local v
  for v in /sys/block/md*/md; do
    case "$(cat "$v/metadata_version")" in external:/*) echo "${v:11:-3}"; return;; esac
  done
}

measure() {  # FORMAT DAEMON DISK...
  local fmt=$1 daemon=$2 pid vol; shift 2
  if [ "$daemon" = mdmond ]; then mount --bind "$SHIM" /usr/sbin/mdmon || die "bind"; fi
  mdadm --assemble /dev/md/c0 "$@" 2>&1 || die "assemble $fmt container"
  mdadm --incremental /dev/md/c0 2>&1 || die "assemble $fmt volume"
  vol=$(volume_of)
  python3 "$BENCH" --guest --format "$fmt" --daemon "$daemon" --container "$(mdname /dev/md/c0)" --volume "$vol" \
    --cycles "$CYCLES" --idle "$IDLE" --safe-mode-delay "$SMD" --settle "$SETTLE" --disks "$@" \
    || die "measure $fmt $daemon"
  read -r pid < "/run/mdadm/$(mdname /dev/md/c0).pid"
  stop_all
  wait_gone "$pid"
  if [ "$daemon" = mdmond ]; then umount /usr/sbin/mdmon || die "unbind"; fi
}

for fmt in $FORMATS; do
  case $fmt in imsm) disks=("${D[0]}" "${D[1]}");; ddf) disks=("${D[2]}" "${D[3]}");; esac
  t0=$EPOCHREALTIME
  mdadm --create /dev/md/c0 -e "$fmt" -n 2 --run "${disks[@]}" 2>&1 || die "create $fmt container"
  mdadm --create /dev/md/vol0 -l 1 -n 2 --size="$SIZE" --run /dev/md/c0 2>&1 || die "create $fmt volume"
  wait_idle /dev/md/vol0 300
  mdadm --wait-clean --scan >/dev/null 2>&1
  stop_all
  sleep 1
  echo "# $fmt: created and initialised in $(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )) ms"
  for daemon in $DAEMONS; do measure "$fmt" "$daemon" "${disks[@]}"; done
done
"""


# --------------------------------------------------------------------------- guest side (stdlib only)


def _wait_state(path: str, want: str, timeout: float) -> float:
    """Until the sysfs attribute reads ``want`` (woken by sysfs_notify, polled every 50 ms at worst)."""
    deadline = time.monotonic() + timeout
    fd = os.open(path, os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        while True:
            s = os.pread(fd, 64, 0).decode().strip()
            now = time.perf_counter()
            if s == want:
                return now
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{path} is {s!r}, not {want!r}, after {timeout:.0f} s")
            p.poll(min(left, 0.05) * 1000)
    finally:
        os.close(fd)


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _kib(v: str) -> int:
    return int(v.split()[0]) if v else 0


def _switches(pid: int) -> dict[int, int]:
    """Context switches (voluntary + involuntary) of each live thread."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            st = _proc_status(int(t.name))
        except OSError:
            continue
        out[int(t.name)] = int(st.get("voluntary_ctxt_switches", 0)) + int(st.get("nonvoluntary_ctxt_switches", 0))
    return out


def _cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (dead threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _disk_writes(disks: list[str]) -> list[int]:
    """Summed over the disks: write I/Os, write merges, write sectors, flush I/Os."""
    total = [0, 0, 0, 0]
    for d in disks:
        f = [int(x) for x in Path(f"/sys/block/{Path(d).name}/stat").read_text().split()]
        for i, k in enumerate((4, 5, 6, 15)):
            total[i] += f[k] if k < len(f) else 0
    return total


def _daemon_pid(container: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    path = Path(f"/run/mdadm/{container}.pid")
    while True:
        try:
            pid = int(path.read_text().split()[0])
            if Path(f"/proc/{pid}").exists():
                return pid
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no daemon pid in {path} after {timeout:.0f} s")
        time.sleep(0.1)


def guest(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    md = f"/sys/block/{args.volume}/md"
    state = f"{md}/array_state"
    pid = _daemon_pid(args.container, 120)
    t_pid = time.perf_counter()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    res: dict[str, Any] = {"format": args.format, "daemon": args.daemon, "pid": pid, "cmdline": cmdline}
    res["comm"] = Path(f"/proc/{pid}/comm").read_text().strip()
    res["safe_mode_delay_left"] = Path(f"{md}/safe_mode_delay").read_text().strip()
    Path(f"{md}/safe_mode_delay").write_text(f"{args.safe_mode_delay}\n")

    fd = os.open(f"/dev/{args.volume}", os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)
    buf.write(b"x" * BLOCK)
    slots = 256
    try:
        # warm-up: the first write after assembly (read-auto -> active), answered once the daemon serves
        res["array_state_assembled"] = Path(state).read_text().strip()
        t0 = time.perf_counter()
        os.pwrite(fd, buf, 0)
        res["first_write_ms"] = (time.perf_counter() - t0) * 1e3
        res["pid_to_first_write_ms"] = (time.perf_counter() - t_pid) * 1e3
        _wait_state(state, "clean", 60)
        st = _proc_status(pid)
        res["serving"] = {k: _kib(st.get(k, "")) for k in ("VmRSS", "VmHWM", "VmLck")}

        lat, base, back = [], [], []
        dirty, clean = [0, 0, 0, 0], [0, 0, 0, 0]
        for i in range(args.cycles):
            _wait_state(state, "clean", 60)
            time.sleep(args.settle)
            off = (i % slots) * BLOCK
            a = _disk_writes(args.disks)
            t0 = time.perf_counter()
            os.pwrite(fd, buf, off)
            t1 = time.perf_counter()
            os.pwrite(fd, buf, off)
            t2 = time.perf_counter()
            b = _disk_writes(args.disks)
            t_clean = _wait_state(state, "clean", 60)
            time.sleep(args.settle)
            c = _disk_writes(args.disks)
            lat.append((t1 - t0) * 1e3)
            base.append((t2 - t1) * 1e3)
            back.append((t_clean - t2) * 1e3)
            for k in range(4):
                dirty[k] += b[k] - a[k]
                clean[k] += c[k] - b[k]
        # a clean write that lands after the last window
        time.sleep(0.5)
        tail = [x - y for x, y in zip(_disk_writes(args.disks), c, strict=True)]
        # RAID1: both data writes go to every member, 4 KiB = 8 sectors each
        data_ios = 2 * args.cycles * len(args.disks)
        dirty[0] -= data_ios
        dirty[2] -= data_ios * BLOCK // 512
        res.update(latency_ms=lat, baseline_ms=base, clean_return_ms=back)
        # per cycle, summed over the members: [write I/Os (flushes included), write merges, write sectors, flushes]
        res["meta_dirty_per_cycle"] = [x / args.cycles for x in dirty]
        res["meta_clean_per_cycle"] = [x / args.cycles for x in clean]
        res["meta_tail"] = tail
        total = [d + c + t for d, c, t in zip(dirty, clean, tail, strict=True)]
        res["meta_bytes_per_cycle"] = total[2] * 512 / args.cycles
        res["meta_writes_per_cycle"] = (total[0] - total[3]) / args.cycles
        res["meta_flushes_per_cycle"] = total[3] / args.cycles

        # idle: no I/O; the daemon's wake-ups and CPU time
        _wait_state(state, "clean", 60)
        time.sleep(1)
        sw0 = _switches(pid)
        cpu0, w0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        sw1 = _switches(pid)
        cpu1, w1 = _cpu_seconds(pid), time.monotonic()
        minutes = (w1 - w0) / 60
        res["idle_s"] = w1 - w0
        # threads alive at the end, from their count at the start (0 if born since); a thread that
        # exited in between is lost (trio's idle worker threads exit after 10 s): an undercount
        res["idle_switches_per_min"] = sum(n - sw0.get(t, 0) for t, n in sw1.items()) / minutes
        res["idle_cpu_ms_per_min"] = (cpu1 - cpu0) * 1e3 / minutes
        res["threads"] = [len(sw0), len(sw1), len(set(sw0) - set(sw1))]  # start, end, exited
        st = _proc_status(pid)
        res["after"] = {k: _kib(st.get(k, "")) for k in ("VmRSS", "VmHWM", "VmLck")}
        res["safe_mode_delay_end"] = Path(f"{md}/safe_mode_delay").read_text().strip()
        res["array_state_end"] = Path(state).read_text().strip()
    finally:
        os.close(fd)
    res["guest_seconds"] = time.perf_counter() - t_start
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------------- host side


def p99(xs: list[float]) -> float:
    """Nearest rank (with fewer than 100 samples: the maximum)."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def rows(r: dict[str, Any]) -> dict[str, float]:
    return {
        "write-pending write, median (ms)": statistics.median(r["latency_ms"]),
        "write-pending write, p99 (ms)": p99(r["latency_ms"]),
        "write-pending write, max (ms)": max(r["latency_ms"]),
        "write on active array, median (ms)": statistics.median(r["baseline_ms"]),
        "transition cost, median (ms)": statistics.median(r["latency_ms"]) - statistics.median(r["baseline_ms"]),
        "back to clean after write, median (ms)": statistics.median(r["clean_return_ms"]),
        "first write after assembly (ms)": r["first_write_ms"],
        "metadata bytes / cycle (all members)": r["meta_bytes_per_cycle"],
        "metadata writes / cycle (all members)": r["meta_writes_per_cycle"],
        "cache flushes / cycle (all members)": r["meta_flushes_per_cycle"],
        "idle wake-ups / min": r["idle_switches_per_min"],
        "idle CPU (ms / min)": r["idle_cpu_ms_per_min"],
        "VmRSS serving (MiB)": r["after"]["VmRSS"] / 1024,
        "VmHWM (MiB)": r["after"]["VmHWM"] / 1024,
        "VmLck (MiB)": r["after"]["VmLck"] / 1024,
    }


def report(results: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace) -> None:
    for fmt in FORMATS:
        if not all((fmt, d) in results for d in DAEMONS):
            print(f"\n{fmt.upper()}: incomplete ({[d for d in DAEMONS if (fmt, d) in results]})")
            continue
        a, b = (rows(results[fmt, d]) for d in DAEMONS)
        w = max(len(k) for k in a)
        print(f"\n{fmt.upper()} RAID1 x2, {args.cycles} cycles, idle {args.idle:.0f} s, ", end="")
        print(f"safe_mode_delay {args.safe_mode_delay} s, settle {args.settle} s (p99: nearest rank)")
        print(f"{'metric':<{w}} | {'mdmon':>10} | {'mdmond':>10} | {'ratio':>7}")
        print(f"{'-' * w}-+-{'-' * 10}-+-{'-' * 10}-+-{'-' * 7}")
        for k in a:
            ratio = f"{b[k] / a[k]:7.2f}" if a[k] else "      -"
            print(f"{k:<{w}} | {a[k]:10.2f} | {b[k]:10.2f} | {ratio}")
        for d in DAEMONS:
            r = results[fmt, d]
            print(
                f"  {d}: pid {r['pid']} ({r['comm']}: {r['cmdline'][:70]}); safe_mode_delay left "
                f"{r['safe_mode_delay_left']} s, at end {r['safe_mode_delay_end']} s; "
                f"threads (start, end, exited) {r['threads']}; "
                f"serving {r['serving']}; metadata per cycle [write I/Os incl. flushes, merges, sectors, flushes] "
                f"write-pending window {r['meta_dirty_per_cycle']}, clean window {r['meta_clean_per_cycle']}, "
                f"after the loop {r['meta_tail']}; "
                f"array_state assembled {r['array_state_assembled']}, at end {r['array_state_end']}"
            )
    print("\nraw (ms):")
    for (fmt, d), r in results.items():
        for key in ("latency_ms", "baseline_ms", "clean_return_ms"):
            print(f"  {fmt} {d} {key}: " + " ".join(f"{x:.1f}" for x in r[key]))


def host(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(PROJECT))
    from testbed import vm

    env = {
        "CYCLES": str(args.cycles),
        "IDLE": str(args.idle),
        "SMD": str(args.safe_mode_delay),
        "SETTLE": str(args.settle),
        "SIZE": args.size,
        "FORMATS": " ".join(args.formats),
        "DAEMONS": " ".join(DAEMONS),
    }
    t0 = time.monotonic()
    r = vm.run(GUEST_SCRIPT, disks=4, disk_size_mib=64, timeout=args.timeout, env=env, mdmon="mdmon", echo=args.echo)
    wall = time.monotonic() - t0
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            d = json.loads(line[7:])
            results[d["format"], d["daemon"]] = d
    print(f"one boot: rc {r.returncode}, boot {r.boot_seconds or 0:.1f} s, total {wall:.0f} s (TCG, 1 vCPU)")
    for line in r.stdout.splitlines():
        if line.startswith("# "):
            print(line)
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:], r.console[-2000:], sep="\n")
    report(results, args)
    if r.returncode != 0:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--idle", type=float, default=25.0, help="seconds of idle per daemon")
    ap.add_argument("--safe-mode-delay", type=float, default=0.05)
    ap.add_argument("--settle", type=float, default=0.25, help="pause after clean before the timed write")
    ap.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    ap.add_argument("--size", default="8M", help="volume size (mdadm --size)")
    ap.add_argument("--timeout", type=float, default=1500)
    ap.add_argument("--echo", action="store_true", help="stream the guest's output")
    # guest side
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--format", choices=FORMATS, help=argparse.SUPPRESS)
    ap.add_argument("--daemon", choices=DAEMONS, help=argparse.SUPPRESS)
    ap.add_argument("--container", help=argparse.SUPPRESS)
    ap.add_argument("--volume", help=argparse.SUPPRESS)
    ap.add_argument("--disks", nargs="+", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.guest:
        guest(args)
    else:
        host(args)


if __name__ == "__main__":
    main()
