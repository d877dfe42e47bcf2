#!/bin/bash
# Hot standbys (issue 14, part 5). Starts its own primary and a streaming replica on
# 127.0.0.1 (initdb + pg_ctl in a temporary directory, pg_basebackup -R from the primary,
# shared_preload_libraries = pg_cron,personalize as the suite's cluster), loads a small
# shop on the primary, refreshes there, waits until the standby has replayed the primary's
# WAL position, and asserts:
#   - recommend() (customers with and without history, an unknown one, every built-in
#     variant and NULL, with and without filters), recommend_served(), similar_items(),
#     recommend_for_items(), explain() and the views analysts read answer on the standby
#     exactly what they answer on the primary (whole result sets compared by md5);
#   - a product bought for the first time since the refresh (dirty, no stored list) gets its
#     list computed live on the standby, read-only, as on the primary;
#   - after more events and a refresh on the primary, the standby's answers follow once it
#     has replayed them, also in a session opened on the standby before the change;
#   - the write-side serving calls (recommend_logged(), log_exposure(), log_impressions(),
#     erase_customer()) on the standby fail with 25006, a message naming the call, a DETAIL
#     saying the server is a hot standby and a HINT; the same calls work on the primary.
# Runs inside the suite's pg_virtualenv (test/in_cluster.sh) but does not use its cluster,
# except to read its extension_destdir (the clusters: test/standby_clusters.sh; a private
# install from $PERSONALIZE_EXTENSION_DESTDIR, ports from $STANDBY_PORT_BASE). Every wait
# is bounded; both clusters are stopped on exit. About 15-30 s. TAP output.
set -uo pipefail
. "$(dirname "$0")/../standby_clusters.sh"
n=0 sb_pid=
cleanup() { [ -n "$sb_pid" ] && kill "$sb_pid" 2>/dev/null; sc_stop; }
trap cleanup EXIT
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
die() { echo "Bail out! $*"; sc_logs; exit 2; }

# every statement bounded; the database's personalize.as_of makes scores independent of the clock
export PGOPTIONS='-c statement_timeout=30s'
qp() { sc_psql "$P" -d shop "$@"; }
qs() { sc_psql "$S" -d shop "$@"; }

sc_primary "max_connections = 30" || die "the primary does not start"
qp -d postgres -c 'CREATE DATABASE shop' >/dev/null || die "cannot create the database"
qp >/dev/null 2>"$sc_work/load.log" <<'SQL' || die "cannot load the shop on the primary"
CREATE EXTENSION personalize;
ALTER DATABASE shop SET personalize.as_of = '2024-02-01 00:00+00';
INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, 'product ' || g, 'c' || (g % 4), 1 + g % 10 FROM generate_series(1, 40) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 80) g;
-- five purchases and two views per customer, over January 2024
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, 1 + (c * 7 + i * i * 3 + c / 5) % 40, CASE WHEN i <= 5 THEN 'purchase' ELSE 'view' END,
       '2024-01-01 00:00+00'::timestamptz + ((c * 5 + i) || ' hours')::interval
FROM generate_series(1, 80) c, generate_series(1, 7) i;
CALL personalize.refresh();
CALL personalize.refresh_ease();
-- an experiment with exposures (recommend_logged() on the primary) and later clicks
SELECT personalize.create_experiment('standby_ab', ARRAY['hybrid', 'cooccurrence']);
SELECT personalize.start_experiment('standby_ab');
SELECT count(*) FROM generate_series(1, 30) c, LATERAL personalize.recommend_logged(c, 5);
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, (SELECT e.product_ids[1] FROM personalize.exposures e WHERE e.customer_id = c LIMIT 1), 'click'
FROM generate_series(1, 30, 3) c;
-- the impression log and the batch recommendations
SELECT personalize.set_impression_log(true);
SELECT personalize.log_impressions(c, ARRAY(SELECT r.product_id FROM personalize.recommend(c, NULL, 5) r), NULL, 'home')
FROM generate_series(31, 50) c;
CALL personalize.refresh_batch_recommendations(k => 5);
CALL personalize.refresh();
SQL

