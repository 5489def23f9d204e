#!/usr/bin/env bash
# Installs the Debian packages that building, testing and running vaegan
# need, when any is missing.  Safe to run again: does nothing when all are
# there.  Needs root (or sudo) only when something must be installed.
#
#   scripts/deps.sh                       what building and testing need
#   scripts/deps.sh python3-matplotlib    ... plus extra packages (benchmarks, plots)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libopenblas-dev libdnnl-dev zlib1g-dev libjansson-dev libcsv-dev
  libcriterion-dev
  librdkafka-dev libhiredis-dev libuv1-dev libinih-dev libmicrohttpd-dev libsystemd-dev libsodium-dev
  redis-server kcat python3 systemd
  clang-14 libclang-rt-14-dev
  dpkg-dev file groff-base man-db   # scripts/package.sh: cpack's dpkg-shlibdeps and file, the man page checks
  prometheus   # promtool for test_monitoring_files (Debian has no promtool-only package; under systemd the package also enables a Prometheus server on :9090)
  "$@"
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
