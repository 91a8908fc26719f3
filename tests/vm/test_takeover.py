"""Takeover on the real kernel: a new daemon replaces the running one while writes go on.

mdmon's rule (mdmon.md §1.4): the successor answers for the container *before*
it stops its predecessor, so there is never a moment in which a write to a
clean array waits for nobody.  Both directions are played: stock mdmon handed
over to mdmond (what an upgrade does), mdmond to a new mdmond (what
``systemctl restart`` or the initrd-to-root switch does), and mdmond to stock
mdmon (a downgrade, or an initrd whose own mdmon takes over).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import vm

from .examine_compare import disagreements, mdmond_examine
from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

TAKEOVER = r"""
set -u
D=($TESTBED_DISKS)
mdadm --create /dev/md/c0 -e imsm -n 2 --run "${D[0]}" "${D[1]}" 2>&1
mdadm --create /dev/md/vol0 -l 1 -n 2 --size=8M --run /dev/md/c0 2>&1
md=$(basename "$(readlink -f /dev/md/vol0)")
while [ "$(cat /sys/block/$md/md/sync_action)" != idle ]; do sleep 0.2; done
echo 0.05 > /sys/block/$md/md/safe_mode_delay   # clean quickly between writes: each write needs the daemon
old=$(cat /run/mdadm/md127.pid)
echo "old-pid=$old"; echo "old-cmd=$(tr '\0' ' ' < /proc/$old/cmdline)"
# writes every 0.1 s, each after the array went clean: any gap in service stalls one
( for i in $(seq 1 60); do
    timeout 20 dd if=/dev/urandom of=/dev/md/vol0 bs=4096 count=1 seek=$i oflag=direct status=none \
      || echo "write-failed=$i"
    sleep 0.1
  done; echo writes-done ) &
writer=$!
sleep 2
MDMOND_EVENT_LOG=/run/takeover-events.jsonl "$TESTBED_PROJECT/.venv/bin/python" -m mdmond mdmon --takeover md127
echo "takeover-rc=$?"
wait $writer
new=$(cat /run/mdadm/md127.pid)
echo "new-pid=$new"; echo "new-cmd=$(tr '\0' ' ' < /proc/$new/cmdline)"
kill -0 "$old" 2>/dev/null && echo "old-alive=yes" || echo "old-alive=no"
sleep 1
echo "state=$(cat /sys/block/$md/md/array_state)"
echo "safe-mode-delay=$(cat /sys/block/$md/md/safe_mode_delay)"
mdadm --examine "${D[0]}" | grep -E "Dirty State|Map State|Migrate State" | tr -s ' ' | tr '\n' ';'; echo
# SIGTERM: arrays clean on disk, then exit, files kept for a successor
kill -TERM "$new"
for i in $(seq 1 50); do kill -0 "$new" 2>/dev/null || break; sleep 0.1; done
kill -0 "$new" 2>/dev/null && echo "term-exited=no" || echo "term-exited=yes"
echo "after-term-dirty=$(mdadm --examine "${D[0]}" | grep -c 'Dirty State : dirty')"
ls /run/mdadm | tr '\n' ' '; echo
grep -E '"(took-over|serving|terminating|exiting)"' /run/takeover-events.jsonl
"""


@pytest.mark.parametrize("first", ["mdmon", "mdmond"])
def test_takeover_while_writes_run_then_sigterm_leaves_it_clean(run_vm: RunVm, first: str) -> None:
    r = run_vm(TAKEOVER, disks=2, disk_size_mib=32, timeout=240, mdmon=first)
    f = fields(r.stdout)
    out = f"{r.stdout}\n{r.stderr}"
    assert f["takeover-rc"] == "0", out
    assert "writes-done" in r.stdout and "write-failed" not in r.stdout, out
    assert f["new-pid"] != f["old-pid"] and "mdmond" in f["new-cmd"], out
    assert f["old-alive"] == "no", out  # the predecessor was stopped, after we answered
    assert '"took-over"' in r.stdout, out
    assert f["state"] in ("clean", "active"), out
    # the predecessor's SIGTERM set 1 ms to get clean quickly; left so, every write would cost a cycle
    assert float(f["safe-mode-delay"]) >= 0.05, out
    assert "Map State : normal" in r.stdout
    # SIGTERM: every array clean on disk before exit; pid and socket stay for a successor (as mdmon)
    assert f["term-exited"] == "yes" and f["after-term-dirty"] == "0", out
    assert '"terminating"' in r.stdout and "md127.pid" in r.stdout, out


BY_MDMON = r"""
set -u
. testbed/guest/lib.sh
FMT=$1
run mdadm --create /dev/md/c0 -e "$FMT" -n 3 --run "${D[0]}" "${D[1]}" "${D[2]}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=16M --run /dev/md/c0 || die volume
wait_idle /dev/md/vol0 240
md=$(mdname /dev/md/vol0)
pattern_write /dev/md/vol0 vol0 || die "pattern write"
echo 0.05 > /sys/block/$md/md/safe_mode_delay   # clean quickly between writes: each write needs the daemon
old=$(cat /run/mdadm/md127.pid)
echo "old-pid=$old"; echo "old-cmd=$(tr '\0' ' ' < /proc/$old/cmdline)"
umount /usr/sbin/mdmon || die "cannot uncover stock mdmon"   # the test bed bound mdmond over it
( for i in $(seq 1 60); do
    timeout 20 dd if=/dev/urandom of=/dev/md/vol0 bs=4096 count=1 seek=$((300 + i)) oflag=direct status=none \
      || echo "write-failed=$i"
    sleep 0.1
  done; echo writes-done ) &
