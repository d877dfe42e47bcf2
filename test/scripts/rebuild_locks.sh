#!/bin/bash
# rebuild() and an open transaction (issue 10, defect 8): a role granted only recommend()
# keeps a transaction open after calling it, or a writer keeps an event insert
# uncommitted. rebuild() must give up within personalize.model_lock_wait with 55P03 and
# name the blocking pid, while it tries a concurrent event insert and recommend() from
# other sessions must not queue behind it (0.1.0: rebuild() waited for ever and everyone
# queued behind it); once the blocker ends within the wait, rebuild() succeeds. The same
# for TRUNCATE personalize.interactions, whose trigger empties the model.
# Runs inside pg_virtualenv; everything bounded by timeout. TAP output; creates and drops
# personalize_locks_<pid> and one role.
set -uo pipefail
db=personalize_locks_$$ reader=regress_reader_$$
tmp=$(mktemp -d)
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { timeout 30 psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
as_reader() { PGHOST=127.0.0.1 PGUSER=$reader PGPASSWORD=secret-$$ psql -X -q -At -d "$db" "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
bgpids=()
cleanup() {
  for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null; done
  dropdb --if-exists --force "$db" >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $reader" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
createdb "$db" || { echo "Bail out! cannot create $db"; exit 2; }
q >/dev/null <<SQL || { echo "Bail out! cannot set up $db"; exit 2; }
CREATE EXTENSION personalize;
CREATE ROLE $reader LOGIN PASSWORD 'secret-$$';
GRANT EXECUTE ON FUNCTION personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) TO $reader;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 20) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 30) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 3 + i) % 20, 'purchase' FROM generate_series(1, 10) c, generate_series(1, 3) i;
CALL personalize.refresh();
SQL

# an open transaction in the background: $1 = file for its pid, $2 = seconds it stays open
# after its statements, $3 = how to connect (as_reader or owner), stdin = its statements
hold() {
  local pidfile=$1 secs=$2 who=$3 body
  body=$(cat)
  { printf 'BEGIN;\n%s\n' "$body"; printf '\\o %s\nSELECT pg_backend_pid();\n\\o\n\\! sleep %s\nCOMMIT;\n' "$pidfile" "$secs"; } > "$tmp/hold.sql"
  if [ "$who" = as_reader ]; then
    timeout $((secs + 20)) bash -c "PGHOST=127.0.0.1 PGUSER=$reader PGPASSWORD=secret-$$ psql -X -q -At -d $db -f $tmp/hold.sql" >/dev/null 2>&1 &
  else
    timeout $((secs + 20)) psql -X -q -At -d "$db" -f "$tmp/hold.sql" >/dev/null 2>&1 &
  fi
  bgpids+=($!)
  for _ in $(seq 100); do
    [ -s "$pidfile" ] && [ "$(q -c "SELECT state FROM pg_stat_activity WHERE pid = $(cat "$pidfile")")" = "idle in transaction" ] && return 0
    sleep 0.1
  done
  echo "# the holding session did not start"; return 1
}

# rebuild() in the background with a lock wait of $1, output into $2, elapsed ms into $2.ms
rebuild_bg() {
  local wait=$1 out=$2
  ( t0=$(ms)
    timeout 25 psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' -c "SET application_name = 'regress rebuild'" \
        -c "SET personalize.model_lock_wait = '$wait'" -c 'SELECT customers, products FROM personalize.rebuild()' > "$out" 2>&1
    echo "rc=$?" >> "$out"
    echo $(( $(ms) - t0 )) > "$out.ms" ) &
  bgpids+=($!)
}
wait_file() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

