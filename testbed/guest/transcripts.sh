#!/bin/bash
# transcripts.sh SCENARIO OUTDIR - play one reference scenario under stock mdadm
# and mdmon, recording every step with snap (see tests/data/transcripts/README.md).
set -u
SNAP_OUT=$2
. "$(dirname "$0")/lib.sh"
SC=$1
mkdir -p "$SNAP_OUT"
export MDMOND_EVENT_LOG="$SNAP_OUT/mdmond-events.jsonl"  # read by mdmond when it is the mdmon
say "scenario $SC; $(mdadm --version 2>&1); kernel $(uname -r); disks ${D[*]}; mdmon=$TESTBED_MDMON"

# rebuild META: RAID5 on disks 0-2 + a spare; fail disk1, mdmon activates the
# spare, stop mid-rebuild, re-assemble, the rebuild resumes and completes.
rebuild() {
  local meta=$1
  run mdadm --create /dev/md/c0 -e "$meta" -n 4 --run "${D[@]:0:4}" || die "container"
  run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=12M --run "${D[0]}" "${D[1]}" "${D[2]}" || die "volume"
  snap created "mdadm --create /dev/md/c0 -e $meta -n 4 (4 disks); mdadm --create /dev/md/vol0 -l 5 -n 3 --size=12M on disks 0-2"
  wait_idle /dev/md/vol0
  snap resynced "initial resync finished"
  local kib; kib=$(( $(cat /sys/block/$(mdname /dev/md/vol0)/size) / 2 ))
  pattern_write /dev/md/vol0 vol0 "$kib"
  settle
  snap written "pattern written over the whole of vol0 ($kib KiB); mdadm --wait-clean --scan"
  throttle /dev/md/vol0 1000
  run mdadm /dev/md/vol0 --fail "${D[1]}"
  snap failed "mdadm /dev/md/vol0 --fail ${D[1]} (recovery throttled to 1000 KB/s)"
  wait_action /dev/md/vol0 recover
  wait_progress /dev/md/vol0 10
  snap rebuilding "mdmon activated the spare; recovery running"
  wait_progress /dev/md/vol0 50
  snap half-rebuilt "recovery at ~50%"
  run mdadm --stop /dev/md/vol0
  snap volume-stopped "mdadm --stop /dev/md/vol0 mid-recovery"
  run mdadm --stop /dev/md/c0
  rm -f /dev/md/*
  snap stopped "mdadm --stop /dev/md/c0"
  echo 100 > /proc/sys/dev/raid/speed_limit_min; echo 200 > /proc/sys/dev/raid/speed_limit_max
  say "speed_limit_min/max = 100/200 KB/s (so that a resumed recovery can be seen)"
  run mdadm --assemble --scan
  snap assembled "mdadm --assemble --scan (recovery throttled to 200 KB/s globally)"
  sleep 1
  snap assembled-1s "1 s later"
  echo 1000 > /proc/sys/dev/raid/speed_limit_min; echo 200000 > /proc/sys/dev/raid/speed_limit_max
  local v; v=$(ls -d /dev/md/vol0* | head -1)
  if [ "$(attr "$v" array_state)" = inactive ]; then
    # DDF stopped mid-rebuild may be recorded "Degraded, Not Consistent": md will
    # not start a dirty degraded RAID5 (possible write hole) until told to
    run mdadm --run "$v"
    if [ "$(attr "$v" array_state)" = inactive ]; then
      run mdadm --stop "$v"; rm -f "$v"
      echo 1 > /sys/module/md_mod/parameters/start_dirty_degraded
      say "echo 1 > /sys/module/md_mod/parameters/start_dirty_degraded"
      run mdadm --assemble --scan --force --run
      v=$(ls -d /dev/md/vol0* 2>/dev/null | head -1)
    fi
    snap forced "mdadm --run; if still inactive: --stop, start_dirty_degraded=1, mdadm --assemble --scan --force --run"
    if [ -z "$v" ] || [ "$(attr "$v" array_state)" = inactive ]; then
      say "vol0 cannot be started after the stop mid-rebuild; scenario ends here"
      stop_all
      return 0
    fi
  fi
  wait_idle "$v"
  snap rebuilt "speed_limit_min/max back to 1000/200000; recovery (if any) finished after re-assembly"
  pattern_verify "$v" vol0 "$kib" || die "data lost across the rebuild"
  check "$v"
  snap checked "echo check > sync_action; finished"
  settle
  snap settled "mdadm --wait-clean --scan"
  if [ "$(attr "$v" degraded)" = 0 ]; then
    # what check and repair report: 4 KiB of a member overwritten behind md's back
    run dd if=/dev/urandom of="${D[2]}" bs=4096 count=1 seek=512 oflag=direct conv=notrunc status=none
    check "$v"
    snap corrupted-checked "4 KiB of random bytes written straight to ${D[2]} at 2 MiB; echo check > sync_action"
    echo repair > "/sys/block/$(mdname "$v")/md/sync_action"; sleep 0.2; wait_idle "$v"
    say "echo repair > sync_action: mismatch_cnt $(attr "$v" mismatch_cnt)"
    check "$v"
    snap repaired "echo repair > sync_action, then echo check > sync_action"
    settle
  fi
  stop_all
}

# volumes META N "LEVEL:SIZE ..." : create a container of N disks with these volumes,
# write the pattern, trace array_state around one write, check, stop, re-assemble, verify
volumes() {
  local meta=$1 n=$2 specs=$3 i=0 spec lvl size args
  run mdadm --create /dev/md/c0 -e "$meta" -n "$n" --run "${D[@]:0:$n}" || die "container"
  for spec in $specs; do
    lvl=${spec%%:*}; size=${spec#*:}; args=()
    [ "$size" != all ] && args=(--size="$size")
    run mdadm --create /dev/md/vol$i -l "$lvl" -n "$n" "${args[@]}" --run /dev/md/c0 || die "volume $i"
    i=$((i + 1))
  done
  snap created "container $meta of $n disks; volumes $specs"
  for v in /dev/md/vol*; do wait_idle "$v"; done
  snap resynced "initial resync finished"
  for v in /dev/md/vol*; do pattern_write "$v" "${v##*/}"; done
  settle
  snap written "1 MiB pattern written to every volume; mdadm --wait-clean --scan"
  trace_array_state /dev/md/vol0 15 "$SNAP_OUT/array_state_trace" \
    dd if=/dev/zero of=/dev/md/vol0 bs=4096 count=1 seek=512 oflag=direct status=none
  snap after-write "one 4 KiB O_DIRECT write at 2 MiB into clean vol0, traced until clean again (at most 15 s)"
  for v in /dev/md/vol*; do check "$v"; done
  snap checked "echo check > sync_action on every volume; finished"
  settle
  stop_all
  snap stopped "all arrays stopped"
  run mdadm --assemble --scan
  snap assembled "mdadm --assemble --scan"
  i=0
  for spec in $specs; do
    v=$(ls -d /dev/md/vol${i}* | head -1)
    pattern_verify "$v" "vol$i" || die "vol$i data differs after re-assembly"
    i=$((i + 1))
  done
  settle
  stop_all
}

case "$SC" in
  imsm-raid5-rebuild) rebuild imsm ;;
  ddf-raid5-rebuild) rebuild ddf ;;
  imsm-raid1-raid0) volumes imsm 2 "1:8M 0:all" ;;
  imsm-raid10) volumes imsm 4 "10:all" ;;
  ddf-raid1-raid0) volumes ddf 2 "1:8M 0:8M" ;;
  ddf-raid10) volumes ddf 4 "10:all" ;;
  *) die "unknown scenario $SC" ;;
esac
say "scenario $SC done; mdmon left: $(mdmon_pids | tr '\n' ' ')"
