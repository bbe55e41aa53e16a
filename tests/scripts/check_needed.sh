#!/usr/bin/env bash
# Passes only if LIB's dynamic section needs exactly the libraries listed (NEEDED entries), so a
# preloaded libbitslab.so maps nothing but libc into a C program. Fails if readelf fails or
# finds no NEEDED entry at all (the old check passed then).
#   check_needed.sh LIB NEEDED...
set -euo pipefail
lib=$1; shift
dynamic=$(readelf -d "$lib")
needed=$(grep -o 'Shared library: \[[^]]*\]' <<<"$dynamic" | sed 's/.*\[\(.*\)\]/\1/' | sort)
want=$(printf '%s\n' "$@" | sort)
echo "NEEDED by $lib: ${needed//$'\n'/ }"
if [[ -z $needed || $needed != "$want" ]]; then
  echo "check_needed: expected exactly: ${want//$'\n'/ }" >&2
  exit 1
fi
