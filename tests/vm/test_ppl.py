"""A spare replaces a failed member of an IMSM volume with a write-hole policy, on the real kernel.

Stock mdadm 4.2 in the guest, with either daemon as its mdmon: a container on
four disks, a RAID5 volume on three of them, the fourth a spare.  The volume
is created with a write-hole policy: ``--consistency-policy=ppl`` (IMSM
``RWH_MULTIPLE_DISTRIBUTED``: the partial parity log in each member's reserved
space after the volume's data), or ``--bitmap=internal`` (IMSM ``RWH_BITMAP``;
mdadm 4.2 refuses ``--consistency-policy=bitmap`` for IMSM, its
``init_super_imsm_volume`` knows only resync and ppl, and turns the volume into
a bitmap one through ``add_internal_bitmap``).  A pattern is written, one
member failed; the daemon must remove it, put the spare in its slot with what
md needs for the policy *before* the slot (for PPL each member's
``ppl_sector``/``ppl_size``: md refuses a PPL array's new member without
them), record it, and let md rebuild.  Both daemons must end alike: ``[UUU]``,
the policy unchanged, the new member's PPL where the others' is, ``mdadm
--examine`` and ``mdmond examine`` agreeing, the data intact, ``check`` clean.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import vm

from .examine_compare import disagreements, mdmond_examine

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

SCRIPT = r"""
set -u
. testbed/guest/lib.sh
POLICY=$1 OUT=$2
case "$POLICY" in
  ppl) OPT=--consistency-policy=ppl ;;
  bitmap) OPT=--bitmap=internal ;;
