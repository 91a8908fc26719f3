# kill -9 of the daemon at random moments of a rebuild under a write load, then a restart as
# mdadm does it (tests/vm/test_kills.py; scripts/vm-kills runs many).
# Usage: kills.sh KILLS SEED.  Each kill prints "kill K md=<sectors done> recorded=<checkpoint>".
set -u
. testbed/guest/lib.sh
KILLS=$1 RANDOM=$2
run mdadm --create /dev/md/c0 -e imsm -n 4 --run "${D[@]:0:4}" || die container
run mdadm --create /dev/md/vol0 -l 5 -n 3 --size=24M --run "${D[0]}" "${D[1]}" "${D[2]}" || die volume
wait_idle /dev/md/vol0 300
md=$(mdname /dev/md/vol0)
kib=$(( $(cat "/sys/block/$md/size") / 2 ))
pattern_write /dev/md/vol0 vol0 "$kib" >/dev/null
settle
throttle /dev/md/vol0 400
run mdadm /dev/md/vol0 --fail "${D[1]}"
wait_action /dev/md/vol0 recover 120
# recorded: the rebuild checkpoint the disks hold (mdmond examine of the working members)
recorded() {
  "$TESTBED_PROJECT/.venv/bin/python" -m mdmond examine --json "${D[0]}" "${D[2]}" "${D[3]}" 2>/dev/null |
    python3 -c 'import json,sys; v=json.load(sys.stdin)[0]["volumes"][0]; m=v.get("migration") or {}; print(m.get("checkpoint_sectors"), v["state"])'
}
for k in $(seq 1 "$KILLS"); do
  # a write load over the pattern's first 4 MiB (the same bytes again): writes to a clean volume
  # wait for the daemon, so they hang unless the restarted one serves them
  python3 "$GUEST/pattern.py" write /dev/md/vol0 vol0 4096 >/dev/null 2>&1 &
  writer=$!
  sleep "$(( RANDOM % 20 / 10 )).$(( RANDOM % 10 ))"
  [ "$(attr /dev/md/vol0 sync_action)" = recover ] || { echo "kill $k skipped: rebuild over"; wait $writer; break; }
  daemon=$(cat /run/mdadm/md127.pid)
  kill -9 "$daemon"
  read -r done _ < "/sys/block/$md/md/sync_completed"
  echo "kill $k md=$done recorded=$(recorded)"
  # restart as mdadm would (mdadm -I / --assemble start "mdmon CONTAINER" when none serves it)
  mdmon md127 >/dev/null 2>&1
  i=0; until [ -e /run/mdadm/md127.pid ] && [ "$(cat /run/mdadm/md127.pid)" != "$daemon" ]; do
    i=$((i + 1)); [ $i -gt 300 ] && die "no daemon after kill $k"; sleep 0.1
  done
  timeout 120 tail --pid=$writer -f /dev/null || die "writes hung after kill $k"
  wait $writer || die "the write load failed after kill $k"
done
unthrottle /dev/md/vol0
wait_idle /dev/md/vol0 600
settle
echo "after recorded=$(recorded)"
# then a stop and a re-assembly, as the next boot does
stop_all
run mdadm --assemble --scan
v=$(ls -d /dev/md/vol0* | head -1)
wait_idle "$v" 300
echo 3 > /proc/sys/vm/drop_caches
pattern_verify "$v" vol0 "$kib" && echo "pattern=ok" || echo "pattern=bad"
check "$v"
echo "mismatch=$(attr "$v" mismatch_cnt)"
echo "mdstat=$(grep -A1 "^$(mdname "$v") " /proc/mdstat | tail -1 | tr -s ' ')"
echo "final recorded=$(recorded)"
