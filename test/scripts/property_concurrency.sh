#!/bin/bash
# Property test: random sequences of single inserts, multi-row inserts, COPY, deletes,
# updates, statements that insert and update or delete at once (INSERT ... ON CONFLICT
# DO UPDATE, a writable CTE that deletes and re-inserts, MERGE with all three actions)
# and forget_customer() from 8 concurrent sessions (PROPERTY_SESSIONS) on a Zipf(1.1)-hot
# catalog, while a ninth session folds the pending count changes (fold_deltas(), the
# refresh's first step) again and again, leave the model equal to a brute-force count from
# the definition and to rebuild(), read through the views (base + pending) and after a
# last fold from the base tables alone. Three phases:
#   A  autocommit statements only: no deadlock may happen (fixed lock order)
#   B  multi-statement transactions, some rolled back (deadlocks are allowed there:
#      PostgreSQL aborts one; what commits must still be exact)
#   C  the same under REPEATABLE READ (serialization failures allowed)
# Then a backend is killed with SIGKILL in the middle of a COPY (crash recovery), another
# COPY is cancelled, and the model is checked again after each; then the same for a fold of
# the 200,000 changes of a large COPY (killed, then cancelled mid-fold: the pending changes
# stay, nothing is counted twice). Runs inside pg_virtualenv (PG* set). TAP output.
# PROPERTY_SEED=n reproduces a run; PROPERTY_OPS=n sets operations per session.
set -uo pipefail
cd "$(dirname "$0")/../.."
db=personalize_property
seed=${PROPERTY_SEED:-$RANDOM}
ops=${PROPERTY_OPS:-80}
sessions=${PROPERTY_SESSIONS:-8}
work=$(mktemp -d)
trap '[ -n "${PROPERTY_KEEP:-}" ] && echo "# kept $work" || rm -rf "$work"; dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
n=0
tap() {  # tap <ok?> <description>
  n=$((n + 1))
  if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
q() { psql -X -q -At -d "$db" -v ON_ERROR_STOP=1 "$@"; }

echo "# seed $seed, $sessions sessions, $ops operations per session"
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" || exit 1
q -c 'CREATE EXTENSION personalize' || exit 1
q <<'SQL' || exit 1
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 40) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 30) g;
-- a small cap so that promotions and displacements happen all the time
SET client_min_messages = warning;
SELECT FROM personalize.rebuild(max_items_per_customer => 6);
SQL

