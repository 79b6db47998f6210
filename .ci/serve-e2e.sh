#!/usr/bin/env bash
# The README's service walk-through, end to end, on this checkout's debug build:
# a scheduled run starts by itself, the service is killed mid-run and restarted
# and the run finishes with nothing redone, and a signed webhook from curl
# starts exactly one run. The clock is the documented test aid, so the
# minute comes in a second rather than in up to sixty.
set -euo pipefail
[ -n "${E2E_TRACE:-}" ] && set -x
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/flowc"
test -x "$bin" || cargo build --quiet --manifest-path "$root/Cargo.toml"

bash "$root/.ci/deps"

work=$(mktemp -d)
cleanup() {
  [ -n "${svc:-}" ] && kill -9 "$svc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp -r "$root/workflows/service" "$work/svc"
cd "$work/svc"
unset FLOWC_JOURNAL
export FLOWC_TEST_CLOCK="$work/clock" HOOK_SECRET="ci-secret" NO_COLOR=1
echo "2026-12-02T10:00:30Z" > "$FLOWC_TEST_CLOCK"
flowc() { "$bin" "$@"; }

# Polls a condition for up to 30 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  cat "$work"/serve*.log >&2 || true
  exit 1
}
start() {
  # The binary itself, not the `flowc` function: `$!` must be its pid.
  "$bin" serve --listen 127.0.0.1:0 --log-format json 2> "$work/serve$1.log" &
  svc=$!
  wait_for "the service to start" grep -q '"serve.started"' "$work/serve$1.log"
}
run_status() { flowc runs --json | grep -o "\"id\":\"$1\"[^}]*" | grep -o '"status":"[a-z]*"' | cut -d'"' -f4; }
is_status() { [ "$(run_status "$1")" = "$2" ]; }

start 1
echo "2026-12-02T10:01:02Z" > "$FLOWC_TEST_CLOCK"
wait_for "the 10:01 slot to fire" grep -q '"trigger.fired"' "$work/serve1.log"
run=$(grep -o '"run":"[^"]*"' "$work/serve1.log" | head -1 | cut -d'"' -f4)
# Kill the service while the run sleeps in its second step.
wait_for "the run's second step" sh -c "'$bin' log '$run' | grep -q 'settle.*running'"
kill -9 "$svc"
wait "$svc" 2>/dev/null || true
svc=
# Its run process sees the service gone and stops, journaling `interrupted`.
wait_for "the orphaned run process to stop" is_status "$run" interrupted
start 2
wait_for "the run to finish after the restart" is_status "$run" succeeded
test "$(wc -l < reports/health.log)" -eq 1
# `count` finished before the kill and was reused, not run again.
flowc status "$run"
flowc log "$run" count | grep -c 'running (attempt 1)' | grep -qx 1
flowc replay "$run"

# A signed webhook from curl starts exactly one run; a redelivery starts none.
port=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$work/serve2.log" | head -1 | grep -o '[0-9]*"$' | tr -d '"')
body='{"ref":"refs/heads/main","after":"abc123"}'
sig="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$HOOK_SECRET" | awk '{print $NF}')"
post() {
  curl -s -o "$work/reply" -w '%{http_code}' -X POST "http://127.0.0.1:$port/hooks/github" \
    -H "X-GitHub-Delivery: $1" -H "X-Hub-Signature-256: $2" -H 'Content-Type: application/json' -d "$body"
}
test "$(post d-1 "$sig")" = 202
hook_run=$(grep -o '"run_id":"[^"]*"' "$work/reply" | cut -d'"' -f4)
test "$(post d-1 "$sig")" = 200
test "$(post d-2 sha256=0000)" = 401
wait_for "the webhook's run" is_status "$hook_run" succeeded
test "$(wc -l < reports/pushes.log)" -eq 1
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null
metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
grep -q 'flowc_runs_total{skill="on_push",status="succeeded"} 1' <<< "$metrics"

kill -TERM "$svc"
wait "$svc"
svc=

# The README's main job under the service, submitted and approved over the
# API by a person from a people file (tests/browser.rs does it on the page).
cd "$root"
unset FLOWC_TEST_CLOCK
export FLOWC_JOURNAL="$work/web.db"
token=$(flowc people add ci --group release --people "$work/people.yaml" 2>/dev/null)
"$bin" serve workflows/source_release.flow --people "$work/people.yaml" \
  --listen 127.0.0.1:0 --log-format json 2> "$work/serve3.log" &
svc=$!
wait_for "the service to start" grep -q '"serve.started"' "$work/serve3.log"
port=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$work/serve3.log" | head -1 | grep -o '[0-9]*"$' | tr -d '"')
api() { curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/runs")" = 401
run=$(api -d "{\"file\":\"workflows/source_release.flow\",\"inputs\":{\"out\":\"$work/dist\"}}" \
  "http://127.0.0.1:$port/api/runs" | grep -o '"run_id":"[^"]*"' | cut -d'"' -f4)
wait_for "the release to wait at its gate" is_status "$run" paused
# (Replies are read whole before grep: `grep -q` would close the pipe early.)
queue=$(api "http://127.0.0.1:$port/api/approvals")
grep -q '"node":"publish_gate"' <<< "$queue"
page=$(api "http://127.0.0.1:$port/runs/$run")
grep -q 'data-node="publish_gate" data-status="waiting"' <<< "$page"
decided=$(api -d '{"decision":"approve","comment":"approved over the API by CI"}' \
  "http://127.0.0.1:$port/api/approvals/$run/publish_gate")
grep -q '"recorded":true' <<< "$decided"
wait_for "the release to finish" is_status "$run" succeeded
test -s "$work/dist/published/SHA256SUMS"
flowc replay "$run"
kill -TERM "$svc"
wait "$svc"
svc=
echo "serve end to end: ok"
