#!/bin/bash
# The main job on the embedded default: load the real Online Retail data into a
# throw-away cluster (pg_cron preloaded), let the triggers build the model as the
# purchases stream in, and show recommendations for a few customers under two
# variants, with their reasons. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
test/setup.sh
exec pg_virtualenv -t -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
  bash -c 'set -euo pipefail
createdb personalize_demo
export PGDATABASE=personalize_demo
psql -X -q -c "CREATE EXTENSION personalize"
echo "== loading Online Retail (UCI, CC BY 4.0) through the co-occurrence triggers"
SECONDS=0
test/load_online_retail.sh
echo "loaded in ${SECONDS} s"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
\echo == building the neighbour lists and the popularity list (what the pg_cron job does)
SELECT personalize.refresh_neighbors() AS products_refreshed;
-- the data ends on 2011-12-09: recommend as of the day after
SELECT personalize.refresh_popular(as_of => '"'"'2011-12-10'"'"') AS popular_products;
SET personalize.as_of = '"'"'2011-12-10'"'"';
\echo == the model
SELECT * FROM personalize.model_stats;
\echo == recommendations: a regular customer, an occasional one, and an anonymous visitor
\echo ---- variant hybrid (the default)
SELECT r.customer_id, r.rank, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM (VALUES (17850), (12347), (0)) AS c(customer_id),
     LATERAL (SELECT c.customer_id, x.* FROM personalize.recommend(c.customer_id, NULL, 5)
              WITH ORDINALITY AS x(product_id, score, reason, rank)) r
JOIN personalize.products p USING (product_id)
ORDER BY r.customer_id DESC, r.rank;
\echo ---- variant popular
SELECT r.customer_id, r.rank, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM (VALUES (17850), (12347)) AS c(customer_id),
     LATERAL (SELECT c.customer_id, x.* FROM personalize.recommend(c.customer_id, '"'"'popular'"'"', 3)
              WITH ORDINALITY AS x(product_id, score, reason, rank)) r
JOIN personalize.products p USING (product_id)
ORDER BY r.customer_id DESC, r.rank;
\echo == a new customer buys two products: the pair count moves in the same transaction
BEGIN;
SELECT personalize.cooccurrence_count(1765, 2232) AS before;
INSERT INTO personalize.customers (customer_id, country) VALUES (999999, '"'"'France'"'"');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (999999, 1765, '"'"'purchase'"'"'), (999999, 2232, '"'"'purchase'"'"');
SELECT personalize.cooccurrence_count(1765, 2232) AS after;
SELECT p.name, r.reason FROM personalize.recommend(999999, NULL, 3) r JOIN personalize.products p USING (product_id);
ROLLBACK;
SQL
'
