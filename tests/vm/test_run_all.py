"""``mdmond run --all``: one process serving every container on the real kernel.

mdadm is told not to start any daemon (``MDADM_NO_MDMON=1``), so the new
volumes wait read-only until ``mdmond run --all`` adopts both containers; a
write to each then completes, and one SIGTERM leaves both clean on disk.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testbed import vm

from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

RUN_ALL = r"""
set -u
D=($TESTBED_DISKS)
export MDADM_NO_MDMON=1
mdadm --create /dev/md/imsm0 -e imsm -n 2 --run "${D[0]}" "${D[1]}" 2>&1
mdadm --create /dev/md/vol0 -l 1 -n 2 --size=4M --run /dev/md/imsm0 2>&1
mdadm --create /dev/md/ddf0 -e ddf -n 2 --run "${D[2]}" "${D[3]}" 2>&1
mdadm --create /dev/md/vol1 -l 1 -n 2 --size=4M --run /dev/md/ddf0 2>&1
echo "daemons-before=$(ls /run/mdadm/*.pid 2>/dev/null | wc -l)"
"$TESTBED_PROJECT/.venv/bin/mdmond" run --all --event-log /run/all.jsonl 2>/run/all.err &
daemon=$!
for v in vol0 vol1; do
  md=$(basename "$(readlink -f /dev/md/$v)")
  for i in $(seq 1 100); do [ "$(cat /sys/block/$md/md/array_state)" != readonly ] && break; sleep 0.1; done
  timeout 30 dd if=/dev/zero of=/dev/md/$v bs=4096 count=1 oflag=direct status=none
  echo "write-$v=$?"
done
echo "pid-files=$(cat /run/mdadm/*.pid | sort -u | tr '\n' ' ')"
echo "daemon=$daemon"
sleep 1
kill -TERM $daemon
wait $daemon
echo "exit=$?"
echo "dirty-after=$(mdadm --examine "${D[0]}" "${D[2]}" | grep -ci 'dirty state : dirty\|Not Consistent')"
"$TESTBED_PROJECT/.venv/bin/mdmond" events --kind serving --kind array-adopted --kind exiting /run/all.jsonl
cat /run/all.err
"""


def test_one_process_serves_every_container_then_leaves_them_clean(run_vm: RunVm) -> None:
    r = run_vm(RUN_ALL, disks=4, disk_size_mib=64, timeout=240)
    f = fields(r.stdout)
    out = f"{r.stdout}\n{r.stderr}"
    assert f["daemons-before"] == "0", out
    assert f["write-vol0"] == "0" and f["write-vol1"] == "0", out  # both containers answered
    assert f["pid-files"].split() == [f["daemon"]], out  # one process, a pid file per container
    assert f["exit"] == "0" and f["dirty-after"] == "0", out  # SIGTERM: both clean on disk first
    served = {line.split()[2] for line in r.stdout.splitlines() if line.split()[3:4] == ["serving"]}
    assert len(served) == 2, out
