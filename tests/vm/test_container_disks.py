"""A disk added to a running container becomes the degraded volume's rebuild target, on the real kernel.

Stock mdadm in the guest, with either daemon as its mdmon: a container on
three disks with a RAID5 volume on all three; one member is failed and, once
the daemon has taken it out of the volume, removed from the container; then
``mdadm --add /dev/md/c0 /dev/sdd``.  With a monitor running, mdadm writes no
metadata to the new disk (mdadm 4.2 ``Manage.c``; IMSM zeroes its migration
record sector): it binds it to the container through ``md/new_dev`` and pings
the monitor.  For DDF, mdadm 4.2's ``--add`` to the container segfaults
(exit 139, before binding the disk), whichever daemon runs, with or without
the failed disk removed; there the script does what it would have done, the
``new_dev`` write, and the failed disk stays in the container.  The daemon has to notice the container's new disk,
record it as a spare on every disk including its own, activate it in the
empty slot and let md rebuild onto it.  Both daemons must end in the same
state: the volume whole again with sdd in it, and every working disk holding
the same metadata (IMSM family and generation, DDF container GUID and
sequence number).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from testbed import vm

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

SCRIPT = r"""
set -u
. testbed/guest/lib.sh
FMT=$1 MDADM_ADD=$2
run mdadm --create /dev/md/c0 -e "$FMT" -n 3 --run "${D[0]}" "${D[1]}" "${D[2]}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=16M --run /dev/md/c0 || die volume
wait_idle /dev/md/vol0 240
md=$(mdname /dev/md/vol0)
echo "slot-failed=$(attr /dev/md/vol0 dev-${D[1]##*/}/slot)"
run mdadm /dev/md/vol0 --fail "${D[1]}"
i=0; while [ -e "/sys/block/$md/md/dev-${D[1]##*/}" ]; do
  i=$((i + 1)); [ $i -gt 300 ] && die "the failed member was never removed from the volume"; sleep 0.1
done
[ "$MDADM_ADD" = 1 ] && run mdadm /dev/md/c0 --remove "${D[1]}"
echo "degraded-before=$(attr /dev/md/vol0 degraded)"
if [ "$MDADM_ADD" = 1 ]; then
  run mdadm --add /dev/md/c0 "${D[3]}"
  echo "add-rc=$?"
else
  c0=$(mdname /dev/md/c0)
  echo "# echo $(cat /sys/block/${D[3]##*/}/dev) > /sys/block/$c0/md/new_dev   (mdadm --add's binding)"
  cat "/sys/block/${D[3]##*/}/dev" > "/sys/block/$c0/md/new_dev"
  echo "add-rc=$?"
fi
i=0; until [ -e "/sys/block/$md/md/dev-${D[3]##*/}" ]; do
  i=$((i + 1)); [ $i -gt 600 ] && die "the new disk never joined the volume"; sleep 0.1
done
i=0; until [ "$(attr /dev/md/vol0 degraded)" = 0 ] && [ "$(attr /dev/md/vol0 sync_action)" = idle ]; do
  i=$((i + 1)); [ $i -gt 2400 ] && die "the rebuild never completed"; sleep 0.1
done
settle
echo "degraded-after=$(attr /dev/md/vol0 degraded)"
echo "slot-new=$(attr /dev/md/vol0 dev-${D[3]##*/}/slot)"
echo "state-new=$(attr /dev/md/vol0 dev-${D[3]##*/}/state)"
echo "mdstat=$(grep -A1 "^$md " /proc/mdstat | tail -1 | tr -s ' ')"
for d in "${D[0]}" "${D[2]}" "${D[3]}"; do
  mdadm --examine "$d" 2>&1 | while IFS=: read -r k v; do
    k=$(echo $k); v=$(echo $v)
    case "$k" in Family|Generation|"Container GUID"|Seq) echo "examine ${d##*/} $k=$v" ;; esac
  done
done
mdadm --detail /dev/md/vol0 2>&1 | grep -E '^ *(State|Active Devices|Working Devices|Failed Devices) :' |
  sed 's/^ */detail /'
if [ -e /run/mdmond-events.jsonl ]; then
  grep -E '"(container-disk-[a-z-]+|spare-activated|no-spare|spare-refused|spare-add-failed)"' \
    /run/mdmond-events.jsonl | sed 's/^/event /'
fi
"""


def _outcome(out: str) -> tuple[dict[str, str], dict[str, dict[str, str]], list[str], list[dict[str, object]]]:
    fields: dict[str, str] = {}
    examine: dict[str, dict[str, str]] = {}
    detail: list[str] = []
    events: list[dict[str, object]] = []
    for line in out.splitlines():
        if line.startswith("examine "):
            _, dev, kv = line.split(" ", 2)
            k, v = kv.split("=", 1)
            examine.setdefault(dev, {})[k] = v
        elif line.startswith("detail "):
            detail.append(" ".join(line.removeprefix("detail ").split()))
        elif line.startswith("event "):
            events.append(json.loads(line.removeprefix("event ")))
        elif "=" in line and not line.startswith(("#", "mdadm")):
            k, v = line.split("=", 1)
            fields[k] = v
    return fields, examine, detail, events


_ends: dict[str, tuple[dict[str, str], list[str]]] = {}


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
@pytest.mark.parametrize("fmt", ["imsm", "ddf"])
def test_disk_added_to_container_rebuilds_degraded_volume(run_vm: RunVm, fmt: str, daemon: str) -> None:
    remove = 1 if fmt == "imsm" else 0  # mdadm's --add (and the removal before it), or the new_dev write
    r = run_vm(f"set -- {fmt} {remove}\n" + SCRIPT, disks=4, disk_size_mib=64, timeout=600, mdmon=daemon)
    fields, examine, detail, events = _outcome(r.stdout)
    context = f"\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, context
    assert fields.get("degraded-before") == "1", context
    assert fields.get("add-rc") == "0", context
    assert fields.get("degraded-after") == "0", context
    assert fields.get("slot-new") == fields.get("slot-failed") is not None, context  # the failed member's slot
    assert "in_sync" in fields.get("state-new", ""), context
    assert "[UUU]" in fields.get("mdstat", ""), context
    keys = ("Family", "Generation") if fmt == "imsm" else ("Container GUID", "Seq")
    assert set(examine) == {"sda", "sdc", "sdd"}, context
    for k in keys:
        values = {dev: e.get(k) for dev, e in examine.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"{k} differs: {values}{context}"
    if daemon == "mdmond":
        kinds = [(e["event"], e.get("device")) for e in events]
        assert ("container-disk-added", "sdd") in kinds, context
        if remove:
            assert ("container-disk-removed", "sdb") in kinds, context
        assert ("spare-activated", "sdd") in kinds, context
        assert kinds.index(("container-disk-added", "sdd")) < kinds.index(("spare-activated", "sdd")), context
    # Both daemons end in the same state (compared once both have run).
    _ends[f"{fmt}-{daemon}"] = ({k: fields[k] for k in ("slot-new", "mdstat", "degraded-after")}, detail)
    other = _ends.get(f"{fmt}-{'mdmon' if daemon == 'mdmond' else 'mdmond'}")
    if other is not None:
        assert _ends[f"{fmt}-{daemon}"] == other, f"mdmon and mdmond differ: {_ends}"
