#!/usr/bin/env bash
# Builds the Debian package vaegan_<version>-<release>_<arch>.deb (CPack,
# cmake/packaging.cmake) in its own Release build, build-deb/ (prefix /usr,
# the unit in /lib/systemd/system), checks what it holds and prints its path.
# With --install-test it then installs it on this machine and checks the
# installed package (root or sudo: meant for a throwaway CI machine):
#
#   scripts/package.sh                  # build-deb/vaegan_*.deb, path on the last line
#   scripts/package.sh --install-test   # ... + apt-get install, vaegand --version,
#                                       #   --check-config on /etc/vaegand/vaegand.conf,
#                                       #   mode 0640, an edited conffile kept across
#                                       #   apt-get install --reinstall, remove, purge
#
# The install test does not run when vaegan is installed already or an
# /etc/vaegand/vaegand.conf exists (it edits that file and purges the package
# at the end): it fails when CI is set, else says so and exits 0.  VG_PACKAGE_JOBS sets the build's parallelism (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

install_test=0
case "${1:-}" in
  "") ;;
  --install-test) install_test=1 ;;
  *) echo "usage: scripts/package.sh [--install-test]" >&2; exit 2 ;;
esac
scripts/deps.sh   # dpkg-dev (dpkg-shlibdeps), file, groff-base among the rest

dir=build-deb
jobs=${VG_PACKAGE_JOBS:-$(nproc)}
fail() { echo "package: FAIL: $*" >&2; exit 1; }

