#!/bin/bash
# Serving latency (issue 12): recommend() without and with typical request-time filters,
# the same filters done the 0.1.0 way (over-fetch k = 1000 and filter in SQL),
# similar_items() and recommend_for_items(), and the variants cooccurrence and ease (issue 13),
# side by side in one run on Online Retail.
#   test/bench/serving.sh [seconds per pgbench run, default 15]
# Online Retail has no categories nor stock flags: every product gets one of 20 categories
# (cat00..cat19, by product id) and attributes.in_stock (false for every 7th product). The
# "typical filters": the 10 products the customer's first page already showed
# (exclude_products: their own top 10, so the walk goes past them), not category cat03,
# price at most 10, in stock. pgbench -n -M prepared -c 1, a uniformly random customer (or
# product, or two-product cart) per call; p50/p99 from the per-transaction log (client round
# trip on localhost included). Prints a markdown table. Runs inside pg_virtualenv.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15}
db=personalize_bench_serving
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
dropdb --if-exists "$db" >/dev/null 2>&1; createdb "$db"
q -c 'CREATE EXTENSION personalize'
PGDATABASE=$db bash test/load_online_retail.sh >/dev/null
q <<'SQL' >/dev/null
SELECT personalize.refresh_neighbors(all_products => true);
SELECT personalize.refresh_popular();
CALL personalize.refresh_ease();
UPDATE personalize.products SET category = 'cat' || lpad((product_id % 20)::text, 2, '0'),
    attributes = coalesce(attributes, '{}') || jsonb_build_object('in_stock', product_id % 7 <> 0);
CREATE SCHEMA bench;
-- customers with a history, with the 10 products their first page showed
CREATE TABLE bench.customers AS
SELECT row_number() OVER (ORDER BY c.customer_id) AS i, c.customer_id,
       ARRAY(SELECT r.product_id FROM personalize.recommend(c.customer_id) r) AS shown
FROM (SELECT DISTINCT customer_id FROM personalize.customer_items) c;
ALTER TABLE bench.customers ADD PRIMARY KEY (i);
-- products with a neighbour list
CREATE TABLE bench.products AS
SELECT row_number() OVER (ORDER BY product_id) AS i, product_id
FROM personalize.neighbors WHERE measure = 'llr';
ALTER TABLE bench.products ADD PRIMARY KEY (i);
VACUUM ANALYZE;
CHECKPOINT;
SQL
nc=$(q -c 'SELECT count(*) FROM bench.customers')
np=$(q -c 'SELECT count(*) FROM bench.products')
filters="exclude_products => s.shown, exclude_categories => '{cat03}', max_price => 10, attributes => '{\"in_stock\": true}'"
cat > "$work/recommend" <<SQL
\set i random(1, $nc)
SELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id) r WHERE s.i = :i;
SQL
cat > "$work/recommend_cooccurrence" <<SQL
\set i random(1, $nc)
SELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, 'cooccurrence') r WHERE s.i = :i;
SQL
cat > "$work/recommend_ease" <<SQL
\set i random(1, $nc)
SELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, 'ease') r WHERE s.i = :i;
SQL
cat > "$work/similar_items_ease" <<SQL
\set i random(1, $np)
SELECT r.* FROM bench.products s, personalize.similar_items(s.product_id, variant => 'ease') r WHERE s.i = :i;
SQL
cat > "$work/recommend_filtered" <<SQL
\set i random(1, $nc)
SELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, k => 10, $filters) r WHERE s.i = :i;
SQL
cat > "$work/overfetch" <<SQL
\set i random(1, $nc)
SELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, k => 1000) r
JOIN personalize.products p USING (product_id)
WHERE s.i = :i AND r.product_id <> ALL (s.shown) AND p.category IS DISTINCT FROM 'cat03'
  AND p.price <= 10 AND p.attributes @> '{"in_stock": true}'
ORDER BY r.score DESC, r.product_id LIMIT 10;
SQL
cat > "$work/similar_items" <<SQL
\set i random(1, $np)
SELECT r.* FROM bench.products s, personalize.similar_items(s.product_id) r WHERE s.i = :i;
SQL
cat > "$work/similar_items_filtered" <<SQL
\set i random(1, $np)
SELECT r.* FROM bench.products s, personalize.similar_items(s.product_id, exclude_categories => '{cat03}', max_price => 10, attributes => '{"in_stock": true}') r WHERE s.i = :i;
SQL
cat > "$work/recommend_for_items" <<SQL
\set a random(1, $np)
\set b random(1, $np)
SELECT r.* FROM personalize.recommend_for_items(ARRAY[(SELECT product_id FROM bench.products WHERE i = :a), (SELECT product_id FROM bench.products WHERE i = :b)]) r;
SQL
pct() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { a[NR] = $1 }
    END { i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++;
          printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'
}
echo "customers with history: $nc, products with a list: $np, $duration s per run, $(nproc) cores"
echo
echo "| call | p50 ms | p99 ms | calls | p50 / recommend() p50 | p99 / recommend() p99 |"
echo "|---|---:|---:|---:|---:|---:|"
base50='' base99=''
for t in recommend recommend_cooccurrence recommend_ease recommend_filtered overfetch similar_items similar_items_ease similar_items_filtered recommend_for_items; do
  pgbench -n -M prepared -f "$work/$t" -c 1 -T 2 "$db" > /dev/null 2>&1        # warm up
  (cd "$work" && pgbench -n -M prepared -f "$work/$t" -c 1 -T "$duration" -l --log-prefix="lat_$t" "$db" > "pgbench_$t.txt" 2>&1)
  read -r p50 p99 n <<< "$(pct "$work"/lat_"$t".*)"
  [ -z "$base50" ] && { base50=$p50; base99=$p99; }
  echo "| $t | $p50 | $p99 | $n | $(awk -v a="$p50" -v b="$base50" 'BEGIN { printf "%.2f", a / b }') | $(awk -v a="$p99" -v b="$base99" 'BEGIN { printf "%.2f", a / b }') |"
done
# every filtered answer passes its filters and has 10 rows whenever 10 products pass
q -c "SELECT 'filtered calls checked: ' || count(DISTINCT i) || ' (' || count(*) || ' rows), rows failing a filter: ' || count(*) FILTER (WHERE bad) || ', short answers: ' || count(DISTINCT i) FILTER (WHERE n < 10)
      FROM (SELECT s.i, r.product_id = ANY (s.shown) OR p.category = 'cat03' OR NOT p.price <= 10 OR NOT p.attributes @> '{\"in_stock\": true}' AS bad,
                   count(*) OVER (PARTITION BY s.i) AS n
            FROM bench.customers s, personalize.recommend(s.customer_id, k => 10, $filters) r
            JOIN personalize.products p USING (product_id) WHERE s.i % 10 = 0) x"
dropdb "$db"
