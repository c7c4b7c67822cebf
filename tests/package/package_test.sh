#!/usr/bin/env bash
# The package test (ctest label `package`): installs a kvstore build tree into a fresh temporary
# prefix, checks that the installed kvstorectl starts, then configures, builds and runs
# tests/package/consumer against that prefix alone, with the build tree's compiler, build type and
# generator. Removes the prefix and the consumer's build when it ends, passed or not.
# Usage: package_test.sh CMAKE BUILD_DIR CXX_COMPILER BUILD_TYPE GENERATOR
set -euo pipefail
cmake=$1 build_dir=$2 cxx=$3 build_type=$4 generator=$5
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
# Only the prefix: no package registry, so a build tree or another install cannot stand in for it.
step configure "$cmake" -S "$consumer_dir" -B "$tmp/build" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
found=$(sed -n 's/^kvstore_DIR:PATH=//p' "$tmp/build/CMakeCache.txt")
if [[ $found != "$prefix"/* ]]; then
  echo "package_test: find_package(kvstore) found $found, not the package installed in $prefix"
  exit 1
fi
step build "$cmake" --build "$tmp/build"
"$tmp/build/kvstore_consumer"
