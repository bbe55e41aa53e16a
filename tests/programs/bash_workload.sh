# Bash workload run under the preloaded allocator (bash itself is the program
# under test: its arrays, strings and variables live in malloc'd memory).
# The output is compared with bash_workload.expected. Uses only builtins
# except where a subshell or command substitution is the point.
set -euo pipefail

# Indexed arrays: append, slice, delete, re-pack.
declare -a numbers=()
for ((i = 0; i < 20000; i++)); do numbers+=($(( (i * 7919) % 10007 ))); done
sum=0
for n in "${numbers[@]}"; do sum=$((sum + n)); done
echo "array: ${#numbers[@]} elements, sum $sum, slice ${numbers[*]:100:5}"
for ((i = 0; i < 20000; i += 2)); do unset 'numbers[i]'; done
numbers=("${numbers[@]}")
echo "after unset: ${#numbers[@]} elements, first ${numbers[0]}, last ${numbers[-1]}"

# Associative arrays: word counts.
declare -A counts=()
words=""
for ((i = 0; i < 6000; i++)); do
  word="w$(( (i * i) % 97 ))"
  counts[$word]=$(( ${counts[$word]:-0} + 1 ))
  words+="$word "
done
echo "distinct words: ${#counts[@]}, w0=${counts[w0]}, w1=${counts[w1]}, w96=${counts[w96]:-0}"

# String operations on a long string.
echo "words length: ${#words}"
upper=${words^^}
echo "upper prefix: ${upper:0:20}"
replaced=${words//w1/W-ONE}
echo "replaced length: ${#replaced}"
trimmed=${words%% w5*}
echo "up to first w5*: ${#trimmed}"
long=""
for ((i = 0; i < 3000; i++)); do long+="chunk$i-"; done
echo "long: ${#long} chars, tail ${long: -12}"

# Subshells and command substitution (fork + pipes, under the preload too).
sub_sum=$( total=0; for ((i = 1; i <= 1000; i++)); do total=$((total + i)); done; echo "$total" )
echo "subshell sum: $sub_sum"
# shellcheck disable=SC2116  # nested command substitutions are the point here
nested=$(echo "outer $(echo "inner $(echo deepest)")")
echo "nested: $nested"
lines=$(for ((i = 0; i < 500; i++)); do echo "line $i"; done)
mapfile -t line_array <<< "$lines"
echo "mapfile: ${#line_array[@]} lines, last '${line_array[-1]}'"
( declare -a local_array=(a b c); local_array+=(d); echo "subshell array: ${local_array[*]}" )
pids=0
for ((i = 0; i < 20; i++)); do
  (echo "$((i * i))" > /dev/null) &
  pids=$((pids + 1))
done
wait
echo "background subshells: $pids"

# Functions with locals and recursion.
fib() {
  local n=$1
  if ((n < 2)); then echo "$n"; return; fi
  echo $(( $(fib $((n - 1))) + $(fib $((n - 2))) ))
}
echo "fib 12: $(fib 12)"

printf -v formatted '%05d|%-6s|%x' 42 ab 255
echo "printf: $formatted"
read -r -a split <<< "alpha beta gamma delta"
echo "split: ${#split[@]} ${split[2]}"
