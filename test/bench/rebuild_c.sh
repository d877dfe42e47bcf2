#!/bin/bash
# rebuild() with its pair phase in C (issue 14, part 4) against the same rebuild() with the
# SQL self-join it replaced (--with-sql) and with _rebuild_pairs() forced onto its INSERT path
# (a target that is not empty: one sentinel row, deleted after the call), in one run, on the
# same data: each phase's seconds (rebuild()'s
# NOTICEs) and the backend's peak memory (/proc/<pid>/status sampled every 0.1 s: VmHWM, the
# peak resident set including the shared buffers it touched, and the largest RssAnon, its
# private memory). Both runs of a data set must leave the same pair counts.
#   test/bench/rebuild_c.sh [--sizes OR,M,L] [--port 5851] [--install DIR] [--out DIR] [--with-sql]
# The extension is taken from DIR (a private `make install DESTDIR=DIR`, default .inst of the
# worktree). Cluster settings as test/bench/run.sh. Prints Markdown to stdout and $out/rebuild_c.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sizes=OR,M port=5851 install=$root/.inst out=$here/out/rebuild_c with_sql=
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) sizes=$(echo "$2" | tr a-z A-Z); shift 2 ;;
    --port) port=$2; shift 2 ;;
    --install) install=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --with-sql) with_sql=--with-sql; shift ;;
    *) echo "rebuild_c.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
if [ -z "${BENCH_INSIDE:-}" ]; then
  export BENCH_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=2GB -o work_mem=64MB -o maintenance_work_mem=1GB \
    -o max_wal_size=8GB -o checkpoint_timeout=30min -o jit=off -o max_connections=20 \
    -o extension_destdir="$install" \
    bash "$0" --sizes "$sizes" --port "$port" --install "$install" --out "$out" $with_sql
fi
report() { echo "$*" | tee -a "$out/rebuild_c.md"; }
: > "$out/rebuild_c.md"
P() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# bench.rebuild_sql(): rebuild() as it is, with phase 3 put back to the SQL self-join
old_rebuild() {
  P -d "$1" <<'SQL'
CREATE SCHEMA IF NOT EXISTS bench;
DO $$
DECLARE
    def text := pg_get_functiondef('personalize.rebuild(integer)'::regprocedure);
    c_call text := $c$n_pairs := personalize._rebuild_pairs('personalize.pair_counts_base');$c$;
    sql_join text := $j$INSERT INTO personalize.pair_counts_base (product_a, product_b, customers)
    SELECT a.product_id, b.product_id, count(*)
    FROM personalize.customer_items a
    JOIN personalize.customer_items b ON b.customer_id = a.customer_id AND b.product_id > a.product_id
    WHERE a.in_model AND b.in_model
    GROUP BY a.product_id, b.product_id
    ORDER BY a.product_id, b.product_id;
    GET DIAGNOSTICS n_pairs = ROW_COUNT;$j$;
    -- a target that is not empty (one sentinel row, deleted after the call): the INSERT path
    spi_call text := $s$INSERT INTO personalize.pair_counts_base VALUES (-9223372036854775808, -9223372036854775807, 1);
    n_pairs := personalize._rebuild_pairs('personalize.pair_counts_base');
    DELETE FROM personalize.pair_counts_base WHERE product_a = -9223372036854775808;$s$;
    f text;
BEGIN
    IF position(c_call IN def) = 0 THEN
        RAISE EXCEPTION 'rebuild() does not call _rebuild_pairs() as expected';
    END IF;
    FOREACH f IN ARRAY ARRAY['sql', 'spi'] LOOP
        EXECUTE replace(replace(replace(def, c_call, CASE f WHEN 'sql' THEN sql_join ELSE spi_call END),
                                'FUNCTION personalize.rebuild(', 'FUNCTION bench.rebuild_' || f || '('),
                        'rebuild.max_items_per_customer', 'rebuild_' || f || '.max_items_per_customer');
    END LOOP;
END $$;
SQL
}

