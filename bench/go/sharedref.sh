#!/bin/sh
# Builds (once) and runs bench/go/sharedref, the shared workload done with the Go etcd client.
# Needs Debian's golang-go and golang-etcd-server-dev (../shared/reference/compare.sh installs
# both). Arguments go to the program, e.g.:
#   bench/go/sharedref.sh -endpoints 127.0.0.1:2379 -lease
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-/tmp}/kvstore-sharedref
bin=$cache/sharedref
if [ ! -x "$bin" ] || [ "$here/sharedref/main.go" -nt "$bin" ]; then
  mkdir -p "$cache/gopath/src/sharedref"
  cp "$here/sharedref/main.go" "$cache/gopath/src/sharedref/"
  (cd "$cache/gopath/src/sharedref" &&
    GO111MODULE=off GOFLAGS= GOPATH="$cache/gopath:/usr/share/gocode" GOCACHE="$cache/gocache" \
      go build -o "$bin" .)
fi
exec "$bin" "$@"
