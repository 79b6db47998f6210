#!/usr/bin/env bash
# Checks src/journal/postgres.sql against SQLite's meaning, on a real server:
# applies it to a fresh database next to $FLOWC_TEST_POSTGRES's (dropped
# afterwards), then the triggers (exact messages), the state machine, rowid,
# and json_extract / json_type / json_valid / total, and (with sqlite3, which
# it needs) every table's columns against the SQLite migrations'.
# Exits non-zero on any mismatch.
#
#   eval "$(bash .ci/postgres start)"; bash .ci/postgres-schema-check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
: "${FLOWC_TEST_POSTGRES:?set it (eval \"\$(bash .ci/postgres start)\")}"

PSQL=psql
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/psql" ] && PSQL="$d/psql"; done
command -v psql >/dev/null 2>&1 && PSQL=psql

base=${FLOWC_TEST_POSTGRES%%\?*}
query=${FLOWC_TEST_POSTGRES#"$base"}
db="flowc_schema_check_$$_$RANDOM"
url="${base%/*}/$db$query"

"$PSQL" -X -q -v ON_ERROR_STOP=1 "$FLOWC_TEST_POSTGRES" -c "CREATE DATABASE $db"
cleanup() { "$PSQL" -X -q "$FLOWC_TEST_POSTGRES" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$PSQL" -X -q -v ON_ERROR_STOP=1 -1 "$url" -f "$root/src/journal/postgres.sql" >/dev/null

failures=0
passes=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { passes=$((passes + 1)); }

# run SQL: its output (tuples only, unaligned, `|` between columns), errors on stderr.
run() { "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=terse "$url" -c "$1"; }

# expect SQL VALUE: the statement succeeds and prints exactly VALUE.
expect() {
  local got
  if ! got=$(run "$1" 2>&1); then
    fail "$1: failed: $got"
  elif [ "$got" != "$2" ]; then
    fail "$1: expected [$2], got [$got]"
  else
    pass
  fi
}

# refused SQL MESSAGE: the statement fails with exactly MESSAGE.
refused() {
  local got
  if got=$(run "$1" 2>&1); then
    fail "$1: succeeded, expected the error [$2]"
  elif [ "$got" != "ERROR:  $2" ]; then
    fail "$1: expected the error [$2], got [$got]"
  else
    pass
  fi
}

# --- meta and transitions ---------------------------------------------------
expect "SELECT CASE WHEN to_regclass('meta') IS NULL THEN 0 ELSE
          (SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version') END" 5
expect "SELECT count(*) FROM meta" 1
# The transitions, compared with schema.sql's own INSERT.
insert=$(sed -n '/^INSERT INTO transitions VALUES/,/;/p' "$root/src/journal/schema.sql" |
  sed 's/^INSERT INTO transitions VALUES/INSERT INTO expected VALUES/')
[ -n "$insert" ] || fail "no INSERT INTO transitions found in schema.sql"
expect "CREATE TEMP TABLE expected (from_status text, to_status text); $insert
        SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM transitions) a)
             + (SELECT count(*) FROM (SELECT * FROM transitions EXCEPT SELECT * FROM expected) b),
               (SELECT count(*) FROM transitions)" "0|38"

# --- columns, compared with the SQLite migrations -----------------------------
if command -v sqlite3 >/dev/null 2>&1; then
  lite=$(mktemp)
  trap 'cleanup; rm -f "$lite"' EXIT
  for f in schema.sql schema_v2_before.sql schema_v2_after.sql schema_v3.sql schema_v4.sql schema_v5.sql; do
    sqlite3 "$lite" <"$root/src/journal/$f"
  done
  map='CASE upper(p.type) WHEN '"'INTEGER'"' THEN '"'bigint'"' WHEN '"'REAL'"' THEN '"'double precision'"'
       WHEN '"'TEXT'"' THEN '"'text'"' WHEN '"'BLOB'"' THEN '"'bytea'"' ELSE lower(p.type) END'
  # Postgres makes every primary key column NOT NULL; SQLite does only for
  # an INTEGER PRIMARY KEY (a rowid alias), though pragma says 0.
  want=$(sqlite3 -separator '|' "$lite" "SELECT m.name, p.name, $map, p.\"notnull\" OR p.pk > 0, p.pk > 0, COALESCE(p.dflt_value, '')
      FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid")
  # Postgres: the same, without the added `rowid` identity columns (checked
  # below); SQLite's defaults are the literal text, Postgres's carry a cast.
  got=$(run "SELECT c.table_name, c.column_name, c.data_type, CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END,
             CASE WHEN k.column_name IS NOT NULL THEN 1 ELSE 0 END,
             regexp_replace(COALESCE(c.column_default, ''), '::text\$', '')
      FROM information_schema.columns c
      LEFT JOIN (SELECT kcu.table_name, kcu.column_name FROM information_schema.table_constraints tc
                 JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name, table_name)
                 WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()) k
        USING (table_name, column_name)
      WHERE c.table_schema = current_schema()
        AND NOT (c.column_name = 'rowid' AND c.table_name IN ('events', 'nodes'))
      ORDER BY c.table_name, c.ordinal_position" 2>&1) || fail "reading columns: $got"
  if [ "$got" = "$want" ]; then
    pass
  else
    fail "columns differ from the SQLite schema (< SQLite, > Postgres):
$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") || true)"
  fi
  expect "SELECT table_name, column_name, is_identity, ordinal_position = (SELECT max(ordinal_position) FROM information_schema.columns d
                 WHERE d.table_schema = c.table_schema AND d.table_name = c.table_name)
          FROM information_schema.columns c WHERE table_schema = current_schema() AND column_name = 'rowid' ORDER BY 1" \
    "events|rowid|YES|t
nodes|rowid|YES|t
notify_cursor|rowid|NO|t"
  # Indexes: the same names (Postgres adds its own for keys and uniques).
  want=$(sqlite3 "$lite" "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
  got=$(run "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relnamespace = current_schema()::regnamespace
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1")
  [ "$got" = "$want" ] && pass || fail "indexes differ: SQLite [$want], Postgres [$got]"
  want=$(sqlite3 "$lite" "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
  # Postgres has one more: TRUNCATE skips row triggers (SQLite has no TRUNCATE).
  got=$(run "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname <> 'events_append_only_truncate' ORDER BY tgname")
  [ "$got" = "$want" ] && pass || fail "triggers differ: SQLite [$want], Postgres [$got]"
else
  # Never a silent skip: .ci/deps installs sqlite3.
  fail "sqlite3 is not installed (bash .ci/deps installs it): the columns cannot be compared with the SQLite schema"
fi

# --- events: append-only, in order, hashed, rowid ----------------------------
ev="INSERT INTO events (run_id, seq, at, kind, node, attempt, data, hash)"
# A refused insert uses up a rowid (a sequence has gaps): rowids only grow.
expect "$ev VALUES ('r1', 1, 1000, 'run_started', NULL, NULL, '{}', 'h1') RETURNING rowid" 1
expect "$ev VALUES ('r1', 2, 1001, 'node_status', 'a', 1, '{\"status\":\"failed\"}', 'h2') RETURNING rowid" 2
expect "$ev VALUES ('r2', 1, 1002, 'run_started', NULL, NULL, '{}', 'h3') RETURNING rowid" 3
refused "UPDATE events SET kind = 'x' WHERE run_id = 'r1' AND seq = 1" \
  "journal events are append-only: UPDATE refused"
refused "UPDATE events SET data = data" "journal events are append-only: UPDATE refused"
refused "DELETE FROM events WHERE run_id = 'r1'" "journal events are append-only: DELETE refused"
refused "TRUNCATE events" "journal events are append-only: TRUNCATE refused"
refused "$ev VALUES ('r1', 1, 1, 'x', NULL, NULL, '{}', 'h')" \
  "journal events are appended in order: this sequence number is taken or out of order"
refused "$ev VALUES ('r1', 4, 1, 'x', NULL, NULL, '{}', 'h')" \
  "journal events are appended in order: this sequence number is taken or out of order"
refused "$ev VALUES ('r3', 0, 1, 'x', NULL, NULL, '{}', 'h')" \
  "journal events are appended in order: this sequence number is taken or out of order"
refused "$ev VALUES ('r1', 3, 1, 'x', NULL, NULL, '{}', NULL)" "journal events carry their hash"
# An upsert (what `INSERT OR REPLACE` becomes) meets the order trigger first, as in SQLite.
refused "INSERT INTO events (run_id, seq, at, kind, hash) VALUES ('r1', 1, 1, 'x', 'h')
         ON CONFLICT (run_id, seq) DO UPDATE SET kind = excluded.kind" \
  "journal events are appended in order: this sequence number is taken or out of order"
expect "$ev VALUES ('r1', 3, 1003, 'output', 'a', 1, '{}', 'h4') RETURNING rowid > 3" t
expect "SELECT COALESCE(max(rowid), 0) = (SELECT rowid FROM events WHERE run_id = 'r1' AND seq = 3),
               string_agg(run_id || ':' || seq, ',' ORDER BY rowid) FROM events" "t|r1:1,r1:2,r2:1,r1:3"
# `flowc gc`'s deletion: a transaction that says so gets through, others do not.
expect "BEGIN; SET LOCAL flowc.gc = 'on'; DELETE FROM events WHERE run_id = 'r2'; SELECT count(*) FROM events; ROLLBACK" 3
expect "SELECT count(*) FROM events" 4
refused "DELETE FROM events WHERE run_id = 'r2'" "journal events are append-only: DELETE refused"
# The partial index on failed attempts holds the failed event and is usable.
expect "SET enable_seqscan = off; SET enable_bitmapscan = off;
        EXPLAIN (COSTS OFF) SELECT at, data FROM events
        WHERE kind = 'node_status' AND attempt IS NOT NULL AND at >= 0
          AND json_extract(data, '\$.status') IN ('rejected', 'failed')" \
  "Index Scan using events_failed_attempts on events
  Index Cond: (at >= 0)"

# --- nodes: the state machine ----------------------------------------------
nd="INSERT INTO nodes (run_id, key, name, kind, status)"
refused "$nd VALUES ('r1', 'x', 'x', 'step', 'ready')" "a node instance must start as pending"
refused "$nd VALUES ('r1', 'x', 'x', 'step', 'running')" "a node instance must start as pending"
expect "$nd VALUES ('r1', 'b', 'b', 'step', 'pending') RETURNING rowid IS NOT NULL" t
expect "$nd VALUES ('r1', 'a', 'a', 'step', 'pending') RETURNING rowid > (SELECT rowid FROM nodes WHERE key = 'b')" t
expect "UPDATE nodes SET status = 'ready' WHERE run_id = 'r1' AND key = 'a' RETURNING status" ready
refused "UPDATE nodes SET status = 'succeeded' WHERE run_id = 'r1' AND key = 'a'" "illegal node status transition"
refused "UPDATE nodes SET status = 'bogus' WHERE run_id = 'r1' AND key = 'a'" "illegal node status transition"
expect "UPDATE nodes SET status = 'ready', attempt = 1 WHERE run_id = 'r1' AND key = 'a' RETURNING status" ready
expect "UPDATE nodes SET status = 'running' WHERE run_id = 'r1' AND key = 'a' RETURNING status" running
expect "UPDATE nodes SET status = 'succeeded' WHERE run_id = 'r1' AND key = 'a' RETURNING status" succeeded
expect "UPDATE nodes SET status = 'stale' WHERE run_id = 'r1' AND key = 'a' RETURNING status" stale
expect "UPDATE nodes SET status = 'ready' WHERE run_id = 'r1' AND key = 'a' RETURNING status" ready
refused "UPDATE nodes SET status = 'pending' WHERE run_id = 'r1' AND key = 'a'" "illegal node status transition"
expect "UPDATE nodes SET result = '{}' WHERE run_id = 'r1' AND key = 'b' RETURNING status" pending
expect "SELECT string_agg(key, ',' ORDER BY rowid) FROM nodes WHERE run_id = 'r1'" "b,a"

# --- notify_cursor: notices.rs's upsert, which sets `rowid` -------------------
cur="INSERT INTO notify_cursor (id, rowid) VALUES (1, %s)
     ON CONFLICT (id) DO UPDATE SET rowid = CASE WHEN excluded.rowid > notify_cursor.rowid THEN excluded.rowid ELSE notify_cursor.rowid END"
expect "$(printf "$cur" 5); SELECT rowid FROM notify_cursor WHERE id = 1" 5
expect "$(printf "$cur" 3); SELECT rowid FROM notify_cursor WHERE id = 1" 5
expect "$(printf "$cur" 9); SELECT rowid FROM notify_cursor WHERE id = 1" 9
expect "INSERT INTO memory_log (key, value, at, by) VALUES ('k', 'v', 1, 'me'), ('k', NULL, 2, 'me') RETURNING id" "1
2"

# --- json_extract -------------------------------------------------------------
doc='{"a":{"b":[1,{"c":"x"}],"n":null},"s":"str","i":42,"f":0.25,"t":true,"no":false,"z":null,"o":{"k":1,"l":[2,3]},"q":"say \"hi\"","u":"\u00e9","a.b":7}'
je() { expect "SELECT json_extract('$doc', '$1')" "$2"; }
je '$' "$doc"
je '$.s' str
je '$.i' 42
je '$.f' 0.25
je '$.t' true
je '$.no' false
je '$.o' '{"k":1,"l":[2,3]}'
je '$.o.l' '[2,3]'
je '$.a.b' '[1,{"c":"x"}]'
je '$.a.b[0]' 1
je '$.a.b[1].c' x
je '$.a.b[1]' '{"c":"x"}'
je '$.q' 'say "hi"'
je '$.u' 'é'
je '$."a.b"' 7
expect "SELECT json_extract('$doc', '\$.z') IS NULL, json_extract('$doc', '\$.a.n') IS NULL,
               json_extract('$doc', '\$.missing') IS NULL, json_extract('$doc', '\$.a.b[5]') IS NULL,
               json_extract('$doc', '\$.s.x') IS NULL" "t|t|t|t|t"
expect "SELECT json_extract('[1,{\"b\":\"y\"},[3]]', '\$[1].b'), json_extract('[1,{\"b\":\"y\"},[3]]', '\$[2][0]'),
               json_extract('[1,{\"b\":\"y\"}]', '\$[0]')" "y|3|1"
expect "SELECT json_extract('\"just text\"', '\$'), json_extract('12', '\$'), json_extract('null', '\$') IS NULL" "just text|12|t"
# Not JSON, or NULL: NULL, never an error.
expect "SELECT json_extract('not json', '\$.a') IS NULL, json_extract('{\"a\":', '\$.a') IS NULL,
               json_extract('', '\$') IS NULL, json_extract(NULL, '\$.a') IS NULL,
               json_extract('{\"a\":1}', NULL) IS NULL" "t|t|t|t|t"
expect "SELECT count(*) FROM (VALUES ('{\"status\":\"failed\"}'), ('garbage'), (NULL)) v(d)
        WHERE json_extract(d, '\$.status') = 'failed'" 1
# The analytics' comparisons and sums on it.
expect "SELECT json_extract('{\"status\":\"rejected\"}', '\$.status') IN ('rejected', 'failed')" t

# --- json_type, json_valid ----------------------------------------------------
jt() { expect "SELECT json_type('$doc', '$1')" "$2"; }
jt '$' object
jt '$.s' text
jt '$.i' integer
jt '$.f' real
jt '$.t' true
jt '$.no' false
jt '$.z' null
jt '$.o.l' array
expect "SELECT json_type('$doc', '\$.missing') IS NULL, json_type('nope', '\$') IS NULL, json_type(NULL, '\$') IS NULL" "t|t|t"
expect "SELECT json_valid('{}'), json_valid('[1, 2]'), json_valid('\"s\"'), json_valid('{'), json_valid('x'), json_valid(NULL) IS NULL" "t|t|t|f|f|t"
expect "SELECT count(*) FROM (VALUES ('{}'), ('{')) v(d) WHERE json_valid(d) AND json_extract(d, '\$.x') IS NULL" 1

# --- total --------------------------------------------------------------------
expect "SELECT total(x), pg_typeof(total(x)) FROM (VALUES (1::bigint), (NULL), (2)) v(x)" "3|double precision"
expect "SELECT total(x), pg_typeof(total(x)) FROM (VALUES (1::integer), (NULL), (2)) v(x)" "3|double precision"
expect "SELECT total(x) FROM (VALUES (0.25::double precision), (NULL), (1.5)) v(x)" 1.75
expect "SELECT total(x) FROM (VALUES (true), (NULL), (false), (true)) v(x)" 2
expect "SELECT total(x) FROM (VALUES ('1.5'), ('abc'), (NULL), ('2e1'), (' 3x'), ('-0.5'), ('')) v(x)" 24
expect "SELECT total(1), total(s = 'pending'), total(json_extract(d, '\$.n'))
        FROM (VALUES ('pending', '{\"n\":0.5}'), ('done', '{\"n\":2}'), ('pending', '{}'), ('x', 'bad')) v(s, d)" "4|2|2.5"
# No rows: 0.0, for every type.
expect "SELECT total(x::bigint), total(x::integer), total(x::double precision), total(x::boolean), total(x::text)
        FROM (VALUES (NULL)) v(x) WHERE false" "0|0|0|0|0"
expect "SELECT total(x::bigint), total(x::text) FROM (VALUES (NULL), (NULL)) v(x)" "0|0"
expect "SELECT status, total(1) FROM nodes GROUP BY 1 ORDER BY 1" "pending|1
ready|1"

echo "postgres schema check: $passes passed, $failures failed" >&2
[ "$failures" -eq 0 ]
