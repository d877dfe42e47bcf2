#!/bin/bash
# rebuild()'s pair phase in C (issue 14, part 4: src/rebuild.c, _rebuild_pairs()): the pair
# counts it writes equal those of the SQL self-join it replaced (the EXCEPT both ways and the
# row counts), on a random fixture with large and negative product ids, with a budget so
# small that it needs several passes, and with customers at max_items_per_customer (rows
# outside the model); bad arguments give an error with SQLSTATE, detail and hint and write
# nothing; a cancel (statement_timeout) leaves the target as it was before the call. Into an
# empty target the pairs go straight into the heap and the indexes are built at the end: the
# same rows, valid and used indexes (amcheck when installed), fillfactor, CHECK, WAL, a late
# cancel; a target with a row or a trigger keeps the INSERT path.
# Runs inside pg_virtualenv; every statement bounded by timeout. TAP output; creates and
# drops personalize_rebuild_c_<pid>.
set -uo pipefail
db=personalize_rebuild_c_$$
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
like() { local r=1; grep -qE -- "$2" <<<"$1" && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: /%s/\n' "$1" "$2"; }
q() { timeout 120 psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
# psql with verbose errors (SQLSTATE, DETAIL, HINT) on one line
qv() { timeout 120 psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' "$@" 2>&1 | grep -v '^LOCATION' | tr '\n' ' '; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
cleanup() { dropdb --if-exists --force "$db" >/dev/null 2>&1; }
trap cleanup EXIT
createdb "$db" || { echo "Bail out! cannot create $db"; exit 2; }

# the old phase 3 of rebuild(): the SQL self-join, into table $1
sql_pairs() {
  cat <<SQL
DROP TABLE IF EXISTS $1;
CREATE TABLE $1 AS
SELECT a.product_id AS product_a, b.product_id AS product_b, count(*) AS customers
FROM personalize.customer_items a
JOIN personalize.customer_items b ON b.customer_id = a.customer_id AND b.product_id > a.product_id
WHERE a.in_model AND b.in_model
GROUP BY a.product_id, b.product_id;
SQL
}
# a table like the stored pair table: the same columns, primary key, product_b index, check
new_target() { echo "DROP TABLE IF EXISTS $1; CREATE TABLE $1 (LIKE personalize.pair_counts_base INCLUDING ALL);"; }
# "rows in $1, rows in $2, rows of $1 not in $2, rows of $2 not in $1"
compare() {
  q -c "SELECT (SELECT count(*) FROM $1) || ' ' || (SELECT count(*) FROM $2) || ' ' ||
               (SELECT count(*) FROM (TABLE $1 EXCEPT TABLE $2) x) || ' ' ||
               (SELECT count(*) FROM (TABLE $2 EXCEPT TABLE $1) y)"
}

# 1. a random fixture: 400 customers, 80 products with ids far apart and of both signs,
#    histories of 1 to 40 events (repeats included)
q >/dev/null <<'SQL' || { echo "Bail out! cannot set up $db"; exit 2; }
CREATE EXTENSION personalize;
SELECT setseed(0.14);
INSERT INTO personalize.products (product_id, name)
SELECT (g - 40) * 1000000007::bigint, 'product ' || g FROM generate_series(1, 80) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 400) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, (1 + floor(random() ^ 2 * 80)::int - 40) * 1000000007::bigint,
       (ARRAY['view', 'click', 'cart', 'purchase'])[1 + floor(random() * 4)::int]
FROM generate_series(1, 400) c, LATERAL generate_series(1, 1 + (c * 7919) % 40) e;
SQL
out=$(q -c "SELECT pairs > 0 FROM personalize.rebuild()")
is "$(tail -1 <<<"$out")" "t" "rebuild() runs with the C pair phase"
like "$out" "rebuild: 3/5 pairs: [0-9]+ pairs of 80 products counted in 1 pass$" "it says in a NOTICE that one pass sufficed"
q -c "$(sql_pairs sql_pairs)" >/dev/null
cmp=$(compare personalize.pair_counts sql_pairs)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "rebuild()'s pair counts equal the SQL self-join's (rows, EXCEPT both ways): $cmp"

# 2. a budget of 1 kB: several passes, the same rows
q -c "$(new_target c_small)" >/dev/null
out=$(q -c "SELECT personalize._rebuild_pairs('c_small', 1)")
passes=$(grep -oE 'counted in [0-9]+ pass' <<<"$out" | grep -oE '[0-9]+')
ok $([ "${passes:-0}" -gt 2 ] && echo 0 || echo 1) "budget_kb 1 needs several passes (${passes:-none})"
like "$out" "the budget of 1 kB is below" "it says that the budget was raised to what the products need"
cmp=$(compare c_small sql_pairs)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "with several passes the counts equal the SQL self-join's: $cmp"
is "$(tail -1 <<<"$out")" "$(q -c 'SELECT count(*) FROM sql_pairs')" "_rebuild_pairs() returns the number of pairs written"
is "$(q -c "SELECT count(*) FROM c_small WHERE product_a >= product_b OR customers <= 0")" "0" "every row has product_a < product_b and a positive count"

# 3. customers at the cap: max_items_per_customer 5, so most histories have rows outside the model
q -c "SELECT personalize.rebuild(5)" >/dev/null
is "$(q -c "SELECT count(*) > 100 FROM personalize.customer_items WHERE NOT in_model")" "t" "at cap 5 many history rows are outside the model"
q -c "$(sql_pairs sql_pairs_cap)" >/dev/null
cmp=$(compare personalize.pair_counts sql_pairs_cap)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "at the cap rebuild()'s counts equal the SQL self-join's: $cmp"
q -c "$(new_target c_cap)" >/dev/null
q -c "SELECT personalize._rebuild_pairs('c_cap', 1)" >/dev/null
cmp=$(compare c_cap sql_pairs_cap)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "at the cap and in several passes, the same: $cmp"
is "$(q -c "SELECT max(model_items) FROM personalize.customer_state")" "5" "some customers hold exactly the cap"

# 4. bad arguments: an error with SQLSTATE, detail and hint; nothing written
q -c "$(new_target c_bad); INSERT INTO c_bad VALUES (1, 2, 3);" >/dev/null
before=$(q -c "SELECT count(*) FROM c_bad")
out=$(qv -c "SELECT personalize._rebuild_pairs('personalize.cooccurrence')")
like "$out" "ERROR:  42809: the target of _rebuild_pairs\(\) must be a table DETAIL:  personalize.cooccurrence is not a plain table \(relkind 'v'\)\. HINT:  Pass the table" "a view as target: 42809 with detail and hint"
out=$(qv -c "SELECT personalize._rebuild_pairs('c_bad', 0)")
like "$out" "ERROR:  22023: budget_kb of _rebuild_pairs\(\) must be positive DETAIL:  Got 0\. HINT:  Pass the memory" "budget_kb 0: 22023 with detail and hint"
out=$(qv -c "SELECT personalize._rebuild_pairs('c_bad', -5)")
like "$out" "ERROR:  22023: budget_kb of _rebuild_pairs\(\) must be positive DETAIL:  Got -5\." "budget_kb -5: 22023"
out=$(qv -c "SELECT personalize._rebuild_pairs(NULL)")
like "$out" "ERROR:  22004: the target of _rebuild_pairs\(\) must not be null HINT:" "a NULL target: 22004 with a hint"
q -c "CREATE TABLE c_wrong (product_a bigint, product_b bigint, n bigint); CREATE TABLE c_int (product_a int, product_b bigint, customers bigint)" >/dev/null
out=$(qv -c "SELECT personalize._rebuild_pairs('c_wrong')")
like "$out" "ERROR:  42703: the target of _rebuild_pairs\(\) has no bigint column \"customers\" DETAIL:  public.c_wrong must have the columns product_a, product_b and customers, all bigint\. HINT:" "a table without customers: 42703 with detail and hint"
out=$(qv -c "SELECT personalize._rebuild_pairs('c_int')")
like "$out" "ERROR:  42804: the target of _rebuild_pairs\(\) has no bigint column \"product_a\"" "an integer product_a: 42804"
is "$(q -c "SELECT (SELECT count(*) FROM c_bad) || ' ' || (SELECT count(*) FROM c_wrong) || ' ' || (SELECT count(*) FROM c_int)")" "$before 0 0" "the bad calls wrote nothing"

# 5. a cancel: on a larger fixture, statement_timeout stops _rebuild_pairs() and the
#    caller's transaction rolls back: the target as before the call
q >/dev/null <<'SQL' || { echo "Bail out! cannot load the larger fixture"; exit 2; }
INSERT INTO personalize.products (product_id, name) SELECT 1000 + g, 'bulk ' || g FROM generate_series(1, 1500) g;
INSERT INTO personalize.customers (customer_id) SELECT 1000 + g FROM generate_series(1, 2500) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT 1000 + c, 1000 + 1 + (hashint8(c * 100 + e) & 2147483647) % 1500, 'purchase'
FROM generate_series(1, 2500) c, generate_series(1, 60) e;
SELECT personalize.rebuild(100);
CREATE TABLE pairs_before AS TABLE personalize.pair_counts_base;
SQL
t0=$(ms)
full=$(q -c "BEGIN; $(new_target c_full) SELECT personalize._rebuild_pairs('c_full', 2048); ROLLBACK;" | tail -1)
full_ms=$(( $(ms) - t0 ))
timeout_ms=$(( full_ms / 4 ))
[ "$timeout_ms" -lt 100 ] && timeout_ms=100
echo "# _rebuild_pairs() on the larger fixture: $full pairs in $full_ms ms; statement_timeout ${timeout_ms} ms"
t0=$(ms)
out=$(qv -c "BEGIN" -c "TRUNCATE personalize.pair_counts_base" -c "SET LOCAL statement_timeout = $timeout_ms" \
         -c "SELECT personalize._rebuild_pairs('personalize.pair_counts_base', 2048)" -c "COMMIT")
took=$(( $(ms) - t0 ))
like "$out" "ERROR:  57014: canceling statement due to statement timeout" "statement_timeout cancels _rebuild_pairs(): 57014"
ok $([ "$took" -lt $(( timeout_ms + 3000 )) ] && echo 0 || echo 1) "the cancel ends it within 3 s of the timeout ($took ms, timeout $timeout_ms ms)"
cmp=$(compare personalize.pair_counts_base pairs_before)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "after the cancel the target is as before the call: $cmp"
q -c "$(sql_pairs sql_pairs_big)" >/dev/null
cmp=$(compare pairs_before sql_pairs_big)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "on the larger fixture too rebuild()'s counts equal the SQL self-join's: $cmp"

# 6. the direct write into an empty target: every row in the heap (fillfactor kept, CHECK
#    constraints checked, WAL written), then the indexes built from it: valid, used, and
#    whole (amcheck's bt_index_check with heapallindexed, when contrib amcheck is installed);
#    a target with a row or with a trigger keeps the INSERT path
amcheck=$(q -c "CREATE EXTENSION IF NOT EXISTS amcheck" >/dev/null 2>&1 && echo yes || echo no)
q -c "$(new_target h_empty) ALTER TABLE h_empty SET (fillfactor = 70);
      $(new_target h_ff100) ALTER TABLE h_ff100 SET (fillfactor = 100);" >/dev/null
lsn0=$(q -c "SELECT pg_current_wal_lsn()")
out=$(q -c "SELECT personalize._rebuild_pairs('h_empty')")
wal=$(q -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') > 0.5 * pg_total_relation_size('h_empty') OR current_setting('wal_level') = 'minimal'")
like "$out" "written into the empty public.h_empty directly, its indexes built in" "an empty target: the pairs go into its heap directly (NOTICE)"
cmp=$(compare h_empty sql_pairs_big)
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "the direct write's rows equal the SQL self-join's: $cmp"
is "$(tail -1 <<<"$out")" "$(q -c 'SELECT count(*) FROM sql_pairs_big')" "the direct write returns the number of pairs written"
is "$(q -c "SELECT bool_and(indisvalid AND indisready AND indislive) || ' ' || count(*) FROM pg_index WHERE indrelid = 'h_empty'::regclass")" "true 2" "both indexes of the target are valid and ready"
b=$(q -c "SELECT product_b FROM h_empty GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
seq=$(q -c "SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off;
            SELECT count(*) || ' ' || sum(customers) FROM h_empty WHERE product_b = $b")
idx=$(q -c "SET enable_seqscan = off; SET enable_bitmapscan = off;
            SELECT count(*) || ' ' || sum(customers) FROM h_empty WHERE product_b = $b")
plan=$(q -c "SET enable_seqscan = off; SET enable_bitmapscan = off;
             EXPLAIN (COSTS OFF) SELECT count(*), sum(customers) FROM h_empty WHERE product_b = $b")
like "$plan" "Index Scan using h_empty_product_b_idx" "with enable_seqscan off the product_b index is used"
is "$idx" "$seq" "the product_b index finds the rows a seq scan finds (product_b = $b: $seq)"
pk=$(q -c "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off;
           SELECT count(*) FROM sql_pairs_big s JOIN h_empty h USING (product_a, product_b)")
is "$pk" "$(q -c 'SELECT count(*) FROM sql_pairs_big')" "the primary key finds every pair (nested loop on the index)"
if [ "$amcheck" = yes ]; then
  chk=$(q -c "SELECT count(*) FROM pg_index i, LATERAL bt_index_check(i.indexrelid, true)
              WHERE indrelid IN ('h_empty'::regclass, 'personalize.pair_counts_base'::regclass)")
  is "$chk" "4" "amcheck bt_index_check(heapallindexed) passes on both indexes of the target and of pair_counts_base (after rebuild())"
else
  echo "ok $((n += 1)) # skip contrib amcheck not installed"
fi
is "$wal" "t" "the direct write is WAL-logged (WAL written > half the table's and its indexes' size)"
q -c "SELECT personalize._rebuild_pairs('h_ff100')" >/dev/null
ratio=$(q -c "SELECT round(pg_relation_size('h_empty')::numeric / pg_relation_size('h_ff100'), 2)")
ok $(awk -v r="$ratio" 'BEGIN { exit !(r >= 1.3 && r <= 1.55) }'; echo $?) "the heap keeps the table's fillfactor (70 against 100: ${ratio}x the pages)"
# a dropped column: the direct write still fills the three columns
q -c "$(new_target h_drop) ALTER TABLE h_drop ADD COLUMN junk text DEFAULT 'x'; ALTER TABLE h_drop DROP COLUMN junk;" >/dev/null
out=$(q -c "SELECT personalize._rebuild_pairs('h_drop')")
cmp=$(compare h_drop sql_pairs_big)
like "$out" "directly" "a target with a dropped column: the direct write"
like "$cmp" "^([1-9][0-9]+) \1 0 0$" "with a dropped column the same rows: $cmp"
# CHECK constraints: a violation is 23514 on both paths and leaves the target as it was
q -c "$(new_target h_check) ALTER TABLE h_check ADD CONSTRAINT few CHECK (customers < 3);
      $(new_target h_check2) ALTER TABLE h_check2 ADD CONSTRAINT few2 CHECK (customers < 3); INSERT INTO h_check2 VALUES (-5, -4, 1);" >/dev/null
out=$(qv -c "SELECT personalize._rebuild_pairs('h_check')")
like "$out" "ERROR:  23514: new row for relation \"h_check\" violates check constraint \"few\"" "the direct write checks the table's CHECK constraints: 23514"
out=$(qv -c "SELECT personalize._rebuild_pairs('h_check2')")
like "$out" "ERROR:  23514: new row for relation \"h_check2\" violates check constraint \"few2\"" "the INSERT path too: 23514"
is "$(q -c "SELECT (SELECT count(*) FROM h_check) || ' ' || (SELECT count(*) FROM h_check2)")" "0 1" "after the violation both targets are as before"
# a target with a row: the INSERT path (no direct write), its row kept
q -c "$(new_target h_row) INSERT INTO h_row VALUES (-5, -4, 1);" >/dev/null
out=$(q -c "SELECT personalize._rebuild_pairs('h_row')")
ok $(grep -q directly <<<"$out"; echo $((1 - $?))) "a target with a row: the INSERT path, not the direct write"
is "$(q -c "SELECT count(*) - 1 FROM h_row")" "$(q -c 'SELECT count(*) FROM sql_pairs_big')" "it holds its row and every pair"
# a target with a trigger: the INSERT path, the trigger fired for every row
q >/dev/null <<'SQL'
CREATE TABLE h_trig (LIKE personalize.pair_counts_base INCLUDING ALL);
CREATE SEQUENCE h_fired;
CREATE FUNCTION h_count() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM nextval('h_fired'); RETURN NEW; END$$;
CREATE TRIGGER h_count BEFORE INSERT ON h_trig FOR EACH ROW EXECUTE FUNCTION h_count();
SQL
out=$(q -c "SELECT personalize._rebuild_pairs('h_trig')")
ok $(grep -q directly <<<"$out"; echo $((1 - $?))) "an empty target with a trigger: the INSERT path"
is "$(tail -1 <<<"$out") $(q -c "SELECT last_value FROM h_fired")" "$(q -c 'SELECT count(*) || $$ $$ || count(*) FROM sql_pairs_big')" "it wrote every pair and its trigger fired for each"
# a cancel while the direct write writes the heap, and one while it builds the indexes (seen
# in application_name: pg_cancel_backend() then): pair_counts_base as before
cancel_in() {
  local f=/tmp/rebuild_c_cancel.$$ pid=
  qv -c "BEGIN" -c "TRUNCATE personalize.pair_counts_base" \
     -c "SELECT personalize._rebuild_pairs('personalize.pair_counts_base', 2048)" -c "COMMIT" > "$f" &
  for _ in $(seq 1 1500); do
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'personalize.rebuild: 3/5 pairs pass % $1'")
    [ -n "$pid" ] && { q -c "SELECT pg_cancel_backend($pid)" >/dev/null; break; }
    sleep 0.02
  done
  wait
  cat "$f"; rm -f "$f"
}
# (a cancel in the index step, about a second long, was also tried here: the poll caught the
# step in one full run and missed it eight times in a row in the next, so it is not part of
# the suite until the step can be held open for the test; the index build runs in the
# caller's transaction like the write, so a cancel there rolls back the same way)
for phase in write; do
  # a cancel that the poll sees too late finds the call done (and committed: the same rows): again
  for attempt in 1 2 3; do
    out=$(cancel_in $phase)
    grep -q 57014 <<<"$out" && break
    echo "# attempt $attempt: the cancel came too late"
  done
  like "$out" "ERROR:  57014: canceling statement due to user request" "a cancel while the direct write is in its $phase step: 57014"
  cmp=$(compare personalize.pair_counts_base pairs_before)
  like "$cmp" "^([1-9][0-9]+) \1 0 0$" "after that cancel pair_counts_base is as before: $cmp"
done
if [ "$amcheck" = yes ]; then
  is "$(q -c "SELECT count(*) FROM pg_index i, LATERAL bt_index_check(i.indexrelid, true) WHERE indrelid = 'personalize.pair_counts_base'::regclass")" "2" "and its indexes pass bt_index_check(heapallindexed)"
fi

echo "1..$n"