# run $2 (a rebuild function) in db $1 in a fresh session; sets phase, secs, hwm_mb, anon_mb, pairs_sig
run_rebuild() {
  local db=$1 fn=$2 log=$out/$1_$2.log pidf=$out/pid.$$ hwm=0 anon=0 pid
  rm -f "$pidf"
  P -d "$db" -At -c 'VACUUM ANALYZE personalize.interactions' >/dev/null
  ( P -d "$db" -At -o "$pidf" -c 'SELECT pg_backend_pid()' -c '\o' -c 'SELECT pg_sleep(0.5)' \
        -c "SELECT round(seconds::numeric, 1) FROM $fn()" ) > "$log" 2>&1 &
  local job=$!
  while [ ! -s "$pidf" ]; do sleep 0.05; done
  pid=$(head -1 "$pidf")
  while kill -0 "$job" 2>/dev/null; do
    if [ -r "/proc/$pid/status" ]; then
      read -r h a < <(awk '/^VmHWM/ { h = $2 } /^RssAnon/ { a = $2 } END { print h + 0, a + 0 }' "/proc/$pid/status" 2>/dev/null || echo "0 0")
      [ "$h" -gt "$hwm" ] && hwm=$h
      [ "$a" -gt "$anon" ] && anon=$a
    fi
    sleep 0.1
  done
  wait "$job"
  secs=$(tail -1 "$log")
  phase=$(grep -E 'rebuild: [1-5]/5' "$log" | grep -v ': pass ' | grep -oE 'rebuild: [1-5]/5 [^(]*\(([0-9.]+) s\)' | grep -oE '\([0-9.]+ s\)' | tr -d '() s' | paste -sd' ')
  hwm_mb=$(( hwm / 1024 )) anon_mb=$(( anon / 1024 ))
  pairs_sig=$(P -d "$db" -At -c "SELECT count(*) || ' ' || sum(customers) || ' ' || sum(hashint8(product_a * 1000003 + product_b) # customers) FROM personalize.pair_counts")
}

report "## rebuild() in C: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
report ""
report "| data | pair phase | 1/5 history s | 2/5 counts s | 3/5 pairs s | 4/5 lists s | rebuild() s | backend VmHWM MB | largest RssAnon MB | pairs |"
report "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for d in ${sizes//,/ }; do
  db=bench_$(echo "$d" | tr A-Z a-z)
  dropdb --if-exists "$db"; createdb "$db"
  P -d "$db" -c 'CREATE EXTENSION personalize' >/dev/null
  if [ "$d" = OR ]; then
    PGDATABASE=$db "$root/test/load_online_retail.sh" > "$out/load_$d.log" 2>&1
  else
    P -d "$db" -v size="$d" -f "$here/generate.sql" > "$out/load_$d.log" 2>&1
  fi
  old_rebuild "$db"
  sigs=()
  for fn in ${with_sql:+bench.rebuild_sql} bench.rebuild_spi personalize.rebuild; do
    run_rebuild "$db" "$fn"
    read -r p1 p2 p3 p4 _ <<<"$phase"
    report "| $d | $(case $fn in personalize.rebuild) echo 'C, heap write';; bench.rebuild_spi) echo 'C, INSERT path';; *) echo 'SQL self-join';; esac) | $p1 | $p2 | $p3 | $p4 | $secs | $hwm_mb | $anon_mb | ${pairs_sig%% *} |"
    sigs+=("$pairs_sig")
    grep -h 'pass' "$out/${db}_$fn.log" | sed 's/^/# /' >&2 || true
  done
  for sg in "${sigs[@]}"; do
    [ "$sg" = "${sigs[0]}" ] || report "**$d: the rebuilds left different pair counts: ${sigs[*]}**"
  done
  [ "$d" = L ] || dropdb "$db"
done
