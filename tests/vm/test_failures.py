"""More than one member lost, on the real kernel, under stock mdmon and under mdmond (issue 11, item 5).

Each scenario builds a container with spares beside the volume, writes the
test pattern, fails members with ``mdadm --fail`` and waits, bounded, for the
end state: the volume rebuilt onto the spares (RAID6 losing two, RAID10
losing one disk of each mirror), or recorded failed with the spares left
alone (RAID5 losing two).  Both daemons must reach the same end state; what
md itself does with a write to the failed volume is recorded, not prescribed.
Where the volume still has redundancy the pattern reads back, ``check`` finds
no mismatch, and ``mdmond examine`` agrees with ``mdadm --examine`` about
every disk (the guest copies each disk's metadata regions, ``snap.py``).

Seen on Debian 6.1 with mdadm 4.2 (RAID5, ``--fail sda --fail sdb`` in one
command): md fails the second member but answers its ``faulty`` with EBUSY
(the array is now broken; mdadm exits 2); the volume reads ``broken``,
``[3/1] [__U]``; a direct write fails at once with EIO (no hang); under stock
mdmon with DDF the spare is bound to the failed array and mdmon spins.

The daemon is stopped (SIGSTOP) while mdadm fails the members and continued
after, so that it meets the failures together: left running, a daemon may act
between mdadm's two writes, and stock mdmon was seen to start a rebuild onto
the spare in between (one CI run in several), which makes its end state a race.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed import vm

from .examine_compare import disagreements, mdmond_examine
from .guest import fields, same_end

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

SCRIPT = r"""
set -u
. testbed/guest/lib.sh
FMT=$1 LEVEL=$2 NM=$3 NC=$4 FAIL_SLOTS=$5 EXPECT=$6
run mdadm --create /dev/md/c0 -e "$FMT" -n "$NC" --run "${D[@]:0:NC}" || die container
run mdadm --create /dev/md/vol0 -l "$LEVEL" -n "$NM" --size=16M --run "${D[@]:0:NM}" || die volume
wait_idle /dev/md/vol0 240
md=$(mdname /dev/md/vol0)
pattern_write /dev/md/vol0 vol0 || die "pattern write"
settle
daemon=$(cat /run/mdadm/md127.pid)
victims=(); args=()
for s in $FAIL_SLOTS; do
  for d in /sys/block/$md/md/dev-*; do
    [ "$(cat "$d/slot")" = "$s" ] && victims+=("${d##*/dev-}") && args+=(--fail "/dev/${d##*/dev-}")
  done
done
echo "victims=${victims[*]}"
t0=$EPOCHREALTIME
# The daemon meets both failures at once, as when two disks die together: stopped while mdadm
# fails them, continued after.  Without that, whether it acts between mdadm's two writes is a race.
kill -STOP "$daemon"
run mdadm /dev/md/vol0 "${args[@]}"
kill -CONT "$daemon"
# Sample until the end state (bounded): the largest number of devices md rebuilt at once.
together=0 i=0
while :; do
  read -r a < "/sys/block/$md/md/sync_action"; read -r dg < "/sys/block/$md/md/degraded"   # builtins: no fork
  if [ "$a" = recover ]; then
    n=0; for d in /sys/block/$md/md/dev-*; do
      read -r st < "$d/state"; read -r sl < "$d/slot"
      [ "$sl" != none ] && [[ $st != *in_sync* ]] && [[ $st != *faulty* ]] && n=$((n + 1))
    done
    [ $n -gt $together ] && together=$n
  fi
  gone=1; for v in "${victims[@]}"; do [ -e "/sys/block/$md/md/dev-$v" ] && gone=0; done
  if [ "$EXPECT" = rebuild ]; then
    [ "$gone" = 1 ] && [ "$dg" = 0 ] && [ "$a" = idle ] && break
  else
    [ $i -gt 50 ] && break   # 5 s after the failure for the daemon to have acted
  fi
  i=$((i + 1)); [ $i -gt 3000 ] && { echo "end-state=timeout"; break; }
  sleep 0.1
done
echo "end-ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))"
echo "rebuilt-together=$together"
echo "degraded=$(attr /dev/md/vol0 degraded)"
echo "sync-action=$(attr /dev/md/vol0 sync_action)"
echo "array-state=$(attr /dev/md/vol0 array_state)"
echo "mdstat=$(grep -A1 "^$md " /proc/mdstat | tail -1 | tr -s ' ')"
members=""
for d in /sys/block/$md/md/dev-*; do members="$members ${d##*/dev-}:$(cat "$d/slot"):$(cat "$d/state")"; done
echo "members=${members# }"
c0=$(mdname /dev/md/c0)
echo "container=$(ls -d /sys/block/$c0/md/dev-* | sed 's|.*/dev-||' | tr '\n' ' ')"
if [ "$EXPECT" = failed ]; then
  # What md does with a write to a volume that lost too much: bounded, so a hang shows as rc 124.
  w0=${EPOCHREALTIME/./}
  timeout 30 dd if=/dev/zero of=/dev/md/vol0 bs=4096 count=1 seek=1000 oflag=direct status=none 2>&1
  echo "write-rc=$?"
  echo "write-ms=$(( (${EPOCHREALTIME/./} - w0) / 1000 ))"
  echo 3 > /proc/sys/vm/drop_caches   # read from the disks, not from the page cache the pattern went through
  timeout 30 python3 "$GUEST/pattern.py" verify /dev/md/vol0 vol0 >/dev/null 2>&1; echo "read-verify-rc=$?"
  echo "array-state-after-write=$(attr /dev/md/vol0 array_state)"
  sleep 3
