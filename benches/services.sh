#!/usr/bin/env bash
# Throughput of submitted runs on a Postgres journal with one service vs two
# (issue 16): R runs of a 3-step chain of `true` are submitted, then 1 (or 2)
# `flowc serve --workers 2` in separate directories drive them; the time from
# the services' start until every run succeeded. A B A B … (ROUNDS rounds),
# medians, each round on a fresh database.
#
#   benches/services.sh [FLOWC] [ROUNDS] [R]     (default: target/release/flowc, 3, 200)
#
# Needs a server: FLOWC_TEST_POSTGRES, else a throw-away one from .ci/postgres.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flowc=$(realpath "${1:-target/release/flowc}")
rounds=${2:-3}
runs=${3:-200}
work=$(mktemp -d)
started=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "$started" ] && bash "$root/.ci/postgres" stop "$FLOWC_TEST_POSTGRES_DIR"
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${FLOWC_TEST_POSTGRES:-}" ]; then
  eval "$(bash "$root/.ci/postgres" start)"
  started=1
fi
base=${FLOWC_TEST_POSTGRES%/*}
cat > "$work/chain.flow" <<'FLOW'
skill chain() -> string {
  step a: run { argv: ["true"] }
  step b: run { argv: ["true"], after: [a] }
  step c: run { argv: ["true"], after: [b] }
  return "done"
}
FLOW
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

one_round() { # services db
  local n=$1 db=$2
  psql -qX "$FLOWC_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" > /dev/null 2>&1
  export FLOWC_JOURNAL="$base/$db"
  for _ in $(seq "$runs"); do "$flowc" submit "$work/chain.flow" > /dev/null 2>&1; done
  local t0 t1 i
  t0=$(ms)
  pids=()
  for i in $(seq "$n"); do
    mkdir -p "$work/m$i-$db"
    (cd "$work/m$i-$db" && exec "$flowc" serve "$work/chain.flow" --workers 2 --listen 127.0.0.1:0 > /dev/null 2>&1) &
    pids+=($!)
  done
  while [ "$(psql -qXAt "$FLOWC_JOURNAL" -c "SELECT count(*) FROM runs WHERE status = 'succeeded'")" -lt "$runs" ]; do
    sleep 0.1
  done
  t1=$(ms)
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  psql -qX "$FLOWC_TEST_POSTGRES" -c "DROP DATABASE $db WITH (FORCE)" > /dev/null
  echo $((t1 - t0))
}

declare -a one two
for r in $(seq "$rounds"); do
  one+=("$(one_round 1 "svc1_$$_$r")")
  two+=("$(one_round 2 "svc2_$$_$r")")
done
o=$(printf '%s\n' "${one[@]}" | median)
t=$(printf '%s\n' "${two[@]}" | median)
echo "$runs submitted 3-step runs on Postgres, $rounds rounds (A B A B), medians"
printf 'one service:  %6s ms  %6.1f runs/s\n' "$o" "$(awk -v t="$o" -v n="$runs" 'BEGIN { print n * 1000 / t }')"
printf 'two services: %6s ms  %6.1f runs/s\n' "$t" "$(awk -v t="$t" -v n="$runs" 'BEGIN { print n * 1000 / t }')"
