#!/bin/bash
# The EASE build (issue 13): time of the inverse of a synthetic SPD Gram-like matrix
# (test/bench/ease_solve_bench.c) at N = 5,000 / 10,000 / 20,000 with Debian's serial
# OpenBLAS, as refresh_ease() runs it (src/ease_solve.c: blocked, one bounded library call at
# a time) and as one dpotrf + dpotri call, and at N = 5,000 with reference BLAS/LAPACK (the
# choice of library); then CALL refresh_ease() on Online Retail: time, the backend's peak
# memory (VmHWM), the spread of the products' best weights (the fallback rule), and
# recommend() latency with the ease variant against cooccurrence.
# Run inside pg_virtualenv:  pg_virtualenv -t bash test/bench/ease.sh
# EASE_BENCH_SIZES="5000 10000" skips the 20,000 case (3.2 GB, about 4 minutes).
set -uo pipefail
cd "$(dirname "$0")/../.."
sizes=${EASE_BENCH_SIZES:-5000 10000 20000}
arch=$(gcc -print-multiarch)
ob=/usr/lib/$arch/openblas-serial
bin=$(mktemp -d)
db=personalize_ease_bench
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
trap 'rm -rf "$bin"; dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
echo "machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the solve, outside PostgreSQL ----------------------------------------------------------
src="test/bench/ease_solve_bench.c src/ease_solve.c"
gcc -O2 -I/usr/include/"$arch"/openblas-serial -Isrc $src -o "$bin/openblas" -L"$ob" -lopenblas -Wl,-rpath,"$ob" -lm || exit 2
gcc -O2 -I/usr/include/"$arch"/openblas-serial -Isrc $src -o "$bin/reference" \
    -L/usr/lib/"$arch"/lapack -L/usr/lib/"$arch"/blas -l:liblapack.so.3 -l:libblas.so.3 \
    -Wl,-rpath,/usr/lib/"$arch"/lapack:/usr/lib/"$arch"/blas -lm || exit 2
"$bin/openblas" 1000 check || { echo "the blocked inverse differs from dpotri"; exit 1; }
for n in $sizes; do
  "$bin/openblas" "$n" blocked 2>/dev/null | sed 's/^/serial OpenBLAS, blocked (refresh_ease): /'
  [ "$n" -le 10000 ] && "$bin/openblas" "$n" lapack 2>/dev/null | sed 's/^/serial OpenBLAS, one dpotrf + dpotri: /'
  if [ "$n" = 5000 ]; then
    "$bin/reference" "$n" blocked 2>/dev/null | sed 's/^/reference BLAS\/LAPACK, blocked: /'
    "$bin/reference" "$n" lapack 2>/dev/null | sed 's/^/reference BLAS\/LAPACK, one dpotrf + dpotri: /'
  fi
done

# --- refresh_ease() on Online Retail --------------------------------------------------------
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null || exit 2
q -c "ALTER DATABASE $db SET personalize.as_of = '2011-12-10 00:00+00'"
PGDATABASE=$db bash test/load_online_retail.sh >/dev/null 2>&1 || exit 2
q -c 'CALL personalize.refresh()' >/dev/null
q -c 'VACUUM ANALYZE' >/dev/null
echo "Online Retail: $(q -c "SELECT format('%s active products with counts, %s pairs', (SELECT count(*) FROM personalize.item_counts i JOIN personalize.products p USING (product_id) WHERE p.active), (SELECT count(*) FROM personalize.pair_counts))")"
log=$(mktemp)
psql -X -q -At -d "$db" > "$log" 2>&1 <<'SQL' &
SELECT 'pid', pg_backend_pid();
SELECT pg_sleep(0.5);
CALL personalize.refresh_ease();
SELECT 'done';
SELECT pg_sleep(2);
SQL
bg=$!
for _ in $(seq 1 50); do pid=$(sed -n 's/^pid|//p' "$log"); [ -n "$pid" ] && break; sleep 0.1; done
for _ in $(seq 1 6000); do grep -q '^done' "$log" && break; sleep 0.1; done
hwm=$(awk '/^VmHWM/ {print $2}' /proc/"$pid"/status)
wait $bg
grep -E 'NOTICE' "$log" | sed 's/^/  /'
rm -f "$log"
echo "refresh_ease(): $(q -c "SELECT format('%s, %s lists, %s s (products %s, lambda %s, k %s)', status, items, round(extract(epoch FROM finished_at - started_at)::numeric, 1), details ->> 'products', details ->> 'lambda', details ->> 'k') FROM personalize.maintenance_runs WHERE job = 'refresh_ease' ORDER BY run_id DESC LIMIT 1"); backend peak RSS ${hwm} kB"
echo "best weight per product (stored, / mean best): $(q -c "SELECT format('p10 %s, median %s, p90 %s; raw median best weight (scale) %s', round(percentile_cont(0.1) WITHIN GROUP (ORDER BY scores[1])::numeric, 2), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY scores[1])::numeric, 2), round(percentile_cont(0.9) WITHIN GROUP (ORDER BY scores[1])::numeric, 2), (SELECT round((details ->> 'scale')::numeric, 4) FROM personalize.maintenance_runs WHERE job = 'refresh_ease' ORDER BY run_id DESC LIMIT 1)) FROM personalize.neighbors WHERE measure = 'ease'")"

# --- recommend() latency: 2,000 customers, each variant, after one warm-up pass --------------
for v in cooccurrence ease cooccurrence ease; do
  echo "recommend(c, '$v', 10) over 2000 customers: $(q <<SQL | tail -n 1
CREATE TEMP TABLE t (ms double precision);
DO \$\$
DECLARE c bigint; t0 timestamptz;
BEGIN
  FOR c IN SELECT customer_id FROM personalize.customers ORDER BY customer_id LIMIT 2000 LOOP
    t0 := clock_timestamp();
    PERFORM * FROM personalize.recommend(c, '$v', 10);
    INSERT INTO t VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END \$\$;
SELECT format('median %s ms, p99 %s ms', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 3)) FROM t;
SQL
)"
done
