#!/usr/bin/env bash
# The journal's cost per step on each store (issue 16), side by side, A B A B …
# (ROUNDS rounds), medians: a fan-out of N `true` steps (default 2,000,
# `parallel: 2`, the default sandbox) journaled in an SQLite file vs in a
# PostgreSQL database on this machine (loopback TCP), each round on a fresh
# journal. Also, from the last round: the journal's size, its event count
# (events per step) and, on Postgres, the database's commits.
#
#   benches/store.sh [FLOWC] [ROUNDS] [N]     (default: target/release/flowc, 5, 2000)
#
# AGAINST=/path/to/another/flowc runs that binary too, in the same rounds
# (both stores), to compare two builds side by side.
#
# Needs a server: FLOWC_TEST_POSTGRES, else a throw-away one from .ci/postgres;
# and the sqlite3 and psql clients (`.ci/deps` installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
flowc=$(realpath "${1:-target/release/flowc}")
rounds=${2:-5}
n=${3:-2000}
work=$(mktemp -d)
started=""
cleanup() {
  [ -n "$started" ] && bash "$root/.ci/postgres" stop "$FLOWC_TEST_POSTGRES_DIR"
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${FLOWC_TEST_POSTGRES:-}" ]; then
  eval "$(bash "$root/.ci/postgres" start)"
  started=1
fi
cd "$work"
{
  echo 'policy bench {'
  echo '  max_parallel: 2'
  echo '  max_steps: 100000'
  echo '  run_timeout: 2h'
  echo '}'
  echo 'skill main() {'
  echo '  policy: bench'
  echo '  for i in [' "$(seq -s, 0 $((n - 1)))" '] {'
  echo '    parallel: 2'
  echo '    step s: run { argv: ["true"] }'
  echo '  }'
  echo '}'
} > fan.flow
base=${FLOWC_TEST_POSTGRES%/*}

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -a lite pg olite opg
# One fan-out: prints "wall_ms journal_bytes events commits" (commits: the
# database's `xact_commit` on Postgres, reads included; `-` on SQLite).
fan() { # binary store round
  local bin=$1 store=$2 r=$3 t0 t1 bytes db events commits=-
  if [ "$store" = sqlite ]; then
    rm -rf j.db*
    t0=$(ms); "$bin" run fan.flow --no-input --journal "$work/j.db" > /dev/null 2>&1; t1=$(ms)
    bytes=$(( $(stat -c %s j.db) + $(stat -c %s j.db-wal 2>/dev/null || echo 0) ))
    events=$(sqlite3 j.db "SELECT count(*) FROM events")
  else
    db="bench_$$_$r"
    psql -qX "$FLOWC_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" > /dev/null 2>&1
    t0=$(ms); "$bin" run fan.flow --no-input --journal "$base/$db" > /dev/null 2>&1; t1=$(ms)
    bytes=$(psql -qXAt "$base/$db" -c "SELECT pg_database_size(current_database())")
    events=$(psql -qXAt "$base/$db" -c "SELECT count(*) FROM events")
    commits=$(psql -qXAt "$FLOWC_TEST_POSTGRES" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")
    psql -qX "$FLOWC_TEST_POSTGRES" -c "DROP DATABASE $db" > /dev/null
  fi
  echo "$((t1 - t0)) $bytes $events $commits"
}
declare -A shape
for r in $(seq "$rounds"); do
  read -r w b e c < <(fan "$flowc" sqlite "$r"); lite+=("$w"); shape[lite]="$b $e $c"
  read -r w b e c < <(fan "$flowc" postgres "$r"); pg+=("$w"); shape[pg]="$b $e $c"
  if [ -n "${AGAINST:-}" ]; then
    read -r w b e c < <(fan "$AGAINST" sqlite "$r"); olite+=("$w"); shape[olite]="$b $e $c"
    read -r w b e c < <(fan "$AGAINST" postgres "$r"); opg+=("$w"); shape[opg]="$b $e $c"
  fi
done
echo "fan-out of $n true steps, $rounds rounds (A B A B), medians; journal bytes, events and commits (Postgres) of the last round"
row() { # label walls… ; shape key
  local label=$1 key=$2; shift 2
  local m
  m=$(printf '%s\n' "$@" | median)
  read -r b e c <<< "${shape[$key]}"
  printf '%-22s %8s ms  %6.2f ms/step  journal %10s bytes  %6s events (%.2f/step)  commits %s\n' \
    "$label" "$m" "$(awk -v t="$m" -v n="$n" 'BEGIN { print t / n }')" "$b" "$e" \
    "$(awk -v e="$e" -v n="$n" 'BEGIN { print e / n }')" "$c"
}
row "sqlite" lite "${lite[@]}"
row "postgres" pg "${pg[@]}"
if [ -n "${AGAINST:-}" ]; then
  row "sqlite (against)" olite "${olite[@]}"
  row "postgres (against)" opg "${opg[@]}"
fi
