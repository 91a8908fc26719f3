#!/bin/bash
# golden.sh SCENARIO - build one golden state on fresh disks (runs in the guest).
# State-changing commands are echoed as "# CMD" (manifest.json quotes them).
# Most scenarios end with every array stopped (mdmon writes the final
# metadata); the *-killed ones end with an immediate reboot (sysrq b).
set -u
. "$(dirname "$0")/lib.sh"
SC=$1
say "scenario $SC; $(mdadm --version 2>&1); kernel $(uname -r); disks: ${D[*]}"
say "env: IMSM_NO_PLATFORM=${IMSM_NO_PLATFORM:-} MDADM_NO_SYSTEMCTL=${MDADM_NO_SYSTEMCTL:-}"

container() { run mdadm --create /dev/md/c0 -e "$1" -n "$2" --run "${D[@]:0:$2}" || die "container"; }
volume() { local name=$1 level=$2 n=$3; shift 3; run mdadm --create "/dev/md/$name" -l "$level" -n "$n" --run "$@" || die "volume $name"; }
fill() { local v; for v in "$@"; do wait_idle "$v"; pattern_write "$v" "${v##*/}"; done; }
finish() { settle; show "final state before stop"; stop_all; sleep 0.5; say "mdmon still running: $(mdmon_pids | tr '\n' ' ')"; sync; }
kill_vm() { say "echo b > /proc/sysrq-trigger   (immediate reboot: VM killed $1)"; echo b > /proc/sysrq-trigger; sleep 10; }
degrade() { run mdadm /dev/md/vol0 --fail "${D[1]}"; sleep 1; run mdadm /dev/md/c0 --remove "${D[1]}"; }
rebuild_half() {
  volume vol0 5 3 --size=24M "${D[0]}" "${D[1]}" "${D[2]}"
  fill /dev/md/vol0; settle
  throttle /dev/md/vol0 2000
  run mdadm /dev/md/vol0 --fail "${D[1]}"
  wait_action /dev/md/vol0 recover; wait_progress /dev/md/vol0 50
  show "mid-recovery (~50%)"
}
slow_resync() {
  say "echo 2000 > /proc/sys/dev/raid/speed_limit_max"; echo 2000 > /proc/sys/dev/raid/speed_limit_max
}

case "$SC" in
  imsm-raid0|ddf-raid0) container "${SC%%-*}" 2; volume vol0 0 2 /dev/md/c0; fill /dev/md/vol0; finish ;;
  imsm-raid1|ddf-raid1) container "${SC%%-*}" 2; volume vol0 1 2 /dev/md/c0; fill /dev/md/vol0; finish ;;
  imsm-raid5|ddf-raid5) container "${SC%%-*}" 3; volume vol0 5 3 /dev/md/c0; fill /dev/md/vol0; finish ;;
  imsm-raid10|ddf-raid10) container "${SC%%-*}" 4; volume vol0 10 4 /dev/md/c0; fill /dev/md/vol0; finish ;;
  imsm-two-volumes)
    container imsm 2; volume vol0 1 2 --size=24M /dev/md/c0; wait_idle /dev/md/vol0
    volume vol1 0 2 /dev/md/c0; fill /dev/md/vol0 /dev/md/vol1; finish ;;
  ddf-two-volumes)
    container ddf 3; volume vol0 5 3 --size=12M /dev/md/c0; wait_idle /dev/md/vol0
    volume vol1 1 2 --size=8M /dev/md/c0; fill /dev/md/vol0 /dev/md/vol1; finish ;;
  imsm-raid5-raid1)
    container imsm 4; volume vol0 5 3 --size=16M /dev/md/c0; wait_idle /dev/md/vol0
    volume vol1 1 2 --size=8M /dev/md/c0; fill /dev/md/vol0 /dev/md/vol1; finish ;;
  imsm-raid5-spare|ddf-raid5-spare)
    container "${SC%%-*}" 4; volume vol0 5 3 "${D[0]}" "${D[1]}" "${D[2]}"; fill /dev/md/vol0; finish ;;
  imsm-spare-only) container imsm 2; finish ;;
  imsm-raid1-degraded|ddf-raid1-degraded)
    container "${SC%%-*}" 2; volume vol0 1 2 /dev/md/c0; fill /dev/md/vol0; degrade; finish ;;
  imsm-raid5-degraded|ddf-raid5-degraded)
    container "${SC%%-*}" 3; volume vol0 5 3 /dev/md/c0; fill /dev/md/vol0; degrade; finish ;;
  imsm-raid5-rebuild-stopped|ddf-raid5-rebuild-stopped)
    container "${SC%%-*}" 4; rebuild_half
    run mdadm --stop /dev/md/vol0; sleep 0.5; run mdadm --stop /dev/md/c0; sync ;;
  imsm-raid5-rebuild-killed|ddf-raid5-rebuild-killed) container "${SC%%-*}" 4; rebuild_half; kill_vm mid-recovery ;;
  imsm-raid1-resync-killed)
    slow_resync; container imsm 2; volume vol0 1 2 /dev/md/c0; sleep 8; show "mid-resync"; kill_vm mid-resync ;;
  imsm-raid5-init-killed|ddf-raid5-init-killed)
    slow_resync; container "${SC%%-*}" 3; volume vol0 5 3 /dev/md/c0; sleep 8; show "mid-initialization"
    kill_vm mid-initialization ;;
  *) die "unknown scenario $SC" ;;
esac
