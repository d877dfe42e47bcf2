#!/bin/bash
# A guarded uninstall: DROP EXTENSION personalize (with or without CASCADE) and DROP SCHEMA
# personalize CASCADE are refused while products, customers or interactions hold rows,
# with SQLSTATE 2BP01, what would be lost and how to proceed, and change nothing (rows,
# model, the pg_cron job). An empty install drops without a confirmation. With
# personalize.allow_drop_with_data = on the drop goes ahead and removes this database's
# personalize-* pg_cron jobs, not another database's. The backup docs/reference.md names
# (pg_dump --data-only -n personalize) brings every row and the model back. DROP OWNED BY
# the owner and a drop under session_replication_role = replica are refused too.
# Runs inside pg_virtualenv (pg_cron in database postgres). TAP output; creates and
# drops personalize_un_<pid>, personalize_un_empty_<pid> and personalize_un_other_<pid>.
set -uo pipefail
db=personalize_un_$$ empty=personalize_un_empty_$$ other=personalize_un_other_$$
work=$(mktemp -d)
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { local d=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$d" "$@" 2>&1; }
cleanup() {
  psql -X -q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database IN ('$db', '$other')" >/dev/null 2>&1
  for d in "$db" "$empty" "$other"; do dropdb --if-exists "$d" >/dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT
q postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null || { echo "Bail out! no pg_cron in postgres"; exit 2; }
for d in "$db" "$other"; do
  createdb "$d" || { echo "Bail out! cannot create $d"; exit 2; }
  q "$d" >/dev/null <<'SQL' || { echo "Bail out! cannot set up $d"; exit 2; }
CREATE EXTENSION personalize;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 40) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 30) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 7 + i * 3) % 40, 'purchase' FROM generate_series(1, 30) c, generate_series(1, 4) i;
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (1, 1, 5);
SQL
  q "$d" -c "SELECT personalize.schedule_refresh('0 4 * * *')" >/dev/null
done
state() {   # rows, model and the pg_cron job of $db
  echo "$(q "$db" -c "SELECT (SELECT count(*) FROM personalize.interactions) || ' ' || (SELECT count(*) FROM personalize.products)
                          || ' ' || (SELECT count(*) FROM personalize.customers) || ' ' || (SELECT count(*) FROM personalize.pair_counts)
                          || ' ' || (SELECT sum(customers) FROM personalize.item_counts) || ' ' || (SELECT count(*) FROM personalize.customer_feedback)") \
jobs $(q postgres -c "SELECT count(*) FROM cron.job WHERE database = '$db'")"
}
before=$(state)
ok $([[ "$before" == "120 40 30 "*" jobs 1" ]] && echo 0 || echo 1) "a shop with data and a scheduled refresh ($before)"

for stmt in 'DROP EXTENSION personalize' 'DROP EXTENSION personalize CASCADE' 'DROP SCHEMA personalize CASCADE' \
            'DROP OWNED BY CURRENT_USER' 'SET session_replication_role = replica; DROP EXTENSION personalize CASCADE'; do
  err=$(psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' -c "$stmt" 2>&1)
  ok $([[ "$err" == *2BP01* && "$err" == *"would delete the shop's data"* && "$err" == *"interactions holds 120 rows"* \
          && "$err" == *HINT*"personalize.allow_drop_with_data"* ]] && echo 0 || echo 1) \
     "$stmt with data: refused, 2BP01, says what would be lost and how to proceed (${err%%$'\n'*})"
  is "$(state)" "$before" "$stmt changed nothing (rows, model, pg_cron job)"
done
is "$(q "$db" -c "SELECT extversion IS NOT NULL FROM pg_extension WHERE extname = 'personalize'")" t "the extension is still installed"
is "$(q "$db" -c 'SET client_min_messages = warning' -c 'BEGIN' -c 'DROP EXTENSION IF EXISTS pg_trgm' -c 'DROP SCHEMA IF EXISTS nothing_here' -c 'ROLLBACK' -c 'SELECT 1')" 1 \
   "other DROP EXTENSION / DROP SCHEMA statements pass the guard"

# a non-owner gets PostgreSQL's own refusal, and learns nothing of the data
psql -X -q -d "$db" -c "CREATE ROLE regress_un_$$" >/dev/null 2>&1
err=$(psql -X -q -At -d "$db" -c "SET ROLE regress_un_$$" -c 'DROP EXTENSION personalize' 2>&1)
ok $([[ "$err" == *"must be owner of extension personalize"* && "$err" != *"rows"* ]] && echo 0 || echo 1) \
   "a role that may not drop it gets 'must be owner', no row counts (${err%%$'\n'*})"
psql -X -q -d "$db" -c "DROP ROLE regress_un_$$" >/dev/null 2>&1

# a confirmed drop that is rolled back keeps the jobs (pg_cron lives in database postgres:
# they are removed only when the drop commits)
q "$db" -c 'BEGIN' -c 'SET LOCAL personalize.allow_drop_with_data = on' -c 'DROP EXTENSION personalize' -c 'ROLLBACK' >/dev/null
is "$(state)" "$before" "a confirmed drop rolled back changes nothing, its pg_cron job included"

# an empty install is not the shop's data
createdb "$empty" && q "$empty" -c 'CREATE EXTENSION personalize' >/dev/null
out=$(q "$empty" -c 'DROP EXTENSION personalize')
ok $? "an empty install drops without a confirmation ($out)"

# the documented backup, then the confirmed drop
pg_dump --data-only -n personalize -d "$db" -f "$work/backup.sql"
ok $? "pg_dump --data-only -n personalize saves the rows"
out=$(q "$db" -c 'SET personalize.allow_drop_with_data = on' -c 'DROP EXTENSION personalize')
ok $? "with personalize.allow_drop_with_data = on the drop goes ahead ($out)"
is "$(q "$db" -c "SELECT count(*) FROM pg_extension WHERE extname = 'personalize'")|$(q "$db" -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'personalize'")" \
   "0|1" "the extension is gone (its empty schema stays)"
is "$(q postgres -c "SELECT count(*) FROM cron.job WHERE database = '$db'")" 0 "the drop removed this database's personalize pg_cron job"
is "$(q postgres -c "SELECT count(*) FROM cron.job WHERE database = '$other'")" 1 "another database's job is untouched"
is "$(q "$db" -c 'SELECT count(*) FROM pg_event_trigger')" 0 "no event trigger is left behind"

# restore: CREATE EXTENSION, then the backup through the triggers
q "$db" -c 'CREATE EXTENSION personalize' >/dev/null
out=$(psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$work/backup.sql" 2>&1)
ok $? "the backup loads into a new install ($(echo "$out" | grep -c ERROR) errors)"
after=$(state)
is "${after% jobs*}" "${before% jobs*}" "every row and the whole model are back"
exit 0
