#!/bin/sh
# Checks tests/cilium/testdata/go_encoding.txt (the values cilium_types_test round-trips) against
# Go's own encoding/json: each line must come back unchanged from json.Unmarshal + json.Marshal
# on structs shaped as Cilium's (tests/cilium/gocheck/main.go). Needs Debian's golang-go; not run
# by `make test`. Exit 1 on any difference.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-/tmp}/kvstore-gocheck
bin=$cache/gocheck
if [ ! -x "$bin" ] || [ "$here/gocheck/main.go" -nt "$bin" ]; then
  mkdir -p "$cache/gopath/src/gocheck"
  cp "$here/gocheck/main.go" "$cache/gopath/src/gocheck/"
  (cd "$cache/gopath/src/gocheck" &&
    GO111MODULE=off GOFLAGS= GOPATH="$cache/gopath" GOCACHE="$cache/gocache" go build -o "$bin" .)
fi
grep -v '^#' "$here/testdata/go_encoding.txt" | "$bin" | {
  status=0 n=0
  grep -v '^#' "$here/testdata/go_encoding.txt" | cut -d' ' -f2- > "$cache/want"
  cat > "$cache/got"
  if ! diff "$cache/want" "$cache/got"; then status=1; fi
  n=$(wc -l < "$cache/want")
  [ $status -eq 0 ] && echo "gocheck: $n values, each unchanged by Go's json.Unmarshal + json.Marshal"
  exit $status
}
