#!/usr/bin/env bash
# The Debian package test (ctest label `deb`): makes the three packages of this build with CPack
# (cmake/KvstorePackaging.cmake), installs them into this machine with `dpkg -i`, checks that the
# installed kvstorectl starts, builds tests/package/consumer against the installed packages with
# nothing but `pkg-config --cflags --libs kvstore` and with CMake's find_package(kvstore), runs
# both, then purges the packages and checks that nothing of them is left. The packages are purged
# and the temporary files removed however the test ends.
# Needs root: without it, or when a kvstore package is installed already (the test would replace
# and then remove it), it skips with exit code 77.
# Usage: deb_test.sh CPACK CMAKE BUILD_DIR CXX_COMPILER BUILD_TYPE GENERATOR
set -euo pipefail
cpack=$1 cmake=$2 build_dir=$3 cxx=$4 build_type=$5 generator=$6
consumer_dir=$(cd "$(dirname "$0")/consumer" && pwd)
packages=(kvstorectl libkvstore-dev libkvstore0)

if [[ $(id -u) -ne 0 ]]; then
  echo "deb_test: skipped: installing packages needs root"
  exit 77
fi
for package in "${packages[@]}"; do
  if dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null | grep -qv '^not-installed$'; then
    echo "deb_test: skipped: $package is installed already, and the test would remove it"
    exit 77
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvstore-deb.XXXXXX")
installed=0
cleanup() {
  if ((installed)); then
    dpkg --purge "${packages[@]}" >"$tmp/cleanup.log" 2>&1 || cat "$tmp/cleanup.log"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Runs a step with its output in a log, shown only when the step fails.
step() {
  local name=$1 start=$SECONDS
  shift
  if ! "$@" >"$tmp/$name.log" 2>&1; then
    cat "$tmp/$name.log"
    echo "deb_test: $name failed"
    exit 1
  fi
  echo "deb_test: $name took $((SECONDS - start)) s"
}

step cpack "$cpack" -G DEB -B "$tmp/packages" --config "$build_dir/CPackConfig.cmake"
debs=("$tmp"/packages/*.deb)
if ((${#debs[@]} != ${#packages[@]})); then
  echo "deb_test: CPack made ${#debs[@]} packages, not ${#packages[@]}: ${debs[*]}"
  exit 1
fi
for deb in "${debs[@]}"; do
  echo "deb_test: $(basename "$deb") $(stat -c %s "$deb") bytes"
done

installed=1  # before dpkg: a failed or partial install is purged too
step install dpkg -i "${debs[@]}"
step kvstorectl kvstorectl --help

# Whether `binary` loads libkvstore.so.0 (from the system's library path: no LD_LIBRARY_PATH).
# (Not `ldd | grep -q`: grep quits at the first match, and under pipefail ldd's SIGPIPE would
# fail the check now and then.)
loads_shared() {
  local libraries
  libraries=$(ldd "$1") || return 1
  grep -Eq 'libkvstore\.so\.0 => (/usr)?/lib/' <<<"$libraries"
}

flags=$(pkg-config --cflags --libs kvstore)
echo "deb_test: pkg-config --cflags --libs kvstore: $flags"
# shellcheck disable=SC2086 # the flags are words
step pkg-config "$cxx" -std=c++20 "$consumer_dir/main.cc" -o "$tmp/consumer-pkg-config" $flags
if ! loads_shared "$tmp/consumer-pkg-config"; then
  echo "deb_test: the pkg-config build of the consumer does not load the installed libkvstore.so.0"
  ldd "$tmp/consumer-pkg-config"
  exit 1
fi
"$tmp/consumer-pkg-config"

# No prefix given: CMake finds the package where Debian installed it.
step configure "$cmake" -S "$consumer_dir" -B "$tmp/build" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$build_type" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
found=$(sed -n 's/^kvstore_DIR:PATH=//p' "$tmp/build/CMakeCache.txt")
if [[ $found != /usr/lib/* ]]; then
  echo "deb_test: find_package(kvstore) found $found, not the installed package"
  exit 1
fi
step build "$cmake" --build "$tmp/build"
if ! loads_shared "$tmp/build/kvstore_consumer"; then
  echo "deb_test: the CMake build of the consumer does not load the installed libkvstore.so.0"
  ldd "$tmp/build/kvstore_consumer"
  readelf -d "$tmp/build/kvstore_consumer" | grep -E 'NEEDED|RPATH|RUNPATH'
  exit 1
fi
"$tmp/build/kvstore_consumer"

step purge dpkg --purge "${packages[@]}"
installed=0
left=$(dpkg-query -W -f='${binary:Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null |
  grep -v ' not-installed$' || true)
if [[ -n $left || -e /usr/include/kvstore || -e /usr/bin/kvstorectl ]]; then
  echo "deb_test: the packages left something behind: ${left:-files}"
  exit 1
fi
echo "deb_test: installed, used and purged ${packages[*]}"