esac
run mdadm --create /dev/md/c0 -e imsm -n 4 --run "${D[0]}" "${D[1]}" "${D[2]}" "${D[3]}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=16M $OPT --run "${D[0]}" "${D[1]}" "${D[2]}"
echo "create-rc=$?"
[ -e /dev/md/vol0 ] || { cat /proc/mdstat; dmesg | tail -20 | sed 's/^/# dmesg /'; die "no volume"; }
wait_idle /dev/md/vol0 240
md=$(mdname /dev/md/vol0)
# members WHEN DEV...: each member's PPL and extent, then the array's bitmap, as md shows them
members() {
  local when=$1 d n a line f; shift
  for d in "$@"; do
    n=${d##*/}
    [ -e "/sys/block/$md/md/dev-$n" ] || continue
    line="$when $n"
    for a in ppl_sector ppl_size offset size slot; do line="$line $a=$(attr /dev/md/vol0 "dev-$n/$a")"; done
    echo "$line"
  done
  for f in location metadata chunksize space; do echo "$when bitmap/$f=$(attr /dev/md/vol0 "bitmap/$f")"; done
}
pattern_write /dev/md/vol0 vol0 8192
echo "policy-before=$(attr /dev/md/vol0 consistency_policy)"
members before "${D[@]}"
echo "component_size=$(attr /dev/md/vol0 component_size)"
echo "slot-failed=$(attr /dev/md/vol0 dev-${D[1]##*/}/slot)"
run mdadm /dev/md/vol0 --fail "${D[1]}"
i=0; while [ -e "/sys/block/$md/md/dev-${D[1]##*/}" ]; do
  i=$((i + 1)); [ $i -gt 300 ] && die "the failed member was never removed from the volume"; sleep 0.1
done
# Bounded by the clock ($SECONDS), not by a count: each poll forks, and forks are slow under TCG.
end=$((SECONDS + 90))
until [ -e "/sys/block/$md/md/dev-${D[3]##*/}" ]; do
  [ $SECONDS -gt $end ] && { dmesg | tail -20 | sed 's/^/# dmesg /'; die "the spare never joined"; }; sleep 0.1
done
end=$((SECONDS + 240))
until [ "$(attr /dev/md/vol0 degraded)" = 0 ] && [ "$(attr /dev/md/vol0 sync_action)" = idle ]; do
  [ $SECONDS -gt $end ] && { dmesg | tail -20 | sed 's/^/# dmesg /'; die "the rebuild never completed"; }
  sleep 0.2
done
settle
echo "degraded-after=$(attr /dev/md/vol0 degraded)"
echo "policy-after=$(attr /dev/md/vol0 consistency_policy)"
echo "slot-new=$(attr /dev/md/vol0 dev-${D[3]##*/}/slot)"
echo "state-new=$(attr /dev/md/vol0 dev-${D[3]##*/}/state)"
members after "${D[@]}"
echo "mdstat=$(grep -A1 "^$md " /proc/mdstat | tail -1 | tr -s ' ')"
if pattern_verify /dev/md/vol0 vol0 8192; then echo "pattern=ok"; else echo "pattern=bad"; fi
check /dev/md/vol0
echo "mismatch=$(attr /dev/md/vol0 mismatch_cnt)"
settle
# Each disk's metadata tail (the MPB lives in the last sectors), into a sparse image of the disk's
# size, and mdadm's --examine of the same moment, for mdmond examine on the host.
for d in "${D[0]}" "${D[2]}" "${D[3]}"; do
  n=${d##*/}
  sz=$(blockdev --getsz "$d")
  truncate -s $((sz * 512)) "$OUT/$n.img"
  dd if="$d" of="$OUT/$n.img" bs=512 skip=$((sz - 4096)) seek=$((sz - 4096)) count=4096 conv=notrunc 2>/dev/null
  mdadm --examine "$d" > "$OUT/$n.examine.txt" 2>&1
  grep -E 'RWH Policy' "$OUT/$n.examine.txt" | sed "s/^ */rwh-$n=/; s/RWH Policy : //"
done
mdadm --examine --scan > "$OUT/scan.txt" 2>&1
if [ -e /run/mdmond-events.jsonl ]; then
  grep -E '"(spare-[a-z-]+|no-spare|member-removed)"' /run/mdmond-events.jsonl | sed 's/^/event /'
fi
"""


def _outcome(out: str) -> tuple[dict[str, str], dict[str, dict[str, str]], list[dict[str, object]]]:
    """The script's ``key=value`` lines; per device ``before``/``after`` attributes; the daemon's events."""
    fields: dict[str, str] = {}
    devs: dict[str, dict[str, str]] = {}
    events: list[dict[str, object]] = []
    for line in out.splitlines():
        if line.startswith(("before ", "after ")):
            when, rest = line.split(" ", 1)
            if " " in rest and "=" not in rest.split(" ", 1)[0]:
                dev, kvs = rest.split(" ", 1)
                devs[f"{when} {dev}"] = dict(kv.split("=", 1) for kv in kvs.split())
            else:
                k, v = rest.split("=", 1)
                fields[f"{when} {k}"] = v
        elif line.startswith("event "):
            events.append(json.loads(line.removeprefix("event ")))
        elif "=" in line and not line.startswith(("#", "mdadm", "{")):
            k, v = line.split("=", 1)
            fields[k] = v
    return fields, devs, events


_ends: dict[str, dict[str, object]] = {}


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
@pytest.mark.parametrize("policy", ["ppl", "bitmap"])
def test_spare_rebuilds_volume_with_write_hole_policy(run_vm: RunVm, tmp_path: Path, policy: str, daemon: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    r = run_vm(f"set -- {policy} {out}\n" + SCRIPT, disks=4, disk_size_mib=64, timeout=900, mdmon=daemon, shares=[out])
    fields, devs, events = _outcome(r.stdout)
    context = f"\n--- stdout\n{r.stdout[-8000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, context
    assert fields.get("create-rc") == "0", context
    want_policy = {"ppl": "ppl", "bitmap": "bitmap"}[policy]
    assert fields.get("policy-before") == want_policy, context
    assert fields.get("policy-after") == want_policy, context
    assert fields.get("degraded-after") == "0", context
    assert fields.get("slot-new") == fields.get("slot-failed") is not None, context
    assert "in_sync" in fields.get("state-new", ""), context
    assert "[UUU]" in fields.get("mdstat", ""), context
    assert fields.get("pattern") == "ok", context
    assert fields.get("mismatch") == "0", context
    after = {k.split()[1]: v for k, v in devs.items() if k.startswith("after ")}
    assert set(after) == {"sda", "sdc", "sdd"}, context
    if policy == "ppl":
        # The new member's PPL is where every other member's is (IMSM: the same sector on each disk).
        for key in ("ppl_sector", "ppl_size", "offset"):
            values = {dev: a[key] for dev, a in after.items()}
            assert len(set(values.values())) == 1, f"{key} differs: {values}{context}"
        assert int(after["sdd"]["ppl_size"]) > 0, context
        # mdadm 4.2 creates RWH_MULTIPLE_DISTRIBUTED (init_super_imsm_volume).
        assert all(fields.get(f"rwh-{d}") == "Multiple distributed PPLs" for d in after), context
    else:
        assert all(fields.get(f"rwh-{d}") == "Write-intent bitmap" for d in after), context
        assert fields.get("after bitmap/location") == fields.get("before bitmap/location"), context
    specs = [f"{out / (d + '.img')},serial=MDVM{ord(d[-1]) - ord('a'):08d}" for d in sorted(after)]
    scan = (out / "scan.txt").read_text()
    problems: list[str] = []
    for d, got in zip(sorted(after), mdmond_examine(specs), strict=True):
        problems += disagreements((out / f"{d}.examine.txt").read_text(), got, d, scan)
    assert not problems, "\n".join(problems) + context
    if daemon == "mdmond":
        kinds = [(e["event"], e.get("device")) for e in events]
        assert ("spare-activated", "sdd") in kinds, context
        assert not [k for k in kinds if k[0] in ("spare-add-failed", "spare-refused")], context
    # Both daemons end in the same state (compared once both have run).
    _ends[f"{policy}-{daemon}"] = {
        "after": after,
        **{k: fields.get(k) for k in ("slot-new", "mdstat", "policy-after", "after bitmap/location")},
    }
    other = _ends.get(f"{policy}-{'mdmon' if daemon == 'mdmond' else 'mdmond'}")
    if other is not None:
        assert _ends[f"{policy}-{daemon}"] == other, f"mdmon and mdmond differ: {_ends}"
