#!/bin/bash
# 0.1.0 against this tree, side by side in one run: two throw-away clusters started together,
# each loading its own build through Debian's extension_destdir (0.1.0 built from the commit
# that froze it). Both load Online Retail through the triggers (one statement), run a full
# CALL personalize.refresh(), then pgbench measures recommend() in alternating rounds (so
# that the machine's noise falls on both alike). Last, this tree's live fallback: the stored
# lists deleted and every product dirty, as after a pg_restore, and what 0.1.0 answers then.
# Prints Markdown to stdout; raw logs in --out.
#   test/bench/versions.sh [--duration 10] [--rounds 3] [--out test/bench/out/versions]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
duration=10 rounds=3 out=$root/test/bench/out/versions
base=5d5c08e   # the commit that froze 0.1.0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "versions.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
PGC=/usr/lib/postgresql/15/bin/pg_config

if [ -z "${VERSIONS_INSIDE:-}" ]; then
  rm -rf "$out"; mkdir -p "$out/src010"
  git -C "$root" archive "$base" | tar -x -C "$out/src010"
  (cd "$out/src010" && make -s PG_CONFIG=$PGC >/dev/null && make -s install PG_CONFIG=$PGC DESTDIR="$out/v010" >/dev/null)
  (cd "$root" && make -s PG_CONFIG=$PGC >/dev/null && make -s install PG_CONFIG=$PGC DESTDIR="$out/v020" >/dev/null)
  export VERSIONS_INSIDE=1 OUT=$out DURATION=$duration ROUNDS=$rounds
  opts=(-o shared_buffers=1GB -o work_mem=64MB -o maintenance_work_mem=512MB -o max_wal_size=8GB -o jit=off)
  ports=()
  for p in $(seq 5461 5499); do
    ss -Hltn "sport = :$p" | grep -q . || ports+=("$p")
    [ ${#ports[@]} = 2 ] && break
  done
  exec pg_virtualenv -t -c "-p ${ports[0]}" "${opts[@]}" -o extension_destdir="$out/v010" bash -c '
    export A_PORT=$PGPORT A_HOST=$PGHOST A_PASSWORD=$PGPASSWORD
    exec pg_virtualenv -t -c "-p '"${ports[1]}"'" "$@" -o extension_destdir="$OUT/v020" bash "'"$0"'"' _ "${opts[@]}"
fi

# --- inside: A = 0.1.0 (A_PORT), B = this tree (PGPORT) --------------------------------------
B_PORT=$PGPORT B_HOST=$PGHOST
cd "$OUT"; mkdir -p log
A() { PGPORT=$A_PORT PGHOST=$A_HOST PGPASSWORD=$A_PASSWORD "$@"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d bench "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
pct() { cat "$@" | awk '{print $3}' | sort -n | awk '{ a[NR] = $1 } END {
  i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999); printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

for side in A B; do
  if [ $side = A ]; then run=A; else run=; fi
  $run createdb bench
  $run q -c 'CREATE EXTENSION personalize'
  echo "$side: $($run q -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")" > "log/version_$side"
done
echo "| | 0.1.0 (A) | this tree (B) | B / A |"
echo "|---|---|---|---|"
echo "| extension version | $(cut -d' ' -f2 log/version_A) | $(cut -d' ' -f2 log/version_B) | |"

# load, then a full refresh, alternately
t=$(now); A env PGDATABASE=bench bash "$root/test/load_online_retail.sh" > log/load_A 2>&1; la=$(since "$t")
t=$(now); PGDATABASE=bench bash "$root/test/load_online_retail.sh" > log/load_B 2>&1; lb=$(since "$t")
echo "| Online Retail through the triggers, one statement (s) | $la | $lb | $(ratio "$la" "$lb") |"
t=$(now); A q -c 'CALL personalize.refresh()'; ra=$(since "$t")
t=$(now); q -c 'CALL personalize.refresh()'; rb=$(since "$t")
echo "| full CALL refresh() after the load (s) | $ra | $rb | $(ratio "$ra" "$rb") |"
for side in A B; do
  if [ $side = A ]; then run=A; else run=; fi
  $run q <<'SQL'
CREATE SCHEMA bench;
CREATE TABLE bench.sample_customers AS
SELECT row_number() OVER (ORDER BY customer_id)::integer AS i, customer_id
FROM personalize.customer_state WHERE items > 0;
ALTER TABLE bench.sample_customers ADD PRIMARY KEY (i);
VACUUM ANALYZE;
SQL
done
n=$(q -c 'SELECT count(*) FROM bench.sample_customers')
same=$(for side in A B; do if [ $side = A ]; then run=A; else run=; fi
  $run q -c "SET personalize.as_of = '2011-12-10'" -c "SELECT md5(string_agg(r::text, ',' ORDER BY c.i, r.product_id)) FROM bench.sample_customers c, LATERAL personalize.recommend(c.customer_id, 'hybrid', 10) r WHERE c.i <= 500"; done | sort -u | wc -l)
echo "| recommend() answers for 500 customers identical | | | $([ "$same" = 1 ] && echo yes || echo NO) |"

# recommend() latency, alternating rounds
bench() {   # $1 side, $2 label
  local run=; [ "$1" = A ] && run=A
  $run pgbench -n -M prepared -f "$here/recommend.pgbench" -D n="$n" -c 1 -T "$duration" \
    -l --log-prefix="log/lat_$2" bench > "log/pgbench_$2.txt" 2>&1
}
bench A warmA; bench B warmB; rm -f log/lat_warm*
for r in $(seq 1 "$ROUNDS"); do bench A "A_$r"; bench B "B_$r"; done
read -r a50 a99 an <<< "$(pct log/lat_A_*)"
read -r b50 b99 bn <<< "$(pct log/lat_B_*)"
echo "| recommend() p50 (ms), stored lists | $a50 | $b50 | $(ratio "$a50" "$b50") |"
echo "| recommend() p99 (ms), stored lists | $a99 | $b99 | $(ratio "$a99" "$b99") |"
echo "| calls measured | $an | $bn | |"

# as after a restore: no stored list, every product dirty
for side in A B; do
  if [ $side = A ]; then run=A; else run=; fi
  $run q <<'SQL'
DELETE FROM personalize.neighbors;
DELETE FROM personalize.popular_scores;
INSERT INTO personalize.dirty_products (product_id) SELECT product_id FROM personalize.item_counts ON CONFLICT DO NOTHING;
VACUUM ANALYZE personalize.neighbors, personalize.popular_scores, personalize.dirty_products;
SQL
  $run q -c "SELECT avg(cnt)::numeric(6,2) FROM (SELECT count(r.product_id) AS cnt FROM bench.sample_customers c LEFT JOIN LATERAL personalize.recommend(c.customer_id, 'hybrid', 10) r ON true WHERE c.i % 10 = 0 GROUP BY c.i) s" > "log/rows_$side"
done
echo "| rows per recommend(k = 10) with no stored list (every 10th customer) | $(cat log/rows_A) | $(cat log/rows_B) | |"
for r in $(seq 1 "$ROUNDS"); do bench B "L_$r"; done
read -r l50 l99 ln <<< "$(pct log/lat_L_*)"
echo "| recommend() p50 / p99 (ms) with no stored list: live lists | | $l50 / $l99 | $(ratio "$b50" "$l50") / $(ratio "$b99" "$l99") against stored |"
echo
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(psql -X -At -c 'SELECT version()' | cut -d, -f1); this tree at $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src sql || echo ' (with uncommitted changes)'); 0.1.0 from $base; pgbench -M prepared -c 1, $ROUNDS alternating rounds of $DURATION s per side; $(date -u '+%Y-%m-%d %H:%M UTC')."