else
  settle
  echo 3 > /proc/sys/vm/drop_caches
  pattern_verify /dev/md/vol0 vol0 && echo "verify=ok" || echo "verify=bad"
  check /dev/md/vol0 | tee /run/check.txt
  echo "mismatch=$(attr /dev/md/vol0 mismatch_cnt)"
  settle
fi
# Is the daemon still there, and idle (not looping)?  CPU ticks over 5 s.
kill -0 "$daemon" 2>/dev/null && echo "daemon-alive=yes" || echo "daemon-alive=no"
read -r -a s1 < "/proc/$daemon/stat" 2>/dev/null; sleep 5; read -r -a s2 < "/proc/$daemon/stat" 2>/dev/null
echo "daemon-ticks-5s=$(( ${s2[13]:-0} + ${s2[14]:-0} - ${s1[13]:-0} - ${s1[14]:-0} ))"
for d in "${D[@]:0:NC}"; do
  mdadm --examine "$d" 2>&1 | while IFS=: read -r k v; do
    k=$(echo $k); v=$(echo $v)
    case "$k" in
      Family|Generation|"Container GUID"|Seq|"Map State"|"Migrate State"|state*) echo "examine ${d##*/} $k=$v" ;;
    esac
  done
done
snap end "after the failures"
if [ -e /run/mdmond-events.jsonl ]; then
  grep -E '"(spare-activated|no-spare|spare-refused|spare-add-failed|update-refused|commit-failed|member-removed)"' \
    /run/mdmond-events.jsonl | head -40 | sed 's/^/event /'
fi
"""


def _parse(out: str) -> tuple[dict[str, str], dict[str, dict[str, str]], list[dict[str, Any]]]:
    examine: dict[str, dict[str, str]] = {}
    events: list[dict[str, Any]] = []
    rest = []
    for line in out.splitlines():
        if line.startswith("examine "):
            _, dev, kv = line.split(" ", 2)
            k, v = kv.split("=", 1)
            examine.setdefault(dev, {})[k] = v
        elif line.startswith("event "):
            events.append(json.loads(line.removeprefix("event ")))
        else:
            rest.append(line)
    return fields("\n".join(rest)), examine, events


def _compare_examine(snapdir: Path) -> list[str]:
    """``mdmond examine`` of the guest's metadata copies against the ``mdadm --examine`` taken with them."""
    step = json.loads(next(snapdir.glob("00-end.json")).read_text())
    imgs = snapdir / "00-end"
    specs, texts = [], []
    for i, (dev, text) in enumerate(step["examine"].items()):
        if step["examine_rc"][dev] == 0:
            specs.append(f"{imgs / f'disk{i}.img'},serial={vm.SERIAL_FORMAT.format(i)}")
            texts.append((dev, text))
    assert specs, "no disk had metadata"
    problems: list[str] = []
    for (dev, text), got in zip(texts, mdmond_examine(specs), strict=True):
        problems += disagreements(text, got, dev, step["examine_scan"])
    return problems


#: Where stock mdmon (mdadm 4.2) itself fails a scenario: seen in the VM.
MDMON_LOOPS = {
    # ddf_activate_spare offers the spare to a failed RAID5; md refuses its slot, it stays bound as an
    # md spare (no slot) and mdmon asks again on every pass: 320 ticks of CPU in 5 s, for ever.
    ("mdmon", "ddf", 5): "spins offering the spare to the failed volume",
}

_ends: dict[str, object] = {}


