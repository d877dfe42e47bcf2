#!/bin/bash
# personalize.health (issue 11) with a real pg_cron, as a monitoring role that has only
# SELECT on the view: the refresh job runs, a variant broken past the trigger is skipped
# (the others refreshed) and named; a failed run is a warning; a stopped (active = false)
# or missing job is critical; pg_cron's row-level security hides the jobs from the role,
# health does not. An OpenAI run whose setup fails is recorded.
# pg_cron lives in database postgres (cron.database_name): the shop database reads it
# through the background worker, database postgres itself directly.
# Runs inside pg_virtualenv (cron.use_background_workers = on). TAP output.
set -uo pipefail
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
like() { [[ "$1" == *"$2"* ]]; tap $? "$3 (got '${1:0:300}')"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1; }
shop=personalize_health_$$
mon=regress_health_mon_$$
# the monitoring role, over TCP with its password
qm() { PGPASSWORD=health-mon-pw psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$mon" "$@" 2>&1; }
status() { qm -d "$1" -c "SELECT status FROM personalize.health WHERE \"check\" = '$2'"; }
detail() { qm -d "$1" -c "SELECT detail FROM personalize.health WHERE \"check\" = '$2'"; }
cleanup() {
  q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'personalize-%'" >/dev/null 2>&1
  dropdb --if-exists "$shop" >/dev/null 2>&1
  psql -X -q -d postgres -c "SET personalize.allow_drop_with_data = on" -c "DROP EXTENSION IF EXISTS personalize CASCADE" >/dev/null 2>&1
  psql -X -q -d postgres -c "REVOKE USAGE ON SCHEMA cron FROM $mon" -c "DROP ROLE IF EXISTS $mon" >/dev/null 2>&1
}
trap cleanup EXIT
# wait (at most $3 s) until database $1's job personalize-$2 has a finished run newer than now
wait_run() {
  local since; since=$(q -d postgres -c "SELECT now()")
  for _ in $(seq 1 "$3"); do
    [ "$(q -d postgres -c "SELECT count(*) FROM cron.job_run_details r JOIN cron.job j USING (jobid)
          WHERE j.jobname = 'personalize-$2@$1' AND r.status IN ('succeeded', 'failed') AND r.end_time > '$since'")" != 0 ] && return 0
    sleep 1
  done
  return 1
}

q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null
q -d postgres -c "CREATE ROLE $mon LOGIN PASSWORD 'health-mon-pw'" >/dev/null
createdb "$shop"
q -d "$shop" <<SQL >/dev/null
CREATE EXTENSION personalize;
GRANT SELECT ON personalize.health TO $mon;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 300) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 200) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 7 + i * 13) % 300, 'purchase' FROM generate_series(1, 200) c, generate_series(1, 6) i;
SQL

# before any refresh and any job
is "$(status "$shop" refresh_age)" critical "no refresh yet while events exist: refresh_age is critical"
is "$(status "$shop" cron_job:refresh)" critical "the expected refresh job is missing: critical"
like "$(detail "$shop" cron_job:refresh)" "personalize-refresh@$shop does not exist" "health says which job is missing"
is "$(qm -d "$shop" -c 'SELECT count(*) FROM personalize.maintenance_runs')" \
   "ERROR:  permission denied for table maintenance_runs" "the monitoring role has no other grant"

# the scheduled job runs and health sees it (read as the view's owner, through the worker)
q -d "$shop" -c "SELECT personalize.schedule_refresh('* * * * *')" >/dev/null
wait_run "$shop" refresh 75; tap $? "the pg_cron refresh job ran"
is "$(status "$shop" cron_job:refresh)" ok "the job exists, is active and succeeded last"
like "$(detail "$shop" cron_job:refresh)" "is active; its last run succeeded" "its detail says so"
is "$(status "$shop" refresh_age)" ok "refresh_age is ok after the scheduled run"
is "$(qm -d "$shop" -c "SELECT count(*) FROM personalize.health WHERE status NOT IN ('ok')")" 0 "every check is ok"

# a variant broken past the trigger: the next scheduled refresh skips it, refreshes the rest
q -d "$shop" -c "SELECT personalize.create_variant('cos', 'cooccurrence', '{\"measure\": \"cosine\"}')" >/dev/null 2>&1
out=$(q -d "$shop" -c "UPDATE personalize.variants SET params = '{\"measure\": \"bogus\"}' WHERE name = 'cos'")
like "$out" "invalid parameter \"measure\" for variant \"cos\"" "a plain UPDATE with invalid params is refused"
q -d "$shop" -c 'ALTER TABLE personalize.variants DISABLE TRIGGER variants_validate' \
  -c "UPDATE personalize.variants SET params = '{\"measure\": \"bogus\"}' WHERE name = 'cos'" \
  -c 'ALTER TABLE personalize.variants ENABLE TRIGGER variants_validate' >/dev/null
q -d "$shop" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) SELECT c, 7, 'purchase' FROM generate_series(1, 30) c" >/dev/null
wait_run "$shop" refresh 75; tap $? "the pg_cron refresh job ran again"
is "$(q -d "$shop" -c "SELECT status || ' ' || (details -> 'skipped_variants' -> 0 ->> 'variant') FROM personalize.maintenance_runs WHERE job = 'refresh' ORDER BY run_id DESC LIMIT 1")" \
   "succeeded cos" "the run succeeded and recorded the skipped variant"
