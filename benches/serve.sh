#!/usr/bin/env bash
# What `flowc serve` costs (issue 13's benchmark), on one flowc binary:
#
#   benches/serve.sh FLOWC [RUNS] [IDLE_SECONDS]
#
# 1. Throughput: RUNS (default 1,000) runs of a 3-step skill are queued, then
#    `flowc serve --workers 2` drains the queue: runs per second, and the
#    service's peak memory (VmHWM).
# 2. Latency: 100 runs submitted one at a time, 0.25 s apart, to a running
#    service: submit → finished, p50 and p99 (from the journal's event times).
# 3. Idle: RUNS runs that pause at an approval, parked; then the service idles
#    IDLE_SECONDS (default 60): its memory, and what the journal files did
#    meanwhile (bytes and modification times of journal.db and its -wal).
set -euo pipefail
flowc=$(realpath "$1") runs=${2:-1000} idle=${3:-60}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
cat > three.flow <<'FLOW'
skill main(n: int = 0) {
  step a: run { argv: ["true"] }
  step b: script { code: "n + 1", after: [a] }
  step c: run { argv: ["true"], after: [b] }
}
FLOW
cat > gate.flow <<'FLOW'
skill main() {
  step a: run { argv: ["true"] }
  step gate: approval { prompt: "go on?", after: [a] }
}
FLOW
sql() { python3 -c "import sqlite3,sys; c=sqlite3.connect('file:.flowc/journal.db?mode=ro', uri=True); [print(*r, sep='|') for r in c.execute(sys.argv[1])]" "$1"; }
hwm() { awk '/VmHWM/ { print $2 / 1024 " MiB" }' "/proc/$1/status"; }
rss() { awk '/VmRSS/ { print $2 / 1024 " MiB" }' "/proc/$1/status"; }
wait_all() { # until no run has status $1
  while [ "$(sql "SELECT count(*) FROM runs WHERE status IN ($1)")" != 0 ]; do sleep 0.2; done
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"

# 1. throughput
for i in $(seq 1 "$runs"); do "$flowc" submit three.flow -i n="$i" >/dev/null 2>&1; done
start=$(date +%s.%N)
"$flowc" serve --listen none --workers 2 2> serve1.log & svc=$!
wait_all "'queued', 'running'"
end=$(date +%s.%N)
echo "throughput: $runs runs in $(echo "$end - $start" | bc) s = $(echo "scale=1; $runs / ($end - $start)" | bc) runs/s; service peak memory $(hwm $svc)"
echo "  statuses: $(sql "SELECT status || '=' || count(*) FROM runs GROUP BY status" | tr '\n' ' ')"

# 2. latency, while the service runs
for i in $(seq 1 100); do "$flowc" submit three.flow -i n="$i" >/dev/null 2>&1; sleep 0.25; done
wait_all "'queued', 'running'"
sql "SELECT (max(e.at) - min(e.at)) FROM events e JOIN runs r ON r.id = e.run_id
     WHERE r.id IN (SELECT id FROM runs ORDER BY rowid DESC LIMIT 100)
     AND e.kind IN ('run_queued', 'run_status') GROUP BY e.run_id ORDER BY 1" > lat.txt
n=$(wc -l < lat.txt)
echo "latency submit → finished over $n runs: p50 $(sed -n "$(( (n + 1) / 2 ))p" lat.txt) ms, p99 $(sed -n "$(( (n * 99 + 99) / 100 ))p" lat.txt) ms, max $(tail -1 lat.txt) ms"
kill -TERM $svc; wait $svc || true

# 3. parked runs, idle
rm -rf .flowc
for i in $(seq 1 "$runs"); do "$flowc" submit gate.flow >/dev/null 2>&1; done
"$flowc" serve --listen none --workers 2 2> serve3.log & svc=$!
wait_all "'queued', 'running'"
echo "parked: $(sql "SELECT count(*) FROM run_queue WHERE waiting = 'approval'") runs wait for a person, no process; service memory now $(rss $svc), peak $(hwm $svc)"
sleep 2
before=$(stat -c '%s %Y' .flowc/journal.db .flowc/journal.db-wal | tr '\n' ' ')
sleep "$idle"
after=$(stat -c '%s %Y' .flowc/journal.db .flowc/journal.db-wal | tr '\n' ' ')
echo "idle ${idle}s: journal.db and -wal (bytes mtime) before: $before after: $after; $( [ "$before" = "$after" ] && echo 'no writes' || echo 'WRITTEN')"
echo "  service memory after idling $(rss $svc)"
kill -TERM $svc; wait $svc || true
