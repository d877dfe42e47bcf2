#!/bin/bash
# recommend() throughput on a primary alone against a primary plus a hot standby (issue 14,
# part 5), on the same data in one run: Online Retail through the triggers on the primary,
# refresh_neighbors(all_products => true) and refresh_popular() there, then a streaming
# replica from pg_basebackup (test/standby_clusters.sh). pgbench -n -M prepared with
# test/bench/recommend.pgbench (a uniformly random customer with history per call, the
# default variant, k = 10), in rounds that alternate the layouts so the shared machine's
# noise falls on all of them:
#   primary 2       2 clients on the primary
#   primary 1 + standby 1
#   primary 4       4 clients on the primary
#   primary 2 + standby 2
# Prints a markdown table: calls/s per server and in total, p50/p99 (ms, from the
# per-transaction logs, client round trip on localhost included). Also checks that both
# servers answer the same for 500 customers.
#   test/bench/standby.sh [seconds per round, default 15] [rounds, default 3]
# Standalone (starts its own two clusters; uses the installed extension, or a private
# install from $PERSONALIZE_EXTENSION_DESTDIR). pgbench runs on the same machine: on a
# 2-core machine the clients, the primary and the standby share the cores, so the total
# cannot grow with a second server; what the run shows is what a standby call costs against
# a primary call, under the same load.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15}
rounds=${2:-3}
. test/standby_clusters.sh
out=$(mktemp -d)
trap 'sc_stop; rm -rf "$out"' EXIT
[ "$(id -u)" = 0 ] && chown postgres "$out"
qp() { sc_psql "$P" -d bench "$@"; }
qs() { sc_psql "$S" -d bench "$@"; }

sc_primary "max_connections = 30" "shared_buffers = 512MB" "work_mem = 64MB" "jit = off" \
  "max_wal_size = 4GB" "checkpoint_timeout = 30min" || { sc_logs; exit 2; }
qp -d postgres -c 'CREATE DATABASE bench' >/dev/null
qp -c 'CREATE EXTENSION personalize'
t0=$SECONDS
PGHOST=127.0.0.1 PGPORT=$P PGDATABASE=bench bash test/load_online_retail.sh >/dev/null
qp <<'SQL' >/dev/null
SELECT personalize.refresh_neighbors(all_products => true);
SELECT personalize.refresh_popular();
CREATE SCHEMA bench;
CREATE TABLE bench.sample_customers AS
SELECT row_number() OVER (ORDER BY customer_id) AS i, customer_id
FROM (SELECT DISTINCT customer_id FROM personalize.customer_items) c;
ALTER TABLE bench.sample_customers ADD PRIMARY KEY (i);
VACUUM ANALYZE;
CHECKPOINT;
SQL
load_s=$((SECONDS - t0))
sc_standby || { sc_logs; exit 2; }
sc_catch_up 120 || { echo "standby.sh: the standby did not catch up" >&2; exit 2; }
nc=$(qp -c 'SELECT count(*) FROM bench.sample_customers')
same="SET personalize.as_of = '2011-12-10';
SELECT md5(string_agg(r::text, ',' ORDER BY c.i, r.product_id))
FROM bench.sample_customers c, LATERAL personalize.recommend(c.customer_id, NULL, 10) r WHERE c.i <= 500"
if [ "$(qp -c "$same" | tail -n 1)" = "$(qs -c "$same" | tail -n 1)" ]; then same=yes; else same=NO; fi

bench() {  # port clients tag: one pgbench run, per-transaction log in $out/tag.*
  (cd "$out" && pgbench -h 127.0.0.1 -p "$1" -U postgres -n -M prepared -c "$2" -j "$2" -T "$duration" \
     -D n="$nc" -f "$OLDPWD/test/bench/recommend.pgbench" -l --log-prefix="$3" bench > "summary_$3" 2>&1)
}
for port in $P $S; do   # warm both servers' caches
  (cd "$out" && pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c 1 -T 3 -D n="$nc" \
     -f "$OLDPWD/test/bench/recommend.pgbench" bench >/dev/null 2>&1)
done
for r in $(seq 1 "$rounds"); do
  bench "$P" 2 "p2_r$r"
  bench "$P" 1 "p1s1_p_r$r" & bench "$S" 1 "p1s1_s_r$r" & wait
  bench "$P" 4 "p4_r$r"
  bench "$P" 2 "p2s2_p_r$r" & bench "$S" 2 "p2s2_s_r$r" & wait
done

# calls/s and latency percentiles over every round of one tag
stats() {  # tag -> "calls/s p50 p99"
  cat "$out"/"$1"_r*.* 2>/dev/null | awk '{print $3}' | sort -n | awk -v t="$((duration * rounds))" '
    { a[NR] = $1 }
    END { i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++;
          printf "%.0f %.3f %.3f\n", NR / t, a[i50] / 1000, a[i99] / 1000 }'
}
read -r p2 p2_50 p2_99 <<< "$(stats p2)"
read -r a1 a1_50 a1_99 <<< "$(stats p1s1_p)"
read -r b1 b1_50 b1_99 <<< "$(stats p1s1_s)"
read -r p4 p4_50 p4_99 <<< "$(stats p4)"
read -r a2 a2_50 a2_99 <<< "$(stats p2s2_p)"
read -r b2 b2_50 b2_99 <<< "$(stats p2s2_s)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "Online Retail: $nc customers with history; load + refresh ${load_s} s; $rounds rounds of $duration s per layout;"
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(qp -c 'SHOW server_version'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "answers for 500 customers identical on both servers: $same"
echo
echo "| layout | clients | primary calls/s | standby calls/s | total calls/s | total / primary alone, same clients | primary p50 / p99 ms | standby p50 / p99 ms |"
echo "|---|---:|---:|---:|---:|---:|---|---|"
echo "| primary alone | 2 | $p2 | | $p2 | 1.00 | $p2_50 / $p2_99 | |"
echo "| primary + standby | 1 + 1 | $a1 | $b1 | $((a1 + b1)) | $(ratio $((a1 + b1)) "$p2") | $a1_50 / $a1_99 | $b1_50 / $b1_99 |"
echo "| primary alone | 4 | $p4 | | $p4 | 1.00 | $p4_50 / $p4_99 | |"
echo "| primary + standby | 2 + 2 | $a2 | $b2 | $((a2 + b2)) | $(ratio $((a2 + b2)) "$p4") | $a2_50 / $a2_99 | $b2_50 / $b2_99 |"