def _play(
    run_vm: RunVm, tmp_path: Path, daemon: str, fmt: str, level: int, members: int, disks: int, fail: str, expect: str
) -> tuple[dict[str, str], dict[str, dict[str, str]], list[dict[str, Any]], str]:
    script = f"set -- {fmt} {level} {members} {disks} '{fail}' {expect}\nexport SNAP_OUT={tmp_path}\n" + SCRIPT
    r = run_vm(script, disks=disks, disk_size_mib=64, timeout=600, mdmon=daemon, shares=[tmp_path])
    f, examine, events = _parse(r.stdout)
    context = f"\n--- stdout\n{r.stdout[-8000:]}\n--- stderr\n{r.stderr[-3000:]}"
    print(f"[{fmt} raid{level} {daemon}] {r.seconds:.0f} s: " + " ".join(f"{k}={v}" for k, v in f.items()))
    assert r.returncode == 0, context
    assert f.get("end-state") != "timeout", context
    assert f.get("daemon-alive") == "yes", context
    if (daemon, fmt, level) in MDMON_LOOPS:
        # Recorded, not required: the reference fails here, and mdmond must do better.
        print(f"stock mdmon, {fmt} RAID{level}: {MDMON_LOOPS[daemon, fmt, level]}: {f['daemon-ticks-5s']} ticks in 5 s")
    else:
        assert int(f["daemon-ticks-5s"]) < 100, context  # 1 s of CPU in 5 s idle: a loop
    keys = ("Family", "Generation") if fmt == "imsm" else ("Container GUID", "Seq")
    working = {dev: e for dev, e in examine.items() if dev not in f["victims"].split()}
    if fmt == "imsm":  # an IMSM spare keeps a spare record of its own (its family and generation)
        working = {dev: e for dev, e in working.items() if "Map State" in e}
    if (daemon, fmt, level) in MDMON_LOOPS:
        # Recorded: stock mdmon's spin leaves the spare it keeps binding on another sequence number.
        working = {dev: e for dev, e in working.items() if dev not in f["members"]} or working
        keys = keys[:1]
    for k in keys:
        values = {dev: e.get(k) for dev, e in working.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), f"{k} differs: {values}{context}"
    if (daemon, fmt, level) not in MDMON_LOOPS:  # a daemon that keeps rewriting moves on between the two reads
        problems = _compare_examine(tmp_path)
        assert not problems, "\n".join(problems) + context
    return f, examine, events, context


@pytest.mark.parametrize("daemon", ["mdmon", "mdmond"])
@pytest.mark.parametrize("fmt", ["imsm", "ddf"])
def test_raid5_losing_two_members_is_failed_and_keeps_its_spare(
    run_vm: RunVm, tmp_path: Path, fmt: str, daemon: str
) -> None:
    f, examine, events, context = _play(run_vm, tmp_path, daemon, fmt, 5, 3, 4, "0 1", "failed")
    spare = "sdd"
    if (daemon, fmt, 5) not in MDMON_LOOPS:
        assert spare not in f["members"], context  # no spare consumed for a volume that cannot be rebuilt
    assert f["sync-action"] != "recover", context
    assert f["write-rc"] != "124", context  # md answered the write (error or not): nothing hangs
    if fmt == "imsm":
        assert any("failed" in e.get("Map State", "") for d, e in examine.items() if d not in f["victims"]), context
    else:
        assert any("Failed" in v for e in examine.values() for k, v in e.items() if k.startswith("state")), context
    if daemon == "mdmond":
        assert not [e for e in events if e["event"] == "spare-activated"], context
    same_end(
        _ends,
        f"{fmt}-raid5-two",
        daemon,
        {k: f[k] for k in ("degraded", "sync-action", "write-rc", "read-verify-rc", "array-state", "mdstat")},
    )


@pytest.mark.parametrize(
    "daemon",
    [
        "mdmon",
        "mdmond",
    ],
)
def test_ddf_raid6_losing_two_members_rebuilds_onto_both_spares(run_vm: RunVm, tmp_path: Path, daemon: str) -> None:
    f, _examine, events, context = _play(run_vm, tmp_path, daemon, "ddf", 6, 4, 6, "1 2", "rebuild")
    assert f["degraded"] == "0" and f["verify"] == "ok" and f["mismatch"] == "0", context
    assert "sde" in f["members"] and "sdf" in f["members"], context
    if daemon == "mdmond":
        assert f["rebuilt-together"] == "2", context  # both spares in one recovery pass (one update)
    else:
        # Seen: stock mdmon's rebuild showed one member rebuilding at a time (sampled every 0.1 s).
        print(f"stock mdmon: at most {f['rebuilt-together']} member(s) rebuilt at once")
    if daemon == "mdmond":
        assert sorted(e["device"] for e in events if e["event"] == "spare-activated") == ["sde", "sdf"], context
    same_end(_ends, "ddf-raid6-two", daemon, {k: f[k] for k in ("degraded", "mdstat", "verify", "mismatch")})


@pytest.mark.parametrize(
    ("fmt", "daemon"),
    [
        ("imsm", "mdmon"),
        ("imsm", "mdmond"),
        ("ddf", "mdmon"),
        ("ddf", "mdmond"),
    ],
)
def test_raid10_losing_one_disk_of_each_mirror_rebuilds_both(
    run_vm: RunVm, tmp_path: Path, fmt: str, daemon: str
) -> None:
    f, examine, _events, context = _play(run_vm, tmp_path, daemon, fmt, 10, 4, 6, "1 3", "rebuild")
    assert f["degraded"] == "0" and f["verify"] == "ok" and f["mismatch"] == "0", context
    assert "sde" in f["members"] and "sdf" in f["members"], context
    if fmt == "imsm":  # the failed disks keep the copy they last had; the working ones say normal
        working = [e for dev, e in examine.items() if dev not in f["victims"].split() and "Map State" in e]
        assert working and all(e["Map State"] == "normal" for e in working), context
    same_end(_ends, f"{fmt}-raid10-two", daemon, {k: f[k] for k in ("degraded", "mdstat", "verify", "mismatch")})
