#!/bin/bash
# Batch recommendations on the real Online Retail file (issue 12, part 3): the whole file
# loaded and refreshed, refresh_batch_recommendations() builds the table for every customer
# and it equals customers x LATERAL recommend(c, NULL, 10); during a second, full run a
# reader polling in another session always sees one whole set (every customer, all old rows
# or all new ones), a second concurrent run is refused (55P03), and a REPEATABLE READ reader
# keeps its snapshot; a cancelled run is recorded as failed and leaves the table as it was;
# after new events for five customers an incremental run recomputes exactly those five, equal
# to recommend() again; a BI role with only grant_bi() reads batch_recommendations_named and
# not the customers. personalize.as_of is fixed for the database, so that every session
# scores alike. Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER set; see test/in_cluster.sh).
# Creates personalize_batch_<pid> and the role regress_batch_bi_<pid>, drops them at the end.
# TAP output; exits 0 even when a test is "not ok", non-zero if the script cannot run.
set -uo pipefail
cd "$(dirname "$0")/../.."
db=personalize_batch_$$
bi=regress_batch_bi_$$
file=test/data/online-retail/online_retail.csv.gz
work=$(mktemp -d)
n=0
bg_pids=()
cleanup() {
  for p in "${bg_pids[@]}"; do kill "$p" >/dev/null 2>&1; done
  psql -X -q -At -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null 2>&1
  dropdb --if-exists "$db" >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $bi" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
die() { echo "batch_online_retail: $*" >&2; echo "Bail out! $*"; exit 2; }
ok()  { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is()  { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q()   { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
last_run() { q "SELECT $1 FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1"; }
wait_running() {   # until the newest run is running and has committed a batch (at most 30 s)
  for _ in $(seq 300); do
    [ "$(last_run "status = 'running' AND customers_done > 0")" = t ] && return 0
    sleep 0.1
  done
  return 1
}
checksum="SELECT md5(string_agg(format('%s,%s,%s,%s,%s', customer_id, rank, product_id, score, generated_at), ';' ORDER BY customer_id, rank)) FROM personalize.batch_recommendations"
equal_sql="WITH want AS (SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason
                   FROM personalize.customers c, personalize.recommend(c.customer_id, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord)
                   WHERE %s),
          got AS (SELECT b.customer_id, b.rank, b.product_id, b.score, b.reason FROM personalize.batch_recommendations b WHERE %s)
     SELECT (SELECT count(*) FROM (TABLE want EXCEPT TABLE got) d) || ' ' || (SELECT count(*) FROM (TABLE got EXCEPT TABLE want) d)"

[ -r "$file" ] || die "cannot read $file"
createdb "$db" || die "cannot create $db"
q "CREATE EXTENSION personalize" || die "cannot create the extension"
q "ALTER DATABASE $db SET personalize.as_of = '2011-12-10 00:00+00'" || die "cannot set personalize.as_of"
t0=$(date +%s)
PGDATABASE=$db bash test/load_online_retail.sh "$file" >/dev/null 2>"$work/load.err" || { cat "$work/load.err" >&2; die "the loader failed"; }
psql -X -q -d "$db" -c 'CALL personalize.refresh()' 2>/dev/null || die "refresh() failed"
echo "# loaded and refreshed in $(( $(date +%s) - t0 )) s"
customers=$(q "SELECT count(*) FROM personalize.customers")

# --- the first run: every customer --------------------------------------------------------
t0=$(date +%s.%N)
psql -X -q -d "$db" -c "CALL personalize.refresh_batch_recommendations()" 2>"$work/run1.err"
ok $? "the first CALL refresh_batch_recommendations() succeeds"
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "# first run: $customers customers in $secs s"
sed 's/^/# /' "$work/run1.err"
is "$(grep -c 'NOTICE:  refresh_batch_recommendations: run 1 (full) published' "$work/run1.err")" 1 "it ends with a NOTICE naming the rows published"
is "$(last_run "status || ' ' || mode || ' ' || customers_total || ' ' || customers_done || ' ' || rows_published")" \
   "succeeded full $customers $customers $(q "SELECT count(*) FROM personalize.batch_recommendations")" \
   "its run row: succeeded, full, every customer done, the rows published"
is "$(q "SELECT count(DISTINCT customer_id) || ' ' || max(rank) FROM personalize.batch_recommendations")" "$customers 10" \
   "every customer has recommendations, 10 at most"
is "$(q "$(printf "$equal_sql" true true)")" "0 0" "the table equals customers x LATERAL recommend(c, NULL, 10), rank for rank"

# --- a second, full run under a reader, a second run and a REPEATABLE READ snapshot --------
before=$(q "$checksum")
t_start=$(q "SELECT clock_timestamp()")
# the snapshot reader: reads, waits (outside SQL) until the run is published, reads again
psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" > "$work/rr.out" 2>&1 <<SQL &
BEGIN ISOLATION LEVEL REPEATABLE READ;
$checksum;
\\! while [ ! -e "$work/published" ]; do sleep 0.1; done
$checksum;
COMMIT;
SQL
rr_pid=$!; bg_pids+=("$rr_pid")
# the polling reader: one short transaction per poll until the run is over
( while [ ! -e "$work/published" ]; do
    q "SELECT count(DISTINCT customer_id) || ' ' || (bool_and(generated_at < '$t_start') OR bool_and(generated_at >= '$t_start'))
       FROM personalize.batch_recommendations"
  done > "$work/polls" 2>&1 ) &
poll_pid=$!; bg_pids+=("$poll_pid")
psql -X -q -d "$db" -c "CALL personalize.refresh_batch_recommendations(only_changed => false, batch_size => 200)" 2>"$work/run2.err" &
run_pid=$!; bg_pids+=("$run_pid")
wait_running || die "the second run did not start"
second=$(psql -X -q -At -d "$db" -v VERBOSITY=verbose -c "CALL personalize.refresh_batch_recommendations()" 2>&1 | head -1)
is "$(echo "$second" | grep -o '55P03: refresh_batch_recommendations() is already running')" "55P03: refresh_batch_recommendations() is already running" \
   "a second concurrent run is refused with 55P03"
wait "$run_pid"; ok $? "the full run under readers succeeds"
touch "$work/published"
wait "$poll_pid"; wait "$rr_pid"
is "$(sort -u "$work/rr.out")" "$before" "a REPEATABLE READ reader that started before the run kept seeing the old set after it was published"
is "$(last_run "status || ' ' || mode")" "succeeded full" "its run row says succeeded, full (the refused call left no row)"
is "$(q "SELECT count(*) FROM personalize.batch_recommendation_runs")" 2 "two runs recorded"
polls=$(wc -l < "$work/polls")
is "$(sort -u "$work/polls")" "$customers true" "each of $polls polls during the run saw every customer, all old rows or all new ones"
echo "# polls: $(sort "$work/polls" | uniq -c | tr '\n' ';')"
after=$(q "$checksum")
ok "$([ "$before" != "$after" ] && echo 0 || echo 1)" "the run replaced the rows (new generated_at)"
is "$(q "$(printf "$equal_sql" true true)")" "0 0" "and the table still equals recommend()"
q "SELECT '# differs: ' || d.customer_id || ' ' || d.rank || ' ' || d.product_id || ' ' || d.score || ' ' || d.reason || ' ' || b.product_id || ' ' || b.score || ' ' || b.reason
   FROM (SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason FROM personalize.customers c, personalize.recommend(c.customer_id, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord)
         EXCEPT SELECT customer_id, rank, product_id, score, reason FROM personalize.batch_recommendations) d
   JOIN personalize.batch_recommendations b USING (customer_id, rank) ORDER BY d.customer_id, d.rank LIMIT 12"

# --- a cancelled run leaves the table as it was ---------------------------------------------
before=$(q "$checksum")
psql -X -q -d "$db" -c "CALL personalize.refresh_batch_recommendations(only_changed => false, batch_size => 100)" 2>"$work/run3.err" &
run_pid=$!; bg_pids+=("$run_pid")
wait_running || die "the run to cancel did not start"
q "SELECT pg_cancel_backend(pid) FROM personalize.batch_recommendation_runs WHERE status = 'running'" >/dev/null
wait "$run_pid"; rc=$?
ok "$([ $rc != 0 ] && echo 0 || echo 1)" "the cancelled CALL fails"
is "$(grep -o 'ERROR:  canceling statement due to user request' "$work/run3.err")" "ERROR:  canceling statement due to user request" "with the cancel's message"
is "$(last_run "status || ' ' || error")" "failed 57014: canceling statement due to user request" "its run row: failed, 57014"
is "$(q "$checksum")" "$before" "the published table is untouched"
is "$(q "SELECT (SELECT count(*) FROM personalize._batch_staging) + (SELECT count(*) FROM personalize._batch_todo)")" 0 "staging is emptied"

# --- new events for five customers: an incremental run recomputes exactly those -------------
five=$(q "SELECT string_agg(customer_id::text, ',' ORDER BY customer_id) FROM (SELECT customer_id FROM personalize.customers ORDER BY customer_id DESC LIMIT 5) c")
q "INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
   SELECT c, (SELECT product_id FROM personalize.popular ORDER BY rank LIMIT 1 OFFSET (c % 7)), 'purchase', '2011-12-09 13:00+00'
   FROM unnest('{$five}'::bigint[]) c" || die "cannot add events"
before_rows=$(q "SELECT count(*) FROM personalize.batch_recommendations")
q "CREATE TABLE public.batch_before AS SELECT customer_id, generated_at FROM personalize.batch_recommendations"
t0=$(date +%s.%N)
psql -X -q -d "$db" -c "CALL personalize.refresh_batch_recommendations()" 2>"$work/run4.err"
ok $? "the incremental run succeeds"
echo "# incremental run: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
is "$(last_run "status || ' ' || mode || ' ' || customers_total")" "succeeded incremental 5" "its run row: incremental, 5 customers"
is "$(q "SELECT string_agg(DISTINCT b.customer_id::text, ',' ORDER BY b.customer_id::text) FROM personalize.batch_recommendations b
         WHERE NOT EXISTS (SELECT FROM public.batch_before o WHERE o.customer_id = b.customer_id AND o.generated_at = b.generated_at)")" \
   "$(echo "$five" | tr ',' '\n' | sort | paste -sd,)" "exactly the five customers with new events were recomputed"
is "$(q "$(printf "$equal_sql" "c.customer_id = ANY ('{$five}')" "b.customer_id = ANY ('{$five}')")")" "0 0" "their rows equal recommend() again"
is "$(q "SELECT count(*) FROM personalize.batch_recommendations")" "$before_rows" "the other customers' rows are all still there"

# --- a BI role with only grant_bi() -----------------------------------------------------------
q "CREATE ROLE $bi" && q "SELECT count(*) FROM personalize.grant_bi('$bi')" >/dev/null
is "$(q "SET ROLE $bi; SELECT count(*) = (SELECT count(*) FROM personalize.batch_recommendations) FROM personalize.batch_recommendations_named WHERE product_name IS NOT NULL")" t \
   "a BI role with only grant_bi() reads batch_recommendations_named, product names included"
is "$(psql -X -q -At -d "$db" -v VERBOSITY=sqlstate -c "SET ROLE $bi" -c "SELECT count(*) FROM personalize.customers" 2>&1)" "ERROR:  42501" \
   "and not the customers"
q "DROP TABLE public.batch_before"
exit 0
