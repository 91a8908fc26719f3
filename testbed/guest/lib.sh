# Helpers for scenario scripts run in the guest (sourced by bash).
# Bash builtins wherever a loop polls: each fork+exec costs 30-80 ms under TCG.
# Needs TESTBED_DISKS (set by testbed.vm) and, for snap, SNAP_OUT.

GUEST=$(dirname "${BASH_SOURCE[0]}")
GUEST=$(cd "$GUEST" && pwd)
D=($TESTBED_DISKS)
STEP=0

say() { echo "# $*"; }
die() { echo "scenario: $*" >&2; exit 1; }

# run CMD...: echo it, run it, echo its status; the status is returned
run() {
  echo "# $*"
  "$@" 2>&1
  local rc=$?
  echo "# -> rc=$rc"
  return $rc
}

mdname() { local p; p=$(readlink -f "$1"); echo "${p##*/}"; }
attr() { local v; read -r v 2>/dev/null < "/sys/block/$(mdname "$1")/md/$2" && echo "$v"; }

# snap STEP ACTION: record mdstat, sysfs, examine and metadata regions (guest/snap.py)
snap() {
  python3 "$GUEST/snap.py" "$SNAP_OUT" "$STEP" "$1" "$2" || die "snapshot $1 failed"
  echo "# snapshot $STEP $1"
  STEP=$((STEP + 1))
}

pattern_write() { echo "# pattern write $1 ($2)"; python3 "$GUEST/pattern.py" write "$1" "$2" "${3:-1024}"; }
pattern_verify() { python3 "$GUEST/pattern.py" verify "$1" "$2" "${3:-1024}"; }

# wait_idle VOL [SECONDS]: until no resync/recovery/check runs (bounded)
wait_idle() {
  local v=$1 limit=${2:-120} i=0 a
  while :; do
    # RAID0 has no sync_action (no redundancy attributes at all): nothing to wait for
    if ! a=$(attr "$v" sync_action); then attr "$v" array_state >/dev/null && return 0; die "$v is not running"; fi
    [ "$a" = idle ] && return 0
    i=$((i + 1)); [ $i -gt $((limit * 5)) ] && die "$v still $a after ${limit}s"
    sleep 0.2
  done
}

# settle: let mdmon mark every volume clean (it does so ~safe-mode delay after the last write)
settle() { mdadm --wait-clean --scan >/dev/null 2>&1; sleep 0.3; }

# throttle VOL KB/s: cap its resync/recovery speed so that a test can catch it midway
throttle() {
  local md; md=$(mdname "$1")
  echo "$2" > "/sys/block/$md/md/sync_speed_min"
  echo "$2" > "/sys/block/$md/md/sync_speed_max"
  echo "# throttle $1 to $2 KB/s"
}
unthrottle() {
  local md; md=$(mdname "$1")
  echo system > "/sys/block/$md/md/sync_speed_min"
  echo system > "/sys/block/$md/md/sync_speed_max"
}

# wait_progress VOL PERCENT [SECONDS]: until sync_completed reaches PERCENT (bounded)
wait_progress() {
  local md done total i=0
  md=$(mdname "$1")
  while :; do
    read -r done _ total < "/sys/block/$md/md/sync_completed"
    if [ "$done" != none ] && [ $((done * 100)) -ge $((total * $2)) ]; then return 0; fi
    i=$((i + 1)); [ $i -gt $((${3:-120} * 10)) ] && die "$1 did not reach $2%"
    sleep 0.1
  done
}

# wait_action VOL ACTION [SECONDS]: until sync_action says ACTION (bounded)
wait_action() {
  local i=0
  until [ "$(attr "$1" sync_action)" = "$2" ]; do
    i=$((i + 1)); [ $i -gt $((${3:-60} * 10)) ] && die "$1 never showed sync_action=$2"
    sleep 0.1
  done
}

# check VOL: run a "check" pass and print mismatch_cnt
check() {
  local md; md=$(mdname "$1")
  [ -e "/sys/block/$md/md/sync_action" ] || { echo "# $1 ($(attr "$1" level)) has no sync_action: no check"; return 0; }
  echo check > "/sys/block/$md/md/sync_action"
  echo "# echo check > /sys/block/$md/md/sync_action"
  sleep 0.2
  wait_idle "$1"
  echo "# mismatch_cnt $1 = $(attr "$1" mismatch_cnt)"
}

# trace_array_state VOL SECONDS OUTFILE CMD...: start CMD in the background and
# record every change of array_state (with $EPOCHREALTIME) until it is back to
# its first value after a change, or SECONDS pass.  Polls every ~2 ms with
# builtins only (read -t on a FIFO nobody writes is a sleep without a fork), so
# the loop neither misses short states for lack of speed nor starves mdmon.
trace_array_state() {
  local f="/sys/block/$(mdname "$1")/md/array_state" secs=$2 out=$3 s first last="" t0 now changed=0 fd
  shift 3
  mkfifo /run/testbed-tick && exec {fd}<> /run/testbed-tick
  read -r first < "$f"
  t0=$EPOCHREALTIME
  "$@" &
  local end=$(( ${t0%.*} + secs ))
  : > "$out"
  while :; do
    read -r s < "$f"
    now=$EPOCHREALTIME
    if [ "$s" != "$last" ]; then
      echo "$now $s" >> "$out"; last=$s
      [ "$s" != "$first" ] && changed=1
      [ $changed = 1 ] && [ "$s" = "$first" ] && break
    fi
    [ "${now%.*}" -ge $end ] && break
    read -t 0.002 -u $fd _
  done
  exec {fd}<&-; rm -f /run/testbed-tick
  wait
  echo "$t0" > "$out.t0"
  echo "# array_state trace of $1 recorded in $out"
}

# stop_all: stop the volumes, then the containers (mdmon writes the final metadata)
stop_all() {
  local v
  for v in /sys/block/md*/md; do
    case "$(cat "$v/metadata_version" 2>/dev/null)" in external:/*) run mdadm --stop "/dev/${v:11:-3}";; esac
  done
  for v in /sys/block/md*/md; do
    [ -e "$v" ] && run mdadm --stop "/dev/${v:11:-3}"
  done
  rm -f /dev/md/*  # mdadm leaves its /dev/md links behind (no udev in the guest)
}

mdmon_pids() { local p c; for p in /proc/[0-9]*; do read -r c < "$p/comm" 2>/dev/null && [ "$c" = mdmon ] && echo "${p#/proc/}"; done; }

# show LABEL: /proc/mdstat and the md sysfs attributes of every array, as text (builtins only)
show() {
  local up l md a d line v
  read -r up _ < /proc/uptime
  echo "=== $1 (uptime ${up}s)"
  while IFS= read -r l; do case "$l" in Personalities*|"unused devices"*|"") ;; *) echo "$l";; esac; done < /proc/mdstat
  for md in /sys/block/md*/md; do
    [ -d "$md" ] || continue
    line=""
    for a in array_state metadata_version level raid_disks chunk_size component_size sync_action sync_completed resync_start degraded mismatch_cnt; do
      [ -e "$md/$a" ] && { read -r v < "$md/$a"; line="$line $a=${v:-<empty>}"; }
    done
    echo "--- ${md:11:-3}:$line"
    for d in "$md"/dev-*; do
      [ -d "$d" ] || continue
      line=""
      for a in state slot recovery_start offset size; do read -r v < "$d/$a"; line="$line $a=$v"; done
      echo "  ${d##*/}:$line"
    done
  done
  echo "--- mdmon: $(mdmon_pids | tr '\n' ' ')"
}
