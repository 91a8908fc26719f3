"""Takeover on the real kernel: a new daemon replaces the running one while writes go on.

mdmon's rule (mdmon.md §1.4): the successor answers for the container *before*
it stops its predecessor, so there is never a moment in which a write to a
clean array waits for nobody.  Both directions are played: stock mdmon handed
over to mdmond (what an upgrade does) and mdmond to a new mdmond (what
``systemctl restart`` or the initrd-to-root switch does).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testbed import vm

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