# a statement from a third session; prints "<elapsed ms> <output>" (killed after 10 s)
timed() {
  local t0 out
  t0=$(ms)
  out=$("$@" 2>&1 | tr '\n' ' ')
  echo "$(( $(ms) - t0 )) $out"
}
insert_event() { timeout 10 psql -X -q -At -d "$db" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES ($1, $2, 'view') RETURNING 'inserted'"; }
recommend_as_reader() { timeout 10 bash -c "PGHOST=127.0.0.1 PGUSER=$reader PGPASSWORD=secret-$$ psql -X -q -At -d $db -c 'SELECT count(*) FROM personalize.recommend(3)'"; }
model() { q -c "SELECT (SELECT count(*) FROM personalize.customer_items), rebuilt_at IS NULL,
                        (SELECT count(*) FROM personalize.maintenance_runs WHERE job = 'rebuild')
                 FROM personalize.model_stats"; }

before=$(model)

# 1. a reader (granted recommend() only) keeps its transaction open
hold "$tmp/reader.pid" 60 as_reader <<<'SELECT count(*) FROM personalize.recommend(1);' || exit 1
rpid=$(cat "$tmp/reader.pid")
rebuild_bg 4s "$tmp/r1"
sleep 1
ins=$(timed insert_event 21 5)
rec=$(timed recommend_as_reader)
ok $([ "${ins%% *}" -lt 2000 ] && [[ "$ins" == *inserted* ]] && echo 0 || echo 1) \
   "while rebuild() tries, an event insert from another session completes at once (${ins%% *} ms: ${ins#* })"
ok $([ "${rec%% *}" -lt 2000 ] && [[ "${rec#* }" =~ ^[0-9]+\ $ ]] && echo 0 || echo 1) \
   "while rebuild() tries, recommend() from another session completes at once (${rec%% *} ms: ${rec#* })"
wait_file "$tmp/r1.ms"
el=$(cat "$tmp/r1.ms" 2>/dev/null || echo 99999)
ok $([ "$el" -ge 3500 ] && [ "$el" -lt 8000 ] && echo 0 || echo 1) "rebuild() gives up after personalize.model_lock_wait = 4s (${el} ms)"
out=$(cat "$tmp/r1")
ok $([[ "$out" == *"ERROR:  55P03"* && "$out" == *"pid $rpid"* ]] && echo 0 || echo 1) \
   "with 55P03 naming the blocking reader's pid $rpid"
ok $([[ "$out" == *"NOTICE:"*"pid $rpid"* && "$out" == *"idle in transaction"* && "$out" == *"pg_terminate_backend($rpid)"* ]] && echo 0 || echo 1) \
   "a NOTICE says who blocks while it waits, the error says its state and how to end it"
echo "$out" | grep -E 'ERROR|DETAIL|HINT' | sed 's/^/#   /'
is "$(model)" "$(( ${before%%|*} + 1 ))|t|0" "a rebuild() that gave up changed nothing (only the concurrent insert is in the model; no rebuilt_at, no run)"
q -c "SELECT pg_terminate_backend($rpid)" >/dev/null

# 2. a writer keeps an event insert uncommitted (customer 1's existing product: no shared rows)
hold "$tmp/writer.pid" 60 owner <<<"INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 5, 'view');" || exit 1
wpid=$(cat "$tmp/writer.pid")
rebuild_bg 3s "$tmp/r2"
sleep 1
ins=$(timed insert_event 22 6)
rec=$(timed recommend_as_reader)
ok $([ "${ins%% *}" -lt 2000 ] && [[ "$ins" == *inserted* ]] && echo 0 || echo 1) \
   "behind an uncommitted insert, another session's insert does not queue behind rebuild() (${ins%% *} ms: ${ins#* })"
ok $([ "${rec%% *}" -lt 2000 ] && [[ "${rec#* }" =~ ^[0-9]+\ $ ]] && echo 0 || echo 1) \
   "nor does recommend() (${rec%% *} ms)"
wait_file "$tmp/r2.ms"
el=$(cat "$tmp/r2.ms" 2>/dev/null || echo 99999)
out=$(cat "$tmp/r2")
ok $([ "$el" -ge 2500 ] && [ "$el" -lt 7000 ] && [[ "$out" == *"ERROR:  55P03"* && "$out" == *"pid $wpid"* && "$out" == *"personalize.interactions"* ]] && echo 0 || echo 1) \
   "rebuild() gives up after 3s (${el} ms) with 55P03 naming the writer's pid $wpid and interactions"
q -c "SELECT pg_terminate_backend($wpid)" >/dev/null

# 3. the blocker ends within the wait: rebuild() goes through
hold "$tmp/reader2.pid" 2 as_reader <<<'SELECT count(*) FROM personalize.recommend(2);' || exit 1
rpid=$(cat "$tmp/reader2.pid")
rebuild_bg 20s "$tmp/r3"
wait_file "$tmp/r3.ms"
el=$(cat "$tmp/r3.ms" 2>/dev/null || echo 99999)
out=$(cat "$tmp/r3")
ok $([ "$el" -lt 10000 ] && [[ "$out" == *"rc=0"* && "$out" == *"pid $rpid"* ]] && echo 0 || echo 1) \
   "a blocker that commits within the wait: rebuild() reports it, then succeeds (${el} ms)"
is "$(q -c "SELECT count(*) FROM personalize.maintenance_runs WHERE job = 'rebuild'")" 1 "and records its run"
is "$(q -c "SET lock_timeout = '7s'" -c 'BEGIN' -c 'SELECT count(*) FROM personalize.rebuild()' -c 'SHOW lock_timeout' -c 'COMMIT' | grep -v NOTICE)" "1
7s" "rebuild() leaves the caller's lock_timeout as it was"

# 4. TRUNCATE interactions (its trigger empties the model) behind an open reader
hold "$tmp/reader3.pid" 60 as_reader <<<'SELECT count(*) FROM personalize.recommend(1);' || exit 1
rpid=$(cat "$tmp/reader3.pid")
t0=$(ms)
out=$(timeout 25 psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' -c "SET personalize.model_lock_wait = '2s'" \
      -c 'TRUNCATE personalize.interactions' 2>&1)
el=$(( $(ms) - t0 ))
ok $([ "$el" -lt 7000 ] && [[ "$out" == *"ERROR:  55P03"* && "$out" == *"pid $rpid"* ]] && echo 0 || echo 1) \
   "TRUNCATE interactions behind an open reader gives up after 2s (${el} ms) with 55P03 naming it"
is "$(q -c 'SELECT count(*) > 0 FROM personalize.interactions')" t "and truncated nothing"
q -c "SELECT pg_terminate_backend($rpid)" >/dev/null
exit 0
