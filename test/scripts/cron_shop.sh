#!/bin/bash
# Scheduling where the shop lives: pg_cron is installed in database postgres
# (cron.database_name = postgres, cron.use_background_workers = on, as test/run_all.sh
# starts the cluster); personalize in databases shop and shop_bad. schedule_refresh()
# from each creates a job named personalize-refresh@<database> that runs there; the test
# waits for pg_cron to run both and proves that shop's run succeeded (cron.job_run_details
# and personalize.maintenance_runs in shop) and that shop_bad's failed run (its popularity
# list cannot be written: a trigger refuses it) is visible in shop_bad's own
# maintenance_runs with its error. (Until issue 11 a variant broken by a direct UPDATE
# made it fail; such an UPDATE is now refused, and a broken variant is skipped: health.sh.)
# Then: unschedule is idempotent, errors from pg_cron's database keep their SQLSTATE, and
# a pg_cron that is not installed in its database gets a clear error.
# Runs inside pg_virtualenv. TAP output; creates and drops shop and shop_bad.
set -uo pipefail
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { local d=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$d" "$@" 2>&1; }
cleanup() {
  psql -X -q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
       -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database IN ('shop', 'shop_bad')" >/dev/null 2>&1
  dropdb --if-exists shop >/dev/null 2>&1; dropdb --if-exists shop_bad >/dev/null 2>&1
}
trap cleanup EXIT
cleanup
q postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null || { echo "Bail out! no pg_cron in postgres"; exit 2; }
for db in shop shop_bad; do
  createdb "$db" || { echo "Bail out! cannot create $db"; exit 2; }
  q "$db" >/dev/null <<'SQL' || { echo "Bail out! cannot set up $db"; exit 2; }
CREATE EXTENSION personalize;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 50) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 40) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 7 + i * 3) % 50, 'purchase' FROM generate_series(1, 40) c, generate_series(1, 4) i;
SQL
done
# every refresh fails in shop_bad: its popularity list cannot be written
q shop_bad >/dev/null <<'SQL'
CREATE FUNCTION public.refuse_popular() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'the popularity list is frozen in this test' USING ERRCODE = 'P0001'; END$$;
CREATE TRIGGER refuse_popular BEFORE INSERT ON personalize.popular
    FOR EACH ROW EXECUTE FUNCTION public.refuse_popular();
SQL

job=$(q shop -c "SELECT personalize.schedule_refresh('* * * * *')")
job_bad=$(q shop_bad -c "SELECT personalize.schedule_refresh('* * * * *')")
is "$(q postgres -c "SELECT jobname || ' ' || database || ' ' || command FROM cron.job WHERE jobid = $job")" \
   "personalize-refresh@shop shop CALL personalize.refresh()" "schedule_refresh() from shop: a job in pg_cron's database that runs in shop"
is "$(q postgres -c "SELECT jobname || ' ' || database FROM cron.job WHERE jobid = $job_bad")" \
   "personalize-refresh@shop_bad shop_bad" "the same from shop_bad: its own job, no collision"
again=$(q shop -c "SELECT personalize.schedule_refresh('* * * * *')")
is "$again $(q postgres -c "SELECT count(*) FROM cron.job WHERE database = 'shop'")" "$job 1" "scheduling again from shop replaces the job"

# wait for pg_cron to run both (the next minute boundary)
for _ in $(seq 1 90); do
  done_runs=$(q postgres -c "SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE jobid IN ($job, $job_bad) AND status IN ('succeeded', 'failed')")
  [ "$done_runs" = 2 ] && break
  sleep 1
done
is "$done_runs" 2 "pg_cron ran both jobs within 90 s"
is "$(q postgres -c "SELECT status FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")" succeeded \
   "cron.job_run_details: the refresh scheduled from shop succeeded"
is "$(q shop -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FROM personalize.maintenance_runs WHERE job = 'refresh'")" \
   "1 1" "shop's own maintenance_runs: one refresh run, succeeded"