is "$(q -d "$shop" -c 'SELECT count(*) FROM personalize.dirty_products')" 0 "the other variants' lists were refreshed (no dirty product left)"
is "$(q -d "$shop" -c "SELECT refreshed_at > now() - interval '2 minutes' FROM personalize.neighbors WHERE measure = 'llr' AND product_id = 7")" t \
   "the llr list of the product that changed is fresh"
is "$(status "$shop" cron_job:refresh)" ok "pg_cron saw the job succeed"
is "$(status "$shop" variants)" critical "health: the variants check is critical"
like "$(detail "$shop" variants)" "cos (22023: invalid parameter \"measure\" for variant \"cos\")" "health names the broken variant"

# a failing run: another session holds a lock on the popularity list past the job's
# lock_timeout (set for the job's role in the shop's database)
q -d "$shop" -c "ALTER ROLE CURRENT_USER IN DATABASE $shop SET lock_timeout = '2s'" \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) SELECT c, 9, 'purchase' FROM generate_series(1, 30) c" >/dev/null
PGAPPNAME=health_locker psql -X -q -d "$shop" -c 'BEGIN' -c 'LOCK TABLE personalize.popular IN ACCESS EXCLUSIVE MODE' \
  -c 'SELECT pg_sleep(90)' -c 'COMMIT' >/dev/null 2>&1 &
locker=$!
wait_run "$shop" refresh 75; tap $? "the pg_cron refresh job ran a third time"
q -d "$shop" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'health_locker'" >/dev/null
wait "$locker"
q -d "$shop" -c "ALTER ROLE CURRENT_USER IN DATABASE $shop RESET lock_timeout" >/dev/null
is "$(status "$shop" cron_job:refresh)" warn "its last run failed: the job's row is a warning"
like "$(detail "$shop" cron_job:refresh)" "its last run failed at" "the detail says it failed"
is "$(status "$shop" last_job_error)" warn "last_job_error is a warning while the failure is the latest run"
like "$(detail "$shop" last_job_error)" "refresh run" "and names the run of refresh"
like "$(detail "$shop" last_job_error)" "55P03: canceling statement due to lock timeout" "with its error"

# stopped, then missing
q -d postgres -c "SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = 'personalize-refresh@$shop'" >/dev/null
is "$(status "$shop" cron_job:refresh)" critical "a stopped (active = false) job is critical"
like "$(detail "$shop" cron_job:refresh)" "is NOT active" "health says it is not active"
is "$(qm -d "$shop" -c "SET personalize.health_expected_jobs = ''" -c "SELECT status FROM personalize.health WHERE \"check\" = 'cron_job:refresh'")" \
   warn "a stopped job that is not expected is a warning"
q -d "$shop" -c 'SELECT personalize.unschedule_refresh()' >/dev/null
is "$(status "$shop" cron_job:refresh)" critical "a missing expected job is critical"

# an OpenAI run whose setup fails (it cannot read llm_recommendations: another session
# holds a lock) is recorded as failed, not rolled back with the error as in 0.1.0
q -d "$shop" -c 'BEGIN' -c 'LOCK TABLE personalize.llm_recommendations IN ACCESS EXCLUSIVE MODE' \
  -c 'SELECT pg_sleep(4)' -c 'COMMIT' >/dev/null &
locker=$!
sleep 1
out=$(q -d "$shop" -c "SET lock_timeout = '300ms'" -c 'CALL personalize.llm_refresh()')
like "$out" "canceling statement due to lock timeout" "llm_refresh stops when it cannot read llm_recommendations"
wait "$locker"
is "$(q -d "$shop" -c "SELECT kind || ' ' || status FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" \
   "refresh failed" "the run is recorded, as failed"
like "$(q -d "$shop" -c "SELECT error FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" "lock timeout" "with its error"
is "$(status "$shop" llm_refresh)" warn "health: llm_refresh is a warning"
like "$(detail "$shop" last_job_error)" "llm_refresh run" "last_job_error names the OpenAI run"

# pg_cron's own database: read directly; the job belongs to another role and pg_cron's
# row-level security hides it from the monitoring role (granted the schema to look), health
# does not
q -d postgres -c 'CREATE EXTENSION personalize' -c "GRANT SELECT ON personalize.health TO $mon" \
  -c "GRANT USAGE ON SCHEMA cron TO $mon" \
  -c "SELECT personalize.schedule_refresh('0 0 1 1 *')" >/dev/null
is "$(qm -d postgres -c "SELECT count(*) FROM cron.job WHERE jobname = 'personalize-refresh@postgres'")" 0 \
   "pg_cron shows the monitoring role none of the jobs"
is "$(status postgres cron_job:refresh)" ok "health shows it the job in pg_cron's database"
like "$(detail postgres cron_job:refresh)" "personalize-refresh@postgres (0 0 1 1 *, scheduled by" "with its schedule"
is "$(q -d postgres -c 'SELECT personalize.unschedule_refresh()')" t "unscheduled"
exit 0
