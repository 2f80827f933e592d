/**
 * /init (PID 1, busybox sh) of a local-vm latent worker's guest.
 *
 * It loads the modules listed in /etc/crowdbake/modules{,-net,-9p}, configures QEMU's user
 * network (the guest is 10.0.2.15; the host, and so the master, is 10.0.2.2), mounts the
 * 9p share tagged `cbcfg` (the provisioner's files for this VM) at /cfg, builds a new root on
 * a tmpfs from `/cfg/mounts` — lines `mount TAG PATH` (a read-only 9p share of the host's PATH)
 * and `link PATH TARGET` (a symlink, as /bin -> usr/bin on the host) — and runs `/cfg/run`
 * chrooted there with a fresh /tmp, /proc, /sys and /dev. When the worker exits, the VM powers
 * off. Everything it prints goes to the serial console (the provisioner's console.log).
 */
export const LOCAL_VM_INIT = String.raw`#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "crowdbake-local-vm: $*" > /dev/console; }
die() { say "$*"; poweroff -f; sleep 5; }
for list in /etc/crowdbake/modules /etc/crowdbake/modules-net /etc/crowdbake/modules-9p; do
  read -r MODS < "$list"
  for m in $MODS; do insmod "/lib/modules/$m.ko" || say "insmod $m failed"; done
done
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || die "network setup failed"
O=trans=virtio,version=9p2000.L,ro,msize=262144
mkdir -p /cfg && mount -t 9p -o "$O" cbcfg /cfg || die "cannot mount the cbcfg share"
R=/newroot
mkdir -p "$R" && mount -t tmpfs -o mode=755 root "$R" || die "cannot make the new root"
# A fresh /tmp first: shares below /tmp (a checkout in /tmp/…) are mounted on top of it.
mkdir -p "$R/tmp" && mount -t tmpfs -o mode=1777 tmp "$R/tmp"
while read -r kind a b; do
  case "$kind" in
    mount) mkdir -p "$R$b" && mount -t 9p -o "$O,cache=loose" "$a" "$R$b" || die "cannot mount $a at $b" ;;
    link) mkdir -p "$R$(dirname "$a")" && ln -s "$b" "$R$a" ;;
  esac
done < /cfg/mounts
mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/cfg" "$R/etc" "$R/root"
mount -t proc proc "$R/proc"
mount -t sysfs sys "$R/sys"
mount -o bind /dev "$R/dev"
mount -o bind /cfg "$R/cfg"
[ -e "$R/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
[ -e "$R/etc/group" ] || printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
[ -e "$R/etc/resolv.conf" ] || echo "nameserver 10.0.2.3" > "$R/etc/resolv.conf"
[ -e "$R/etc/hosts" ] || echo "127.0.0.1 localhost" > "$R/etc/hosts"
say "starting the worker"
chroot "$R" /bin/sh /cfg/run > /dev/console 2>&1
say "the worker exited ($?)"
poweroff -f
`;
