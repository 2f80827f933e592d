/**
 * The guest agent: a busybox shell script that runs as /init (PID 1) in the VM's initramfs.
 *
 * It talks to the host over four virtio-serial ports, found by name in
 * /sys/class/virtio-ports:
 *   ctl   commands from the host, one per line, and one reply line per command
 *   out   the running step's stdout          err   the running step's stderr
 *   data  tar archives of /work, in both directions
 *
 * Boot is in two halves, so that the first can be saved once and restored for every build
 * (vm-snapshot.ts). First what every build on this machine shape shares: mounts, the kernel
 * modules for the devices QEMU has (crowdbake.net=1: virtio_net; crowdbake.disk=1: virtio_blk,
 * and waiting for /dev/vda — the disk is probed, never mounted or written), the ports; then the
 * agent says "parked" and waits. Nothing of a build is in that half.
 *   setup EPOCH PIDS SEED    per build, after a cold boot or a restore: set the clock, seed the
 *                            kernel's RNG with 32 host bytes (base64) and reseed it at once
 *                            (/bin/crowdbake-reseed, reseed-elf.ts: clones of one snapshot must
 *                            not share a random stream), configure the network, mount the disk
 *                            image and chroot steps into it (/work on it), the pids limit (0:
 *                            none)                                               → "ready" | "fail WHY"
 * Then the build's commands:
 *   put SIZE                 read SIZE bytes of tar from data into /work         → "ok" | "fail WHY"
 *   get NONCE                tar /work to data, then the marker \036cb:NONCE\036 → "got NONCE RC"
 *   run NONCE EPOCH SCRIPT   set the clock, run base64 SCRIPT with sh -c in the build's root;
 *                            afterwards the marker goes to out and err          → "done NONCE RC OOMKILLS"
 * Leftover processes of a step are killed when it ends (kill -9 -1 from PID 1).
 * Messages before the ports are open go to the serial console.
 */
/** `${D}{x}` in the template below is the shell's `${x}` (a template literal would take `${x}` itself). */
const D = '$';

export const AGENT_SCRIPT = String.raw`#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say_console() { echo "crowdbake-agent: $*" > /dev/console; }
die() { say_console "$*"; poweroff -f; sleep 5; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
echo -1000 > /proc/self/oom_score_adj
echo crowdbake > /proc/sys/kernel/hostname
NET=0; DISK=0
read -r CMDLINE < /proc/cmdline
for arg in $CMDLINE; do
  case "$arg" in
    crowdbake.net=1) NET=1 ;;
    crowdbake.disk=1) DISK=1 ;;
  esac
done
read -r MODS < /etc/crowdbake/modules
[ "$DISK" = 1 ] && read -r M < /etc/crowdbake/modules-disk && MODS="$MODS $M"
[ "$NET" = 1 ] && read -r M < /etc/crowdbake/modules-net && MODS="$MODS $M"
for m in $MODS; do
  insmod "/lib/modules/$m.ko" || say_console "insmod $m failed"
done
ip link set lo up
j=0
while [ "$DISK" = 1 ] && [ ! -b /dev/vda ] && [ $j -lt 500 ]; do sleep 0.01; j=$((j + 1)); done
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo +pids > /sys/fs/cgroup/cgroup.subtree_control \
  && mkdir /sys/fs/cgroup/step || say_console "no pids cgroup"
P_ctl=; P_out=; P_err=; P_data=; i=0
while :; do
  for p in /sys/class/virtio-ports/vport*; do
    [ -r "$p/name" ] || continue
    read -r n < "$p/name"; d="/dev/${D}{p##*/}"
    [ -c "$d" ] || continue
    case "$n" in ctl) P_ctl=$d ;; out) P_out=$d ;; err) P_err=$d ;; data) P_data=$d ;; esac
  done
  [ -n "$P_ctl" ] && [ -n "$P_out" ] && [ -n "$P_err" ] && [ -n "$P_data" ] && break
  i=$((i + 1)); [ $i -gt 1000 ] && die "the virtio-serial ports ctl, out, err, data did not appear"
  sleep 0.01
done
exec 3<>"$P_ctl" 4<>"$P_data" 5>"$P_out" 6>"$P_err"
say() { echo "$*" >&3; }
say parked
read -r cmd EPOCH PIDS SEED <&3
[ "$cmd" = setup ] || die "expected setup from the host, got $cmd"
date -s "@$EPOCH" > /dev/null 2>&1
echo "$SEED" | base64 -d | /bin/crowdbake-reseed > /dev/urandom || say_console "reseeding the RNG failed"
if [ "$NET" = 1 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 \
    || say_console "network setup failed"
  echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi
ROOT=/
if [ "$DISK" = 1 ]; then
  ROOT=/mnt/root; mkdir -p $ROOT
  if mount /dev/vda1 $ROOT 2>/dev/null || mount -t ext4 /dev/vda $ROOT 2>/dev/null; then
    mkdir -p $ROOT/work $ROOT/proc $ROOT/sys $ROOT/dev $ROOT/tmp
    mount -o bind $ROOT/work /work && mount -t proc proc $ROOT/proc && mount -t sysfs sys $ROOT/sys \
      && mount -o bind /dev $ROOT/dev && mount -o bind /dev/pts $ROOT/dev/pts || { say "fail could not set up the disk image's root"; ROOT=; }
    [ "$NET" = 1 ] && [ -n "$ROOT" ] && { rm -f $ROOT/etc/resolv.conf; cp /etc/resolv.conf $ROOT/etc/resolv.conf; }
  else
    say "fail could not mount the disk image (tried /dev/vda1 and /dev/vda as ext4)"; ROOT=
  fi
fi
CG=
if [ "$PIDS" -gt 0 ] 2>/dev/null && [ -d /sys/fs/cgroup/step ]; then
  echo "$PIDS" > /sys/fs/cgroup/step/pids.max && CG=/sys/fs/cgroup/step/cgroup.procs
fi
oomkills() { sed -n 's/^oom_kill //p' /proc/vmstat; }
[ -n "$ROOT" ] && say ready
while [ -n "$ROOT" ] && read -r cmd a1 a2 a3 <&3; do
  case "$cmd" in
    put)
      if head -c "$a1" <&4 | { tar -x -C /work -f -; rc=$?; cat > /dev/null; exit $rc; }; then say ok
      else say "fail could not unpack the workdir in the VM"; fi ;;
    get)
      tar -c -C /work -f - . >&4; rc=$?
      printf '\036cb:%s\036' "$a1" >&4
      say "got $a1 $rc" ;;
    run)
      date -s "@$a2" > /dev/null 2>&1
      script=$(echo "$a3" | base64 -d)
      before=$(oomkills)
      (
        exec 3>&- 4>&- 5>&- 6>&-
        echo 0 > /proc/self/oom_score_adj
        [ -n "$CG" ] && echo 0 > "$CG" 2>/dev/null
        if [ "$ROOT" = / ]; then exec /bin/sh -c "$script"; else exec chroot "$ROOT" /bin/sh -c "$script"; fi
      ) < /dev/null >&5 2>&6
      rc=$?
      kill -9 -1 2> /dev/null
      after=$(oomkills)
      printf '\036cb:%s\036' "$a1" >&5
      printf '\036cb:%s\036' "$a1" >&6
      say "done $a1 $rc $((after - before))" ;;
    *) say "fail unknown command $cmd" ;;
  esac
done
die "the host closed the control channel"
`;
