#!/usr/bin/env bash
# Checks that a libkvstore.so exports kvstore's API and nothing of what it is built from: every
# defined dynamic symbol must be kvstore's (kvstore::..., its vtables, typeinfo and thunks) or a
# weak instantiation of a standard library template, which every C++ library exports alike.
# Anything else (gRPC, protobuf, etcdserverpb, abseil, spdlog, yaml-cpp, prometheus-cpp, a C
# symbol) is an error: it could clash with the program's own copy. Prints the counts.
# Usage: check_exports.sh LIBRARY
set -euo pipefail
library=$1

symbols=$(nm -D --defined-only --demangle "$library" | cut -d ' ' -f 2-)
kvstore=0 std=0 bad=()
while read -r type name; do
  [[ -z $name ]] && continue
  case $name in
    kvstore::* | "vtable for kvstore::"* | "typeinfo for kvstore::"* | \
      "typeinfo name for kvstore::"* | "VTT for kvstore::"* | *"thunk to kvstore::"*)
      kvstore=$((kvstore + 1)) ;;
    *)
      # A function template's name starts with its return type, which may itself be a template
      # (bool kvstore::Context::WaitOn<...>, __gnu_cxx::__enable_if<...>::__type std::...): a
      # weak instantiation counts by the namespace of the name after it, unless it names one of
      # the libraries kvstore is built from.
      if [[ $type == [WVu] && ! $name =~ (grpc|protobuf|absl::|etcdserverpb|mvccpb|spdlog|YAML|prometheus|fmt::) ]]; then
        if [[ $name =~ (^|[\ \*\&])kvstore:: ]]; then
          kvstore=$((kvstore + 1))
        elif [[ $name =~ (^|[\ \*\&])std:: || $name =~ ^(vtable|typeinfo|typeinfo\ name|guard\ variable)\ for\ std:: ]]; then
          std=$((std + 1))
        else
          bad+=("$type $name")
        fi
      else
        bad+=("$type $name")
      fi
      ;;
  esac
done <<<"$symbols"

echo "check_exports: $library exports $kvstore kvstore symbols and $std weak std:: instantiations"
if ((kvstore == 0)); then
  echo "check_exports: no kvstore symbol exported"
  exit 1
fi
if ((${#bad[@]} > 0)); then
  echo "check_exports: ${#bad[@]} symbols that are not kvstore's:"
  printf '  %s\n' "${bad[@]}" | head -n 50
  exit 1
fi
