#!/bin/bash
# The EASE model (issue 13): _ease_lists() against a hand-derived 3-product example and
# against numpy on a random fixture; refresh_ease() stores the 'ease' lists that
# recommend(c, 'ease') and similar_items() serve, with the 'llr' fallback for products
# outside the model; a cancel in the middle of the solve (5,000 products) ends with 57014
# quickly, leaves the previous lists and gives the memory back, and the backend has one
# thread; bad arguments are refused with 22023 and change nothing.
# Runs inside pg_virtualenv (cron.database_name = postgres). TAP output.
set -uo pipefail
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
db=personalize_ease
py=/usr/bin/python3     # Debian's, with python3-numpy (test/setup.sh)
export PGOPTIONS="-c client_min_messages=warning"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -d "$db" "$@" 2>&1; }
made_cron=$(psql -X -q -At -d postgres -c "SELECT count(*) = 0 FROM pg_extension WHERE extname = 'pg_cron'")
cleanup() {
  psql -X -q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = '$db'" >/dev/null 2>&1
  [ "$made_cron" = t ] && psql -X -q -d postgres -c 'DROP EXTENSION IF EXISTS pg_cron' >/dev/null 2>&1
  dropdb --if-exists "$db" >/dev/null 2>&1
}
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" || exit 1
trap cleanup EXIT
psql -X -q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null 2>&1
q -c 'CREATE EXTENSION personalize' >/dev/null

# (a) three products, hand-derived: G + I = [[4,2,1],[2,4,0],[1,0,4]], P = adj / 44 =
# [[16,-8,-4],[-8,15,2],[-4,2,12]] / 44, B_ij = -P_ij / P_jj: B_12 = 8/15, B_13 = 1/3,
# B_21 = 1/2, B_31 = 1/4 (B_23 and B_32 are negative: left out)
q <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name) SELECT g, 'p' || g FROM generate_series(1, 3) g;
CREATE TABLE hand_items (product_id bigint, customers bigint);
CREATE TABLE hand_pairs (product_a bigint, product_b bigint, customers bigint);
INSERT INTO hand_items VALUES (1, 3), (2, 3), (3, 3);
INSERT INTO hand_pairs VALUES (1, 2, 2), (1, 3, 1);
SQL
got=$(q -c "SELECT string_agg(format('%s:%s:%s:%s', product_id, neighbor_ids, (SELECT array_agg(round(x::numeric, 12)) FROM unnest(scores) x), counts), ' ' ORDER BY product_id)
            FROM personalize._ease_lists('hand_items', 'hand_pairs', 3, 1.0, 10)")
is "$got" "1:{2,3}:{0.533333333333,0.333333333333}:{2,1} 2:{1}:{0.500000000000}:{2} 3:{1}:{0.250000000000}:{1}" \
   "the 3-product example gives the hand-derived weights, best first, with the pair counts"
is "$(q -c "SELECT string_agg(product_id || ':' || neighbor_ids::text, ' ' ORDER BY product_id) FROM personalize._ease_lists('hand_items', 'hand_pairs', 3, 1.0, 1)")" \
   "1:{2} 2:{1} 3:{1}" "k = 1 keeps the best weight only"
q -c "UPDATE personalize.products SET active = false WHERE product_id = 3" >/dev/null
is "$(q -c "SELECT string_agg(product_id || ':' || neighbor_ids::text, ' ' ORDER BY product_id) FROM personalize._ease_lists('hand_items', 'hand_pairs', 3, 1.0, 10)")" \
   "1:{2} 2:{1}" "an inactive product is not in the model"
q -c "UPDATE personalize.products SET active = true WHERE product_id = 3" -c "DELETE FROM personalize.products" >/dev/null

# (b) a random fixture through the real model tables: 40 products, 300 customers
q <<'SQL' >/dev/null
SELECT setseed(0.13);
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(101, 140) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 300) g;
-- popular products are bought more often, so that the ranking by customers is clear
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT DISTINCT ON (c, p) c, p, 'purchase', timestamptz '2024-01-01' + c * interval '1 minute'
FROM generate_series(1, 300) c, LATERAL (SELECT 101 + floor(40 * random() ^ 2)::int AS p
                                         FROM generate_series(1, 3 + c % 6) WHERE c > 0) x;