# one session's random workload; $1 = session number, $2 = phase (A, B or C)
gen() {
  python3 - "$seed" "$1" "$2" "$ops" <<'PY'
import os, random, sys
seed, session, phase, ops = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
kinds = os.environ.get('PROPERTY_KINDS', 'insert,multi,copy,delete,move_customer,move_product,upsert,cte,merge,forget').split(',')
r = random.Random(seed * 100 + session * 7 + ord(phase))
types = ['view', 'view', 'click', 'cart', 'purchase']
# (kind, cumulative probability)
mix = [('insert', 0.24), ('multi', 0.40), ('copy', 0.52), ('delete', 0.64), ('move_customer', 0.71),
       ('move_product', 0.76), ('upsert', 0.84), ('cte', 0.91), ('merge', 0.97), ('forget', 1.0)]
def ev():
    # few customers and a Zipf(1.1)-hot catalog: lots of contention on the same pairs
    return (r.randint(1, 30), min(40, int(r.paretovariate(1.1))), r.choice(types))
out = []
def latest(c, k):  # the ids of customer c's k latest events
    return f"SELECT interaction_id FROM personalize.interactions WHERE customer_id = {c} ORDER BY interaction_id DESC LIMIT {k}"
NEXT_ID = "nextval(pg_catalog.pg_get_serial_sequence('personalize.interactions', 'interaction_id'))"
def op():
    k = r.random()
    kind = next(name for name, upto in mix if k < upto)
    if kind not in kinds:
        return op()
    if kind == 'insert':
        c, p, t = ev()
        out.append(f"INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES ({c}, {p}, '{t}');")
    elif kind == 'multi':
        rows = ", ".join(f"({c}, {p}, '{t}')" for c, p, t in (ev() for _ in range(r.randint(2, 25))))
        out.append(f"INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES {rows};")
    elif kind == 'copy':
        out.append("COPY personalize.interactions (customer_id, product_id, event_type) FROM stdin;")
        for _ in range(r.randint(2, 40)):
            out.append("%d\t%d\t%s" % ev())
        out.append("\\.")
    elif kind == 'delete':
        c = r.randint(1, 30)
        out.append(f"DELETE FROM personalize.interactions WHERE interaction_id IN ({latest(c, r.randint(1, 4))});")
    elif kind == 'move_customer':
        c, c2 = r.randint(1, 30), r.randint(1, 30)
        out.append(f"UPDATE personalize.interactions SET customer_id = {c2} WHERE interaction_id IN (SELECT interaction_id FROM personalize.interactions WHERE customer_id = {c} ORDER BY interaction_id LIMIT 2);")
    elif kind == 'move_product':
        p, p2 = r.randint(1, 40), r.randint(1, 40)
        out.append(f"UPDATE personalize.interactions SET product_id = {p2} WHERE interaction_id IN (SELECT interaction_id FROM personalize.interactions WHERE product_id = {p} ORDER BY interaction_id LIMIT 3);")
    # The mixed statements below touch customer c only, even when a concurrent writer
    # moves one of its events away first (they re-check customer_id): their triggers,
    # which run one after the other, then lock no customer out of order.
    elif kind == 'upsert':
        # one statement, two triggers (UPDATE, then INSERT): existing events of c become
        # events of (c, p) while new events of (c, p) are inserted
        c, p, t = ev()
        # (chosen ids: interaction_id is GENERATED ALWAYS, the owner overrides it)
        out.append(f"INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) "
                   f"OVERRIDING SYSTEM VALUE SELECT x.id, {c}, {p}, x.t FROM (SELECT id, '{r.choice(types)}' AS t FROM ({latest(c, r.randint(1, 3))}) e(id) "
                   f"UNION ALL SELECT {NEXT_ID}, '{t}' FROM generate_series(1, {r.randint(1, 3)})) x "
                   f"ON CONFLICT (interaction_id) DO UPDATE SET product_id = EXCLUDED.product_id, "
                   f"event_type = EXCLUDED.event_type WHERE interactions.customer_id = {c};")
    elif kind == 'cte':
        # DELETE and INSERT in one statement: the deleted events come back, either as
        # they were (same ids) or as new events of another type, plus one of (c, p)
        c, p, t = ev()
        d = (f"WITH d AS (DELETE FROM personalize.interactions WHERE customer_id = {c} "
             f"AND interaction_id IN ({latest(c, r.randint(1, 4))}) RETURNING *) ")
        if r.random() < 0.5:
            out.append(d + "INSERT INTO personalize.interactions OVERRIDING SYSTEM VALUE SELECT * FROM d;")
        else:
            out.append(d + f"INSERT INTO personalize.interactions (customer_id, product_id, event_type) "
                       f"SELECT customer_id, product_id, '{t}' FROM d UNION ALL SELECT {c}, {p}, '{t}';")
    elif kind == 'merge':
        # MERGE with all three actions: some of c's latest events deleted, the others
        # moved to (c, p), new events of (c, p) inserted
        c, p, t = ev()
        out.append(f"MERGE INTO personalize.interactions i USING (("
                   f"SELECT interaction_id AS id, row_number() OVER (ORDER BY interaction_id DESC) AS n "
                   f"FROM personalize.interactions WHERE customer_id = {c} ORDER BY interaction_id DESC LIMIT {r.randint(1, 4)}) "
                   f"UNION ALL SELECT NULL, 0 FROM generate_series(1, {r.randint(1, 3)})) s ON i.interaction_id = s.id AND i.customer_id = {c} "
                   f"WHEN MATCHED AND s.n % 2 = 0 THEN DELETE "
                   f"WHEN MATCHED THEN UPDATE SET product_id = {p}, event_type = '{t}' "
                   f"WHEN NOT MATCHED THEN INSERT (customer_id, product_id, event_type) VALUES ({c}, {p}, '{r.choice(types)}');")
    else:
        c = r.randint(1, 30)
        out.append(f"SELECT * FROM personalize.forget_customer({c});")
        out.append(f"INSERT INTO personalize.customers (customer_id) VALUES ({c}) ON CONFLICT DO NOTHING;")
for i in range(ops):
    if phase in 'BC' and r.random() < 0.5:
        out.append("BEGIN;")
        for _ in range(r.randint(2, 4)):
            op()
        out.append("ROLLBACK;" if r.random() < 0.25 else "COMMIT;")
    else:
        op()
print("\n".join(out))
PY
}

