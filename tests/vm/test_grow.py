"""``mdadm --grow`` of an IMSM container, then the next assembly: the data must survive.

The sequence a user runs to add a disk to an Intel RST RAID5 (issue 10):
an IMSM container on three disks with a RAID5 volume, 20 MiB of pattern
written, a fourth disk added to the container, ``mdadm --grow /dev/md/c0
--raid-devices=4``, wait until md is idle, then stop everything and
re-assemble from the disks alone (what the next boot does).

Whatever the daemon does, the end must be one of two honest states:

* the reshape was carried: mdadm exited 0, md reshaped to 4 members, and the
  metadata says 4 members with the migration finished (stock mdmon);
* the reshape was refused before md reshaped anything: mdadm exited non-zero,
  md still has 3 members, the metadata says 3 (mdmond until it carries
  reshapes: it refuses mdadm's freeze, the one answer mdadm 4.2 checks, and
  records the refusal as an event).

Either way the re-assembled volume has the geometry the metadata records,
the pattern reads back identical and a ``check`` finds no mismatch.  What
broke before: mdadm acknowledged, md reshaped, the metadata kept 3 members,
and the re-assembled volume read garbage from sector 512 on.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from testbed import vm

from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

SCRIPT = r"""
set -u
. testbed/guest/lib.sh
run mdadm --create /dev/md/c0 -e imsm -n 3 --run "${D[0]}" "${D[1]}" "${D[2]}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=12M --run /dev/md/c0 || die volume
wait_idle /dev/md/vol0 240
pattern_write /dev/md/vol0 vol0 20480
settle
run mdadm --add /dev/md/c0 "${D[3]}" || die "add"
sleep 1
run mdadm --grow /dev/md/c0 --raid-devices=4
echo "grow-rc=$?"
sleep 2
wait_idle /dev/md/vol0 600
settle
echo "kernel-disks-after-grow=$(attr /dev/md/vol0 raid_disks)"
mdadm --examine "${D[0]}" > /run/examine-grown.txt 2>&1
echo "examine-members=$(sed -n 's/^ *Members : //p' /run/examine-grown.txt)"
echo "examine-migrate=$(sed -n 's/^ *Migrate State : //p' /run/examine-grown.txt)"
stop_all
run mdadm --assemble /dev/md/c0 "${D[@]}" || die "re-assembly of the container"
run mdadm -I /dev/md/c0
vol=$(cd /dev/md && ls | grep -v '^c0$' | head -1)
[ -n "$vol" ] || die "the volume did not come back"
echo "kernel-disks-reassembled=$(attr /dev/md/$vol raid_disks)"
mdadm --examine "${D[0]}" > /run/examine-again.txt 2>&1
echo "examine-members-reassembled=$(sed -n 's/^ *Members : //p' /run/examine-again.txt)"
if pattern_verify "/dev/md/$vol" vol0 20480; then echo "pattern=ok"; else echo "pattern=bad"; fi
check "/dev/md/$vol"
echo "mismatch=$(attr /dev/md/$vol mismatch_cnt)"
if [ -e /run/mdmond-events.jsonl ]; then
  grep '"update-refused"' /run/mdmond-events.jsonl | sed 's/^/event /'
fi
"""


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
def test_grow_then_reassembly_reads_back_the_data(run_vm: RunVm, daemon: str) -> None:
    r = run_vm(SCRIPT, disks=4, disk_size_mib=64, timeout=900, mdmon=daemon)
    got = fields(r.stdout)
    context = f"\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, context
    # Whatever happened to the grow, the next assembly must read what was written.
    assert got.get("pattern") == "ok", context
    assert got.get("mismatch") == "0", context
    # md, the metadata before the stop, and the metadata after agree on the geometry.
    members = got.get("examine-members")
    assert members in ("3", "4"), context
    assert got.get("kernel-disks-after-grow") == members, context
    assert got.get("examine-members-reassembled") == members, context
    assert got.get("kernel-disks-reassembled") == members, context
    assert got.get("examine-migrate") == "idle", context
    if got.get("grow-rc") == "0":
        assert members == "4", f"mdadm was told the grow went ahead, the metadata says {members}{context}"
    else:
        assert members == "3", context
    refusals = [json.loads(line.removeprefix("event ")) for line in r.stdout.splitlines() if line.startswith("event ")]
    if daemon == "mdmon":
        assert got.get("grow-rc") == "0", context  # stock mdmon carries it
    else:
        # mdmond does not carry reshapes yet: mdadm stops, and the refusal is an event naming the array.
        assert got.get("grow-rc") != "0", context
        assert any(e.get("operation") == "reshape" and e.get("array") for e in refusals), context
