#!/bin/bash
# The EASE build at size M (issue 13, item 6): the synthetic generator's M data (100,000
# customers, 10,000 products, 2,000,000 events, test/bench/generate.sql), CALL
# refresh_ease() with the defaults (personalize.ease_products 10,000: every product), its
# phases and the backend's peak memory (VmHWM); then recommend() latency with the ease
# variant against cooccurrence and hybrid, side by side in one run (pgbench -M prepared,
# 1 client, a uniformly random customer with history per call; p50/p99 from the
# per-transaction log). Markdown on stdout.
#   pg_virtualenv -t -o shared_preload_libraries=personalize bash test/bench/ease_m.sh [seconds per run, default 15]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15}
db=personalize_ease_m
work=$(mktemp -d)
trap 'rm -rf "$work"; dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
dropdb --if-exists "$db" >/dev/null 2>&1; createdb "$db"
q -c 'CREATE EXTENSION personalize'
t0=$(date +%s)
psql -X -q -d "$db" -v size=M -f test/bench/generate.sql > /dev/null
q -c 'SELECT personalize.refresh_popular()' > /dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg); M generated and rebuilt in $(( $(date +%s) - t0 )) s"
q -c "SELECT format('model: %s customers, %s products, %s pairs', customers, products, pairs) FROM personalize.model_stats"
echo
# the build, with its NOTICEs (phases) and the backend's peak memory
psql -X -v ON_ERROR_STOP=1 -d "$db" > "$work/build.txt" 2>&1 <<'SQL'
SELECT pg_backend_pid() AS pid \gset
\setenv BACKEND :pid
\timing on
CALL personalize.refresh_ease();
\timing off
\! grep -E 'VmHWM|VmRSS' /proc/$BACKEND/status
SELECT 'run: ' || items || ' lists, details ' || details::text FROM personalize.maintenance_runs WHERE job = 'refresh_ease' ORDER BY run_id DESC LIMIT 1;
SQL
echo '```'
grep -E 'NOTICE|Time:|Vm|run:' "$work/build.txt" | sed -e 's/^psql:[^ ]* //'
echo '```'
q -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
q -c "CREATE TABLE public.bench_customers AS SELECT row_number() OVER (ORDER BY customer_id) AS i, customer_id
      FROM (SELECT DISTINCT customer_id FROM personalize.customer_items) c" -c 'ALTER TABLE public.bench_customers ADD PRIMARY KEY (i)'
nc=$(q -c 'SELECT count(*) FROM public.bench_customers')
pct() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { a[NR] = $1 }
    END { i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++;
          printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'
}
echo
echo "| variant | p50 ms | p99 ms | calls | p99 / cooccurrence p99 |"
echo "|---|---:|---:|---:|---:|"
base99=''
for v in cooccurrence ease hybrid; do
  cat > "$work/$v.sql" <<SQL
\set i random(1, $nc)
SELECT r.* FROM public.bench_customers s, personalize.recommend(s.customer_id, '$v') r WHERE s.i = :i;
SQL
  pgbench -n -M prepared -f "$work/$v.sql" -c 1 -T 2 "$db" > /dev/null 2>&1
  (cd "$work" && pgbench -n -M prepared -f "$work/$v.sql" -c 1 -T "$duration" -l --log-prefix="lat_$v" "$db" > /dev/null 2>&1)
  read -r p50 p99 n <<< "$(pct "$work"/lat_"$v".*)"
  [ -z "$base99" ] && base99=$p99
  echo "| $v | $p50 | $p99 | $n | $(awk -v a="$p99" -v b="$base99" 'BEGIN { printf "%.2f", a / b }') |"
done