# check_folded <phase>: one more fold (before check_exact's rebuild); then no change is pending
# and the base tables alone equal the brute-force count (the views add nothing)
check_folded() {
  local diffs
  diffs=$( { cat test/model_check.sql; cat <<'SQL'
SELECT personalize.fold_deltas() >= 0;
SELECT (SELECT count(*) FROM personalize.model_deltas)
     + (SELECT count(*) FROM (SELECT * FROM personalize.pair_counts_base EXCEPT SELECT * FROM personalize.pair_counts) a)
     + (SELECT count(*) FROM (SELECT * FROM personalize.pair_counts EXCEPT SELECT * FROM personalize.pair_counts_base) b)
     + (SELECT count(*) FROM (SELECT * FROM personalize.item_counts_base EXCEPT SELECT * FROM personalize.item_counts) c)
     + (SELECT count(*) FROM (SELECT * FROM personalize.item_counts EXCEPT SELECT * FROM personalize.item_counts_base) d)
     + (SELECT count(*) FROM pg_temp.model_check());
SQL
  } | q -f - | tail -n 1)
  tap $([ "$diffs" = 0 ] && echo 0 || echo 1) "phase $1: after a fold the base tables alone equal the brute-force count ($diffs differences)"
}

check_exact() {  # check_exact <phase>: through the views (pending changes included), after a fold, against rebuild()
  local diffs
  local pending
  pending=$(q -c 'SELECT pending_changes FROM personalize.model_stats')
  diffs=$( { cat test/model_check.sql; echo 'SELECT count(*) FROM pg_temp.model_check();'; } | q -f - )
  tap $([ "$diffs" = 0 ] && echo 0 || echo 1) "phase $1: model equals the brute-force count ($diffs differences; $pending changes pending)"
  [ "$diffs" != 0 ] && { cat test/model_check.sql; echo 'SELECT * FROM pg_temp.model_check() LIMIT 10;'; } | q -f - | sed 's/^/# /'
  check_folded "$1"
  q <<'SQL' > "$work/rebuild.txt" 2>&1
CREATE TEMP TABLE inc_pairs AS SELECT * FROM personalize.pair_counts;
CREATE TEMP TABLE inc_items AS SELECT * FROM personalize.item_counts;
CREATE TEMP TABLE inc_hist AS SELECT customer_id, product_id, events, purchases, first_interaction_id, last_at, in_model
                              FROM personalize.customer_items;
CREATE TEMP TABLE inc_total AS SELECT sum(customers) AS n FROM personalize.customer_totals;
SET client_min_messages = warning;
SELECT count(*) FROM personalize.rebuild();
SELECT (SELECT count(*) FROM (SELECT * FROM inc_pairs EXCEPT SELECT * FROM personalize.pair_counts) a)
     + (SELECT count(*) FROM (SELECT * FROM personalize.pair_counts EXCEPT SELECT * FROM inc_pairs) b)
     + (SELECT count(*) FROM (SELECT * FROM inc_items EXCEPT SELECT * FROM personalize.item_counts) c)
     + (SELECT count(*) FROM (SELECT * FROM personalize.item_counts EXCEPT SELECT * FROM inc_items) d)
     + (SELECT count(*) FROM (SELECT * FROM inc_hist EXCEPT SELECT customer_id, product_id, events, purchases,
              first_interaction_id, last_at, in_model FROM personalize.customer_items) e)
     + (SELECT count(*) FROM (SELECT customer_id, product_id, events, purchases, first_interaction_id, last_at,
              in_model FROM personalize.customer_items EXCEPT SELECT * FROM inc_hist) f)
     + (SELECT count(*) FROM inc_total WHERE n IS DISTINCT FROM (SELECT sum(customers) FROM personalize.customer_totals));
SQL
  local rb
  rb=$(tail -n 1 "$work/rebuild.txt")
  tap $([ "$rb" = 0 ] && echo 0 || echo 1) "phase $1: model equals rebuild() ($rb differences)"
}

