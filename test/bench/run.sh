#!/bin/bash
# personalize benchmarks on a throw-away cluster; prints Markdown tables.
#
#   test/bench/run.sh [--parts load,latency,ingest,storage] [--sizes OR,S,M] [--duration 20]
#                     [--batches 5] [--out test/bench/out] [--port 5451] [--figures docs]
#
#   --parts     which parts (default all four):
#                 load     Online Retail loaded through the C triggers (one statement, one per
#                          month, one per invoice), without triggers + rebuild(), and through
#                          the PL/pgSQL row trigger of test/bench/plpgsql_trigger.sql
#                 latency  recommend() p50/p99 against the plain self-join query (pgbench -l)
#                 ingest   single-row INSERTs from 2 clients and COPY batches, C triggers on /
#                          off / PL/pgSQL trigger, on the largest synthetic size selected
#                 storage  bytes per interaction, per pair, per history row
#   --sizes     data sets: OR (Online Retail), S, M, L (default OR,S,M; L takes long)
#   --duration  seconds of each pgbench run (default 20)
#   --batches   COPY batches of 10,000 and of 1,000 events per mode (default 5)
#   --figures   also draw the gnuplot figures into this directory (PNG)
# Everything runs in its own cluster (pg_virtualenv -t), never on port 5440. The extension is
# built and installed first. Raw results, logs and pgbench logs go to --out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

parts=load,latency,ingest,storage
sizes=OR,S,M
duration=20
batches=5
out=$root/test/bench/out
port=
figures=
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) parts=$2; shift 2 ;;
    --sizes) sizes=$(echo "$2" | tr a-z A-Z); shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --figures) figures=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -n "$figures" ] && { mkdir -p "$figures"; figures=$(cd "$figures" && pwd); }

if [ -z "${BENCH_INSIDE:-}" ]; then
  # build and install (someone may be mid-edit: retry for a while)
  # and a private copy (DESTDIR) that the cluster loads through Debian's extension_destdir, so
  # that others installing a newer build meanwhile cannot change the code under a run
  rm -rf "$out/install"
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if (cd "$root" && make -s >/dev/null && make -s install >/dev/null &&
        make -s install DESTDIR="$out/install" >/dev/null); then break; fi
    [ $try = 10 ] && { echo "run.sh: the extension does not build" >&2; exit 1; }
    echo "run.sh: build failed, retrying in 30 s" >&2; sleep 30
  done
  if [ -z "$port" ]; then
    for p in $(seq 5451 5499); do
      ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }
    done
  fi
  [ "$port" = 5440 ] && { echo "run.sh: port 5440 is not ours" >&2; exit 2; }
  export BENCH_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=2GB -o work_mem=64MB -o maintenance_work_mem=1GB \
    -o max_wal_size=8GB -o checkpoint_timeout=30min -o jit=off -o max_connections=20 \
    -o extension_destdir="$out/install" \
    bash "$0" --parts "$parts" --sizes "$sizes" --duration "$duration" --batches "$batches" \
         --out "$out" --port "$port" ${figures:+--figures "$figures"}
fi