# The manual pages must format without a warning.
for page in man/*.[0-9]; do
  out=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff failed on $page: $out"
  [ -z "$out" ] || fail "groff warns about $page:"$'\n'"$out"
done

echo "package: building in $dir/ (Release, prefix /usr)" >&2
# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack's preinstall step would otherwise
# build everything (tests, benchmarks) one file at a time; this builds only
# what the package installs, below.
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DVG_WERROR=ON -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON \
  -DCMAKE_INSTALL_PREFIX=/usr -DVG_SYSTEMD_UNITDIR=/lib/systemd/system >/dev/null
cmake --build "$dir" -j"$jobs" --target vaegand vaegan-eval vaegan-gen vaegan-mockbroker man
rm -f "$dir"/vaegan_*.deb
if ! (cd "$dir" && cpack -G DEB >cpack.log 2>&1); then
  cat "$dir/cpack.log" >&2
  fail "cpack -G DEB failed (log: $dir/cpack.log)"
fi
debs=("$dir"/vaegan_*.deb)
{ [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ]; } || fail "cpack made no single $dir/vaegan_*.deb"
deb=${debs[0]}

# What the package holds.
info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
grep -q '^ Depends: .*libc6' <<<"$info" || fail "no Depends computed by dpkg-shlibdeps"
conffiles=$(dpkg-deb --info "$deb" conffiles)
[ "$conffiles" = /etc/vaegand/vaegand.conf ] || fail "conffiles is \"$conffiles\""
grep -Eq '^-rw-r----- root/root .* \./etc/vaegand/vaegand\.conf$' <<<"$contents" ||
  fail "vaegand.conf is not root/root 0640 in the package"
for f in ./usr/bin/vaegand ./usr/bin/vaegan-eval ./usr/bin/vaegan-gen ./usr/bin/vaegan-mockbroker \
    ./lib/systemd/system/vaegand.service \
    ./usr/share/man/man8/vaegand.8.gz ./usr/share/man/man5/vaegand.conf.5.gz \
    ./usr/share/vaegan/monitoring/grafana-dashboard.json ./usr/share/vaegan/monitoring/vaegan-alerts.yml; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./lib/systemd/system/vaegand.service
grep -qx 'ExecStart=/usr/bin/vaegand -c %d/vaegand.conf' "$tmp/lib/systemd/system/vaegand.service" ||
  fail "the packaged unit does not run /usr/bin/vaegand"
echo "package: $(du -k "$deb" | cut -f1) KB; $(grep '^ Depends:' <<<"$info" | sed 's/^ //')" >&2

if [ "$install_test" = 1 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "the install test needs root or sudo"
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  conf=/etc/vaegand/vaegand.conf
  abs=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
  # Never on a machine that has vaegan already: fail on CI, skip elsewhere.
  why=""
  if dpkg-query -W -f='${db:Status-Abbrev}' vaegan 2>/dev/null | grep -q '^[ir]'; then
    why="vaegan is installed on this machine already: the install test would replace and purge it"
  elif [ -e "$conf" ]; then
    why="$conf exists: the install test would edit it and purge it"
  fi
  if [ -n "$why" ]; then
    [ -z "${CI:-}" ] || fail "$why"
    echo "package: install test skipped: $why" >&2
    echo "$deb"
    exit 0
  fi
  installed=0
  cleanup() {
    rm -rf "$tmp"
    if [ "$installed" = 1 ]; then
      echo "package: purging vaegan after a failure" >&2
      $SUDO apt-get purge -y -qq vaegan >/dev/null || true
    fi
  }
  trap cleanup EXIT
  apt_install() { $SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >"$tmp/apt.log" 2>&1 ||
                    { cat "$tmp/apt.log" >&2; fail "apt-get install $* failed"; }; }

  echo "== package: apt-get install $deb" >&2
  installed=1
  apt_install "$abs"
  [ "$(command -v vaegand)" = /usr/bin/vaegand ] || fail "vaegand is not /usr/bin/vaegand"
  version=$(vaegand --version)
  echo "$version"
  [ "$version" = "vaegand $(dpkg-query -W -f='${Version}' vaegan | sed 's/-[^-]*$//')" ] ||
    fail "vaegand --version says \"$version\", the package is $(dpkg-query -W -f='${Version}' vaegan)"
  [ "$(stat -c '%a %U:%G' "$conf")" = "640 root:root" ] ||
    fail "$conf is $(stat -c '%a %U:%G' "$conf"), not 640 root:root"
  dpkg-query -W -f='${Conffiles}\n' vaegan | grep -q "^ $conf " || fail "dpkg does not list $conf as a conffile"
  # the shipped configuration passes as installed, and holds no secret (no warning)
  $SUDO vaegand --check-config -c "$conf" >"$tmp/check.out" 2>"$tmp/check.err" ||
    { cat "$tmp/check.err" >&2; fail "vaegand --check-config -c $conf failed"; }
  head -1 "$tmp/check.out"
  [ "$(head -1 "$tmp/check.out")" = "# $conf: configuration ok" ] || fail "unexpected --check-config output"
  [ ! -s "$tmp/check.err" ] || { cat "$tmp/check.err" >&2; fail "--check-config warned about the shipped file"; }
  grep -qx 'serve.top_n = 100' "$tmp/check.out" || fail "--check-config does not show serve.top_n = 100"
  { man -w vaegand >/dev/null && man -w 5 vaegand.conf >/dev/null; } || fail "man cannot find vaegand(8) or vaegand.conf(5)"

  echo "== package: reinstall over an edited $conf (--force-confold)" >&2
  $SUDO sed -i 's/^top_n = 100$/top_n = 42/' "$conf"
  grep -qx 'top_n = 42' "$conf" || fail "could not edit $conf"
  apt_install --reinstall "$abs"
  grep -qx 'top_n = 42' "$conf" || fail "the reinstall overwrote the edited $conf"
  [ "$(stat -c '%a %U:%G' "$conf")" = "640 root:root" ] || fail "$conf lost its mode in the reinstall"
  $SUDO vaegand --check-config -c "$conf" | grep -qx 'serve.top_n = 42' || fail "--check-config does not see the edit"
  echo "kept: $conf still has top_n = 42"

  echo "== package: apt-get remove vaegan, then purge" >&2
  $SUDO apt-get remove -y -qq vaegan >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; fail "apt-get remove failed"; }
  [ ! -e /usr/bin/vaegand ] || fail "/usr/bin/vaegand is still there after apt-get remove"
  [ ! -e /lib/systemd/system/vaegand.service ] || fail "the unit is still there after apt-get remove"
  grep -qx 'top_n = 42' "$conf" || fail "apt-get remove did not keep the edited $conf (dpkg keeps conffiles)"
  $SUDO apt-get purge -y -qq vaegan >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; fail "apt-get purge failed"; }
  installed=0
  [ ! -e "$conf" ] || fail "$conf is still there after apt-get purge"
  echo "package: install test passed" >&2
fi
echo "$deb"
