#!/usr/bin/env bash
# readme_example.sh README INCLUDE_DIR SOURCE_DIR TOOLKIT_LIB — the toolkit example in the
# README (the first ```cpp block after "## The toolkit") compiles against the build's headers
# and library and runs: the README cannot drift from the API.
set -euo pipefail
readme=$1 include=$2 source=$3 lib=$4
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
awk '/^## The toolkit/ {section=1} section && /^```cpp/ {code=1; next} code && /^```/ {exit} code {print}' \
  "$readme" > "$tmp/block.cc"
[ -s "$tmp/block.cc" ] || { echo "no toolkit example found in $readme"; exit 1; }
{ grep '^#include' "$tmp/block.cc"; echo 'int main() {'; grep -v '^#include' "$tmp/block.cc"; echo '}'; } > "$tmp/example.cc"
c++ -std=c++20 -Wall -Wno-unused-variable -I "$include" -I "$source" "$tmp/example.cc" "$lib" -lpthread -lrt \
  -o "$tmp/example"
"$tmp/example"
echo "README toolkit example: $(grep -c . "$tmp/block.cc") lines compiled and ran"
