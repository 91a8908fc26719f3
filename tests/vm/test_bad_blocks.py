"""One bad sector on a member, on the real kernel (issue 11, item 3: it used to hang the array).

qemu's blkdebug fails every write touching sector 8200 of the third disk
(``testbed.vm``'s ``blkdebug``).  A RAID5 volume on three disks: the initial
resync or the first write hits the sector.

* IMSM (mdadm sets ``external_bbl`` on every member): md lists ``8200 8`` as
  unacknowledged and holds the member ``blocked``.  The daemon must record the
  range in the BBM log, acknowledge it (``bad_blocks`` then reads ``8200 8``)
  and release the member: the resync and every write complete, the member
  stays in the volume, ``mdadm --examine`` shows the Bad Block Management Log,
  and after stop and re-assembly the data reads back and md gets the range
  again from the metadata.
* DDF (no bad-block log): the member is failed, writes complete, the volume
  runs degraded.

Every wait is bounded and a write runs in the background, so that a hang
shows as ``writes=hung`` instead of hanging the test.  Both daemons must end
in the same state.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from testbed import vm

from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

BLKDEBUG = """[inject-error]
event = "write_aio"
errno = "5"
sector = "8200"
once = "off"
immediately = "off"
"""

#: A run takes 20-70 s under TCG.  A hung member leaves the guest's final ``sync`` stuck, so
#: the VM then runs into this timeout; the script's own bounds (resync, writes: 120 s each)
#: have printed what hung by then.
TIMEOUT = 420

SCRIPT = r"""
set -u
. testbed/guest/lib.sh
t0=$(date +%s)
run mdadm --create /dev/md/c0 -e "$FMT" -n 3 --run "${D[0]}" "${D[1]}" "${D[2]}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=16M --run /dev/md/c0 || die volume
md=$(mdname /dev/md/vol0)
bad=${D[2]##*/}
dd=/sys/block/$md/md/dev-$bad
dump() {
  echo "state-$1=$(cat $dd/state 2>/dev/null || echo gone)"
  echo "bad-blocks-$1=$(tr '\n' ' ' < $dd/bad_blocks 2>/dev/null | sed 's/ $//')"
  echo "unacked-$1=$(tr '\n' ' ' < $dd/unacknowledged_bad_blocks 2>/dev/null | sed 's/ $//')"
  echo "degraded-$1=$(attr /dev/md/vol0 degraded)"
  echo "array-state-$1=$(attr /dev/md/vol0 array_state)"
}
# the resync, bounded: a member left blocked stops it
i=0; a=$(attr /dev/md/vol0 sync_action)
while [ "$a" != idle ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); a=$(attr /dev/md/vol0 sync_action); done
echo "resync=$([ "$a" = idle ] && echo done || echo "hung-$a")"
echo "resync-seconds=$(( $(date +%s) - t0 ))"
dump resync
# the writes, in the background so that a hang is reported, not suffered
t1=$(date +%s)
( python3 "$GUEST/pattern.py" write /dev/md/vol0 vol0 8192; echo $? > /run/pw.rc ) &
i=0; while [ ! -e /run/pw.rc ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
if [ ! -e /run/pw.rc ]; then
  echo "writes=hung"
  dump hung
  cat /proc/mdstat
  exit 0
fi
echo "writes=done rc $(cat /run/pw.rc)"
echo "write-seconds=$(( $(date +%s) - t1 ))"
settle
dump written
mdadm --examine "${D[0]}" > /run/examine.txt 2>&1
echo "examine-bbm=$(grep -c 'Bad Block Management Log' /run/examine.txt)"
echo "examine-bbm-entries=$(sed -n 's/^ *Entry Count : //p' /run/examine.txt)"
echo "examine-bbm-size=$(sed -n 's/^ *Log Size : //p' /run/examine.txt)"
sed -n '/Bad Block Management Log/,/^$/p' /run/examine.txt | sed 's/^/examine: /'
mdadm --examine-badblocks "${D[2]}" 2>&1 | sed 's/^/examine-badblocks: /'
if [ "$FMT" = imsm ]; then
  echo "map-state=$(sed -n 's/^ *Map State : //p' /run/examine.txt | head -1)"
else
  echo "map-state=$(sed -n 's/^ *state\[0\] : //p' /run/examine.txt | head -1)"
fi
if [ -e /run/mdmond-events.jsonl ]; then
  grep -E '"(bad-block-recorded|bad-block-refused|member-failed)"' /run/mdmond-events.jsonl | sed 's/^/event /'
fi
stop_all
run mdadm --assemble /dev/md/c0 "${D[@]}" || die "re-assembly of the container"
run mdadm -I /dev/md/c0
# a degraded DDF volume stays inactive after -I (vm-findings): start it as a user would
for v in /sys/block/md*/md; do
  case "$(cat "$v/metadata_version")" in external:/*)
    [ "$(cat "$v/array_state")" = inactive ] && run mdadm --run "/dev/${v:11:-3}";;
  esac
done
vol=$(cd /dev/md && ls | grep -v '^c0$' | head -1)
[ -n "$vol" ] || die "the volume did not come back"
md=$(mdname /dev/md/$vol)
dd=/sys/block/$md/md/dev-$bad
echo "reassembled-bad-blocks=$(tr '\n' ' ' < $dd/bad_blocks 2>/dev/null | sed 's/ $//')"
( python3 "$GUEST/pattern.py" verify "/dev/md/$vol" vol0 8192; echo $? > /run/pv.rc ) &
i=0; while [ ! -e /run/pv.rc ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
echo "pattern=$([ "$(cat /run/pv.rc 2>/dev/null)" = 0 ] && echo ok || echo bad)"
echo "total-seconds=$(( $(date +%s) - t0 ))"
"""


def _events(out: str) -> list[dict[str, object]]:
    return [json.loads(line.removeprefix("event ")) for line in out.splitlines() if line.startswith("event ")]


def _summary(fmt: str, daemon: str, got: dict[str, str], r: vm.Result) -> None:
    keys = ("resync", "resync-seconds", "state-written", "bad-blocks-written", "unacked-written", "degraded-written")
    keys += ("examine-bbm-entries", "map-state", "reassembled-bad-blocks", "pattern", "total-seconds")
    print(f"\n[bad-blocks {fmt} {daemon}] " + " ".join(f"{k}={got.get(k)!r}" for k in keys) + f" vm={r.seconds:.0f}s")


_results: dict[tuple[str, str], dict[str, str]] = {}


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
def test_imsm_bad_block_is_recorded_and_the_array_goes_on(run_vm: RunVm, daemon: str) -> None:
    r = run_vm(SCRIPT, env={"FMT": "imsm"}, disks=3, timeout=TIMEOUT, mdmon=daemon, blkdebug={2: BLKDEBUG})
    got = fields(r.stdout)
    _summary("imsm", daemon, got, r)
    context = f"\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"
    # What hung first, then the exit status (a hang also times the VM out).
    assert got.get("resync") == "done", context
    assert got.get("writes") == "done rc 0", context
    assert r.returncode == 0, context
    assert got.get("bad-blocks-written") == "8200 8", context
    assert got.get("unacked-written") == "", context
    state = got.get("state-written", "")
    assert "blocked" not in state.split(",") and "faulty" not in state.split(","), context
    assert "external_bbl" in state.split(","), context
    assert got.get("degraded-written") == "0", context
    assert got.get("examine-bbm") == "1" and got.get("examine-bbm-entries") == "1", context
    assert got.get("examine-bbm-size") == "16", context
    assert got.get("reassembled-bad-blocks") == "8200 8", context
    assert got.get("pattern") == "ok", context
    if daemon == "mdmond":
        recorded = [e for e in _events(r.stdout) if e.get("event") == "bad-block-recorded"]
        assert [(e.get("device"), e.get("sector"), e.get("length")) for e in recorded] == [("sdc", 8200, 8)], context
    _results[("imsm", daemon)] = got
    other = _results.get(("imsm", "mdmon" if daemon == "mdmond" else "mdmond"))
    if other is not None:
        keys = [k for k in got if k.endswith(("-written", "-resync")) or k.startswith(("examine-bbm", "reassembled"))]
        keys = [k for k in keys if not k.startswith("array-state")]
        assert {k: got.get(k) for k in keys} == {k: other.get(k) for k in keys}, context


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
def test_ddf_member_with_a_bad_sector_is_failed_and_writes_complete(run_vm: RunVm, daemon: str) -> None:
    r = run_vm(SCRIPT, env={"FMT": "ddf"}, disks=3, timeout=TIMEOUT, mdmon=daemon, blkdebug={2: BLKDEBUG})
    got = fields(r.stdout)
    _summary("ddf", daemon, got, r)
    context = f"\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"
    # What hung first, then the exit status (a hang also times the VM out).
    assert got.get("resync") == "done", context
    assert got.get("writes") == "done rc 0", context
    assert r.returncode == 0, context
    assert got.get("degraded-written") == "1", context
    assert got.get("state-written") in ("gone", "faulty"), context
    assert got.get("pattern") == "ok", context
    _results[("ddf", daemon)] = got
    other = _results.get(("ddf", "mdmon" if daemon == "mdmond" else "mdmond"))
    if other is not None:
        for k in ("degraded-written", "state-written", "map-state", "pattern"):
            assert got.get(k) == other.get(k), f"{k}{context}"
