# The mdadm operation matrix, played in the guest (tests/vm/test_operations.py): every operation
# an administrator applies to a container, each followed by a 'step'/'row' record of the outcome.
# Usage: operations.sh FORMAT   (sourced helpers: lib.sh)
set -u
. testbed/guest/lib.sh
FMT=$1
STEPNO=0
# record: one "row" line per array and volume after each step (builtins where they poll)
record() {
  local name=$1 rc=$2 v ver sub st
  echo "step $STEPNO $name rc=$rc"
  for v in /sys/block/md*/md; do
    [ -d "$v" ] || continue
    read -r ver < "$v/metadata_version"
    case "$ver" in external:/*|external:-*) ;; *) continue ;; esac
    sub=${ver##*/}
    read -r st < "$v/array_state"
    local lvl="" rd="" dg="" act=""
    [ -e "$v/level" ] && read -r lvl < "$v/level"
    [ -e "$v/raid_disks" ] && read -r rd < "$v/raid_disks"
    [ -e "$v/degraded" ] && read -r dg < "$v/degraded"
    [ -e "$v/sync_action" ] && read -r act < "$v/sync_action"
    echo "row $STEPNO md sub=$sub level=$lvl disks=$rd degraded=$dg state=$st action=$act"
  done
  local d c meta
  # the metadata as a disk of the running container holds it (a disk left out keeps a stale copy)
  for c in /sys/block/md*/md; do
    case "$(cat "$c/metadata_version")" in external:imsm|external:ddf) ;; *) continue ;; esac
    for d in "$c"/dev-*; do
      [ -e "$d" ] || continue
      mdadm --examine "/dev/${d##*/dev-}" >/run/ex.txt 2>/dev/null || continue
      if [ "$FMT" = imsm ]; then
        meta=$(sed -n 's/^ *\(Map State\|Migrate State\|Dirty State\) : /\1=/p' /run/ex.txt | tr ' \n' '_ ')
      else
        meta=$(sed -n 's/^ *state\[\([0-9]\)\] : /vd\1=/p' /run/ex.txt | tr ' \n' '_ ')
      fi
      # an IMSM spare carries a record of its own, without the volumes: the next disk says more
      [ -n "$meta" ] && { echo "row $STEPNO meta $meta"; break 2; }
    done
  done
  STEPNO=$((STEPNO + 1))
}
# step NAME CMD...: run one operation, let it settle (recoveries done, volumes marked clean), record
# it.  Rows are read settled, so that they compare the end of each operation, never a moment of it.
step() { local name=$1; shift; echo "# $*"; "$@" > /run/step.out 2>&1; local rc=$?; sed 's/^/  | /' /run/step.out; settle_all; record "$name" "$rc"; return 0; }
# vol N: the running member array holding volume N, whatever mdadm named the container this time
vol() {
  local v
  for v in /sys/block/md*/md; do
    case "$(cat "$v/metadata_version")" in external:/*/"$1") echo "/dev/${v:11:-3}"; return ;; esac
  done
}
settle_all() {
  local i=0 v busy
  while :; do
    busy=0
    for v in /sys/block/md*/md; do [ -e "$v/sync_action" ] && [ "$(cat "$v/sync_action")" != idle ] && busy=1; done
    [ $busy = 0 ] && break
    i=$((i + 1)); [ $i -gt 1500 ] && break; sleep 0.2
  done
  sleep 2; settle
}
start_inactive() {
  local v
  for v in /sys/block/md*/md; do
    case "$(cat "$v/metadata_version")" in external:/*) [ "$(cat "$v/array_state")" = inactive ] && mdadm --run "/dev/${v:11:-3}" >/dev/null 2>&1 ;; esac
  done
}
# verify: each volume's pattern reads back (ok), differs (bad), or the volume is not running (inactive)
verify() {
  local n dev kb
  for n in 0 1; do
    dev=$(vol $n) kb=$((2048 >> n))
    [ -n "$dev" ] || { [ $n = 0 ] && echo "row $STEPNO data vol0=absent"; continue; }
    if [ "$(attr "$dev" array_state)" = inactive ]; then echo "row $STEPNO data vol$n=inactive"
    elif pattern_verify "$dev" vol$n $kb >/dev/null 2>&1; then echo "row $STEPNO data vol$n=ok"
    else echo "row $STEPNO data vol$n=bad"; fi
  done
}
# bind DISK: what mdadm --add does for a DDF container (mdadm 4.2's own --add segfaults there, under
# both daemons): the disk's old metadata wiped (--add writes it a new identity), then bound to it
bind() { mdadm --zero-superblock "$1" >/dev/null 2>&1; cat "/sys/block/${1##*/}/dev" > "/sys/block/$(mdname /dev/md/c0)/md/new_dev"; }

step create-container mdadm --create /dev/md/c0 -e "$FMT" -n 4 --run "${D[@]}"
step create-volume mdadm --create /dev/md/vol0 -l 5 -n 3 --size=8M --run "${D[0]}" "${D[1]}" "${D[2]}"
settle_all
step create-second-volume mdadm --create /dev/md/vol1 -l 1 -n 2 --size=4M --run "${D[0]}" "${D[1]}"
settle_all
pattern_write "$(vol 0)" vol0 2048 >/dev/null; pattern_write "$(vol 1)" vol1 1024 >/dev/null
step wait-clean mdadm --wait-clean --scan
step detail mdadm --detail "$(vol 0)"
step examine mdadm --examine "${D[0]}"
step fail mdadm "$(vol 0)" --fail "${D[1]}"
step remove mdadm /dev/md/c0 --remove "${D[1]}"
if [ "$FMT" = imsm ]; then
  step add mdadm /dev/md/c0 --add "${D[1]}"
else
  step add bind "${D[1]}"
fi
verify
step stop stop_all
step assemble mdadm --assemble /dev/md/c0 "${D[@]}"
step incremental-container mdadm -I /dev/md/c0
start_inactive; settle_all; record assembled 0
verify
stop_all
for d in "${D[@]}"; do mdadm -I "$d" >/dev/null 2>&1; done
sleep 1; start_inactive; settle_all; record incremental-disks 0
verify
stop_all
step assemble-degraded mdadm --assemble /dev/md/c0 "${D[1]}" "${D[2]}" "${D[3]}"
step incremental-run mdadm -I --run /dev/md/c0
start_inactive; settle_all; record degraded-settled 0
verify
step stop-volume mdadm --stop "$(vol 1)"
step update-subarray mdadm --update-subarray=1 --update=name -N renamed /dev/md/c0
step kill-subarray mdadm --kill-subarray=1 /dev/md/c0
if [ "$FMT" = imsm ]; then
  step grow mdadm --grow "$(vol 0)" --size=6M
fi
verify
a=$(vol 0); [ -n "$a" ] && check "$a" >/dev/null && echo "row $STEPNO mismatch vol0=$(attr "$a" mismatch_cnt)"
step stop-all stop_all
if [ -e /run/mdmond-events.jsonl ]; then
  grep -E '"(update-refused|no-spare|spare-refused)"' /run/mdmond-events.jsonl | sed 's/^/event /'
fi
