#!/bin/bash
# Runs inside a freshly debootstrapped chroot (through enter.sh), once, to install what
# building and testing the extension needs. Usage: provision.sh SUITE MIRROR RUBY
#   SUITE  trixie | sid
#   MIRROR the Debian mirror the host's apt uses
#   RUBY   the interpreter binary the suite must end up with (ruby3.3, ruby3.4)
# Changing this file changes the cache key in .ci/rubies, so every cached chroot is rebuilt.
set -euo pipefail

suite=$1
mirror=$2
ruby=$3
export DEBIAN_FRONTEND=noninteractive

# No daemon may start inside the chroot; dpkg need not fsync every file.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/90ci-unsafe-io

cat >/etc/apt/apt.conf.d/90ci <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Check-Valid-Until "false";
Acquire::Retries "5";
Acquire::Languages "none";
EOF

{
  echo "deb $mirror $suite main"
  if [ "$suite" = sid ]; then
    echo "deb $mirror experimental main"
  fi
} >/etc/apt/sources.list
rm -f /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list

apt-get update -q

base=(ca-certificates build-essential pkg-config libclang-dev clang ruby-minitest rake)
case "$suite" in
  trixie)
    apt-get install -y -q "${base[@]}" ruby ruby-dev
    ;;
  sid)
    # ruby3.4 may sit only in experimental (NotAutomatic, priority 1). Pin just the
    # Ruby 3.4 packages up, so nothing else is taken from experimental.
    cat >/etc/apt/preferences.d/90ci-ruby34 <<'EOF'
Package: ruby3.4 ruby3.4-dev libruby3.4 ruby3.4-doc
Pin: release a=experimental
Pin-Priority: 500
EOF
    echo "--- apt-cache policy (sid + experimental) ---"
    apt-cache policy ruby3.4 ruby3.4-dev libruby3.4 ruby ruby-dev
    apt-get install -y -q "${base[@]}" ruby ruby-dev ruby3.4 ruby3.4-dev
    ;;
  *)
    echo "provision.sh: unknown suite $suite" >&2
    exit 2
    ;;
esac

apt-get clean

command -v "$ruby" >/dev/null || {
  echo "provision.sh: $ruby is not installed in the $suite chroot" >&2
  exit 1
}
"$ruby" -v