# the replica: a base backup of the primary with the replication settings (-R)
sc_standby || die "the standby does not start"
is "$(qp -c 'SELECT pg_is_in_recovery()')|$(qs -c 'SELECT pg_is_in_recovery()')" "f|t" "the primary is not in recovery, the standby is"
is "$(qp -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" 1 "the standby streams from the primary (pg_stat_replication)"

catch_up() { sc_catch_up 30; }
catch_up; ok $? "the standby replays the primary's WAL position within 30 s"

# Each check: one query, its whole result set as "rows md5" (text of every row, in a fixed order)
declare -A checks
checks[recommend]="SELECT r::text FROM generate_series(0, 82) c,
    unnest(ARRAY[NULL, 'hybrid', 'cooccurrence', 'popular', 'ease']) WITH ORDINALITY v(variant, vo),
    LATERAL personalize.recommend(c, v.variant, 10) WITH ORDINALITY r ORDER BY c, vo, r.ordinality"
checks[recommend_filtered]="SELECT r::text FROM generate_series(1, 80, 3) c,
    LATERAL personalize.recommend(c, k => 5, categories => '{c1,c2}', max_price => 8, exclude_products => '{3,4}') WITH ORDINALITY r
    ORDER BY c, r.ordinality"
checks[recommend_served]="SELECT r::text FROM generate_series(1, 80, 7) c, LATERAL personalize.recommend_served(c, NULL, 5) WITH ORDINALITY r
    ORDER BY c, r.ordinality"
checks[similar_items]="SELECT r::text FROM generate_series(1, 40) p, unnest(ARRAY[NULL, 'cooccurrence', 'ease']) WITH ORDINALITY v(variant, vo),
    LATERAL personalize.similar_items(p, 10, v.variant) WITH ORDINALITY r ORDER BY p, vo, r.ordinality"
checks[recommend_for_items]="SELECT r::text FROM (SELECT p, ARRAY[p, 1 + p % 40] AS cart FROM generate_series(1, 40) p
    UNION ALL SELECT 0, '{}'::bigint[]) x, LATERAL personalize.recommend_for_items(x.cart, 10, NULL, x.p + 10) WITH ORDINALITY r
    ORDER BY x.p, r.ordinality"
checks[explain]="SELECT e::text FROM generate_series(1, 80, 9) c, generate_series(1, 40, 6) p,
    LATERAL personalize.explain(c, p) WITH ORDINALITY e ORDER BY c, p, e.ordinality"
for v in experiment_results impression_ctr batch_recommendations_named neighbor_list model_stats cooccurrence popular retention; do
  checks[$v]="SELECT t::text COLLATE \"C\" FROM personalize.$v t ORDER BY 1"
done
checks[health]="SELECT \"check\" || ' ' || status FROM personalize.health ORDER BY \"check\" COLLATE \"C\""
names="recommend recommend_filtered recommend_served similar_items recommend_for_items explain experiment_results impression_ctr batch_recommendations_named neighbor_list model_stats cooccurrence popular retention health"
digest() {  # $1 = q function, $2 = query
  "$1" -c "SELECT count(*) || ' ' || md5(coalesce(string_agg(x, E'\n' ORDER BY o), '')) FROM (SELECT x, row_number() OVER () AS o FROM ($2) s(x)) z" 2>&1
}
# same GOT WANT DESCRIPTION: two digests, equal and of at least one row each (two identical
# errors are not a pass)
same() {
  local r=1
  [ "$1" = "$2" ] && [[ "$1" =~ ^[1-9][0-9]*\ [0-9a-f]{32}$ ]] && r=0
  ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"
}
declare -A first
compare_all() {  # $1 = label
  local name a b
  for name in $names; do
    a=$(digest qp "${checks[$name]}"); b=$(digest qs "${checks[$name]}")
    same "$b" "$a" "$1: $name on the standby equals the primary (${a%% *} rows)"
    [ "$1" = "after the first refresh" ] && first[$name]=$a
  done
}
# the data behind the comparisons is not empty
is "$(qp -c "SELECT (SELECT count(*) > 0 FROM personalize.exposures) AND (SELECT count(*) > 0 FROM personalize.impressions)
                AND (SELECT sum(conversions) > 0 FROM personalize.experiment_results)
                AND (SELECT count(*) > 0 FROM personalize.batch_recommendations)
                AND (SELECT count(*) > 0 FROM personalize.neighbors WHERE measure = 'ease')")" \
   t "the primary has exposures, impressions, conversions, batch recommendations and EASE lists to compare"
