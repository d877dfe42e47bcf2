#!/bin/bash
# What one read of personalize.health costs (issue 11): the whole Online Retail file loaded
# through the triggers and refreshed, a year of unpruned run rows (maintenance_runs: two a
# minute; llm_runs: one every 10 minutes), a running experiment with 200,000 exposures, the
# refresh job scheduled in pg_cron's database (so the jobs are read through the background
# worker). Prints EXPLAIN ANALYZE's execution time (each in a new session) and the median
# of 50 client-timed reads in one session, for the whole view, for _health_cron_jobs()
# alone, and for the view once the experiment is stopped.
# Runs inside pg_virtualenv (cron.database_name = postgres, cron.use_background_workers = on).
set -euo pipefail
cd "$(dirname "$0")/../.."
db=personalize_bench_health
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
dropdb --if-exists "$db" >/dev/null 2>&1; createdb "$db"
psql -X -q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null
q -c 'CREATE EXTENSION personalize'
t0=$(date +%s); PGDATABASE=$db bash test/load_online_retail.sh >/dev/null; echo "load: $(( $(date +%s) - t0 )) s"
q -c 'CALL personalize.refresh()' 2>/dev/null
q <<'SQL'
INSERT INTO personalize.maintenance_runs (job, started_at, finished_at, items, details, status, error)
SELECT CASE WHEN g % 2 = 0 THEN 'refresh' ELSE 'refresh_popular' END, t, t + interval '1 second', 10, '{}',
       CASE WHEN g % 5000 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g % 5000 = 0 THEN '57014: canceling statement due to statement timeout' END
FROM generate_series(1, 1051200) g, LATERAL (SELECT now() - interval '1 year' + g * interval '30 seconds' AS t) x
WHERE t < now() - interval '1 hour';
INSERT INTO personalize.llm_runs (kind, status, started_at, finished_at)
SELECT (ARRAY['batch_poll', 'batch_poll', 'batch_poll', 'embed', 'refresh'])[1 + g % 5], 'completed', t, t + interval '5 seconds'
FROM generate_series(1, 52560) g, LATERAL (SELECT now() - interval '1 year' + g * interval '10 minutes' AS t) x
WHERE t < now() - interval '1 hour';
CALL personalize.refresh();
SELECT personalize.create_experiment('bench', ARRAY['cooccurrence', 'hybrid']);
SELECT personalize.start_experiment('bench');
INSERT INTO personalize.exposures (experiment_id, customer_id, variant, arm, product_ids)
SELECT e.experiment_id, c.customer_id, 'cooccurrence', (c.customer_id % 2)::smallint, ARRAY[1::bigint]
FROM personalize.experiments e, personalize.customers c, generate_series(1, 50) g
WHERE e.name = 'bench'
LIMIT 200000;
SELECT personalize.schedule_refresh('0 0 1 1 *');
VACUUM ANALYZE;
SQL
echo "pairs: $(q -c 'SELECT reltuples::bigint FROM pg_class WHERE oid = '\''personalize.pair_counts'\''::regclass'), maintenance_runs: $(q -c 'SELECT count(*) FROM personalize.maintenance_runs'), llm_runs: $(q -c 'SELECT count(*) FROM personalize.llm_runs'), exposures: $(q -c 'SELECT count(*) FROM personalize.exposures')"
q -c 'SELECT "check", status, value FROM personalize.health'
for i in 1 2 3; do q -c 'EXPLAIN (ANALYZE, TIMING OFF) SELECT * FROM personalize.health' | grep 'Execution Time'; done
median() {   # $1 = SQL: median wall time of 50 runs in one session, ms
  { echo '\timing on'; for i in $(seq 1 50); do echo "$1"; done; } | psql -X -q -d "$db" -o /dev/null 2>&1 \
    | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms, max %.1f ms (n=%d)\n", a[int((NR+1)/2)], a[NR], NR}'
}
echo "SELECT * FROM personalize.health: $(median 'SELECT * FROM personalize.health;')"
echo "SELECT personalize._health_cron_jobs(): $(median 'SELECT personalize._health_cron_jobs();')"
q -c "SELECT personalize.stop_experiment('bench')" >/dev/null
echo "SELECT * FROM personalize.health, no experiment running: $(median 'SELECT * FROM personalize.health;')"
psql -X -q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = '$db'" >/dev/null
dropdb "$db"
