#!/bin/bash
# Throughput of personalize.ingest() against a plain COPY into interactions (issue 11), for
# the same events in one run: the Online Retail purchases (396,337 events; the file's rows
# after test/load_online_retail.sh's rules), each mode starting from empty interactions
# (TRUNCATE) with the catalog and customers loaded, each one transaction, all through the
# model triggers (one statement). Modes:
#   copy            \copy into personalize.interactions (the lower bound: no rules, aborts on a bad row)
#   ingest typed    \copy into a staging table with typed columns, then ingest()
#   ingest text     \copy into a staging table of text columns (what a CSV ETL gives), then ingest()
#   copy + keys     \copy into interactions with an event_key per event
#   ingest + keys   typed staging with event_key, then ingest()
# Each mode's model is checked against the first one's (pairs, their sum, customer_items).
# Run inside pg_virtualenv:  pg_virtualenv -t bash test/bench/ingest.sh [online_retail.csv.gz]
set -uo pipefail
cd "$(dirname "$0")/../.."
file=${1:-test/data/online-retail/online_retail.csv.gz}
db=personalize_ingest_bench
work=$(mktemp -d)
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
trap 'dropdb --if-exists "$db" >/dev/null 2>&1; rm -rf "$work"' EXIT
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null || exit 2
PGDATABASE=$db bash test/load_online_retail.sh "$file" > "$work/load.log" 2>&1 || { cat "$work/load.log"; exit 2; }
q -c "COPY (SELECT customer_id, product_id, event_type, quantity, occurred_at, md5(interaction_id::text) AS event_key
           FROM personalize.interactions ORDER BY interaction_id) TO STDOUT WITH (FORMAT csv)" > "$work/events.csv"
n=$(wc -l < "$work/events.csv")
cut -d, -f1-5 "$work/events.csv" > "$work/events_nokey.csv"
q -c "TRUNCATE personalize.interactions" >/dev/null
q <<'SQL'
CREATE TABLE staging_typed (customer_id bigint, product_id bigint, event_type text, quantity integer, occurred_at timestamptz);
CREATE TABLE staging_keys (customer_id bigint, product_id bigint, event_type text, quantity integer, occurred_at timestamptz, event_key text);
CREATE TABLE staging_text (customer_id text, product_id text, event_type text, quantity text, occurred_at text);
SQL

model() { q -c "SELECT (SELECT count(*) FROM personalize.pair_counts) || ' ' || (SELECT sum(customers) FROM personalize.pair_counts)
                       || ' ' || (SELECT md5(string_agg(customer_id || ':' || product_id || ':' || events || ':' || in_model, ',' ORDER BY customer_id, product_id))
                                  FROM personalize.customer_items)"; }
first_model=
run() {   # $1 = label, $2 = psql script (one transaction)
  local t0 t1 secs m
  q -c "TRUNCATE personalize.interactions, personalize.ingest_rejects, personalize.ingest_batches" >/dev/null
  q -c "CHECKPOINT" >/dev/null
  t0=$(date +%s.%N)
  printf '%s\n' "$2" | q -1 -f - > "$work/out" || { cat "$work/out"; echo "$1 failed"; exit 1; }
  t1=$(date +%s.%N)
  secs=$(echo "$t1 - $t0" | bc -l)
  m=$(model)
  [ -z "$first_model" ] && first_model=$m && copy_secs=$secs
  printf '%-16s %8.2f s %9.0f events/s   x copy %5.2f   model %s   %s\n' "$1" "$secs" "$(echo "$n / $secs" | bc -l)" \
    "$(echo "$secs / $copy_secs" | bc -l)" "$([ "$m" = "$first_model" ] && echo same || echo DIFFERS)" "$(tr '\n' ' ' < "$work/out")"
}
echo "== $n events (Online Retail purchases), one transaction per mode; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
run "copy" "\\copy personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at) FROM '$work/events_nokey.csv' WITH (FORMAT csv)"
run "ingest typed" "TRUNCATE staging_typed;
\\copy staging_typed FROM '$work/events_nokey.csv' WITH (FORMAT csv)
SELECT 'kept=' || rows FROM personalize.ingest('staging_typed') WHERE rule = 'kept';
SELECT 'ingest()=' || round(seconds::numeric, 2) || 's' FROM personalize.ingest_batches;"
run "ingest text" "TRUNCATE staging_text;
\\copy staging_text FROM '$work/events_nokey.csv' WITH (FORMAT csv)
SELECT 'kept=' || rows FROM personalize.ingest('staging_text') WHERE rule = 'kept';
SELECT 'ingest()=' || round(seconds::numeric, 2) || 's' FROM personalize.ingest_batches;"
run "copy + keys" "\\copy personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at, event_key) FROM '$work/events.csv' WITH (FORMAT csv)"
run "ingest + keys" "TRUNCATE staging_keys;
\\copy staging_keys FROM '$work/events.csv' WITH (FORMAT csv)
SELECT 'kept=' || rows FROM personalize.ingest('staging_keys') WHERE rule = 'kept';
SELECT 'ingest()=' || round(seconds::numeric, 2) || 's' FROM personalize.ingest_batches;"
# the same batch again: every event is a duplicate, nothing is added
t0=$(date +%s.%N)
out=$(q -c "SELECT rule || '=' || rows FROM personalize.ingest('staging_keys') WHERE rows > 0" | tr '\n' ' ')
printf '%-16s %8.2f s   %s(events now %s)\n' "replay + keys" "$(echo "$(date +%s.%N) - $t0" | bc -l)" "$out" \
  "$(q -c 'SELECT count(*) FROM personalize.interactions')"