compare_all "after the first refresh"

# write-side calls on the standby: 25006 with message, detail and hint
refusal() {  # $1 = call (a statement that returns rows)
  qs -c "DO \$\$ DECLARE s text; m text; d text; h text;
         BEGIN PERFORM * FROM ($1) x; RAISE NOTICE 'no error';
         EXCEPTION WHEN OTHERS THEN
           GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
           RAISE NOTICE '%|%|%|%', s, m, d, h;
         END \$\$" 2>&1 | sed -n 's/^NOTICE:  //p'
}
std_detail() { echo "This server is a hot standby (pg_is_in_recovery() is true): it is read-only, and $1() writes."; }
hint_log="e.g. through the application's primary connection."
check_refusal() {  # $1 = function, $2 = call, $3 = hint
  local got
  got=$(refusal "$2")
  is "$got" "25006|$1() cannot run on a hot standby|$(std_detail "$1")|$3" "on the standby, $1() fails with 25006, a message naming it, a DETAIL (hot standby) and a HINT"
}
counts="SELECT (SELECT count(*) FROM personalize.exposures) || ' ' || (SELECT count(*) FROM personalize.impressions) || ' ' || (SELECT count(*) FROM personalize.customers)"
before=$(qs -c "$counts")
check_refusal recommend_logged "SELECT * FROM personalize.recommend_logged(1, 5)" \
  "Call recommend() on the standby and log_exposure() with the products shown on the primary, $hint_log"
check_refusal log_exposure "SELECT personalize.log_exposure(1, '{1,2,3}')" \
  "Call recommend() on the standby and log_exposure() on the primary, $hint_log"
check_refusal log_impressions "SELECT personalize.log_impressions(1, '{1,2,3}', NULL, 'home')" \
  "Call recommend() on the standby and log_impressions() on the primary, $hint_log"
check_refusal erase_customer "SELECT * FROM personalize.erase_customer(79)" \
  "Erase the customer on the primary, e.g. through the application's primary connection; the standby follows when it replays the deletion."
# the refusal comes first: even an argument error of log_exposure() is not reached
is "$(refusal "SELECT personalize.log_exposure(NULL, NULL)" | cut -d'|' -f1)" 25006 "on the standby, the standby check comes before the argument checks"
is "$(qs -c "SELECT count(*) FROM personalize.recommend(1, NULL, 5)")" 5 "on the standby, recommend() itself serves the same customer"

# a session opened on the standby before the next changes (per-connection state must follow replay)
coproc SB { stdbuf -oL psql -X -q -At -h 127.0.0.1 -p "$S" -d shop 2>&1; }
sb_pid=$SB_PID
sb() {  # one query in the long-lived standby session; prints its output
  local line out=
  printf '%s;\nSELECT %s;\n' "$1" "'__end__'" >&"${SB[1]}"
  while IFS= read -r -t 30 line <&"${SB[0]}"; do
    [ "$line" = __end__ ] && { printf '%s' "$out"; return 0; }
    out+=${out:+$'\n'}$line
  done
  return 1
}
sb_digest() { sb "SELECT count(*) || ' ' || md5(coalesce(string_agg(x, E'\n' ORDER BY o), '')) FROM (SELECT x, row_number() OVER () AS o FROM ($1) s(x)) z"; }
same "$(sb_digest "${checks[recommend]}")" "${first[recommend]}" "a long-lived standby session serves what the primary serves"

