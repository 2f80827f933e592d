#!/usr/bin/env bash
# Installs the system packages Crowdbake's executors and tests use (Debian 12 / Ubuntu).
# Run as root (or with sudo). `npm test` runs this by itself when it finds a package missing
# and is running as root; CI runs it from .ci/run.
set -euo pipefail

PACKAGES=(
  podman runc          # the container executor (runc: crun refuses cgroup v1 hybrid hosts)
  busybox-static       # base image `busybox`, built locally: no registry needed
  git                  # checkouts of watched repositories
  debootstrap          # base `debootstrap:SUITE` environments
  qemu-system-x86 qemu-utils e2fsprogs cpio   # the VM executor (guest initramfs built with cpio)
  chromium             # dashboard tests (driven by playwright-core)
  xvfb xdotool xinput x11-utils xprintidle   # idle detection (X11) and its tests
  swayidle             # idle detection on KDE and wlroots Wayland desktops (ext-idle-notify-v1, org_kde_kwin_idle)
  sway wtype foot mutter   # its tests and the Mutter source's: headless sway, wtype input, a window that inhibits idle, headless Mutter
  dbus python3-dbus python3-gi libglib2.0-bin   # logind idle source (gdbus) and its fake for tests
  buildbot buildbot-worker python3-msgpack python3-autobahn bzip2   # BuildBot compatibility tests
  postgresql           # PostgreSQL store tests (scripts/start-postgres.sh)
  iproute2             # network namespaces and veth pairs of the partition fault tests (ip netns; test/helpers/netns.ts)
  diffoscope-minimal bubblewrap   # the master compares disagreeing replicas' artifacts, in a bwrap sandbox
  python3-cryptography # provenance tests: a second implementation (Python) checks the DSSE envelopes
  file ca-certificates
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: run as root, e.g. sudo bash $0" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: no apt-get here; install these by hand: ${PACKAGES[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-system-deps: installed ${PACKAGES[*]}"
