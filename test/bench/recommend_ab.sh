#!/bin/bash
# recommend() and the calls sharing its ranking, one library against another, in one run on
# one cluster and the same data (issue 14, part 3): the Online Retail model of serving.sh
# is built once, cloned into a second database whose personalize functions point at the
# other library, and pgbench runs alternate between the two databases (two rounds).
#   test/bench/recommend_ab.sh OLD_LIBRARY LIBDIR [seconds per run, default 15]
# OLD_LIBRARY: a personalize.so built from the commit to compare with (same SQL version);
# LIBDIR: the directory the server loads $libdir from (with extension_destdir, the private
# install's usr/lib/postgresql/15/lib). Runs inside pg_virtualenv (PG* set). Prints a
# markdown table: p50/p99 per call and library, and new/old ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
old_lib=$1 libdir=$2 duration=${3:-15}
db=personalize_bench_ab
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$libdir/personalize_ab_old.so"' EXIT
cp "$old_lib" "$libdir/personalize_ab_old.so"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
for d in "$db" "${db}_old"; do dropdb --if-exists "$d" >/dev/null 2>&1; done
createdb "$db"
q -c 'CREATE EXTENSION personalize'
PGDATABASE=$db bash test/load_online_retail.sh >/dev/null
q <<'SQL' >/dev/null
SELECT personalize.refresh_neighbors(all_products => true);
SELECT personalize.refresh_popular();
CALL personalize.refresh_ease();
UPDATE personalize.products SET category = 'cat' || lpad((product_id % 20)::text, 2, '0'),
    attributes = coalesce(attributes, '{}') || jsonb_build_object('in_stock', product_id % 7 <> 0);
CREATE SCHEMA bench;
CREATE TABLE bench.customers AS
SELECT row_number() OVER (ORDER BY c.customer_id) AS i, c.customer_id,
       ARRAY(SELECT r.product_id FROM personalize.recommend(c.customer_id) r) AS shown
FROM (SELECT DISTINCT customer_id FROM personalize.customer_items) c;
ALTER TABLE bench.customers ADD PRIMARY KEY (i);
CREATE TABLE bench.products AS
SELECT row_number() OVER (ORDER BY product_id) AS i, product_id
FROM personalize.neighbors WHERE measure = 'llr';
ALTER TABLE bench.products ADD PRIMARY KEY (i);
VACUUM ANALYZE;
SQL
createdb -T "$db" "${db}_old"
psql -X -q -v ON_ERROR_STOP=1 -d "${db}_old" -c "UPDATE pg_proc SET probin = '\$libdir/personalize_ab_old'
  WHERE probin = '\$libdir/personalize' AND pronamespace = 'personalize'::regnamespace" >/dev/null
psql -X -q -c CHECKPOINT
# both answer the same (personalize.as_of fixed: the decay depends on the clock)
for d in "$db" "${db}_old"; do
  psql -X -q -At -d "$d" -c "SET personalize.as_of = '2012-01-01'" -c "SELECT md5(string_agg(s.customer_id || ':' || r.product_id || ':' || r.score || ':' || r.reason, ',' ORDER BY s.i, r.ord))
    FROM bench.customers s, personalize.recommend(s.customer_id) WITH ORDINALITY r(product_id, score, reason, ord) WHERE s.i % 10 = 0" > "$work/answers_$d"
done
cmp -s "$work/answers_$db" "$work/answers_${db}_old" && echo "answers: equal (every 10th customer, hybrid)" || echo "answers: DIFFER"
nc=$(q -c 'SELECT count(*) FROM bench.customers')
np=$(q -c 'SELECT count(*) FROM bench.products')
filters="exclude_products => s.shown, exclude_categories => '{cat03}', max_price => 10, attributes => '{\"in_stock\": true}'"
for v in hybrid cooccurrence ease; do
  printf '\\set i random(1, %s)\nSELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, %s) r WHERE s.i = :i;\n' \
    "$nc" "'$v'" > "$work/recommend_$v"
done
printf '\\set i random(1, %s)\nSELECT r.* FROM bench.customers s, personalize.recommend(s.customer_id, k => 10, %s) r WHERE s.i = :i;\n' \
  "$nc" "$filters" > "$work/recommend_filtered"
printf '\\set i random(1, %s)\nSELECT r.* FROM bench.products s, personalize.similar_items(s.product_id) r WHERE s.i = :i;\n' \
  "$np" > "$work/similar_items"
printf '\\set a random(1, %s)\n\\set b random(1, %s)\nSELECT r.* FROM personalize.recommend_for_items(ARRAY[(SELECT product_id FROM bench.products WHERE i = :a), (SELECT product_id FROM bench.products WHERE i = :b)]) r;\n' \
  "$np" "$np" > "$work/recommend_for_items"
pct() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { a[NR] = $1 }
    END { i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++;
          printf "%.3f %.3f %d\n", a[i50] / 1000, a[i99] / 1000, NR }'
}
echo "customers with history: $nc, products with a list: $np, $duration s per run, 2 rounds, $(nproc) cores"
echo
echo "| call | old p50 ms | old p99 ms | old calls | new p50 ms | new p99 ms | new calls | p50 new/old | p99 new/old |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in recommend_hybrid recommend_cooccurrence recommend_ease recommend_filtered similar_items recommend_for_items; do
  for round in 1 2; do
    for side in old new; do
      d=$db; [ $side = old ] && d=${db}_old
      pgbench -n -M prepared -f "$work/$t" -c 1 -T 2 "$d" > /dev/null 2>&1        # warm up
      (cd "$work" && pgbench -n -M prepared -f "$work/$t" -c 1 -T "$duration" -l --log-prefix="lat_${t}_${side}_$round" "$d" > /dev/null 2>&1)
    done
  done
  read -r o50 o99 on <<< "$(pct "$work"/lat_"$t"_old_*)"
  read -r n50 n99 nn <<< "$(pct "$work"/lat_"$t"_new_*)"
  echo "| $t | $o50 | $o99 | $on | $n50 | $n99 | $nn | $(awk -v a="$n50" -v b="$o50" 'BEGIN { printf "%.2f", a / b }') | $(awk -v a="$n99" -v b="$o99" 'BEGIN { printf "%.2f", a / b }') |"
done
for d in "$db" "${db}_old"; do dropdb "$d"; done
