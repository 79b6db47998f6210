#!/usr/bin/env bash
# Side-by-side wall time of two flowc binaries on the same generated flows,
# A B A B … (ROUNDS rounds), medians per case: the ratio is what to read on a
# small, noisy machine.
#
#   benches/ab.sh OLD_FLOWC NEW_FLOWC [ROUNDS]
#
# Cases: a chain of 200 sandboxed `true` steps, a fan-out of 2,000 with
# `parallel: 2`, and a chain of 1,000 `script` steps (journal work only).
set -euo pipefail
a=$(realpath "$1") b=$(realpath "$2") rounds=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
policy='policy bench {
  max_parallel: 2
  max_steps: 100000
  run_timeout: 2h
}
'
{
  printf '%s' "$policy"
  echo 'skill main() {'
  echo '  policy: bench'
  echo '  step s0: run { argv: ["true"] }'
  for i in $(seq 1 199); do echo "  step s$i: run { argv: [\"true\"], after: [s$((i - 1))] }"; done
  echo '}'
} > "$work/chain.flow"
{
  printf '%s' "$policy"
  echo 'skill main() {'
  echo '  policy: bench'
  echo '  step list: script { code: "let l = []; for i in 0..2000 { l.push(i) } l", output: [int] }'
  echo '  for i in list {'
  echo '    parallel: 2'
  echo '    step t: run { argv: ["true"] }'
  echo '  }'
  echo '}'
} > "$work/fan.flow"
{
  printf '%s' "$policy"
  echo 'skill main() -> int {'
  echo '  policy: bench'
  echo '  step s0: script { code: "0", output: int }'
  for i in $(seq 1 999); do echo "  step s$i: script { code: \"s$((i - 1)) + 1\", output: int }"; done
  echo '  return s999'
  echo '}'
} > "$work/scripts.flow"

time_one() { # BIN FLOW -> seconds
  local dir
  dir=$(mktemp -d "$work/run.XXXX")
  cp "$work/$2" "$dir/"
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$dir" && "$1" run "$2" --no-input > /dev/null 2>&1) || { echo "run of $2 failed with $1" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-14s %10s %10s %7s\n' case "A (s)" "B (s)" "B/A"
for flow in chain.flow fan.flow scripts.flow; do
  : > "$work/a.times"
  : > "$work/b.times"
  for _ in $(seq 1 "$rounds"); do
    time_one "$a" "$flow" >> "$work/a.times"
    time_one "$b" "$flow" >> "$work/b.times"
  done
  ma=$(median < "$work/a.times")
  mb=$(median < "$work/b.times")
  printf '%-14s %10.3f %10.3f %7.2f\n' "${flow%.flow}" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN { print b / a }')"
done
