#!/bin/bash
# Runs as PID 1 of the private mount + PID namespace that `.ci/rubies` creates with
#   unshare --mount --propagation private --pid --fork --kill-child
# Usage: enter.sh ROOT [--rust] -- COMMAND...
#
# Sets up what a build inside the chroot ROOT needs, then runs COMMAND there. Every mount
# made here lives only in this namespace: when this process ends (normally, by a signal,
# or killed by `timeout`), the kernel tears the namespace and all its mounts down, so no
# exit path can leave a bind mount behind on the host or in the cache directory.
set -euo pipefail

root=$1
shift
with_rust=0
if [ "${1:-}" = "--rust" ]; then
  with_rust=1
  shift
fi
[ "${1:-}" = "--" ] && shift

mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777,size=4g tmpfs "$root/tmp"

if [ "$with_rust" = 1 ]; then
  # The host's toolchain, read-only at the same paths, so that the absolute paths
  # rustup and rustc use internally stay valid. Cargo's writable state (registry,
  # git checkouts) goes to CARGO_HOME=/build/cargo-home, inside the chroot.
  for dir in "${RUSTUP_HOME:-/root/.rustup}" "${HOST_CARGO_HOME:-/root/.cargo}"; do
    [ -d "$dir" ] || continue
    mkdir -p "$root$dir"
    mount --bind -o ro "$dir" "$root$dir"
  done
  if [ -n "${RUST_SYSROOT:-}" ] && [ ! -x "$root$RUST_SYSROOT/bin/cargo" ]; then
    # A toolchain that lives outside RUSTUP_HOME (e.g. /usr/local): bind it too.
    mkdir -p "$root$RUST_SYSROOT"
    mount --bind -o ro "$RUST_SYSROOT" "$root$RUST_SYSROOT"
  fi
fi

# Not `exec`: this shell stays PID 1 of the namespace and reaps orphaned test children.
status=0
chroot "$root" "$@" || status=$?
exit "$status"