SQL
CALL_REFRESH=$(q -c 'CALL personalize.refresh()')
python_ok=$($py -c 'import numpy' >/dev/null 2>&1 && echo yes || echo no)
tap $([ "$python_ok" = yes ] && echo 0 || echo 1) "python3-numpy is installed (test/setup.sh)"
q -c "COPY (SELECT product_id, customers FROM personalize.item_counts ORDER BY 1) TO STDOUT" > /tmp/ease_items.$$
q -c "COPY (SELECT product_a, product_b, customers FROM personalize.pair_counts ORDER BY 1, 2) TO STDOUT" > /tmp/ease_pairs.$$
q -c "COPY (SELECT product_id, neighbor_ids, scores FROM personalize._ease_lists('personalize.item_counts', 'personalize.pair_counts', 40, 7.5, 40) ORDER BY 1) TO STDOUT" > /tmp/ease_got.$$
out=$($py - /tmp/ease_items.$$ /tmp/ease_pairs.$$ /tmp/ease_got.$$ <<'PY'
import sys
import numpy as np
items = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
pairs = [l.split('\t') for l in open(sys.argv[2]).read().split('\n') if l]
ids = [int(p) for p, _ in items]
pos = {p: i for i, p in enumerate(ids)}
G = np.zeros((len(ids), len(ids)))
for p, c in items:
    G[pos[int(p)], pos[int(p)]] = float(c)
for a, b, c in pairs:
    G[pos[int(a)], pos[int(b)]] = G[pos[int(b)], pos[int(a)]] = float(c)
P = np.linalg.inv(G + 7.5 * np.eye(len(ids)))
B = -P / np.diag(P)[np.newaxis, :]
np.fill_diagonal(B, 0.0)
want = {}
for i, p in enumerate(ids):
    row = sorted(((B[i, j], ids[j]) for j in range(len(ids)) if B[i, j] > 0), key=lambda t: (-t[0], t[1]))
    if row:
        want[p] = row
got = {}
for l in open(sys.argv[3]).read().split('\n'):
    if l:
        p, n, s = l.split('\t')
        got[int(p)] = list(zip([float(x) for x in s.strip('{}').split(',')], [int(x) for x in n.strip('{}').split(',')]))
worst = 0.0
bad = sorted(set(want) ^ set(got))
for p in want:
    if p in got:
        if [q for _, q in want[p]] != [q for _, q in got[p]]:
            bad.append(p)
        else:
            worst = max([worst] + [abs(a - b) for (a, _), (b, _) in zip(want[p], got[p])])
print(len(ids), len(want), sum(len(r) for r in want.values()), 'ok' if not bad and worst <= 1e-9 else 'bad', bad[:5], '%.2g' % worst)
PY
)
rm -f /tmp/ease_items.$$ /tmp/ease_pairs.$$ /tmp/ease_got.$$
tap $([[ "$out" == *" ok "* ]] && echo 0 || echo 1) "the random fixture's lists equal numpy's inverse (products, lists, weights, ok?, products that differ, largest difference: $out)"

# refresh_ease(): 30 of the 40 products in the model; stored as B / the median best weight
q -c "ALTER DATABASE $db SET personalize.ease_products = 30" -c "ALTER DATABASE $db SET personalize.ease_lambda = 7.5" >/dev/null
out=$(q -c 'CALL personalize.refresh_ease()')
tap $? "CALL personalize.refresh_ease() runs (${out##*$'\n'})"
is "$(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'ease'")" \
   "$(q -c "SELECT count(*) FROM personalize._ease_lists('personalize.item_counts', 'personalize.pair_counts', 30, 7.5, 100)")" \
   "one 'ease' list per product of the model with a positive weight"
is "$(q -c "SELECT status || ' ' || items || ' ' || (details ->> 'products') || ' ' || (details ->> 'k') FROM personalize.maintenance_runs WHERE job = 'refresh_ease'")" \
   "succeeded $(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'ease'") 30 100" "the run is logged"