is "$(q shop -c "SELECT count(*) FROM personalize.dirty_products")" 0 "the scheduled run refreshed every dirty product in shop"
is "$(q shop -c "SELECT count(*) > 0 FROM personalize.neighbors")" t "shop has neighbour lists"
bad=$(q postgres -c "SELECT status || ' ' || return_message FROM cron.job_run_details WHERE jobid = $job_bad ORDER BY runid LIMIT 1")
ok $([[ "$bad" == "failed "*"the popularity list is frozen"* ]] && echo 0 || echo 1) "cron.job_run_details: shop_bad's run failed with the error (${bad%%$'\n'*})"
is "$(q shop_bad -c "SELECT status || ' ' || error FROM personalize.maintenance_runs WHERE job = 'refresh' ORDER BY run_id DESC LIMIT 1")" \
   'failed P0001: the popularity list is frozen in this test' \
   "the failure is in shop_bad's own maintenance_runs, with SQLSTATE and message (a role without access to cron.* sees it)"

# unscheduling: true once, then false; errors of pg_cron's database come back with their SQLSTATE
is "$(q shop -c 'SELECT personalize.unschedule_refresh()')" t "unschedule_refresh() from shop removes its job"
is "$(q shop -c 'SELECT personalize.unschedule_refresh()')" f "unschedule_refresh() again: false, no error"
is "$(q postgres -c "SELECT count(*) FROM cron.job WHERE jobid = $job_bad")" 1 "shop_bad's job is untouched"
err=$(psql -X -q -At -d shop -c '\set VERBOSITY verbose' -c "SELECT personalize.schedule_refresh('every minute')" 2>&1)
ok $([[ "$err" == *ERROR* && "$err" != *XX000* && "$err" == *"pg_cron in database \"postgres\""* ]] && echo 0 || echo 1) \
   "a bad schedule is refused by pg_cron, through the worker, with its own SQLSTATE (${err%%$'\n'*})"
is "$(q postgres -c "SELECT count(*) FROM cron.job WHERE database = 'shop'")" 0 "the refused schedule left no job"

# a role that is not a superuser schedules from shop: it needs EXECUTE on the schedule
# functions (docs/reference.md lists them) and, in pg_cron's database, USAGE on schema cron
# and EXECUTE on cron.schedule_in_database()
role=regress_scheduler_$$
psql -X -q -d postgres -c "CREATE ROLE $role LOGIN" -c "GRANT USAGE ON SCHEMA cron TO $role" -c "GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) TO $role" >/dev/null
q shop -c "GRANT USAGE ON SCHEMA personalize TO $role" \
       -c "GRANT EXECUTE ON FUNCTION personalize.schedule_refresh(text), personalize.unschedule_refresh(),
               personalize._cron_schedule(text, text, text), personalize._cron_unschedule(text), personalize._cron_database(text),
               personalize._cron_setting(text), personalize._cron_remote(text, text, text, text) TO $role" >/dev/null
rjob=$(q shop -c "SET ROLE $role" -c "SELECT personalize.schedule_refresh('0 5 * * *')")
is "$(q postgres -c "SELECT jobname || ' ' || username || ' ' || database FROM cron.job WHERE jobid = ${rjob:-0}")" \
   "personalize-refresh@shop $role shop" "a non-superuser schedules from shop: the job is theirs and runs in shop ($rjob)"
is "$(q shop -c "SET ROLE $role" -c 'SELECT personalize.unschedule_refresh()')" t "and removes it"
q postgres -c "REVOKE ALL ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) FROM $role" \
           -c "REVOKE USAGE ON SCHEMA cron FROM $role" >/dev/null
q shop -c "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA personalize FROM $role" -c "REVOKE ALL ON SCHEMA personalize FROM $role" >/dev/null
q postgres -c "DROP ROLE $role" >/dev/null

# pg_cron not installed in its database: a clear error to schedule, nothing to unschedule
q postgres -c 'DROP EXTENSION pg_cron' >/dev/null
err=$(psql -X -q -At -d shop -c '\set VERBOSITY verbose' -c 'SELECT personalize.schedule_refresh()' 2>&1)
ok $([[ "$err" == *0A000* && "$err" == *'pg_cron is not installed in database "postgres"'* && "$err" == *HINT*"CREATE EXTENSION pg_cron"* ]] && echo 0 || echo 1) \
   "pg_cron missing from its database: 0A000 naming it, with a hint (${err%%$'\n'*})"
is "$(q shop -c 'SELECT personalize.unschedule_refresh()')" f "unschedule_refresh() then: false, no error"
q postgres -c 'CREATE EXTENSION pg_cron' >/dev/null
exit 0
