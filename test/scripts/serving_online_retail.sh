#!/bin/bash
# The serving surface of issue 12 on the real Online Retail data: similar_items() returns
# products that co-occur with the product (or fill with popular ones), never itself, never an
# inactive product; recommend_for_items() for two-product carts never returns either; filtered
# recommend() calls return k rows that all satisfy their filters; explain() sums to
# recommend()'s score for every returned product of sampled customers under three variants.
# Online Retail has no categories nor stock flags: every product gets one of 20 categories
# (by id) and attributes.in_stock (false for every 7th product); every 50th product is made
# inactive. Runs inside pg_virtualenv. Creates personalize_serving_<pid>, drops it. TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
db=personalize_serving_$$
n=0
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
die() { echo "serving_online_retail: $*" >&2; echo "Bail out! $*"; exit 2; }
ok()  { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is()  { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q()   { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

createdb "$db" || die "cannot create $db"
q "CREATE EXTENSION personalize" >/dev/null || die "cannot create the extension"
PGDATABASE=$db bash test/load_online_retail.sh >/dev/null 2>&1 || die "cannot load Online Retail"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL' || die "cannot prepare the data"
SELECT personalize.refresh_neighbors(all_products => true);
SELECT personalize.refresh_popular();
UPDATE personalize.products SET category = 'cat' || lpad((product_id % 20)::text, 2, '0'),
    attributes = coalesce(attributes, '{}') || jsonb_build_object('in_stock', product_id % 7 <> 0),
    active = product_id % 50 <> 0;
CREATE TABLE sample_products AS
SELECT product_id FROM personalize.item_counts ORDER BY customers DESC, product_id LIMIT 150;
INSERT INTO sample_products
SELECT product_id FROM (SELECT product_id FROM personalize.item_counts WHERE customers BETWEEN 2 AND 20
                        ORDER BY product_id) s WHERE product_id % 13 = 0 LIMIT 150;
CREATE TABLE sample_customers AS
SELECT customer_id FROM (SELECT DISTINCT customer_id FROM personalize.customer_items) c
WHERE customer_id % 29 = 0 ORDER BY customer_id LIMIT 150;
SQL
np=$(q "SELECT count(*) FROM sample_products")
nc=$(q "SELECT count(*) FROM sample_customers")
[ "$np" -ge 200 ] && [ "$nc" -ge 100 ] || die "samples too small ($np products, $nc customers)"

# similar_items(): never itself, never inactive, k rows; what comes from the lists co-occurs
is "$(q "SELECT count(*) FILTER (WHERE s.product_id = x.product_id) || '/' || count(*) FILTER (WHERE NOT p.active)
           || '/' || count(DISTINCT x.product_id) FILTER (WHERE (SELECT count(*) FROM personalize.similar_items(x.product_id, 10)) <> 10)
         FROM sample_products x, personalize.similar_items(x.product_id, 10) s
         JOIN personalize.products p ON p.product_id = s.product_id")" \
   "0/0/0" "similar_items() for $np products: never the product itself, never an inactive one, always 10 rows"
is "$(q "SELECT count(*) FILTER (WHERE personalize.cooccurrence_count(x.product_id, s.product_id) = 0)
         FROM sample_products x, personalize.similar_items(x.product_id, 10, 'cooccurrence') s
         WHERE s.reason LIKE 'goes with %' OR s.reason LIKE 'bought with %'")|$(q "SELECT count(*) > 1000
         FROM sample_products x, personalize.similar_items(x.product_id, 10, 'cooccurrence') s
         WHERE s.reason LIKE 'goes with %'")" \
   "0|t" "similar_items(): every product it gives from the neighbour lists co-occurs with the product (over 1,000 such rows)"
is "$(q "SELECT count(*) FILTER (WHERE n.neighbor_id IS NULL) FROM sample_products x
         CROSS JOIN LATERAL (SELECT product_id, row_number() OVER () AS r FROM personalize.similar_items(x.product_id, 3, 'cooccurrence')) s
         LEFT JOIN LATERAL (SELECT l.neighbor_id FROM personalize.neighbor_list l JOIN personalize.products p ON p.product_id = l.neighbor_id
                            WHERE l.measure = 'llr' AND l.product_id = x.product_id AND p.active
                            ORDER BY l.rank LIMIT 3) n ON n.neighbor_id = s.product_id
         WHERE (SELECT count(*) FROM personalize.neighbor_list l JOIN personalize.products p ON p.product_id = l.neighbor_id
                WHERE l.measure = 'llr' AND l.product_id = x.product_id AND p.active) >= 3")" \
   "0" "similar_items(p, 3, 'cooccurrence') is the top 3 active neighbours of p's stored list"

# recommend_for_items(): two-product carts
is "$(q "SELECT count(*) FILTER (WHERE r.product_id IN (a.product_id, b.product_id)) || '/' || count(*) FILTER (WHERE NOT p.active) || '/' || count(*)
         FROM (SELECT product_id, row_number() OVER (ORDER BY product_id) AS i FROM sample_products) a
         JOIN (SELECT product_id, row_number() OVER (ORDER BY product_id DESC) AS i FROM sample_products) b USING (i),
         personalize.recommend_for_items(ARRAY[a.product_id, b.product_id], 10) r
         JOIN personalize.products p ON p.product_id = r.product_id")" \
   "0/0/$((np * 10))" "recommend_for_items() for $np two-product carts: never a cart product, never inactive, 10 rows each"

# filtered recommend(): every row passes, k rows each (thousands of products pass)
filters="exclude_products => (SELECT array_agg(r0.product_id) FROM personalize.recommend(c.customer_id) r0), exclude_categories => '{cat03}', max_price => 10, attributes => '{\"in_stock\": true}', exclude_interacted => '{purchase}'"
is "$(q "SELECT count(*) FILTER (WHERE NOT coalesce(p.category <> 'cat03' AND p.price <= 10 AND p.attributes @> '{\"in_stock\": true}' AND p.active, false)
                                  OR EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = c.customer_id AND i.product_id = r.product_id)
                                  OR r.product_id IN (SELECT r0.product_id FROM personalize.recommend(c.customer_id) r0))
           || '/' || count(*)
         FROM sample_customers c, personalize.recommend(c.customer_id, k => 10, $filters) r
         JOIN personalize.products p ON p.product_id = r.product_id")" \
   "0/$((nc * 10))" "filtered recommend() for $nc customers: every row passes the filters, 10 rows each"
is "$(q "SELECT count(*) FILTER (WHERE NOT coalesce(p.category = ANY ('{cat01,cat02}') AND p.price BETWEEN 1 AND 5, false)) || '/' || count(*)
         FROM sample_customers c, personalize.recommend(c.customer_id, 'cooccurrence', 10, categories => '{cat01,cat02}', min_price => 1, max_price => 5) r
         JOIN personalize.products p ON p.product_id = r.product_id")" \
   "0/$((nc * 10))" "recommend(categories, price band) for $nc customers: every row passes, 10 rows each"

# explain() sums to recommend()'s scores
is "$(q "SELECT count(*) FILTER (WHERE abs(e.total - r.score) > 1e-12 * greatest(1, abs(r.score))) || '/' || (count(*) > 0)
         FROM (SELECT customer_id FROM sample_customers LIMIT 40) c
         CROSS JOIN (VALUES ('hybrid'), ('cooccurrence'), ('popular')) v(variant)
         CROSS JOIN LATERAL personalize.recommend(c.customer_id, v.variant, 10) r
         CROSS JOIN LATERAL (SELECT sum(value) AS total FROM personalize.explain(c.customer_id, r.product_id, v.variant)) e")" \
   "0/true" "explain() sums to recommend()'s score for every returned product (40 customers x 3 variants)"
exit 0