is "$(q -c "WITH l AS (SELECT * FROM personalize._ease_lists('personalize.item_counts', 'personalize.pair_counts', 30, 7.5, 100)),
                 s AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY scores[1]) AS scale,
                              (SELECT (details ->> 'scale')::float8 FROM personalize.maintenance_runs WHERE job = 'refresh_ease') AS logged
                       FROM l)
            SELECT bool_and(n.neighbor_ids = l.neighbor_ids AND n.counts = l.counts
                            AND abs(n.scores[1] * s.scale - l.scores[1]) < 1e-12
                            AND abs(n.scores[cardinality(n.scores)] * s.scale - l.scores[cardinality(l.scores)]) < 1e-12
                            AND abs(s.logged - s.scale) < 1e-12)
            FROM l JOIN personalize.neighbors n ON n.measure = 'ease' AND n.product_id = l.product_id CROSS JOIN s")" t \
   "the stored lists are the weights divided by the median best weight (details.scale)"

# (c) serving: a customer with one product in the model gets its EASE list in order; one with
# a product outside the model gets its llr list; similar_items() serves the EASE list
inside=$(q -c "SELECT product_id FROM personalize.neighbors WHERE measure = 'ease' AND cardinality(neighbor_ids) >= 3 ORDER BY product_id LIMIT 1")
outside=$(q -c "SELECT ic.product_id FROM personalize.item_counts ic JOIN personalize.neighbors n ON n.measure = 'llr' AND n.product_id = ic.product_id AND cardinality(n.neighbor_ids) >= 3
                WHERE NOT EXISTS (SELECT FROM personalize.neighbors e WHERE e.measure = 'ease' AND e.product_id = ic.product_id) ORDER BY ic.customers, ic.product_id LIMIT 1")
tap $([ -n "$inside" ] && [ -n "$outside" ] && echo 0 || echo 1) "the fixture has a product in the model ($inside) and one outside it with an llr list ($outside)"
q -c "INSERT INTO personalize.customers (customer_id) VALUES (9001), (9002)" \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (9001, $inside, 'purchase'), (9002, $outside, 'purchase')" >/dev/null
is "$(q -c "SELECT array_agg(product_id ORDER BY rank) FROM (SELECT product_id, row_number() OVER () AS rank FROM personalize.recommend(9001, 'ease', 3)) r")" \
   "$(q -c "SELECT neighbor_ids[1:3] FROM personalize.neighbors WHERE measure = 'ease' AND product_id = $inside")" \
   "recommend(c, 'ease') serves the EASE list of the customer's product, best first"
is "$(q -c "SELECT array_agg(product_id ORDER BY rank) FROM (SELECT product_id, row_number() OVER () AS rank FROM personalize.recommend(9002, 'ease', 3)) r")" \
   "$(q -c "SELECT neighbor_ids[1:3] FROM personalize.neighbors WHERE measure = 'llr' AND product_id = $outside")" \
   "a product outside the model falls back to its llr list"
top=$(q -c "SELECT product_id FROM personalize.recommend(9002, 'ease', 1)")
tap $([[ "$(q -c "SELECT detail FROM personalize.explain(9002, $top, 'ease') WHERE component = 'history'")" == *"llr, the product has no EASE list"* ]] && echo 0 || echo 1) "explain() names the fallback"
top=$(q -c "SELECT product_id FROM personalize.recommend(9001, 'ease', 1)")
tap $([[ "$(q -c "SELECT detail FROM personalize.explain(9001, $top, 'ease') WHERE component = 'history'")" == "EASE list: "* ]] && echo 0 || echo 1) "explain() names the EASE list"
is "$(q -c "SELECT array_agg(product_id ORDER BY rank) FROM (SELECT product_id, row_number() OVER () AS rank FROM personalize.similar_items($inside, 3, 'ease')) r")" \
   "$(q -c "SELECT neighbor_ids[1:3] FROM personalize.neighbors WHERE measure = 'ease' AND product_id = $inside")" \
   "similar_items(p, 3, 'ease') serves the EASE list"
# customer 9002's events are pending: folded, they mark the product dirty (issue 14), and a
# dirty product without a stored list is computed live
q -c "SELECT personalize.fold_deltas()" -c "DELETE FROM personalize.neighbors WHERE measure = 'llr' AND product_id = $outside" >/dev/null
is "$(q -c "SELECT array_agg(product_id ORDER BY rank)::text || ' ' || bool_and(reason LIKE '%(live)') FROM (SELECT product_id, reason, row_number() OVER () AS rank FROM personalize.recommend(9002, 'ease', 3)) r")" \
   "$(q -c "SELECT neighbor_ids[1:3] FROM personalize._compute_neighbors(ARRAY['llr'], ARRAY[$outside::bigint])") true" \
   "without a stored llr list the fallback is computed live"
before=$(q -c "SELECT md5(string_agg(product_id || ':' || scores::text, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")
q -c "SELECT personalize.refresh_neighbors(NULL, true)" -c "SELECT * FROM personalize.rebuild()" >/dev/null
is "$(q -c "SELECT md5(string_agg(product_id || ':' || scores::text, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")" "$before" \
   "refresh_neighbors(all_products => true) and rebuild() keep the 'ease' lists"
is "$(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'llr'") $(q -c "SELECT count(*) FROM personalize.maintenance_runs WHERE job = 'refresh_neighbors' AND details -> 'measures' ? 'ease'")" \
   "$(q -c "SELECT count(*) FROM personalize._compute_neighbors(ARRAY['llr'], (SELECT array_agg(product_id) FROM personalize.item_counts))") 0" \
   "the refresh stores the llr fallback and never computes an 'ease' list by similarity()"
out=$(q -c "SELECT personalize.similarity('ease', 1, 2, 2, 10)")
tap $([[ "$out" == *"ERROR:  22023"* ]] && echo 0 || echo 1) "similarity('ease', ...) is refused: not a pair formula (${out%%$'\n'*})"
out=$(q -c "SELECT personalize.create_variant('ease_pop', 'hybrid', '{\"measure\": \"ease\", \"popularity_weight\": 0.3}')")
tap $([[ "$out" == *"ease_pop" ]] && echo 0 || echo 1) "create_variant() accepts the measure ease (${out##*$'\n'})"

# (e) bad arguments: 22023, nothing changed
before=$(q -c "SELECT md5(string_agg(product_id || ':' || scores::text || refreshed_at, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")
for args in "1, 100, 10" "50001, 100, 10" "30, 0, 10" "30, -1, 10" "30, 'NaN', 10" "30, 'Infinity', 10" "30, 100, 0" "30, 100, 10001"; do
  out=$(q -c "SELECT count(*) FROM personalize._ease_lists('personalize.item_counts', 'personalize.pair_counts', $args)")
  tap $([[ "$out" == "ERROR:  22023"* ]] && echo 0 || echo 1) "_ease_lists(.., $args) is refused (${out%%$'\n'*})"
done
for s in "ease_products = 1" "ease_lambda = 0" "ease_k = 0" "ease_k = 10001"; do
  out=$(q -c 'SELECT FROM personalize._engine_settings()' -c "SET personalize.$s" -c 'CALL personalize.refresh_ease()')
  tap $([[ "$out" == "ERROR:  22023"* ]] && echo 0 || echo 1) "SET personalize.$s is refused (${out%%$'\n'*})"
done
is "$(q -c "SELECT md5(string_agg(product_id || ':' || scores::text || refreshed_at, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")" "$before" \
   "after the refused calls the 'ease' lists are unchanged"

# scheduling
job=$(q -c "SELECT personalize.schedule_ease()")
is "$(psql -X -q -At -d postgres -c "SELECT schedule || ' ' || command || ' ' || database FROM cron.job WHERE jobname = 'personalize-refresh-ease@$db'")" \
   "15 3 * * * CALL personalize.refresh_ease() $db" "schedule_ease() creates the nightly job ($job)"
is "$(q -c 'SELECT personalize.unschedule_ease()')" t "unschedule_ease() removes it"

# (d) a cancel in the middle of the solve: 5,000 synthetic products (counts written straight
# into the model tables of this test database), the previous lists in place
q <<'SQL' >/dev/null
TRUNCATE personalize.interactions;
SET personalize.allow_drop_with_data = on;
SELECT setseed(0.5);
INSERT INTO personalize.products (product_id, name) SELECT g, 'synthetic ' || g FROM generate_series(100001, 105000) g;
INSERT INTO personalize.item_counts_base (product_id, customers) SELECT g, 1000 + (g * 7919) % 5000 FROM generate_series(100001, 105000) g;
-- about 80 pairs a product, of 1 to 3 customers: G is diagonally dominant, so positive definite
INSERT INTO personalize.pair_counts_base (product_a, product_b, customers)
SELECT DISTINCT ON (a, b) a, b, 1 + floor(3 * random())::int
FROM (SELECT 100001 + floor(5000 * random())::int AS a, 100001 + floor(5000 * random())::int AS b
      FROM generate_series(1, 200000) g) x WHERE a < b;
INSERT INTO personalize.neighbors (measure, product_id, neighbor_ids, scores, counts) VALUES ('ease', 1, '{2}', '{1}', '{1}')
    ON CONFLICT DO NOTHING;
SQL
old=$(q -c "SELECT count(*) || ' ' || md5(string_agg(product_id || ':' || scores::text, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")
log=$(mktemp)
psql -X -q -At -v VERBOSITY=sqlstate -d "$db" > "$log" 2>&1 <<'SQL' &
SELECT 'pid', pg_backend_pid();
SELECT count(*) >= 0 FROM personalize._ease_lists('personalize.item_counts_base', 'personalize.pair_counts_base', 5000, 100, 10);
SELECT 'warm';
SELECT pg_sleep(1);
SET personalize.ease_products = 5000;
CALL personalize.refresh_ease();
SELECT 'after', extract(epoch FROM clock_timestamp());
SELECT pg_sleep(3);
SQL
bg=$!
for _ in $(seq 1 100); do pid=$(sed -n 's/^pid|//p' "$log"); [ -n "$pid" ] && break; sleep 0.1; done
# the baseline: after one whole run in the session (OpenBLAS keeps its work buffer, and malloc
# its arena, for the life of the backend: docs/design.md, "EASE")
for _ in $(seq 1 600); do grep -q '^warm' "$log" && break; sleep 0.1; done
sleep 0.3
base_rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null)
app=""
for _ in $(seq 1 600); do
  app=$(psql -X -At -d "$db" -c "SELECT application_name FROM pg_stat_activity WHERE pid = $pid")
  [[ "$app" == "personalize.ease: "[fim]* ]] && break
  sleep 0.05
done
sleep 0.2
threads=$(ls /proc/"$pid"/task | wc -l)
solve_rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status)
phase=$(psql -X -At -d "$db" -c "SELECT application_name FROM pg_stat_activity WHERE pid = $pid")
cancel_at=$(psql -X -At -d "$db" -c "SELECT extract(epoch FROM clock_timestamp()) FROM pg_cancel_backend($pid)")
for _ in $(seq 1 100); do grep -q '^after|' "$log" && break; sleep 0.1; done
sleep 1
after_rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null)
wait $bg
after_at=$(sed -n 's/^after|//p' "$log")
tap $([[ "$phase" == "personalize.ease: "[fim]* ]] && echo 0 || echo 1) "the cancel came in the middle of the solve (application_name '$phase')"
is "$threads" 1 "the backend solving has exactly one thread (/proc/$pid/task)"
tap $([[ "$(cat "$log")" == *"ERROR:  57014"* ]] && echo 0 || echo 1) "refresh_ease() ends with 57014 ($(grep -m1 ERROR "$log"))"
secs=$(awk -v a="$after_at" -v b="$cancel_at" 'BEGIN { printf "%.2f", a - b }')
tap $(awk -v s="$secs" 'BEGIN { exit !(s >= 0 && s < 3) }' && echo 0 || echo 1) "the cancel is honoured within 3 s (${secs} s)"
is "$(q -c "SELECT count(*) || ' ' || md5(string_agg(product_id || ':' || scores::text, ' ' ORDER BY product_id)) FROM personalize.neighbors WHERE measure = 'ease'")" "$old" \
   "the previous 'ease' lists are still there"
is "$(q -c "SELECT status || ' ' || left(error, 6) FROM personalize.maintenance_runs WHERE job = 'refresh_ease' ORDER BY run_id DESC LIMIT 1")" "failed 57014:" \
   "the failed run is logged with its error"
tap $([ -n "$base_rss" ] && [ -n "$solve_rss" ] && [ "$solve_rss" -gt $((base_rss + 100000)) ] && echo 0 || echo 1) \
   "the solve held the matrix (RSS ${base_rss} kB before, ${solve_rss} kB during; the matrix is 195,313 kB)"
tap $([ -n "$after_rss" ] && [ "$after_rss" -lt $((base_rss + 30000)) ] && echo 0 || echo 1) \
   "after the cancel the backend's memory is back near its baseline after a whole run (${after_rss} kB, baseline ${base_rss} kB)"
rm -f "$log"
exit 0
