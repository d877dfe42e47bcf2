#!/bin/bash
# The write path of issue 14 side by side, in one run on one throw-away cluster: the
# appended count changes (0.2.0: the trigger appends to model_deltas, fold_deltas() applies
# them) against the in-place upserts (the same library on a database at 0.1.0's SQL, where
# the trigger upserts pair_counts / item_counts as 0.1.0 and 0.2.0 before issue 14 did),
# the PL/pgSQL row trigger of test/bench/plpgsql_trigger.sql and no trigger at all.
#
#   test/bench/scaleup.sh [--parts load,pgbench] [--duration 20] [--out test/bench/out/scaleup]
#                         [--port N] [--quick]
#
# On Online Retail (test/load_online_retail.sh), each mode from empty interactions:
#   1. the file in 5,000-event statements (time order, each committed) + the one refresh
#      that brings the lists up to date (refresh_neighbors() + refresh_popular()), against
#      rebuild() after a load without triggers;
#   2. one statement per invoice (18,310, each committed);
#   3. single-row INSERTs (pgbench, 2 clients, uniformly random customer and product);
#   4. 2 and 8 clients inserting single rows with the products drawn from Zipf(1.1)
#      (random_zipfian): events/s, deadlocks (pg_stat_database) and the share of the
#      writers' samples (pg_stat_activity every 0.1 s) waiting on a lock;
#   5. single-row INSERTs again with fsync=on and synchronous_commit=on.
# Every loaded model is compared with the loader's (pair and product counts that differ).
# --parts: load (1, 2) and/or pgbench (3 to 5); both by default.
# Prints Markdown; raw logs go to --out. --quick: 5 s pgbench runs, for a smoke test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
duration=20
parts=load,pgbench
out=$root/test/bench/out/scaleup
port=
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --quick) duration=5; shift ;;
    *) echo "usage: $0 [--duration s] [--out dir] [--port n] [--quick]" >&2; exit 2 ;;
  esac
done

if [ -z "${SCALEUP_INSIDE:-}" ]; then
  mkdir -p "$out"
  make -s -C "$root" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
  rm -rf "$out/install"
  make -s -C "$root" install DESTDIR="$out/install" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
  if [ -z "$port" ]; then
    for p in $(seq 5461 5499); do ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }; done
  fi
  export SCALEUP_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=2GB -o work_mem=64MB -o maintenance_work_mem=1GB \
    -o max_wal_size=8GB -o checkpoint_timeout=30min -o jit=off -o max_connections=30 \
    -o extension_destdir="$out/install" \
    bash "$0" --duration "$duration" --out "$out" --port "$port" --parts "$parts"
fi
has() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