# write-side calls still work on the primary
is "$(qp -c "SELECT count(*) FROM personalize.recommend_logged(2, 5)")" 5 "on the primary, recommend_logged() serves"
is "$(qp -c "SELECT personalize.log_exposure(2, '{1,2,3}')")" t "on the primary, log_exposure() logs"
is "$(qp -c "SELECT personalize.log_impressions(2, '{1,2,3}', NULL, 'home')")" t "on the primary, log_impressions() logs"
is "$(qp -c "SELECT customer FROM personalize.erase_customer(79)")" t "on the primary, erase_customer() erases"
catch_up; ok $? "the standby replays the primary's writes within 30 s"
is "$(qs -c "$counts")" \
   "$(read -r e i c <<< "$before"; echo "$((e + 2)) $((i + 1)) $((c - 1))")" \
   "the standby wrote nothing itself and shows the primary's two exposures, one impression and the erased customer once replayed"

# a product bought for the first time since the refresh: dirty, no stored list, live on the standby
qp >/dev/null <<'SQL' || die "cannot add events on the primary"
INSERT INTO personalize.products (product_id, name, category, price) VALUES (41, 'product 41', 'c1', 4);
INSERT INTO personalize.customers (customer_id) VALUES (100);
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, 41, 'purchase', '2024-01-30 00:00+00' FROM generate_series(1, 12) c;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (100, 41, 'purchase', '2024-01-31 00:00+00');
-- and more of the same shop: every customer buys two more products
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, 1 + (c * 11 + i * 5) % 40, 'purchase', '2024-01-31 00:00+00'::timestamptz + (i || ' hours')::interval
FROM generate_series(1, 78) c, generate_series(1, 2) i;
SQL
catch_up; ok $? "the standby replays the new events within 30 s"
live="SELECT r::text FROM personalize.recommend(100, 'cooccurrence', 10) WITH ORDINALITY r ORDER BY r.ordinality"
# a product bought for the first time: no stored list, its count changes still pending
# (model_deltas, issue 14: not folded, so not in dirty_products either)
is "$(qs -c "SELECT (SELECT count(*) FROM personalize.neighbors WHERE product_id = 41) || ' ' || (SELECT count(*) FROM personalize.item_counts_base WHERE product_id = 41) || ' ' || (SELECT count(*) FROM personalize.item_counts WHERE product_id = 41)")" \
   "0 0 1" "on the standby, product 41 has no stored list and no folded count, but a count (pending)"
is "$(qs -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE reason LIKE '%(live)') FROM personalize.recommend(100, 'cooccurrence', 10)")" \
   "10 10" "on the standby, recommend() for a customer of product 41 answers from its live list (10 rows, reason (live))"
same "$(digest qs "$live")" "$(digest qp "$live")" "the live answer on the standby equals the primary's"
same "$(sb_digest "$live")" "$(digest qp "$live")" "the live answer in the long-lived standby session equals the primary's"
is "$(qs -c "SELECT count(*) FROM personalize.neighbors WHERE product_id = 41")" 0 "the live list was not stored (read-only)"

qp -c 'CALL personalize.refresh()' >/dev/null || die "the second refresh fails"
catch_up; ok $? "the standby replays the second refresh within 30 s"
is "$(qs -c "SELECT count(*) FILTER (WHERE reason LIKE '%(live)') FROM personalize.recommend(100, 'cooccurrence', 10)")" 0 \
   "on the standby, product 41's list is the stored one once the refresh is replayed"
compare_all "after the second refresh"
for name in recommend similar_items recommend_for_items experiment_results neighbor_list; do
  a=$(digest qs "${checks[$name]}")
  ok $([ "$a" != "${first[$name]}" ] && echo 0 || echo 1) "the standby's $name changed with the replayed refresh (freshness follows replay)"
done
same "$(sb_digest "${checks[recommend]}")" "$(digest qp "${checks[recommend]}")" "the long-lived standby session serves the refreshed lists too"
same "$(sb_digest "${checks[similar_items]}")" "$(digest qp "${checks[similar_items]}")" "the long-lived standby session's similar_items() follows too"

echo "1..$n"
exit 0
