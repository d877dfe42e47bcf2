#!/bin/bash
# The maintenance job: CALL personalize.refresh() builds the neighbour lists and the
# popularity list, commits as it goes and logs one run; schedule_refresh() and
# unschedule_refresh() manage the pg_cron job (personalize-refresh@<database>).
# Runs inside pg_virtualenv, whose cluster has cron.database_name = postgres. TAP output.
set -uo pipefail
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1; }
nocron=personalize_nocron
dropdb --if-exists "$nocron" >/dev/null 2>&1
trap 'dropdb --if-exists "$nocron" >/dev/null 2>&1; psql -X -q -d postgres -c "SET personalize.allow_drop_with_data = on" -c "DROP EXTENSION IF EXISTS personalize CASCADE" -c "DROP EXTENSION IF EXISTS pg_cron" >/dev/null 2>&1' EXIT

# in the cron database
q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' -c 'CREATE EXTENSION personalize' >/dev/null
q -d postgres <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 300) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 200) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 7 + i * 13) % 300, 'purchase' FROM generate_series(1, 200) c, generate_series(1, 6) i;
SQL
# the inserts' count changes are pending (issue 14); the products they touch are what the
# refresh will mark dirty when it folds them, and refresh
dirty=$(q -d postgres -c 'SELECT count(DISTINCT p) FROM personalize.model_deltas m, unnest(m.a || m.b) AS p')
tap $([ "$dirty" -gt 100 ] && [ "$(q -d postgres -c 'SELECT count(*) FROM personalize.dirty_products')" = 0 ] && echo 0 || echo 1) \
  "inserts leave count changes pending on $dirty products (none dirty before the fold)"
out=$(q -d postgres -c 'CALL personalize.refresh()')
tap $? "CALL personalize.refresh() runs outside a transaction block ($out)"
is "$(q -d postgres -c 'SELECT count(*) FROM personalize.dirty_products')" 0 "no dirty product is left"
is "$(q -d postgres -c "SELECT count(*) > 0 FROM personalize.neighbors WHERE measure = 'llr'")" t "neighbour lists exist"
is "$(q -d postgres -c "SELECT count(*) FROM personalize.maintenance_runs WHERE job = 'refresh'")" 1 "one logged refresh run"
is "$(q -d postgres -c "SELECT items = $dirty FROM personalize.maintenance_runs WHERE job = 'refresh'")" t "the run counts every refreshed product"
is "$(q -d postgres -c "SELECT count(*) > 0 FROM personalize.popular")" t "the popularity list is filled"
out=$(q -d postgres -c 'BEGIN' -c 'CALL personalize.refresh()' -c 'COMMIT')
tap $([[ "$out" == *"invalid transaction termination"* ]] && echo 0 || echo 1) "inside a transaction block refresh() refuses (${out%%$'\n'*})"

job=$(q -d postgres -c "SELECT personalize.schedule_refresh('*/5 * * * *')")
is "$(q -d postgres -c "SELECT schedule || ' ' || command FROM cron.job WHERE jobid = $job")" \
   "*/5 * * * * CALL personalize.refresh()" "schedule_refresh() creates the pg_cron job"
job2=$(q -d postgres -c "SELECT personalize.schedule_refresh('0 * * * *')")
is "$(q -d postgres -c "SELECT count(*) || ' ' || min(schedule) FROM cron.job WHERE jobname = 'personalize-refresh@postgres'")" \
   "1 0 * * * *" "scheduling again replaces the schedule, not a second job"
is "$(q -d postgres -c 'SELECT personalize.unschedule_refresh()')" t "unschedule_refresh() removes it"
is "$(q -d postgres -c "SELECT count(*) FROM cron.job WHERE jobname = 'personalize-refresh@postgres'")" 0 "no job is left"
is "$(q -d postgres -c 'SELECT personalize.unschedule_refresh()')" f "unschedule_refresh() again: false, no error"
bad=$(q -d postgres -c "SELECT personalize.schedule_refresh('every minute')")
tap $([[ "$bad" == *"ERROR"* ]] && echo 0 || echo 1) "a bad cron schedule is refused (${bad%%$'\n'*})"

# in a database without pg_cron: scheduling goes to pg_cron's database (test/scripts/cron_shop.sh
# proves the job runs); refresh() itself never needs pg_cron
createdb "$nocron"
q -d "$nocron" -c 'CREATE EXTENSION personalize' >/dev/null
is "$(q -d "$nocron" -c 'SELECT personalize.unschedule_refresh()')" f "unschedule_refresh() where nothing is scheduled: false"
out=$(q -d "$nocron" -c 'CALL personalize.refresh()')
tap $? "refresh() itself does not need pg_cron"
exit 0
