#!/bin/bash
# Cost against size (issue 14, part 4): the synthetic data sets S, M and L of
# test/bench/generate.sql, each through the same phases on one throw-away cluster:
#
#   1. generate   the events into an unlogged staging table (bench.events), plus the
#                 products and customers (pure SQL, deterministic)
#   2. load       the events in time order in COPY batches (--batch events each, each
#                 committed) through the model triggers: COPY … TO STDOUT | COPY … FROM STDIN
#   3. fold       fold_deltas(): every pending count change into the base counts
#   4. lists      refresh_neighbors() in two sessions at once (disjoint batches of dirty
#                 products, both cores) + refresh_popular()
#   5. rebuild    rebuild() from the history (its five phases from its NOTICEs); the counts
#                 and lists it writes are compared with those of phases 2-4
#   6. recommend  pgbench -M prepared -c 1 -T --duration, a random customer with history
#
# For each phase: seconds, the peak private memory of the server's processes (RssAnon
# summed over the postmaster's children, sampled every 0.5 s) and the temporary file bytes
# it wrote (pg_stat_database). Prints Markdown; raw logs, sizes.dat and the plot go to --out.
#
#   test/bench/sizes.sh [--sizes S,M,L] [--batch 100000] [--duration 30] [--out dir] [--port N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sizes=S,M,L
batch=100000
duration=30
out=$root/test/bench/out/sizes
port=
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$(echo "$2" | tr a-z A-Z); shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) echo "usage: $0 [--sizes S,M,L] [--batch n] [--duration s] [--out dir] [--port n]" >&2; exit 2 ;;
  esac
done

if [ -z "${SIZES_INSIDE:-}" ]; then
  mkdir -p "$out"
  make -s -C "$root" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
  rm -rf "$out/install"
  make -s -C "$root" install DESTDIR="$out/install" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
  if [ -z "$port" ]; then
    for p in $(seq 5461 5499); do ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }; done
  fi
  export SIZES_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=4GB -o work_mem=64MB -o maintenance_work_mem=2GB \
    -o max_wal_size=16GB -o checkpoint_timeout=30min -o jit=off -o max_connections=30 \
    -o extension_destdir="$out/install" \
    bash "$0" --sizes "$sizes" --batch "$batch" --duration "$duration" --out "$out" --port "$port"
fi

