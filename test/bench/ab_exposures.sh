#!/bin/bash
# A/B testing cost (issue 5): the cost per logged exposure (log_exposure, recommend_logged,
# the skip when a customer is out of traffic or no experiment runs) and the time
# experiment_results takes at N exposures (default 1,000,000; pass 10000000 for 10 million).
# Run inside pg_virtualenv:  pg_virtualenv -t bash test/bench/ab_exposures.sh [N]
set -uo pipefail
N=${1:-1000000}
db=personalize_ab_bench
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null
trap 'dropdb --if-exists "$db" >/dev/null 2>&1; rm -f "$tmp"' EXIT
tmp=$(mktemp)

q <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name, price) SELECT g, 'product ' || g, 1 + g % 50 FROM generate_series(1, 1000) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 20000) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, 1 + (c * 7 + i * 13) % 1000, 'purchase', now() - interval '3 days'
FROM generate_series(1, 20000) c, generate_series(1, 5) i;
SELECT count(*) FROM personalize.rebuild();
SELECT personalize.create_experiment('bench', ARRAY['hybrid', 'popular'], traffic => 0.5);
SQL

tps() {  # $1 = label, $2 = SQL with :id
  echo "\\set id random(1, 20000)" > "$tmp"; echo "$2" >> "$tmp"
  local t; t=$(pgbench -n -c 1 -T 10 -f "$tmp" "$db" 2>/dev/null | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
  printf '%-58s %8.0f calls/s  %7.1f us/call\n' "$1" "$t" "$(echo "1000000 / $t" | bc -l)"
}
echo "== cost per call (one client, 10 s each; 2 shared cores)"
tps "recommend(c, NULL, 10), no experiment running" "SELECT count(*) FROM personalize.recommend(:id, NULL, 10);"
tps "log_exposure(c, 10 ids), no experiment running (skip)" "SELECT personalize.log_exposure(:id, '{1,2,3,4,5,6,7,8,9,10}');"
q -c "SELECT personalize.start_experiment('bench')" >/dev/null
tps "recommend(c, NULL, 10), experiment running" "SELECT count(*) FROM personalize.recommend(:id, NULL, 10);"
tps "assigned_variant('bench', c)" "SELECT personalize.assigned_variant('bench', :id);"
tps "log_exposure(c, 10 ids), experiment running (half logged)" "SELECT personalize.log_exposure(:id, '{1,2,3,4,5,6,7,8,9,10}');"
tps "recommend_logged(c, 10), experiment running (half logged)" "SELECT count(*) FROM personalize.recommend_logged(:id, 10);"
echo "exposures logged: $(q -c 'SELECT count(*) FROM personalize.exposures')"
echo "exposures size: $(q -c "SELECT pg_size_pretty(pg_total_relation_size('personalize.exposures'))") for $(q -c 'SELECT count(*) FROM personalize.exposures') rows"

echo "== experiment_results at $N exposures"
q <<SQL >/dev/null
TRUNCATE personalize.exposures;
-- the in-traffic customers among 20,000 ids (by the real assignment), each standing for
-- N / 200,000 customers (id + 20,000 * copy): 10 exposures per customer over 3 days
CREATE TABLE arm_of AS
SELECT row_number() OVER (ORDER BY g) - 1 AS i, g AS customer_id, a.arm FROM generate_series(1, 20000) g
JOIN personalize.experiment_arms a ON a.variant = personalize.assigned_variant('bench', g)
 AND a.experiment_id = (SELECT experiment_id FROM personalize.experiments WHERE name = 'bench');
INSERT INTO personalize.exposures (experiment_id, customer_id, variant, arm, product_ids, shown_at)
SELECT e.experiment_id, ao.customer_id + 20000 * (g / 10 / (SELECT count(*) FROM arm_of)), 'hybrid', ao.arm,
       ARRAY[1 + g % 1000, 1 + (g * 3) % 1000, 1 + (g * 7) % 1000, 1 + (g * 11) % 1000, 1 + (g * 13) % 1000],
       now() - interval '3 days' + (g % 1000) * interval '1 minute'
FROM generate_series(0, $N - 1) g
JOIN arm_of ao ON ao.i = (g / 10) % (SELECT count(*) FROM arm_of)
CROSS JOIN (SELECT experiment_id FROM personalize.experiments WHERE name = 'bench') e;
ANALYZE personalize.exposures;
SQL
echo "exposures: $(q -c 'SELECT count(*) FROM personalize.exposures'), $(q -c "SELECT pg_size_pretty(pg_total_relation_size('personalize.exposures'))")"
# conversions: 5% of the exposed customers click then buy a shown product an hour later
q <<'SQL' >/dev/null
INSERT INTO personalize.customers (customer_id)
SELECT DISTINCT x.customer_id FROM personalize.exposures x ON CONFLICT DO NOTHING;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT DISTINCT ON (x.customer_id) x.customer_id, x.product_ids[1], 'purchase', x.shown_at + interval '1 hour'
FROM personalize.exposures x WHERE x.customer_id % 20 = 0 ORDER BY x.customer_id, x.exposure_id;
ANALYZE personalize.interactions;
SQL
echo "interactions: $(q -c 'SELECT count(*) FROM personalize.interactions')"
for i in 1 2; do
  s=$(date +%s.%N)
  q -c "SELECT arm, exposed_customers, exposures, conversions, round(conversion_rate::numeric, 4) FROM personalize.experiment_results WHERE experiment = 'bench' ORDER BY arm" | tr '\n' ' '
  echo " -- run $i: $(echo "$(date +%s.%N) - $s" | bc) s"
done