run_phase() {  # run_phase <phase> [PGOPTIONS]
  local pids=() folder
  # the folder: fold_deltas() in a loop while the writers run (stopped below)
  touch "$work/folding"
  ( while [ -e "$work/folding" ]; do q -c 'SELECT personalize.fold_deltas()' >/dev/null 2>>"$work/$1.fold"; sleep 0.05; done ) &
  folder=$!
  for s in $(seq 1 "$sessions"); do
    gen "$s" "$1" > "$work/$1.$s.sql"
    PGOPTIONS="${2:-}" psql -X -q -d "$db" -f "$work/$1.$s.sql" > "$work/$1.$s.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  rm -f "$work/folding"; wait "$folder"
  tap $([ ! -s "$work/$1.fold" ] && echo 0 || echo 1) "phase $1: the concurrent folds never failed $(head -c 200 "$work/$1.fold" 2>/dev/null)"
  cat "$work/$1".*.out > "$work/$1.all"
  local events
  events=$(q -c 'SELECT count(*) FROM personalize.interactions')
  echo "# phase $1: $(grep -c 'ERROR' "$work/$1.all") statements failed ($(grep -c 'deadlock detected' "$work/$1.all") deadlocks, $(grep -c 'could not serialize' "$work/$1.all") serialization failures, $(grep -c 'foreign key' "$work/$1.all") FK errors); $events events now"
  # only these errors are expected from the workload
  local other
  other=$(grep 'ERROR' "$work/$1.all" | grep -v -e 'deadlock detected' -e 'could not serialize' -e 'foreign key' -e 'current transaction is aborted' | head -n 3)
  tap $([ -z "$other" ] && echo 0 || echo 1) "phase $1: no unexpected error ${other:+($other)}"
}

run_phase A
deadlocks=$(grep -c 'deadlock detected' "$work/A.all")
tap $([ "$deadlocks" = 0 ] && echo 0 || echo 1) "phase A: no deadlock between single-statement writers ($deadlocks)"
check_exact A
[ -n "${PROPERTY_ONLY_A:-}" ] && exit 0
run_phase B
check_exact B
run_phase C '-c default_transaction_isolation=repeatable\ read'
check_exact C

# a large COPY interrupted mid-way: interrupt_copy <name> <command run with the backend's pid>
python3 -c '
import random
r = random.Random(7)
for _ in range(200000):
    print("%d\t%d\tview" % (r.randint(1, 30), r.randint(1, 40)))' > "$work/big.tsv"
interrupt_copy() {
  local name=$1 action=$2 copy_pid
  psql -X -q -d "$db" -c "SET application_name = 'personalize_$name'" \
       -c "\\copy personalize.interactions (customer_id, product_id, event_type) FROM '$work/big.tsv'" > "$work/$name.out" 2>&1 &
  copy_pid=$!
  victim=""
  for _ in $(seq 1 100); do
    victim=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'personalize_$name' AND state = 'active'" 2>/dev/null)
    [ -n "$victim" ] && break
    sleep 0.05
  done
  sleep 0.5
  before=$(q -c 'SELECT count(*) FROM personalize.interactions')
  [ -n "$victim" ] && $action "$victim" >/dev/null 2>&1
  wait "$copy_pid"
  for _ in $(seq 1 100); do q -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
  after=$(q -c 'SELECT count(*) FROM personalize.interactions')
}
kill9() { kill -9 "$1"; }
cancel() { q -c "SELECT pg_cancel_backend($1)"; }

# crash: kill -9 the backend, wait for recovery, check again
interrupt_copy crash kill9
tap $([ -n "$victim" ] && [ "$before" = "$after" ] && echo 0 || echo 1) \
  "crash: a backend killed mid-COPY loses only its own uncommitted events ($before before, $after after recovery)"
check_exact crash

# cancel: pg_cancel_backend() (the trigger checks for interrupts)
interrupt_copy cancel cancel
tap $([ -n "$victim" ] && grep -q 'canceling statement due to user request' "$work/cancel.out" && [ "$before" = "$after" ] && echo 0 || echo 1) \
  "cancel: a COPY cancelled mid-way reports the cancel and writes nothing ($after events)"
check_exact cancel