cd "$out"
mkdir -p log
rm -f log/*
exec 3>&1 >> log/stdout.log 2>&1
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
Q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b == 0) print "-"; else printf f, a / b }'; }
report() { echo "$*" >&3; }
progress() { echo "$(date -u +%H:%M:%S) $*" >&3; }

# p50, p99 (ms) and count from pgbench per-transaction logs (3rd field: microseconds)
pct() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { a[NR] = $1 }
    END { if (NR == 0) { print "- - 0"; exit }
          i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; if (i50 < NR * 0.50) i50++;
          i99 = int(NR * 0.99); if (i99 < 1) i99 = 1; if (i99 < NR * 0.99) i99++;
          printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'
}

# the memory sampler: the peak over a phase of RssAnon summed over the postmaster's children
postmaster=$(awk '/^PPid:/ { print $2 }' "/proc/$(Q -c 'SELECT pg_backend_pid()')/status")
sampler_start() {
  : > log/mem_now
  ( peak=0
    while :; do
      kb=0
      for pid in $(pgrep -P "$postmaster"); do
        v=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        kb=$((kb + ${v:-0}))
      done
      [ "$kb" -gt "$peak" ] && { peak=$kb; echo "$peak" > log/mem_now; }
      sleep 0.5
    done ) &
  sampler=$!
}
sampler_stop() {    # prints the peak in MB
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  awk '{ printf "%.0f", $1 / 1024 }' log/mem_now
}
temp_bytes() { Q -d "$1" -c 'SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()'; }

# one phase: $1 = size, $2 = phase, $3 = db, then the command; sets secs/mem/tmp[size.phase]
declare -A secs mem tmp
phase() {
  local s=$1 ph=$2 db=$3 t0 tb
  shift 3
  progress "$s: $ph"
  tb=$(temp_bytes "$db")
  sampler_start
  t0=$(now)
  "$@"
  secs[$s.$ph]=$(since "$t0")
  mem[$s.$ph]=$(sampler_stop)
  sleep 1   # pg_stat_database is updated when the backends report
  tmp[$s.$ph]=$(awk -v a="$tb" -v b="$(temp_bytes "$db")" 'BEGIN { printf "%.0f", (b - a) / 1048576 }')
  progress "$s: $ph ${secs[$s.$ph]} s, peak ${mem[$s.$ph]} MB, temp ${tmp[$s.$ph]} MB"
}

generate() {    # $1 = size, $2 = db
  P -d "$2" -v size="$1" -v load=off -f "$here/generate.sql" > "log/generate_$1.log"
  P -d "$2" -v size="$1" >> "log/generate_$1.log" <<'SQL'
SELECT customers AS nc, products AS np, events AS ne FROM bench.size_of(:'size') \gset
INSERT INTO personalize.products (product_id, sku, name, category, price, created_at)
SELECT p, 'P' || lpad(p::text, 6, '0'), 'product ' || p, 'category ' || ((p - 1) % bench.categories(:np) + 1),
       round((1 + 99 * bench.u(p, 7, 42))::numeric, 2), timestamptz '2023-12-01 00:00:00+00'
FROM generate_series(1, :np) AS p;
INSERT INTO personalize.customers (customer_id, country, created_at)
SELECT c, (ARRAY['GB', 'DE', 'FR', 'NL', 'ES', 'IT'])[1 + floor(bench.u(c, 8, 42) * 6)::integer],
       timestamptz '2023-12-01 00:00:00+00'
FROM generate_series(1, :nc) AS c;
CREATE UNLOGGED TABLE bench.events AS
SELECT row_number() OVER () AS seq, e.* FROM bench.gen_events(1, :ne, :nc, :np, :ne, 42) e;
CREATE INDEX ON bench.events (seq);
VACUUM ANALYZE personalize.products, personalize.customers, bench.events;
SQL
}

load() {    # $1 = db: the events in COPY batches of $batch, in order, each committed
  local n first
  n=$(Q -d "$1" -c 'SELECT max(seq) FROM bench.events')
  for ((first = 1; first <= n; first += batch)); do
    Q -d "$1" -c "COPY (SELECT customer_id, product_id, event_type, quantity, occurred_at FROM bench.events
                        WHERE seq BETWEEN $first AND $((first + batch - 1)) ORDER BY seq) TO STDOUT" |
      P -d "$1" -c 'COPY personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at) FROM STDIN'
  done
}

lists() {    # $1 = db: two sessions refreshing disjoint batches of the dirty products
  P -d "$1" -c 'SELECT personalize.refresh_neighbors()' > log/lists_a.log 2>&1 &
  local a=$!
  P -d "$1" -c 'SELECT personalize.refresh_neighbors()' > log/lists_b.log 2>&1
  wait "$a"
  P -d "$1" -c 'SELECT personalize.refresh_popular()' > /dev/null
}

# a fingerprint of the folded counts and of the co-occurrence lists
fingerprint() {
  Q -d "$1" <<'SQL'
SELECT (SELECT count(*) || '/' || sum(customers) || '/' || sum(hashint8(product_a * 1000003 + product_b)::numeric * customers)
        FROM personalize.pair_counts_base)
    || ' ' || (SELECT count(*) || '/' || sum(customers) FROM personalize.item_counts_base)
    || ' ' || (SELECT md5(string_agg(measure || product_id || neighbor_ids::text || scores::text, ',' ORDER BY measure, product_id))
               FROM personalize.neighbors WHERE measure NOT IN ('content', 'ease'))
SQL
}

rebuild() { P -d "$1" -c 'SELECT * FROM personalize.rebuild()' > "log/rebuild_$2.log" 2>&1; }

prepare_serving() {
  P -d "$1" > /dev/null <<'SQL'
DROP TABLE IF EXISTS bench.sample_customers;
CREATE TABLE bench.sample_customers AS
SELECT row_number() OVER (ORDER BY customer_id)::integer AS i, customer_id
FROM personalize.customer_state WHERE items > 0;
ALTER TABLE bench.sample_customers ADD PRIMARY KEY (i);
VACUUM ANALYZE;
CHECKPOINT;
SQL
}

serve() {    # $1 = db, $2 = size
  local n
  n=$(Q -d "$1" -c 'SELECT count(*) FROM bench.sample_customers')
  pgbench -n -M prepared -f "$here/recommend.pgbench" -D n="$n" -c 1 -T 5 "$1" > /dev/null 2>&1
  rm -f log/lat_"$2".*
  pgbench -n -M prepared -f "$here/recommend.pgbench" -D n="$n" -c 1 -T "$duration" \
    -l --log-prefix="log/lat_$2" "$1" > "log/pgbench_$2.txt" 2>&1
}

report "## Cost against size: S, M and L (issue 14), $(date -u '+%Y-%m-%d %H:%M UTC')"
report ""
report "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc); memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
report "- settings: $(Q -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_wal_size', 'fsync', 'synchronous_commit')")"
report "- personalize: commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || echo ' with uncommitted changes'); COPY batches of $batch events"
report "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
report ""
: > sizes.dat
: > rows.md
: > mem.md
for s in ${sizes//,/ }; do
  db=bench_$(echo "$s" | tr A-Z a-z)
  dropdb --if-exists "$db"; createdb "$db"
  P -d "$db" -c 'CREATE EXTENSION personalize'
  phase "$s" generate "$db" generate "$s" "$db"
  phase "$s" load "$db" load "$db"
  pending=$(Q -d "$db" -c 'SELECT coalesce(sum(entries), 0) FROM personalize.model_deltas')
  deltas_mb=$(Q -d "$db" -c "SELECT pg_total_relation_size('personalize.model_deltas') / 1048576")
  phase "$s" fold "$db" P -d "$db" -c 'SELECT personalize.fold_deltas()'
  phase "$s" lists "$db" lists "$db"
  before=$(fingerprint "$db")
  phase "$s" rebuild "$db" rebuild "$db" "$s"
  after=$(fingerprint "$db")
  same=$([ "$before" = "$after" ] && echo yes || echo "**no**")
  [ "$same" = yes ] || echo "$s: before $before, after $after" >&2
  prepare_serving "$db"
  phase "$s" recommend "$db" serve "$db" "$s"
  read -r p50 p99 calls <<< "$(pct log/lat_"$s".*)"
  read -r events pairs ibytes pbytes mbytes <<< "$(Q -d "$db" -F ' ' -c "
    SELECT (SELECT count(*) FROM personalize.interactions), (SELECT count(*) FROM personalize.pair_counts_base),
           pg_total_relation_size('personalize.interactions'), pg_total_relation_size('personalize.pair_counts_base'),
           (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'personalize' AND c.relkind = 'r' AND c.relname IN
                  ('customer_items', 'customer_state', 'item_counts_base', 'pair_counts_base', 'neighbors', 'dirty_products', 'model_deltas'))")"
  phases=$(grep -o 'rebuild: [1-4]/5[^(]*([0-9.]* s)' "log/rebuild_$s.log" | grep -v 'pairs:' | sed 's/.*(\([0-9.]*\) s)/\1/' | paste -sd/)
  echo "$s $events $pairs ${secs[$s.generate]} ${secs[$s.load]} ${secs[$s.fold]} ${secs[$s.lists]} ${secs[$s.rebuild]} ${mem[$s.load]} ${mem[$s.fold]} ${mem[$s.lists]} ${mem[$s.rebuild]} $p50 $p99 $mbytes" >> sizes.dat
  echo "| $s | $events | $pairs | ${secs[$s.generate]} | ${secs[$s.load]} ($(div "$events" "${secs[$s.load]}" %.0f)/s) | ${secs[$s.fold]} | ${secs[$s.lists]} | $(awk -v a="${secs[$s.load]}" -v b="${secs[$s.fold]}" -v c="${secs[$s.lists]}" 'BEGIN { printf "%.1f", a + b + c }') | ${secs[$s.rebuild]} ($phases) | $same | $p50 / $p99 ($calls) |" >> rows.md
  echo "| $s | ${mem[$s.generate]} / ${tmp[$s.generate]} | ${mem[$s.load]} / ${tmp[$s.load]} | ${mem[$s.fold]} / ${tmp[$s.fold]} | ${mem[$s.lists]} / ${tmp[$s.lists]} | ${mem[$s.rebuild]} / ${tmp[$s.rebuild]} | $pending ($deltas_mb MB) | $((ibytes / 1048576)) | $((pbytes / 1048576)) ($(div "$pbytes" "$pairs" %.0f) B/pair) | $((mbytes / 1048576)) |" >> mem.md
  [ "$s" = L ] || dropdb "$db"
done

report "| size | events | pairs | generate s | load through the triggers s (events/s) | fold s | lists s (2 sessions) | = load + refresh s | rebuild() s (phases 1/2/3/4) | refresh = rebuild | recommend() p50 / p99 ms (calls) |"
report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
cat rows.md >&3
report ""
report "Peak private memory of the server's processes (MB) / temporary files written (MB) per phase, and storage:"
report ""
report "| size | generate | load | fold | lists | rebuild() | pending changes after the load (model_deltas) | interactions MB | pair_counts MB | model MB |"
report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
cat mem.md >&3
rm -f mem.md
if command -v gnuplot > /dev/null; then
  gnuplot -e "datafile='$out/sizes.dat'; outfile='$out/sizes.png'" "$here/sizes.gp" && progress "plot: $out/sizes.png"
fi