##############################################################################
# inside the cluster
##############################################################################
cd "$out"
mkdir -p log
rm -rf log/*
# Markdown to the original stdout (fd 3), everything else psql prints to a log
exec 3>&1 >> log/stdout.log
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
Q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }     # one value
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN { if (b == 0) print "-"; else printf f, a / b }'; }
report() { echo "$*" >> results.md; echo "$*" >&3; }
: > results.md
: > latency.dat
: > storage.dat
: > latency_rows.md
: > history_rows.md
: > storage_rows.md

# p50, p99, mean (ms) and count from pgbench per-transaction logs (3rd field: microseconds)
pct() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { a[NR] = $1; s += $1 }
    END { if (NR == 0) { print "- - - 0"; exit }
          i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; if (i50 < NR * 0.50) i50++;
          i99 = int(NR * 0.99); if (i99 < 1) i99 = 1; if (i99 < NR * 0.99) i99++;
          printf "%.3f %.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, s / NR / 1000, NR }'
}

machine() {
  report "## Machine and settings"
  report ""
  report "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
  report "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  report "- $(Q -c 'SELECT version()')"
  report "- settings: $(Q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_wal_size', 'jit', 'synchronous_commit', 'fsync', 'checkpoint_timeout', 'max_parallel_workers_per_gather')")"
  report "- personalize: commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || echo ' with uncommitted changes in src/ or sql/')"
  createdb bench_probe && P -d bench_probe -c 'CREATE EXTENSION personalize' >/dev/null
  report "- personalize.so loaded from $(Q -d bench_probe -c "SELECT count(*) FROM personalize.recommend(0)" -c "SELECT string_agg(DISTINCT substring(l FROM '/[^ ]*personalize[.]so'), ', ') FROM regexp_split_to_table(pg_read_file('/proc/' || pg_backend_pid() || '/maps'), E'\\n') AS l WHERE l LIKE '%personalize.so%'" | tail -n1 | sed "s|$out|<out>|"), md5 $(md5sum "$out/install/usr/lib/postgresql/15/lib/personalize.so" 2>/dev/null | cut -c1-12)"
  dropdb bench_probe
  report "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 cores are shared)"
  report "- started $(date -u '+%Y-%m-%d %H:%M UTC'); parts $parts; sizes $sizes; pgbench runs of $duration s"
  report ""
}

# a fresh database with the extension
newdb() {
  dropdb --if-exists "$1" >/dev/null 2>&1
  createdb "$1"
  P -d "$1" -c 'CREATE EXTENSION personalize' -c 'ALTER DATABASE '"$1"' SET jit = off'
}

##############################################################################
# data sets
##############################################################################
load_online_retail() {    # -> bench_or, loaded through the triggers (the project's loader)
  newdb bench_or
  local t0; t0=$(now)
  PGDATABASE=bench_or bash "$root/test/load_online_retail.sh" > log/or_loader.log 2>&1
  or_loader_s=$(since "$t0")
  # the kept events, in load order, with the month and invoice (customer, time) they belong to
  P -d bench_or <<'SQL'
CREATE SCHEMA bench;
CREATE TABLE bench.or_events AS
SELECT i.interaction_id AS seq, i.customer_id, i.product_id, i.event_type, i.quantity, i.occurred_at,
       date_trunc('month', i.occurred_at AT TIME ZONE 'Europe/London') AS month,
       dense_rank() OVER (ORDER BY i.customer_id, i.occurred_at) AS invoice
FROM personalize.interactions i ORDER BY i.interaction_id;
CREATE INDEX ON bench.or_events (invoice);
CREATE INDEX ON bench.or_events (month);
CREATE TABLE bench.snap_pairs AS SELECT * FROM personalize.pair_counts;
CREATE TABLE bench.snap_items AS SELECT * FROM personalize.item_counts;
ANALYZE bench.or_events;
-- replay the file: one statement per month or per invoice, each committed
CREATE PROCEDURE bench.stream_or(per text) LANGUAGE plpgsql AS $$
DECLARE
    b bigint;
BEGIN
    FOR b IN SELECT DISTINCT CASE per WHEN 'invoice' THEN e.invoice ELSE extract(epoch FROM e.month)::bigint END
             FROM bench.or_events e ORDER BY 1 LOOP
        IF per = 'invoice' THEN
            INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
            SELECT e.customer_id, e.product_id, e.event_type, e.quantity, e.occurred_at
            FROM bench.or_events e WHERE e.invoice = b ORDER BY e.seq;
        ELSE
            INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
            SELECT e.customer_id, e.product_id, e.event_type, e.quantity, e.occurred_at
            FROM bench.or_events e WHERE e.month = to_timestamp(b) AT TIME ZONE 'UTC' ORDER BY e.seq;
        END IF;
        COMMIT;
    END LOOP;
END $$;
-- does personalize's model (or bench_plpgsql's) equal the loader's? rows that differ
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
  P -d bench_or -f "$here/plpgsql_trigger.sql" >/dev/null
}

load_synthetic() {    # $1 = S|M|L -> bench_<s>
  local db=bench_$(echo "$1" | tr A-Z a-z) t0
  newdb "$db"
  t0=$(now)
  P -d "$db" -v size="$1" -f "$here/generate.sql" > "log/generate_$1.log" 2>&1
  gen_s[$1]=$(since "$t0")
  rebuild_s[$1]=$(awk '/^ *[0-9]+ \| *[0-9]+ \| *[0-9]+ \|/ { print $7 }' "log/generate_$1.log" | tail -n1)
  P -d "$db" -f "$here/plpgsql_trigger.sql" >/dev/null
}

##############################################################################
# part: load (Online Retail)
##############################################################################
bench_load() {
  local db=bench_or t0 n rows
  rows=$(Q -d $db -c 'SELECT count(*) FROM bench.or_events')
  invoices=$(Q -d $db -c 'SELECT count(DISTINCT invoice) FROM bench.or_events')
  declare -A secs diff
  trig() {    # C trigger on|off, PL/pgSQL trigger on|off
    P -d $db -c "ALTER TABLE personalize.interactions $([ "$1" = on ] && echo ENABLE || echo DISABLE) TRIGGER interactions_model_insert" \
             -c "ALTER TABLE personalize.interactions $([ "$2" = on ] && echo ENABLE || echo DISABLE) TRIGGER bench_plpgsql_model"
  }
  fresh() { P -d $db -c 'TRUNCATE personalize.interactions' -c 'SELECT bench_plpgsql.reset()' -c 'CHECKPOINT' >/dev/null; }

  echo "load: C triggers, one statement for the whole file" >&2
  fresh; trig on off; t0=$(now)
  P -d $db -c 'INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
               SELECT customer_id, product_id, event_type, quantity, occurred_at FROM bench.or_events ORDER BY seq'
  secs[c_one]=$(since "$t0")
  diff[c_one]=$(Q -d $db -c 'SELECT bench.model_diff()')

  echo "load: C triggers, one statement per month" >&2
  fresh; trig on off; t0=$(now)
  P -d $db -c "CALL bench.stream_or('month')"
  secs[c_month]=$(since "$t0")
  diff[c_month]=$(Q -d $db -c 'SELECT bench.model_diff()')
  t0=$(now); P -d $db -c 'SELECT personalize.refresh_neighbors(all_products => true)' >/dev/null
  secs[refresh]=$(since "$t0")

  echo "load: C triggers, one statement per invoice" >&2
  fresh; trig on off; t0=$(now)
  P -d $db -c "CALL bench.stream_or('invoice')"
  secs[c_invoice]=$(since "$t0")
  diff[c_invoice]=$(Q -d $db -c 'SELECT bench.model_diff()')

  echo "load: C triggers, one statement per invoice, hash and merge joins off" >&2
  fresh; trig on off; t0=$(now)
  P -d $db -c 'SET enable_hashjoin = off' -c 'SET enable_mergejoin = off' -c "CALL bench.stream_or('invoice')"
  secs[c_invoice_nl]=$(since "$t0")
  diff[c_invoice_nl]=$(Q -d $db -c 'SELECT bench.model_diff()')

  echo "load: no triggers, one statement per invoice" >&2
  fresh; trig off off; t0=$(now)
  P -d $db -c "CALL bench.stream_or('invoice')"
  secs[none_invoice]=$(since "$t0")

  echo "load: PL/pgSQL row trigger, one statement per month" >&2
  fresh; trig off on; t0=$(now)
  P -d $db -c "CALL bench.stream_or('month')"
  secs[pl_month]=$(since "$t0")
  diff[pl_month]=$(Q -d $db -c 'SELECT bench.model_diff(true)')

  echo "load: PL/pgSQL row trigger, one statement per invoice" >&2
  fresh; trig off on; t0=$(now)
  P -d $db -c "CALL bench.stream_or('invoice')"
  secs[pl_invoice]=$(since "$t0")
  diff[pl_invoice]=$(Q -d $db -c 'SELECT bench.model_diff(true)')

  echo "load: no triggers, one statement, then rebuild()" >&2
  fresh; trig off off; t0=$(now)
  P -d $db -c 'INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
               SELECT customer_id, product_id, event_type, quantity, occurred_at FROM bench.or_events ORDER BY seq'
  secs[none_one]=$(since "$t0")
  trig on off; t0=$(now)
  P -d $db -c 'SELECT * FROM personalize.rebuild()' > log/or_rebuild.log 2>&1
  secs[rebuild]=$(since "$t0")
  diff[rebuild]=$(Q -d $db -c 'SELECT bench.model_diff()')
  P -d $db -c 'SELECT bench_plpgsql.reset()' >/dev/null

  local base; base=$(awk -v a="${secs[none_one]}" -v b="${secs[rebuild]}" 'BEGIN { print a + b }')
  report "## Loading Online Retail ($rows purchase events, $invoices invoices, 13 months)"
  report ""
  report "Each row starts from empty interactions (products and customers loaded). \"model differs\" counts"
  report "pair and item counts that differ from the project's loader (C triggers): 0 means the same model."
  report ""
  report "| method | seconds | events/s | × (insert without triggers + rebuild) | × C trigger, same batching | model differs |"
  report "|---|---:|---:|---:|---:|---:|"
  report "| insert without triggers, one statement | ${secs[none_one]} | $(div $rows ${secs[none_one]} %.0f) | | | |"
  report "| + personalize.rebuild() | ${secs[rebuild]} | | | | ${diff[rebuild]} |"
  report "| **= without triggers + rebuild()** | **$base** | $(div $rows $base %.0f) | 1.00 | | |"
  report "| C triggers, one statement for the whole file | ${secs[c_one]} | $(div $rows ${secs[c_one]} %.0f) | $(div ${secs[c_one]} $base %.2f) | | ${diff[c_one]} |"
  report "| C triggers, one statement per month (13) | ${secs[c_month]} | $(div $rows ${secs[c_month]} %.0f) | $(div ${secs[c_month]} $base %.2f) | 1.00 | ${diff[c_month]} |"
  report "| + refresh_neighbors(all_products => true) | ${secs[refresh]} | | $(div "$(awk -v a=${secs[c_month]} -v b=${secs[refresh]} 'BEGIN{print a+b}')" $base %.2f) (with it) | | |"
  report "| C triggers, one statement per invoice ($invoices, each committed) | ${secs[c_invoice]} | $(div $rows ${secs[c_invoice]} %.0f) | $(div ${secs[c_invoice]} $base %.2f) | 1.00 | ${diff[c_invoice]} |"
  report "| C triggers, one statement per invoice, enable_hashjoin and enable_mergejoin off (see Findings) | ${secs[c_invoice_nl]} | $(div $rows ${secs[c_invoice_nl]} %.0f) | $(div ${secs[c_invoice_nl]} $base %.2f) | $(div ${secs[c_invoice_nl]} ${secs[c_invoice]} %.2f) | ${diff[c_invoice_nl]} |"
  report "| no triggers, one statement per invoice (the statements and commits alone) | ${secs[none_invoice]} | $(div $rows ${secs[none_invoice]} %.0f) | $(div ${secs[none_invoice]} $base %.2f) | | |"
  report "| PL/pgSQL row trigger, one statement per month | ${secs[pl_month]} | $(div $rows ${secs[pl_month]} %.0f) | $(div ${secs[pl_month]} $base %.2f) | $(div ${secs[pl_month]} ${secs[c_month]} %.2f) | ${diff[pl_month]} |"
  report "| PL/pgSQL row trigger, one statement per invoice | ${secs[pl_invoice]} | $(div $rows ${secs[pl_invoice]} %.0f) | $(div ${secs[pl_invoice]} $base %.2f) | $(div ${secs[pl_invoice]} ${secs[c_invoice]} %.2f) | ${diff[pl_invoice]} |"
  report ""
  report "The project's loader (test/load_online_retail.sh: staging the CSV, mapping, and its own INSERT through the C triggers) took ${or_loader_s} s end to end."
  report ""
}

##############################################################################
# part: latency
##############################################################################
prepare_serving() {    # $1 = db
  P -d "$1" > /dev/null <<'SQL'
SELECT personalize.refresh_neighbors(all_products => true);
SELECT personalize.refresh_popular();
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.sample_customers;
-- every customer with a history, numbered 1..n for pgbench's random()
CREATE TABLE bench.sample_customers AS
SELECT row_number() OVER (ORDER BY customer_id)::integer AS i, customer_id
FROM personalize.customer_state WHERE items > 0;
ALTER TABLE bench.sample_customers ADD PRIMARY KEY (i);
VACUUM ANALYZE;
CHECKPOINT;
SQL
}

bench_latency() {    # $1 = label, $2 = db
  local label=$1 db=$2 n ev pairs r p
  n=$(Q -d "$db" -c 'SELECT count(*) FROM bench.sample_customers')
  ev=$(Q -d "$db" -c 'SELECT count(*) FROM personalize.interactions')
  pairs=$(Q -d "$db" -c 'SELECT count(*) FROM personalize.pair_counts')
  echo "latency: $label" >&2
  rm -f log/lat_"$label"_*
  # warm-up of both, then the measured runs
  pgbench -n -M prepared -f "$here/recommend.pgbench" -D n="$n" -c 1 -T 2 "$db" > /dev/null 2>&1
  pgbench -n -M prepared -f "$here/recommend.pgbench" -D n="$n" -c 1 -T "$duration" -r \
    -l --log-prefix="log/lat_${label}_rec" "$db" > "log/pgbench_${label}_recommend.txt" 2>&1
  pgbench -n -M prepared -f "$here/plain_query.pgbench" -D n="$n" -c 1 -t 1 "$db" > /dev/null 2>&1
  pgbench -n -M prepared -f "$here/plain_query.pgbench" -D n="$n" -c 1 -T "$duration" -r \
    -l --log-prefix="log/lat_${label}_plain" "$db" > "log/pgbench_${label}_plain.txt" 2>&1
  read -r r50 r99 rmean rn <<< "$(pct log/lat_"${label}"_rec.*)"
  read -r p50 p99 pmean pn <<< "$(pct log/lat_"${label}"_plain.*)"
  echo "| $label | $n | $ev | $pairs | $r50 | $r99 | $rn | $p50 | $p99 | $pn | $(div $p50 $r50 %.0f) | $(div $p99 $r99 %.0f) |" >> latency_rows.md
  echo "$label: recommend p50 $r50 p99 $r99 ms, plain p50 $p50 p99 $p99 ms" >&2
  echo "$label $ev $r50 $r99 $p50 $p99 $rmean $pmean" >> latency.dat
  # server-side cost by history size: explains the tail
  Q -d "$db" -F ' ' -f "$here/history_latency.sql" | while read -r bucket share calls h50 h99 hmax; do
    echo "| $label | $bucket | $share | $calls | $h50 | $h99 | $hmax |" >> history_rows.md
  done
}

latency_tables() {
  [ -s latency_rows.md ] || return 0
  report "## recommend() latency against the plain SQL query"
  report ""
  report "pgbench -M prepared -c 1 -T $duration, a random customer with history per call; percentiles from the"
  report "per-transaction log (-l), so they include the client round trip. Plain query: test/bench/plain_query.pgbench."
  report ""
  report "| data | customers | events | pairs | recommend() p50 ms | p99 ms | calls | plain query p50 ms | p99 ms | calls | × faster p50 | × faster p99 |"
  report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while IFS= read -r l; do report "$l"; done < latency_rows.md
  report ""
  report "recommend() by the size of the customer's history (distinct products), timed inside the server"
  report "(clock_timestamp() around each call, no round trip; test/bench/history_latency.sql): up to 300"
  report "customers per bucket; share = the bucket's share of customers with a history."
  report ""
  report "| data | history products | share of customers | calls | p50 ms | p99 ms | max ms |"
  report "|---|---|---:|---:|---:|---:|---:|"
  while IFS= read -r l; do report "$l"; done < history_rows.md
  report ""
}

##############################################################################
# part: storage
##############################################################################
bench_storage() {    # $1 = label, $2 = db
  local label=$1 db=$2
  echo "storage: $label" >&2
  P -d "$db" -c 'VACUUM ANALYZE' >/dev/null
  Q -d "$db" -F ' ' > "storage_$label.txt" <<'SQL'
SELECT c.relname, c.relkind, pg_relation_size(c.oid), pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'personalize' AND c.relkind IN ('r', 'i')
ORDER BY c.relkind DESC, c.relname;
SQL
  local row
  row=$(Q -d "$db" -F ' ' <<'SQL'
WITH t(name, bytes, n) AS (
    SELECT 'interactions', pg_total_relation_size('personalize.interactions'), (SELECT count(*) FROM personalize.interactions)
    UNION ALL SELECT 'customer_items', pg_total_relation_size('personalize.customer_items'), (SELECT count(*) FROM personalize.customer_items)
    UNION ALL SELECT 'pair_counts', pg_total_relation_size('personalize.pair_counts_base'), (SELECT count(*) FROM personalize.pair_counts_base)
    UNION ALL SELECT 'neighbors', pg_total_relation_size('personalize.neighbors'), (SELECT count(*) FROM personalize.neighbors)
    UNION ALL SELECT 'model', (SELECT sum(pg_total_relation_size(('personalize.' || r)::regclass))
                                 FROM unnest(ARRAY['customer_items', 'customer_state', 'item_counts_base', 'pair_counts_base',
                                                   'model_deltas', 'customer_totals', 'dirty_products', 'neighbors', 'popular']) AS r), 0)
SELECT string_agg(n || ' ' || bytes, ' ' ORDER BY name) FROM t;
SQL
)
  # customer_items interactions model neighbors pair_counts, each "n bytes"
  read -r ci_n ci_b ev_n ev_b _ model_b nb_n nb_b pc_n pc_b <<< "$row"
  echo "| $label | $ev_n | $(div $ev_b 1048576) | $(div $ev_b $ev_n %.0f) | $ci_n | $(div $ci_b $ci_n %.0f) | $pc_n | $(div $pc_b 1048576) | $(div $pc_b $pc_n %.0f) | $(div $pc_n $ev_n %.2f) | $(div $nb_b 1048576) | $(div $model_b 1048576) | $(div $model_b $ev_b %.2f) |" >> storage_rows.md
  echo "$label $ev_n $ev_b $pc_n $pc_b $model_b" >> storage.dat
}

storage_table() {
  [ -s storage_rows.md ] || return 0
  report "## Storage"
  report ""
  report "pg_total_relation_size (table, TOAST and indexes) after VACUUM ANALYZE; model = customer_items,"
  report "customer_state, item_counts, pair_counts, customer_totals, dirty_products, neighbors, popular."
  report "Per relation: storage_<data>.txt in the output directory."
  report ""
  report "| data | events | interactions MB | bytes/event | history rows | bytes/row | pairs | pair_counts MB | bytes/pair | pairs/event | neighbors MB | model MB | model / interactions |"
  report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  while IFS= read -r l; do report "$l"; done < storage_rows.md
  report ""
}

##############################################################################
# part: ingest (synthetic)
##############################################################################
bench_ingest() {    # $1 = size
  local s=$1 db=bench_$(echo "$1" | tr A-Z a-z) nc np ne mode t0 first
  read -r nc np ne <<< "$(Q -d "$db" -F ' ' -c "SELECT customers, products, events FROM bench.size_of('$s')")"
  echo "ingest: $s" >&2
  trig() {
    P -d "$db" -c "ALTER TABLE personalize.interactions $([ "$1" = on ] && echo ENABLE || echo DISABLE) TRIGGER interactions_model_insert" \
               -c "ALTER TABLE personalize.interactions $([ "$2" = on ] && echo ENABLE || echo DISABLE) TRIGGER bench_plpgsql_model"
  }
  # COPY files: the generator's stream past the loaded events, a fresh slice for every mode
  first=$((ne + 1))
  declare -A slice
  for mode in c plpgsql none; do
    slice[$mode]=$first
    for b in $(seq 1 "$batches"); do
      Q -d "$db" -c "\copy (SELECT * FROM bench.gen_events($first, 10000, $nc, $np, $ne)) TO 'log/copy_${mode}_10k_$b.csv' csv"
      first=$((first + 10000))
    done
    for b in $(seq 1 "$batches"); do
      Q -d "$db" -c "\copy (SELECT * FROM bench.gen_events($first, 1000, $nc, $np, $ne)) TO 'log/copy_${mode}_1k_$b.csv' csv"
      first=$((first + 1000))
    done
  done
  copy_run() {    # $1 = mode, $2 = 10k|1k -> events/s
    local f=log/copy_$1_$2.sql
    { echo '\timing on'
      for b in $(seq 1 "$batches"); do
        echo "\\copy personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at) FROM 'log/copy_$1_$2_$b.csv' csv"
      done; } > "$f"
    P -d "$db" -f "$f" > "log/copy_$1_$2.out" 2>&1
    local rows; rows=$( [ "$2" = 10k ] && echo $((batches * 10000)) || echo $((batches * 1000)) )
    awk -v rows="$rows" '/^Time:/ { s += $2 } END { printf "%.0f %.3f\n", rows / (s / 1000), s / 1000 }' "log/copy_$1_$2.out"
  }
  declare -A tps cps cps1
  for mode in c plpgsql none; do
    case $mode in
      c) trig on off ;;
      plpgsql) echo "ingest: copying the model into bench_plpgsql" >&2
               P -d "$db" -c 'SELECT bench_plpgsql.init_from_model()' -c 'VACUUM ANALYZE bench_plpgsql.customer_items, bench_plpgsql.pair_counts' >/dev/null
               trig off on ;;
      none) trig off off ;;
    esac
    P -d "$db" -c CHECKPOINT
    echo "ingest: $mode single-row INSERTs" >&2
    pgbench -n -M prepared -f "$here/insert.pgbench" -D nc="$nc" -D np="$np" -c 2 -j 2 -T "$duration" -r "$db" \
      > "log/pgbench_insert_$mode.txt" 2>&1
    tps[$mode]=$(awk '/^tps = / { printf "%.0f", $3 }' "log/pgbench_insert_$mode.txt")
    echo "ingest: $mode COPY batches" >&2
    read -r cps[$mode] _ <<< "$(copy_run $mode 10k)"
    read -r cps1[$mode] _ <<< "$(copy_run $mode 1k)"
  done
  trig on off
  P -d "$db" -c 'SELECT bench_plpgsql.reset()' >/dev/null
  t0=$(now)
  P -d "$db" -c 'SELECT * FROM personalize.rebuild()' > "log/rebuild_after_ingest_$s.log" 2>&1
  local reb; reb=$(since "$t0")

  report "## Ingest at $s ($nc customers, $np products, $ne events loaded)"
  report ""
  report "Single-row INSERTs: pgbench -M prepared -c 2 -j 2 -T $duration, one 'view' of a uniformly random customer and"
  report "product per transaction (test/bench/insert.pgbench). COPY: $batches batches of 10,000 and of 1,000 events from the"
  report "generator's stream (Zipf products, power-law customers) past the loaded ones, psql \\copy, each batch its own"
  report "transaction; a fresh slice of the stream for every mode."
  report ""
  report "| maintenance | single-row INSERT events/s (2 clients) | COPY 10,000-event batches events/s | COPY 1,000-event batches events/s |"
  report "|---|---:|---:|---:|"
  report "| none (triggers disabled) | ${tps[none]} | ${cps[none]} | ${cps1[none]} |"
  report "| C statement triggers (personalize) | ${tps[c]} | ${cps[c]} | ${cps1[c]} |"
  report "| PL/pgSQL row trigger | ${tps[plpgsql]} | ${cps[plpgsql]} | ${cps1[plpgsql]} |"
  report "| **triggers off / C triggers** | $(div ${tps[none]} ${tps[c]} %.2f) | $(div ${cps[none]} ${cps[c]} %.2f) | $(div ${cps1[none]} ${cps1[c]} %.2f) |"
  report "| **C triggers / PL/pgSQL** (× faster) | $(div ${tps[c]} ${tps[plpgsql]} %.2f) | $(div ${cps[c]} ${cps[plpgsql]} %.2f) | $(div ${cps1[c]} ${cps1[plpgsql]} %.2f) |"
  report ""
  report "rebuild() afterwards (the events inserted with the triggers off): $reb s."
  report ""
}

##############################################################################
# main
##############################################################################
machine
declare -A gen_s rebuild_s
for d in ${sizes//,/ }; do
  case $d in
    OR)
      echo "data: Online Retail" >&2
      load_online_retail
      if has "$parts" load; then
        bench_load
      else
        P -d bench_or -c 'SELECT * FROM personalize.rebuild()' > log/or_rebuild.log 2>&1
      fi
      db=bench_or ;;
    S|M|L)
      echo "data: $d" >&2
      load_synthetic "$d"
      db=bench_$(echo "$d" | tr A-Z a-z) ;;
    *) echo "run.sh: unknown size $d" >&2; exit 2 ;;
  esac
  if has "$parts" latency || has "$parts" storage; then
    prepare_serving "$db"
  fi
  if has "$parts" storage; then bench_storage "$d" "$db"; fi
  if has "$parts" latency; then bench_latency "$d" "$db"; fi
  # ingest runs on the largest synthetic size selected, once
  if has "$parts" ingest && [ "$d" != OR ]; then
    last=$(echo "${sizes//,/ }" | tr ' ' '\n' | grep -v OR | tail -n1)
    if [ "$d" = "$last" ]; then bench_ingest "$d"; fi
  fi
  [ "$d" = OR ] || dropdb "$db"
done

latency_tables
storage_table
if [ ${#gen_s[@]} -gt 0 ]; then
  report "## Synthetic data generation"
  report ""
  report "| size | generate + load + rebuild() s | of which rebuild() s |"
  report "|---|---:|---:|"
  for d in ${sizes//,/ }; do
    [ -n "${gen_s[$d]:-}" ] && report "| $d | ${gen_s[$d]} | ${rebuild_s[$d]:-} |"
  done
  report ""
fi
report "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$figures" ] && command -v gnuplot >/dev/null; then
  # (warnings about a data set without points, e.g. no OR, go to the log)
  if [ -s latency.dat ]; then
    gnuplot -e "datafile='$out/latency.dat'; outfile='$figures/benchmark_latency.png'" "$here/latency.gp" 2>> log/gnuplot.log
  fi
  if [ -s storage.dat ]; then
    gnuplot -e "datafile='$out/storage.dat'; outfile='$figures/benchmark_storage.png'" "$here/storage.gp" 2>> log/gnuplot.log
  fi
fi
echo "results: $out/results.md" >&2