# a fold of many pending changes interrupted mid-way: interrupt_fold <name> <action>
interrupt_fold() {
  local name=$1 action=$2 fold_pid
  q -c "\\copy personalize.interactions (customer_id, product_id, event_type) FROM '$work/big.tsv'" >/dev/null
  # and 1,000,000 synthetic changes that sum to zero (each key +1 in one row, -1 in another):
  # they change no count, but make the fold long enough to interrupt
  q -c "INSERT INTO personalize.model_deltas (entries, a, b, d)
        SELECT 10000, array_agg(900000 + i ORDER BY i), array_agg(1900000 + r * 10000 + i ORDER BY i),
               array_agg(CASE WHEN s = 1 THEN 1 ELSE -1 END ORDER BY i)
        FROM generate_series(1, 50) r, generate_series(1, 2) s, generate_series(1, 10000) i GROUP BY r, s" >/dev/null
  pending_before=$(q -c 'SELECT pending_changes FROM personalize.model_stats')
  psql -X -q -d "$db" -c "SET application_name = 'personalize_$name'" -c 'SELECT personalize.fold_deltas(1024)' > "$work/$name.out" 2>&1 &
  fold_pid=$!
  victim=""
  for _ in $(seq 1 100); do
    victim=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'personalize_$name' AND state = 'active'" 2>/dev/null)
    [ -n "$victim" ] && break
    sleep 0.02
  done
  sleep 0.5
  [ -n "$victim" ] && $action "$victim" >/dev/null 2>&1
  wait "$fold_pid"
  for _ in $(seq 1 100); do q -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
  pending_after=$(q -c 'SELECT pending_changes FROM personalize.model_stats')
}
interrupt_fold fold_crash kill9
tap $([ -n "$victim" ] && [ "$pending_before" -gt 0 ] && [ "$pending_before" = "$pending_after" ] && echo 0 || echo 1) \
  "crash: a fold killed mid-way leaves every pending change pending ($pending_before before, $pending_after after recovery)"
check_exact fold_crash
interrupt_fold fold_cancel cancel
tap $([ -n "$victim" ] && grep -q 'canceling statement due to user request' "$work/fold_cancel.out" && [ "$pending_before" = "$pending_after" ] && echo 0 || echo 1) \
  "cancel: a fold cancelled mid-way reports the cancel and leaves every pending change pending ($pending_after)"
check_exact fold_cancel

# two refreshes at once share the work: the second does not wait for the first's fold
# (fold_deltas(wait => false) returns NULL while another fold holds the lock) and takes
# the dirty products the first has not locked
q -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type)
      SELECT c, 1 + (c * 7 + g) % 40, 'purchase' FROM generate_series(1, 30) c, generate_series(1, 3) g" >/dev/null
( q -c 'BEGIN' -c 'SELECT personalize.fold_deltas()' -c 'SELECT pg_sleep(2)' -c 'COMMIT' ) > "$work/fold_hold.out" 2>&1 &
hold_pid=$!
for _ in $(seq 1 100); do
  [ "$(q -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'model_deltas' AND l.mode = 'ShareUpdateExclusiveLock' AND l.granted")" = 1 ] && break
  sleep 0.02
done
t0=$(date +%s.%N)
nowait=$(q -c 'SELECT personalize.fold_deltas(wait => false) IS NULL')
second=$(q -c 'SELECT personalize.refresh_neighbors() >= 0')
waited=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print (b - a < 1.5) ? "no" : "yes" }')
wait "$hold_pid"
tap $([ "$nowait" = t ] && [ "$second" = t ] && [ "$waited" = no ] && ! grep -q ERROR "$work/fold_hold.out" && echo 0 || echo 1) \
  "two refreshes: while one session folds, fold_deltas(wait => false) returns NULL and a second refresh_neighbors() does not wait ($nowait, $second, waited: $waited)"
q -c 'SELECT personalize.refresh_neighbors()' >/dev/null
check_exact two_refreshes

# REPEATABLE READ against a concurrent delete of a customer's last events: the delete
# removes the customer's model state row, so the upsert that locks it finds no conflict;
# the writer must still fail with a serialization error instead of working from its
# stale snapshot (a random phase C run found it as a check-constraint violation)
q -c 'INSERT INTO personalize.customers (customer_id) VALUES (990001)' \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (990001, 1, 'purchase'), (990001, 2, 'purchase')" >/dev/null
( q <<'SQL'
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM personalize.customer_items;
SELECT pg_sleep(1.5);
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (990001, 3, 'purchase');
COMMIT;
SQL
) > "$work/rr.out" 2>&1 &
rr_pid=$!
sleep 0.5
q -c 'DELETE FROM personalize.interactions WHERE customer_id = 990001' >/dev/null
wait "$rr_pid"
tap $(grep -q 'could not serialize access due to concurrent delete' "$work/rr.out" && echo 0 || echo 1) \
  "repeatable read: a writer whose customer's state was deleted after its snapshot gets a serialization failure"
check_exact rr_delete
exit 0
