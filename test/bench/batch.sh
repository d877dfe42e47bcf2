#!/bin/bash
# Throughput of refresh_batch_recommendations() against the plain query (issue 12, part 3),
# in one run on the Online Retail file (loaded through the triggers, then CALL refresh()),
# personalize.as_of fixed so every mode scores alike. Modes, each timed by the client,
# alternated twice:
#   plain        CREATE TABLE ... AS SELECT FROM customers, LATERAL recommend(c, NULL, 10)
#                (one transaction, no progress, no atomic replace)
#   full         CALL refresh_batch_recommendations(only_changed => false): batches of 1000
#                committed to staging, then one publish transaction
#   incremental  CALL refresh_batch_recommendations() after new events for 1% of the
#                customers (and with nothing changed)
# Also: whether the plain query, run in one statement, and in statements of 200 customers,
# give the same rows (recommend() called in different batches). Prints customers/s.
# Run inside pg_virtualenv:  pg_virtualenv -t bash test/bench/batch.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
db=personalize_batch_bench
q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.2f s, %.0f customers/s", b - a, n / (b - a) }'; }
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null || exit 2
q -c "ALTER DATABASE $db SET personalize.as_of = '2011-12-10 00:00+00'"
PGDATABASE=$db bash test/load_online_retail.sh >/dev/null 2>&1 || exit 2
q -c 'CALL personalize.refresh()' >/dev/null
q -c 'VACUUM ANALYZE' >/dev/null
n=$(q -c 'SELECT count(*) FROM personalize.customers')
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo); PostgreSQL $(q -c 'SHOW server_version'); $n customers"
for round in 1 2; do
  q -c 'DROP TABLE IF EXISTS public.plain'
  t0=$(now)
  q -c "CREATE TABLE public.plain AS SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason
        FROM personalize.customers c, personalize.recommend(c.customer_id, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord)"
  t1=$(now)
  echo "round $round plain:       $(rate "$n" "$t0" "$t1")"
  t0=$(now)
  q -c 'CALL personalize.refresh_batch_recommendations(only_changed => false)'
  t1=$(now)
  echo "round $round full:        $(rate "$n" "$t0" "$t1")  (in-procedure: $(q -c "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 2) FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1") s)"
done
t0=$(now); q -c 'CALL personalize.refresh_batch_recommendations()'; t1=$(now)
echo "incremental, nothing changed: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }')"
m=$(( n / 100 ))
q -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
      SELECT c.customer_id, (SELECT product_id FROM personalize.popular ORDER BY rank LIMIT 1), 'view', '2011-12-09 13:00+00'
      FROM (SELECT customer_id FROM personalize.customers ORDER BY customer_id LIMIT $m) c"
t0=$(now); q -c 'CALL personalize.refresh_batch_recommendations()'; t1=$(now)
echo "incremental, $m customers changed: $(rate "$m" "$t0" "$t1") ($(q -c "SELECT customers_total FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1") recomputed)"
# the same query in statements of 200 customers
q -c 'DROP TABLE IF EXISTS public.chunked; CREATE TABLE public.chunked (LIKE public.plain)'
q -c "DO \$\$ DECLARE lo bigint := -1; ids bigint[]; BEGIN LOOP
        SELECT array_agg(customer_id ORDER BY customer_id) INTO ids FROM (SELECT customer_id FROM personalize.customers WHERE customer_id > lo ORDER BY customer_id LIMIT 200) s;
        EXIT WHEN ids IS NULL;
        INSERT INTO public.chunked SELECT c, x.ord::integer, x.product_id, x.score, x.reason FROM unnest(ids) c, personalize.recommend(c, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord);
        lo := ids[cardinality(ids)]; END LOOP; END \$\$"
echo "plain query in one statement vs in statements of 200 customers (after the new events; rows differing): $(q -c "
  CREATE TEMP TABLE one AS SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason FROM personalize.customers c, personalize.recommend(c.customer_id, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord);
  SELECT (SELECT count(*) FROM (TABLE one EXCEPT TABLE public.chunked) d) || ' ' || (SELECT count(*) FROM (TABLE public.chunked EXCEPT TABLE one) d)")"
q -c "SELECT 'differs: ' || customer_id || ' ' || rank || ' ' || product_id || ' ' || score || ' ' || reason FROM (TABLE one EXCEPT TABLE public.chunked) d ORDER BY 1 LIMIT 6" 2>/dev/null
q -c "SELECT 'differs: ' || d.customer_id || ' ' || d.rank || ' ' || d.product_id || ' ' || d.score || ' ' || d.reason FROM (SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason FROM personalize.customers c, personalize.recommend(c.customer_id, NULL, 10) WITH ORDINALITY x(product_id, score, reason, ord) EXCEPT TABLE public.chunked) d ORDER BY 1 LIMIT 6"