cd "$out"
mkdir -p log
rm -f log/*
exec 3>&1 >> log/stdout.log 2>&1
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
Q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b == 0) print "-"; else printf f, a / b }'; }
report() { echo "$*" >&3; }

# two databases with Online Retail: su_new at 0.2.0 (appended changes), su_old at 0.1.0's SQL
# (in-place upserts), both loaded by the project's loader through the triggers
for db in su_new su_old; do
  dropdb --if-exists $db; createdb $db
  if [ $db = su_new ]; then P -d $db -c 'CREATE EXTENSION personalize'
  else P -d $db -c "CREATE EXTENSION personalize VERSION '0.1.0'"; fi
  PGDATABASE=$db bash "$root/test/load_online_retail.sh" > log/loader_$db.log 2>&1
  [ $db = su_new ] && P -d $db -c 'SELECT personalize.fold_deltas()' >/dev/null
  P -d $db <<'SQL'
CREATE SCHEMA bench;
CREATE TABLE bench.or_events AS
SELECT i.interaction_id AS seq, i.customer_id, i.product_id, i.event_type, i.quantity, i.occurred_at,
       dense_rank() OVER (ORDER BY i.customer_id, i.occurred_at) AS invoice,
       (row_number() OVER (ORDER BY i.interaction_id) - 1) / 5000 AS chunk
FROM personalize.interactions i ORDER BY i.interaction_id;
CREATE INDEX ON bench.or_events (invoice);
CREATE INDEX ON bench.or_events (chunk);
CREATE TABLE bench.snap_pairs AS SELECT * FROM personalize.pair_counts;
CREATE TABLE bench.snap_items AS SELECT * FROM personalize.item_counts;
ANALYZE bench.or_events;
-- the pgbench runs draw ranks: customers in id order, products by sales (rank 1 = the bestseller)
CREATE TABLE bench.cust AS SELECT row_number() OVER (ORDER BY customer_id) AS rn, customer_id FROM personalize.customers;
CREATE TABLE bench.prod AS SELECT row_number() OVER (ORDER BY count(*) DESC, product_id) AS rn, product_id
    FROM bench.or_events GROUP BY product_id;
ALTER TABLE bench.cust ADD PRIMARY KEY (rn);
ALTER TABLE bench.prod ADD PRIMARY KEY (rn);
CREATE PROCEDURE bench.stream(per text) LANGUAGE plpgsql AS $$
DECLARE
    b bigint;
BEGIN
    FOR b IN SELECT DISTINCT CASE per WHEN 'invoice' THEN e.invoice ELSE e.chunk END FROM bench.or_events e ORDER BY 1 LOOP
        INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
        SELECT e.customer_id, e.product_id, e.event_type, e.quantity, e.occurred_at
        FROM bench.or_events e WHERE CASE per WHEN 'invoice' THEN e.invoice ELSE e.chunk END = b ORDER BY e.seq;
        COMMIT;
    END LOOP;
END $$;
CREATE FUNCTION bench.model_diff(plpgsql boolean DEFAULT false) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF plpgsql THEN
        SELECT (SELECT count(*) FROM bench.snap_pairs s FULL JOIN bench_plpgsql.pair_counts p USING (product_a, product_b)
                WHERE s.customers IS DISTINCT FROM p.customers)
             + (SELECT count(*) FROM bench.snap_items s FULL JOIN bench_plpgsql.item_counts p USING (product_id)
                WHERE s.customers IS DISTINCT FROM p.customers) INTO n;
    ELSE
        SELECT (SELECT count(*) FROM bench.snap_pairs s FULL JOIN personalize.pair_counts p USING (product_a, product_b)
                WHERE s.customers IS DISTINCT FROM p.customers)
             + (SELECT count(*) FROM bench.snap_items s FULL JOIN personalize.item_counts p USING (product_id)
                WHERE s.customers IS DISTINCT FROM p.customers) INTO n;
    END IF;
    RETURN n;
END $$;
SQL
  P -d $db -f "$here/plpgsql_trigger.sql" >/dev/null
done
rows=$(Q -d su_new -c 'SELECT count(*) FROM bench.or_events')
nc=$(Q -d su_new -c 'SELECT count(*) FROM bench.cust')
np=$(Q -d su_new -c 'SELECT count(*) FROM bench.prod')

trig() {    # db, C trigger on|off, PL/pgSQL trigger on|off
  P -d "$1" -c "ALTER TABLE personalize.interactions $([ "$2" = on ] && echo ENABLE || echo DISABLE) TRIGGER interactions_model_insert" \
            -c "ALTER TABLE personalize.interactions $([ "$3" = on ] && echo ENABLE || echo DISABLE) TRIGGER bench_plpgsql_model"
}
fresh() { P -d "$1" -c 'SET client_min_messages = warning' -c 'TRUNCATE personalize.interactions' -c 'SELECT bench_plpgsql.reset()' -c 'CHECKPOINT' >/dev/null; }
refresh() { P -d "$1" -c 'SET client_min_messages = warning' -c 'SELECT personalize.refresh_neighbors()' -c 'SELECT personalize.refresh_popular()' >/dev/null; }
declare -A secs diff rate

report "## Scale-up: the write path (issue 14), $(date -u '+%Y-%m-%d %H:%M UTC')"
report ""
report "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
report "- settings: $(Q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_wal_size', 'fsync', 'synchronous_commit')")"
report "- personalize: commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || echo ' with uncommitted changes')"
report "- data: Online Retail, $rows purchase events; load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
report ""

# 1 and 2: Online Retail streamed, and rebuild()
if has load; then
for db in su_new su_old; do
  echo "$db: 5,000-event statements" >&2
  fresh $db; trig $db on off; t0=$(now)
  P -d $db -c "CALL bench.stream('chunk')"
  secs[$db.chunk]=$(since "$t0"); t0=$(now)
  refresh $db
  secs[$db.chunk_refresh]=$(since "$t0")
  diff[$db.chunk]=$(Q -d $db -c 'SELECT bench.model_diff()')

  echo "$db: one statement per invoice" >&2
  fresh $db; trig $db on off; t0=$(now)
  P -d $db -c "CALL bench.stream('invoice')"
  secs[$db.invoice]=$(since "$t0")
  diff[$db.invoice]=$(Q -d $db -c 'SELECT bench.model_diff()')

  echo "$db: without triggers + rebuild()" >&2
  fresh $db; trig $db off off; t0=$(now)
  P -d $db -c 'INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
               SELECT customer_id, product_id, event_type, quantity, occurred_at FROM bench.or_events ORDER BY seq'
  secs[$db.none]=$(since "$t0"); trig $db on off; t0=$(now)
  P -d $db -c 'SELECT * FROM personalize.rebuild()' > log/rebuild_$db.log 2>&1
  secs[$db.rebuild]=$(since "$t0")
  diff[$db.rebuild]=$(Q -d $db -c 'SELECT bench.model_diff()')
done
echo "PL/pgSQL: one statement per invoice" >&2
fresh su_new; trig su_new off on; t0=$(now)
P -d su_new -c "CALL bench.stream('invoice')"
secs[pl.invoice]=$(since "$t0")
diff[pl.invoice]=$(Q -d su_new -c 'SELECT bench.model_diff(true)')
fi
# back to the full model (for the single-row runs)
for db in su_new su_old; do
  fresh $db; trig $db off off
  P -d $db -c 'INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
               SELECT customer_id, product_id, event_type, quantity, occurred_at FROM bench.or_events ORDER BY seq'
  trig $db on off
  P -d $db -c 'SET client_min_messages = warning' -c 'SELECT * FROM personalize.rebuild()' >/dev/null
  P -d $db -c 'SELECT bench_plpgsql.init_from_model()' >/dev/null
done

if has load; then
report "### Online Retail through the triggers"
report ""
report "| write path | 5,000-event statements s | + refresh s | = s | × rebuild() | per invoice s | events/s per invoice | model differs |"
report "|---|---:|---:|---:|---:|---:|---:|---:|"
for db in su_new su_old; do
  total=$(awk -v a="${secs[$db.chunk]}" -v b="${secs[$db.chunk_refresh]}" 'BEGIN { printf "%.2f", a + b }')
  label=$([ $db = su_new ] && echo "appended changes (0.2.0)" || echo "in-place upserts (0.1.0 SQL)")
  report "| $label | ${secs[$db.chunk]} | ${secs[$db.chunk_refresh]} | $total | $(div "$total" "${secs[$db.rebuild]}") | ${secs[$db.invoice]} | $(div $rows "${secs[$db.invoice]}" %.0f) | ${diff[$db.chunk]} / ${diff[$db.invoice]} |"
done
report "| PL/pgSQL row trigger | | | | | ${secs[pl.invoice]} | $(div $rows "${secs[pl.invoice]}" %.0f) | ${diff[pl.invoice]} |"
report ""
report "rebuild() after a load without triggers: ${secs[su_new.rebuild]} s (0.2.0), ${secs[su_old.rebuild]} s (0.1.0 SQL); the insert itself ${secs[su_new.none]} / ${secs[su_old.none]} s; model differs ${diff[su_new.rebuild]} / ${diff[su_old.rebuild]}."
report "Per invoice: appended / PL/pgSQL = **$(div "${secs[pl.invoice]}" "${secs[su_new.invoice]}")×** faster; in-place / PL/pgSQL = $(div "${secs[pl.invoice]}" "${secs[su_old.invoice]}")×."
report ""
fi
has pgbench || exit 0

# 3 to 5: pgbench
# (a customer and a product by rank: the same two index look-ups in every mode)
for kind in zipf uniform; do
  if [ $kind = zipf ]; then pick="random_zipfian(1, $np, 1.1)"; else pick="random(1, $np)"; fi
  cat > $kind.pgbench <<EOF
\\set c random(1, $nc)
\\set p $pick
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c.customer_id, p.product_id, 'view' FROM bench.cust c, bench.prod p WHERE c.rn = :c AND p.rn = :p;
EOF
done
# run_pgbench <key> <db> <script> <clients>: events/s, deadlocks, lock-wait share
run_pgbench() {
  local key=$1 db=$2 script=$3 clients=$4 d0 d1 sampler
  d0=$(Q -d "$db" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
  ( end=$(( $(date +%s) + duration )); while [ "$(date +%s)" -lt "$end" ]; do
      Q -d "$db" -c "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FROM pg_stat_activity
                     WHERE application_name = 'pgbench' AND state = 'active'"; sleep 0.1; done ) > "log/locks_$key.txt" &
  sampler=$!
  pgbench -n -M prepared -c "$clients" -j "$clients" -T "$duration" -f "$script" "$db" > "log/pgbench_$key.txt" 2>&1 || true
  wait $sampler || true
  d1=$(Q -d "$db" -c "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
  if grep -q 'aborted' "log/pgbench_$key.txt"; then echo "pgbench $key: clients aborted" >&2; grep -m3 -i error "log/pgbench_$key.txt" >&2; fi
  rate[$key]=$(awk '/^tps/ { printf "%.0f", $3; exit }' "log/pgbench_$key.txt")
  rate[$key.deadlocks]=$((d1 - d0))
  rate[$key.lockshare]=$(awk -F'|' '{ w += $1; a += $2 } END { if (a == 0) print "-"; else printf "%.1f %%", 100 * w / a }' "log/locks_$key.txt")
}
echo "pgbench: single rows" >&2
trig su_new off off; run_pgbench none su_new uniform.pgbench 2
trig su_new on off;  run_pgbench new su_new uniform.pgbench 2
run_pgbench old su_old uniform.pgbench 2
trig su_new off on;  run_pgbench pl su_new uniform.pgbench 2
trig su_new on off
for c in 2 8; do
  run_pgbench new_z$c su_new zipf.pgbench $c
  run_pgbench old_z$c su_old zipf.pgbench $c
done
t0=$(now); refresh su_new; fold_s=$(since "$t0")
echo "pgbench: fsync on" >&2
P -c 'ALTER SYSTEM SET fsync = on' -c 'ALTER SYSTEM SET synchronous_commit = on' -c 'SELECT pg_reload_conf()' >/dev/null
sleep 1
run_pgbench new_sync su_new uniform.pgbench 2
run_pgbench old_sync su_old uniform.pgbench 2
trig su_new off off; run_pgbench none_sync su_new uniform.pgbench 2; trig su_new on off
P -c 'ALTER SYSTEM RESET fsync' -c 'ALTER SYSTEM RESET synchronous_commit' -c 'SELECT pg_reload_conf()' >/dev/null

report "### Single-row events (pgbench -M prepared, $duration s each, 'view' of a random customer)"
report ""
report "| write path | uniform, 2 clients ev/s | × PL/pgSQL | Zipf(1.1), 2 clients ev/s | Zipf(1.1), 8 clients ev/s | 8 / 2 clients | deadlocks (2 / 8) | lock-wait share (2 / 8) | fsync=on, synchronous_commit=on, 2 clients ev/s |"
report "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for k in new old; do
  label=$([ $k = new ] && echo "appended changes (0.2.0)" || echo "in-place upserts (0.1.0 SQL)")
  report "| $label | ${rate[$k]} | $(div "${rate[$k]}" "${rate[pl]}") | ${rate[${k}_z2]} | ${rate[${k}_z8]} | $(div "${rate[${k}_z8]}" "${rate[${k}_z2]}") | ${rate[${k}_z2.deadlocks]} / ${rate[${k}_z8.deadlocks]} | ${rate[${k}_z2.lockshare]} / ${rate[${k}_z8.lockshare]} | ${rate[${k}_sync]} |"
done
report "| PL/pgSQL row trigger | ${rate[pl]} | 1.00 | | | | | | |"
report "| no trigger | ${rate[none]} | $(div "${rate[none]}" "${rate[pl]}") | | | | | | ${rate[none_sync]} |"
report ""
report "The refresh after the single-row runs (fold + neighbour lists of the dirty products + popularity) took $fold_s s."
