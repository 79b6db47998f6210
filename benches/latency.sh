#!/usr/bin/env bash
# Per-step latency against the tools a user would compare flowc with (issue 17),
# side by side, A B A B … (ROUNDS rounds), medians:
#
#   W1: a chain of 200 `true` steps            vs  make -j2 on a chain of 200 targets
#   W2: 1,000 independent `true` steps, a join  vs  make -j2 on the same graph
#   W3: 2,000 independent `true` steps          vs  seq 2000 | xargs -P2 -I{} sh -c true
#
# flowc runs with the default sandbox (PID namespace and the rest) and the
# journal on (`--durability` default, or DURABILITY=full). Wall and CPU
# (user+sys of the command and all under it) from `perf stat` (see `timed`).
#
# W1 is also timed against the bare serial floor, `seq 200 | xargs -I{} sh -c
# true` (the chain's 200 processes one after another, no state). PIN=1 runs
# every command pinned to CPU 0 (`taskset -c 0`, children included): on a
# small VM this takes out the wake-up of an idle virtual CPU, which makes a
# chain's wall time swing 2x between rounds.
#
#   benches/latency.sh [FLOWC] [ROUNDS]      (default: target/release/flowc, 5)
set -euo pipefail
flowc=$(realpath "${1:-target/release/flowc}")
rounds=${2:-5}
durability=${DURABILITY:-}
pin=()
[ "${PIN:-}" = 1 ] && pin=(taskset -c 0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
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
} > w1.flow
{
  echo '.PHONY: all'
  echo 'all: t199'
  echo 't0: ; @true'
  for i in $(seq 1 199); do echo "t$i: t$((i - 1)) ; @true"; done
  echo ".PHONY: $(seq -f 't%g' 0 199 | tr '\n' ' ')"
} > w1.mk
{
  printf '%s' "$policy"
  echo 'skill main() {'
  echo '  policy: bench'
  for i in $(seq 0 999); do echo "  step s$i: run { argv: [\"true\"] }"; done
  echo "  step join: run { argv: [\"true\"], after: [$(seq -f 's%g' 0 999 | paste -sd, -)] }"
  echo '}'
} > w2.flow
{
  echo '.PHONY: all'
  echo "all: join"
  echo "join: $(seq -f 't%g' 0 999 | tr '\n' ' ') ; @true"
  for i in $(seq 0 999); do echo "t$i: ; @true"; done
  echo ".PHONY: join $(seq -f 't%g' 0 999 | tr '\n' ' ')"
} > w2.mk
{
  printf '%s' "$policy"
  echo 'skill main() {'
  echo '  policy: bench'
  echo '  for i in [' "$(seq -s, 0 1999)" '] {'
  echo '    parallel: 2'
  echo '    step s: run { argv: ["true"] }'
  echo '  }'
  echo '}'
} > w3.flow

# One timed command: prints "wall_ms cpu_ms". CPU is the task clock of the
# command and every process under it, with `perf stat` where it works:
# flowc never waits for its spawner (nor the spawner for flowc), so the
# spawner, its namespace inits and the steps' processes are missing from
# the rusage of waited-for children that bash's `times` and `/proc` report.
# Without perf the CPU column is that rusage, and flowc's is too low.
use_perf=
perf stat -e task-clock -o /dev/null -- true > /dev/null 2>&1 && use_perf=1
[ -n "$use_perf" ] || echo "note: perf stat is not usable here; flowc's CPU column misses its spawner" >&2
timed() {
  if [ -n "$use_perf" ]; then
    perf stat -e task-clock -o "$work/stat" -- "$@" > /dev/null 2>&1 || true
    awk '/task-clock/ { cpu = $1 } /seconds time elapsed/ { wall = $1 * 1000 }
         END { printf "%d %d\n", wall, cpu }' "$work/stat"
    return
  fi
  local start end c0 c1 me=$BASHPID
  c0=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$me/stat")
  start=$(date +%s%N)
  "$@" > /dev/null 2>&1
  end=$(date +%s%N)
  c1=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$me/stat")
  local hz
  hz=$(getconf CLK_TCK)
  echo "$(((end - start) / 1000000)) $(((c1 - c0) * 1000 / hz))"
}

flowc_args=(run --no-input)
[ -n "$durability" ] && flowc_args+=(--durability "$durability")

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A wall cpu
for _ in $(seq "$rounds"); do
  for case in w1 w2 w3; do
    rm -rf .flowc
    read -r w c < <(timed "${pin[@]}" "$flowc" "${flowc_args[@]}" "$case.flow")
    wall[flowc_$case]+="$w "; cpu[flowc_$case]+="$c "
    if [ "$case" = w3 ]; then
      read -r w c < <(timed "${pin[@]}" sh -c 'seq 2000 | xargs -P2 -I{} sh -c true')
    else
      read -r w c < <(timed "${pin[@]}" make -s -j2 -f "$case.mk")
    fi
    wall[base_$case]+="$w "; cpu[base_$case]+="$c "
    if [ "$case" = w1 ]; then
      read -r w c < <(timed "${pin[@]}" sh -c 'seq 200 | xargs -I{} sh -c true')
      wall[loop_w1]+="$w "; cpu[loop_w1]+="$c "
    fi
  done
done
printf '%-4s %-28s %10s %10s %8s\n' case against "flowc ms" "base ms" ratio
for case in w1 w2 w3; do
  f=$(echo "${wall[flowc_$case]}" | tr ' ' '\n' | grep . | median)
  b=$(echo "${wall[base_$case]}" | tr ' ' '\n' | grep . | median)
  fc=$(echo "${cpu[flowc_$case]}" | tr ' ' '\n' | grep . | median)
  bc=$(echo "${cpu[base_$case]}" | tr ' ' '\n' | grep . | median)
  against="make -j2"
  [ "$case" = w3 ] && against="xargs -P2 sh -c true"
  printf '%-4s %-28s %10s %10s %8s   (cpu %s vs %s ms)\n' "$case" "$against" "$f" "$b" \
    "$(awk -v f="$f" -v b="$b" 'BEGIN { printf "%.2f", f / b }')" "$fc" "$bc"
  if [ "$case" = w1 ]; then
    l=$(echo "${wall[loop_w1]}" | tr ' ' '\n' | grep . | median)
    lc=$(echo "${cpu[loop_w1]}" | tr ' ' '\n' | grep . | median)
    printf '%-4s %-28s %10s %10s %8s   (cpu %s vs %s ms)\n' w1 "xargs sh -c true (serial)" "$f" "$l" \
      "$(awk -v f="$f" -v b="$l" 'BEGIN { printf "%.2f", f / b }')" "$fc" "$lc"
  fi
done
