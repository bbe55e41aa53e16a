#!/usr/bin/env bash
# scripts/check-layers must fail on each kind of violation, and pass a clean tree. Each case is
# a tiny tree: a core-internal header (so the checker has a type to look for) and one file that
# breaks one rule.
#   check_layers_selftest.sh CHECK_LAYERS
set -uo pipefail
checker=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# case NAME EXPECTED(pass|fail) FILE CONTENT
case_() {
  local name=$1 expected=$2 file=$3 content=$4 dir=$work/$1
  mkdir -p "$dir/core/os" "$dir/core/api" "$dir/shim"
  printf 'class HeapRange {};\nnamespace bitslab::os {\n}\n' >"$dir/core/os/heap_range.h"
  printf '#include "core/os/heap_range.h"\n' >"$dir/core/api/dispatch.h"
  mkdir -p "$dir/$(dirname "$file")"
  printf '%s\n' "$content" >"$dir/$file"
  local out status=0
  out=$("$checker" "$dir" 2>&1) || status=$?
  local got=pass
  (( status != 0 )) && got=fail
  if [[ $got != "$expected" ]]; then
    echo "FAIL: $name: check-layers should $expected, it did $got:"
    echo "$out"
    failures=$((failures + 1))
  else
    echo "ok: $name ($got: $(grep -m1 violation <<<"$out" || echo clean))"
  fi
}

case_ clean pass shim/ok.cc '#include "core/api/dispatch.h"'
case_ upward_include fail core/os/bad.h '#include "core/api/dispatch.h"'
case_ sideways_include fail core/small/bad.h '#include "core/pool/pool_set.h"'
case_ shim_includes_internal_header fail shim/bad.cc '#include "core/os/heap_range.h"'
case_ shim_names_internal_type fail shim/bad.cc 'int f() { return sizeof(HeapRange); }'
case_ shim_names_internal_namespace fail shim/bad.cc 'void f() { bitslab::os::page_size(); }'
case_ unknown_folder fail core/misc/bad.h '// a folder the allow-list does not know'
exit $(( failures != 0 ))