writer=$!
sleep 2
t0=${EPOCHREALTIME/./}
timeout 60 /usr/sbin/mdmon --takeover md127
echo "takeover-rc=$?"
echo "takeover-ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))"
wait $writer
new=$(cat /run/mdadm/md127.pid)
echo "new-pid=$new"; echo "new-cmd=$(tr '\0' ' ' < /proc/$new/cmdline)"
kill -0 "$old" 2>/dev/null && echo "old-alive=yes" || echo "old-alive=no"
settle
echo "state=$(attr /dev/md/vol0 array_state)"
pattern_verify /dev/md/vol0 vol0 && echo "verify=ok" || echo "verify=bad"
check /dev/md/vol0
echo "mismatch=$(attr /dev/md/vol0 mismatch_cnt)"
settle
echo "state-end=$(attr /dev/md/vol0 array_state)"
for d in "${D[@]}"; do
  mdadm --examine "$d" 2>&1 | while IFS=: read -r k v; do
    k=$(echo $k); v=$(echo $v)
    case "$k" in Generation|Seq|"Dirty State"|"Map State") echo "examine ${d##*/} $k=$v" ;; esac
  done
done
snap end "after the takeover"
grep -E '"(took-over|serving|terminating|exiting)"' /run/mdmond-events.jsonl | sed 's/^/event /'
"""


@pytest.mark.parametrize("fmt", ["imsm", "ddf"])
def test_stock_mdmon_takes_over_from_mdmond_while_writes_run(run_vm: RunVm, tmp_path: Path, fmt: str) -> None:
    """mdmon.md §1.4 the other way round: a downgrade, or an initrd whose mdmon replaces ours."""
    script = f"set -- {fmt}\nexport SNAP_OUT={tmp_path}\n" + BY_MDMON
    r = run_vm(script, disks=3, disk_size_mib=64, timeout=600, mdmon="mdmond", shares=[tmp_path])
    lines = r.stdout.splitlines()
    f = fields("\n".join(line for line in lines if not line.startswith(("examine ", "event "))))
    out = f"{r.stdout[-8000:]}\n{r.stderr[-3000:]}"
    print(f"[{fmt} mdmon over mdmond] {r.seconds:.0f} s: " + " ".join(f"{k}={v}" for k, v in f.items()))
    assert r.returncode == 0, out
    assert "mdmond" in f["old-cmd"], out
    assert f["takeover-rc"] == "0", out
    assert "writes-done" in r.stdout and "write-failed" not in r.stdout, out
    assert f["new-pid"] != f["old-pid"] and "mdmond" not in f["new-cmd"] and "mdmon" in f["new-cmd"], out
    assert f["old-alive"] == "no", out
    assert f["state-end"] == "clean", out
    assert f["verify"] == "ok" and f["mismatch"] == "0", out
    assert '"terminating"' in r.stdout, out  # mdmond was asked to go and went its own way
    key = "Generation" if fmt == "imsm" else "Seq"
    examine: dict[str, dict[str, str]] = {}
    for line in lines:
        if line.startswith("examine "):
            _, dev, kv = line.split(" ", 2)
            k, v = kv.split("=", 1)
            examine.setdefault(dev, {})[k] = v
    gens = {dev: e.get(key) for dev, e in examine.items()}
    assert len(gens) == 3 and len(set(gens.values())) == 1 and None not in gens.values(), f"{gens}\n{out}"
    assert all(e.get("Dirty State", "clean") == "clean" for e in examine.values()), out
    step = json.loads((tmp_path / "00-end.json").read_text())
    specs = [f"{tmp_path / '00-end' / f'disk{i}.img'},serial={vm.SERIAL_FORMAT.format(i)}" for i in range(3)]
    problems: list[str] = []
    for (dev, text), got in zip(step["examine"].items(), mdmond_examine(specs), strict=True):
        problems += disagreements(text, got, dev, step["examine_scan"])
    assert not problems, "\n".join(problems) + out
