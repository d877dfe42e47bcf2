#!/bin/bash
# Measure the effect of the fixes proposed under "Findings" in docs/benchmarks.md, side by
# side in one throw-away cluster, without touching src/: a patched copy of the extension is
# built in a temporary directory and only the trigger function is pointed at it.
#
#   test/bench/findings.sh [--size M] [--out test/bench/out/findings] [--port 5452]
#
# 1. dirty-product dedup once per statement instead of once per customer (src/trigger.c; fixed
#    upstream in 0a536c1, so this part is skipped when the patch no longer applies):
#    COPY batches of 10,000 and 1,000 generated events at --size, each in BEGIN ... ROLLBACK
#    so that every run starts from the same model; runs alternate original / patched.
# 2. pair_counts with fillfactor 70 (HOT updates): Online Retail through the C triggers, one
#    statement per month, default against fillfactor 70.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
size=M
out=$root/test/bench/out/findings
port=
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "findings.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "${BENCH_INSIDE:-}" ]; then
  rm -rf "$out/install" "$out/patched"
  (cd "$root" && make -s >/dev/null && make -s install DESTDIR="$out/install" >/dev/null)
  # the patched copy
  mkdir -p "$out/patched"
  cp -r "$root/src" "$root/sql" "$root/Makefile" "$root/personalize.control" "$out/patched/"
  rm -f "$out/patched"/src/*.o "$out/patched"/src/*.bc "$out/patched"/*.so
  if python3 - "$out/patched/src/trigger.c" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
def rep(old, new):
    global s
    if s.count(old) != 1:
        sys.exit("findings.sh: the dirty-products patch does not apply to this src/trigger.c (fixed upstream in 0a536c1?): part 1 skipped")
    s = s.replace(old, new)
rep('''	int64	   *dirty = NULL;
	int			ndirty = 0;''', '''	int64	   *dirty = NULL;
	int			ndirty = 0;
	int			dirtycap = 0;''')
rep('''			if (ndirty == 0)
				dirty = palloc(sizeof(int64) * (need + 64));
			else
				dirty = repalloc_huge(dirty, sizeof(int64) * (ndirty + need + 64));''', '''			if (dirtycap == 0)
			{
				dirtycap = need + 1024;
				dirty = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * dirtycap);
			}
			else if (ndirty + need > dirtycap)
			{
				dirtycap = Max(dirtycap * 2, ndirty + need + 1024);
				dirty = repalloc_huge(dirty, sizeof(int64) * dirtycap);
			}''')
rep('''			if (ndirty > 1)
			{
				/* keep the buffer from growing with repeats */''', '''			if (ndirty > (1 << 22))
			{
				/* keep the buffer from growing with repeats (rare: deduplicated below) */''')
rep('''	if (ndirty > 0)
	{''', '''	if (ndirty > 1)
	{
		/* deduplicate once for the statement, not once per customer */
		int			out = 1;

		qsort(dirty, ndirty, sizeof(int64), cmp_int64);
		for (int k = 1; k < ndirty; k++)
			if (dirty[k] != dirty[out - 1])
				dirty[out++] = dirty[k];
		ndirty = out;
	}
	if (ndirty > 0)
	{''')
open(p, "w").write(s)
PY
  then
    (cd "$out/patched" && make -s >/dev/null)
  fi
  if [ -z "$port" ]; then
    for p in $(seq 5452 5499); do ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }; done
  fi
  export BENCH_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=2GB -o work_mem=64MB -o maintenance_work_mem=1GB \
    -o max_wal_size=8GB -o checkpoint_timeout=30min -o jit=off -o max_connections=20 \
    -o extension_destdir="$out/install" \
    bash "$0" --size "$size" --out "$out" --port "$port"
fi

cd "$out"
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
Q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
trigger_lib() {    # $1 = db, $2 = path of the library (or the original '$libdir/personalize')
  P -d "$1" -c "CREATE OR REPLACE FUNCTION personalize._interactions_trigger() RETURNS trigger
                LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS '$2', 'personalize_interactions_trigger'"
}
echo "## Findings: measured effects ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
echo

# 1. dirty-products dedup (only while src/trigger.c still has the per-customer deduplication)
if [ -f "$out/patched/personalize.so" ]; then
db=f_$(echo "$size" | tr A-Z a-z)
createdb "$db"
P -d "$db" -c 'CREATE EXTENSION personalize'
P -d "$db" -v size="$size" -f "$here/generate.sql" > generate.log 2>&1
read -r nc np ne <<< "$(Q -d "$db" -F ' ' -c "SELECT customers, products, events FROM bench.size_of('$size')")"
Q -d "$db" -c "\copy (SELECT * FROM bench.gen_events($((ne + 1)), 10000, $nc, $np, $ne)) TO '$out/b10k.csv' csv"
Q -d "$db" -c "\copy (SELECT * FROM bench.gen_events($((ne + 10001)), 1000, $nc, $np, $ne)) TO '$out/b1k.csv' csv"
copy_ms() {    # $1 = file -> ms of the COPY (in BEGIN ... ROLLBACK, a fresh session)
  psql -X -v ON_ERROR_STOP=1 -d "$db" -c '\timing on' -c 'BEGIN' \
    -c "\\copy personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at) FROM '$1' csv" \
    -c 'ROLLBACK' | awk '/^Time:/ { t[++n] = $2 } END { printf "%.0f", t[2] }'
}
echo "| statement | original ms (3 runs) | dedup once per statement ms (3 runs) | × faster (medians) |"
echo "|---|---|---|---:|"
for f in b10k b1k; do
  o=() p=()
  for r in 1 2 3; do
    trigger_lib "$db" '$libdir/personalize'; o+=("$(copy_ms "$out/$f.csv")")
    trigger_lib "$db" "$out/patched/personalize.so"; p+=("$(copy_ms "$out/$f.csv")")
  done
  mo=$(printf '%s\n' "${o[@]}" | sort -n | sed -n 2p); mp=$(printf '%s\n' "${p[@]}" | sort -n | sed -n 2p)
  echo "| COPY of $([ $f = b10k ] && echo 10,000 || echo 1,000) events at $size | ${o[*]} | ${p[*]} | $(awk -v a="$mo" -v b="$mp" 'BEGIN { printf "%.2f", a / b }') |"
done
trigger_lib "$db" '$libdir/personalize'
# single-row inserts, 2 clients
for lib in original patched; do
  [ $lib = original ] && trigger_lib "$db" '$libdir/personalize' || trigger_lib "$db" "$out/patched/personalize.so"
  tps=$(pgbench -n -M prepared -f "$here/insert.pgbench" -D nc="$nc" -D np="$np" -c 2 -j 2 -T 10 "$db" 2>&1 | awk '/^tps = / { printf "%.0f", $3 }')
  echo "| single-row INSERT, 2 clients, 10 s, $lib | $tps events/s | | |"
done
trigger_lib "$db" '$libdir/personalize'
dropdb "$db"
echo
fi

# 2. pair_counts fillfactor
createdb f_or
P -d f_or -c 'CREATE EXTENSION personalize'
PGDATABASE=f_or bash "$root/test/load_online_retail.sh" > or_loader.log 2>&1
P -d f_or <<'SQL'
CREATE SCHEMA bench;
CREATE TABLE bench.or_events AS
SELECT i.interaction_id AS seq, i.customer_id, i.product_id, i.event_type, i.quantity, i.occurred_at,
       date_trunc('month', i.occurred_at AT TIME ZONE 'Europe/London') AS month
FROM personalize.interactions i ORDER BY i.interaction_id;
CREATE PROCEDURE bench.by_month() LANGUAGE plpgsql AS $$
DECLARE
    m timestamp;
BEGIN
    FOR m IN SELECT DISTINCT e.month FROM bench.or_events e ORDER BY 1 LOOP
        INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
        SELECT e.customer_id, e.product_id, e.event_type, e.quantity, e.occurred_at
        FROM bench.or_events e WHERE e.month = m ORDER BY e.seq;
        COMMIT;
    END LOOP;
END $$;
SQL
echo "| Online Retail through the C triggers, one statement per month | seconds | pair_counts MB after | HOT share of pair updates |"
echo "|---|---:|---:|---:|"
for ff in 100 70 100 70; do
  P -d f_or -c 'TRUNCATE personalize.interactions' -c "ALTER TABLE personalize.pair_counts SET (fillfactor = $ff)" -c 'CHECKPOINT'
  before=$(Q -d f_or -F ' ' -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'personalize.pair_counts'::regclass")
  sleep 1
  t0=$(now); P -d f_or -c 'CALL bench.by_month()'; s=$(since "$t0")
  sleep 1
  after=$(Q -d f_or -F ' ' -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'personalize.pair_counts'::regclass")
  mb=$(Q -d f_or -c "SELECT round(pg_total_relation_size('personalize.pair_counts_base') / 1048576.0, 1)")
  hot=$(awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " "); u = y[1] - x[1]; h = y[2] - x[2]; if (u > 0) printf "%.0f%%", 100 * h / u; else print "-" }')
  echo "| fillfactor $ff | $s | $mb | $hot |"
done
P -d f_or -c 'ALTER TABLE personalize.pair_counts RESET (fillfactor)'
dropdb f_or
