#!/usr/bin/env bash
# The package test (ctest label `package`): installs a kvstore build tree into a fresh temporary
# prefix, checks that the installed kvstorectl starts and that libkvstore.so exports kvstore's API
# alone, then builds and runs tests/package/consumer against that prefix alone three ways: with
# CMake and kvstore::kvstore (the shared library), with CMake and KVSTORE_USE_STATIC_LIBS (the
# static archives), and with nothing but `pkg-config --cflags --libs kvstore`. CMake builds use the
# build tree's compiler, build type and generator. Removes the prefix and the consumer's builds
# when it ends, passed or not.
# SHARED (ON or OFF: KVSTORE_BUILD_SHARED) OFF leaves the shared and pkg-config builds out.
# Usage: package_test.sh CMAKE BUILD_DIR CXX_COMPILER BUILD_TYPE GENERATOR SHARED
set -euo pipefail
cmake=$1 build_dir=$2 cxx=$3 build_type=$4 generator=$5 shared=$6
consumer_dir=$(cd "$(dirname "$0")/consumer" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvstore-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# Runs a step with its output in a log, shown only when the step fails.
step() {
  local name=$1 start=$SECONDS
  shift
  if ! "$@" >"$tmp/$name.log" 2>&1; then
    cat "$tmp/$name.log"
    echo "package_test: $name failed"
    exit 1
  fi
  echo "package_test: $name took $((SECONDS - start)) s"
}

step install "$cmake" --install "$build_dir" --prefix "$prefix"
step kvstorectl "$prefix/bin/kvstorectl" --help
kinds=(shared static)
if [[ $shared != ON ]]; then
  kinds=(static)
  if [[ -n $(find "$prefix" -name 'libkvstore.so*' -print -quit) ]]; then
    echo "package_test: a build without KVSTORE_BUILD_SHARED installed libkvstore.so"
    exit 1
  fi
fi
if [[ $shared == ON ]]; then
  library=$(find "$prefix" -name 'libkvstore.so.0' -print -quit)
  if [[ -z $library ]]; then
    echo "package_test: no libkvstore.so.0 installed in $prefix"
    exit 1
  fi
  libdir=$(dirname "$library")
  step exports "$(dirname "$0")/check_exports.sh" "$library"
fi

# Whether `binary` loads libkvstore.so.0.
# (Not `readelf | grep -q`: under pipefail, readelf's SIGPIPE once grep has quit would count.)
needs_shared() {
  local dynamic
  dynamic=$(readelf -d "$1") || return 1
  grep -q 'NEEDED.*\[libkvstore\.so\.0\]' <<<"$dynamic"
}

# CMake, shared then static. Only the prefix: no package registry, so a build tree or another
# install cannot stand in for it.
for kind in "${kinds[@]}"; do
  static=OFF
  [[ $kind == static ]] && static=ON
  step "configure-$kind" "$cmake" -S "$consumer_dir" -B "$tmp/build-$kind" -G "$generator" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
    -DKVSTORE_USE_STATIC_LIBS=$static
  found=$(sed -n 's/^kvstore_DIR:PATH=//p' "$tmp/build-$kind/CMakeCache.txt")
  if [[ $found != "$prefix"/* ]]; then
    echo "package_test: find_package(kvstore) found $found, not the package installed in $prefix"
    exit 1
  fi
  step "build-$kind" "$cmake" --build "$tmp/build-$kind"
  if needs_shared "$tmp/build-$kind/kvstore_consumer"; then linked=shared; else linked=static; fi
  if [[ $linked != "$kind" ]]; then
    echo "package_test: the $kind CMake build of the consumer linked kvstore $linked"
    exit 1
  fi
  "$tmp/build-$kind/kvstore_consumer"
done

[[ $shared == ON ]] || exit 0
# pkg-config alone, the way a Makefile would use it.
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs kvstore)
# shellcheck disable=SC2086 # the flags are words
step pkg-config "$cxx" -std=c++20 "$consumer_dir/main.cc" -o "$tmp/consumer-pkg-config" $flags
if ! needs_shared "$tmp/consumer-pkg-config"; then
  echo "package_test: the pkg-config build of the consumer does not load libkvstore.so.0"
  exit 1
fi
LD_LIBRARY_PATH=$libdir "$tmp/consumer-pkg-config"
