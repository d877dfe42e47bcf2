#!/bin/bash
# Scale-out (issue 15): a sharded layout agrees with a single server, and its faults behave
# as docs/scaling.md says. Starts its own clusters on 127.0.0.1 (test/shard_clusters.sh):
# a model server, shards s1 and s2 (later s3), and a single server whose cluster also holds
# the PL/Proxy router database; contrib/sharding/personalize-layout sets the layout up.
# The same catalog goes to the model server and the single server, the same random events
# (inserts, deletes, erasures; per customer in one order, from three concurrent sessions on
# each side) once through the router and once to the single server. After the refresh
# (shards fold, the model server's global round, refresh_ease() on both) it asserts:
#   - every pair count, product count and the customer total of the model server equal the
#     single server's (the sums over the shards are exact);
#   - every neighbour list (llr, cosine, jaccard, ease), the popularity list and its scores
#     equal, on the model server and on every shard (replicated);
#   - recommend() for every customer (and an unknown one) under every variant through the
#     router, and similar_items() for every product, answer what the single server answers;
# then the faults:
#   - a shard down: its customers' calls fail with XX000 naming its port, the others are
#     served; the global round fails naming the shard, is logged, and changes no list;
#   - the model server down: the shards keep serving their last lists, health's
#     global_model age grows and turns warn, the subscription worker is reported; once it is
#     back, new events reach the lists again;
#   - a shard added and a bucket moved to it (personalize-layout move-bucket): every event
#     and customer of the bucket arrive, the source keeps none, the router serves them from
#     the new shard, and after a round the counts, lists and recommend() equal the single
#     server's again.
# Runs inside the suite's pg_virtualenv (test/in_cluster.sh) but does not use its cluster
# except to read its extension_destdir. Bounded waits; every cluster is stopped on exit.
# About 60-90 s. TAP output.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
. test/shard_clusters.sh
n=0
trap shc_stop EXIT
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
die() { echo "Bail out! $*"; shc_logs; exit 2; }
export PGOPTIONS='-c statement_timeout=60s'
conn() { echo "host=127.0.0.1 port=${shc_port[$1]} dbname=${2:-shop} user=postgres"; }
qm() { shc_psql model -d shop "$@"; }
qr() { shc_psql single -d router "$@"; }
qsg() { shc_psql single -d shop "$@"; }
qs() { local s=$1; shift; shc_psql "$s" -d shop "$@"; }
md5of() { local f=$1; shift; "$f" "$@" | md5sum | cut -c1-32; }

for c in model s1 s2 single; do shc_start "$c" "max_connections = 40" || die "cluster $c does not start"; done
qm -d postgres -c 'CREATE DATABASE shop' >/dev/null || die "no database on the model server"
for s in s1 s2; do qs "$s" -d postgres -c 'CREATE DATABASE shop' >/dev/null || die "no database on $s"; done
qsg -d postgres -c 'CREATE DATABASE shop' -c 'CREATE DATABASE router' >/dev/null || die "no database on the single server"

# the same settings everywhere: scores independent of the clock, a small cap (the cap rule:
# which products of a customer count is decided by their order, kept per customer)
for c in model s1 s2 single; do
  shc_psql "$c" -d postgres -c "ALTER DATABASE shop SET personalize.as_of = '2024-02-01 00:00+00'" >/dev/null
done
contrib/sharding/personalize-layout setup --model "$(conn model)" --router "$(conn single router)" \
  --shard s1="$(conn s1)" --shard s2="$(conn s2)" > "$shc_work/setup.log" 2>&1 \
  || { sed 's/^/# /' "$shc_work/setup.log" | tail -n 20; die "personalize-layout setup failed"; }
is "$(qm -c 'SELECT role FROM personalize.node_settings')|$(qs s1 -c 'SELECT role || node_name FROM personalize.node_settings')|$(qm -c 'SELECT string_agg(name, $$,$$ ORDER BY name) FROM personalize.shards')" \
   "model|shards1|s1,s2" "setup: the model server knows shards s1 and s2, each is a shard"
qsg -c 'CREATE EXTENSION personalize' >/dev/null || die "no extension on the single server"

# the catalog and the variants, defined once on the model server (and on the single server)
catalog="INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, 'product ' || g, 'c' || (g % 4), 1 + g % 10 FROM generate_series(1, 40) g;
SELECT personalize.create_variant('cooc_cosine', 'cooccurrence', '{\"measure\": \"cosine\"}');
SELECT personalize.create_variant('cooc_jaccard', 'cooccurrence', '{\"measure\": \"jaccard\"}');"
for f in qm qsg; do $f -c "$catalog" >/dev/null 2>&1 || die "cannot load the catalog"; done
for s in s1 s2; do qs "$s" -c 'SELECT personalize.rebuild(6)' >/dev/null 2>&1 || die "rebuild(6) on $s"; done
qsg -c 'SELECT personalize.rebuild(6)' >/dev/null 2>&1 || die "rebuild(6) on the single server"
wait_rows() {   # $1 shard, $2 query, $3 expected, $4 seconds
  local deadline=$((SECONDS + $4))
  while [ $SECONDS -lt "$deadline" ]; do [ "$(qs "$1" -c "$2" 2>/dev/null)" = "$3" ] && return 0; sleep 0.2; done; return 1
}
q_catalog="SELECT md5(string_agg(x::text, ';' ORDER BY x::text)) FROM (SELECT product_id, name, category, price, active FROM personalize.products
           UNION ALL SELECT NULL, name, algorithm, NULL, builtin FROM personalize.variants) x"
want=$(qm -c "$q_catalog")
for s in s1 s2; do
  wait_rows "$s" "$q_catalog" "$want" 30
  ok $? "the catalog and the variants defined on the model server reach $s (logical replication)"
done

# each node refuses what has no meaning in its role, with 55000, changing nothing
state() { echo "$(qs s1 -c 'SELECT count(*) FROM personalize.products')/$(qs s1 -c 'SELECT count(*) FROM personalize.variants')"; }
before=$(state)
refuse() {   # $1 node function, $2 SQL, $3 what
  local out; out=$("$1" -v VERBOSITY=verbose -c "$2" 2>&1 >/dev/null)
  [[ $out == *"ERROR:  55000"* && $out == *HINT* ]]; ok $? "$3 refused with 55000 and a hint"
  [[ $out == *"ERROR:  55000"* ]] || printf '#   %s\n' "$(echo "$out" | head -n 2)"
}
qs1() { qs s1 "$@"; }
refuse qs1 "INSERT INTO personalize.products (product_id, name) VALUES (999, 'local')" "on a shard, a local write to a published table (products)"
refuse qs1 "SELECT personalize.create_variant('local_v', 'popular')" "on a shard, create_variant()"
refuse qs1 "SELECT personalize.refresh_popular()" "on a shard, refresh_popular()"
refuse qs1 "CALL personalize.refresh_ease()" "on a shard, refresh_ease()"
refuse qs1 "SELECT * FROM personalize.evaluate(now())" "on a shard, evaluate()"
refuse qm "SELECT * FROM personalize.rebuild()" "on the model server, rebuild()"
refuse qm "SELECT personalize.log_event(1, 1, 'view')" "on the model server, log_event()"
refuse qm "SELECT personalize.set_node_role('shard')" "set_node_role('shard') on a database holding a catalog"
refuse qsg "CALL personalize.global_refresh()" "on a single server, global_refresh()"
out=$(qs s1 -v VERBOSITY=verbose -c "SELECT personalize.drop_bucket(0, 'yes')" 2>&1 >/dev/null)
[[ $out == *"ERROR:  22023"* ]]; ok $? "drop_bucket() without confirm => 'moved' is refused with 22023"
is "$(state)|$(qm -c 'SELECT role FROM personalize.node_settings')" "$before|model" "the refusals changed nothing"

# one round at a time: while another session holds the round's lock, a second one returns at once
qm -c 'SELECT pg_advisory_lock(1885696627, 15)' -c 'SELECT pg_sleep(4)' >/dev/null 2>&1 & holder=$!
sleep 1
t0=$SECONDS
out=$(qm -c 'CALL personalize.refresh()' 2>&1)
[[ $out == *"another round is running"* && $((SECONDS - t0)) -lt 3 ]]; ok $? "a second global round returns at once with a NOTICE while one runs"
wait $holder

# the events: per customer a fixed sequence of inserts, deletes and an erasure, the customers
# dealt to three sessions; the same three files go to the router and to the single server
python3 - "$shc_work" <<'PYEOF'
import random, sys
rnd = random.Random(15)
work = sys.argv[1]
sessions = [[] for _ in range(3)]
for c in range(1, 181):
    ops = []
    for i in range(rnd.randint(1, 12)):
        p = 1 + min(int(rnd.paretovariate(1.1)) - 1, 39) if rnd.random() < 0.6 else rnd.randint(1, 40)
        t = rnd.choice(['view', 'view', 'click', 'cart', 'purchase'])
        day = rnd.randint(1, 31)
        ops.append(f"SELECT personalize.log_event({c}, {p}, '{t}', '2024-01-{day:02d} {rnd.randint(0, 23):02d}:00+00');")
        if rnd.random() < 0.08:
            ops.append(f"SELECT personalize.delete_events({c}, {p});")
    if c % 17 == 0:
        ops.append(f"SELECT count(*) FROM personalize.erase_customer({c});")
        ops.append(f"SELECT personalize.log_event({c}, {1 + c % 40}, 'purchase', '2024-01-30 12:00+00');")
    sessions[c % 3].extend(ops)
for i, s in enumerate(sessions):
    open(f"{work}/events{i}.sql", "w").write("\n".join(s) + "\n")
PYEOF
send() {   # $1: qr or qsg
  local i pids=() rc=0
  for i in 0 1 2; do "$1" -f "$shc_work/events$i.sql" > "$shc_work/send_$1_$i.log" 2>&1 & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return $rc
}
echo "# $SECONDS s: sending"
send qr; ok $? "the events go through the router from three concurrent sessions"
send qsg; ok $? "the same events go to the single server from three concurrent sessions"
events() { local s t=0; for s in s1 s2 ${extra_shard:-}; do t=$((t + $(qs "$s" -c 'SELECT count(*) FROM personalize.interactions'))); done; echo $t; }
total=$(qsg -c 'SELECT count(*) FROM personalize.interactions')
is "$(events)" "$total" "the shards hold as many events as the single server ($total)"
is "$(qs s1 -c 'SELECT count(*) FROM personalize.customers WHERE personalize.bucket_of(customer_id) % 2 <> 0')|$(qs s2 -c 'SELECT count(*) FROM personalize.customers WHERE personalize.bucket_of(customer_id) % 2 <> 1')" \
   "0|0" "each customer is on the shard of their bucket (b % 2)"

# a refresh everywhere: the shards fold, the model server runs the global round and EASE
round() {
  local s t
  for s in s1 s2 ${extra_shard:-}; do qs "$s" -c 'CALL personalize.refresh()' >/dev/null || return 1; done
  qm -c 'CALL personalize.refresh()' >/dev/null || return 1
  t=$(qm -c 'SELECT refreshed_at FROM personalize.global_model_state')
  for s in s1 s2 ${extra_shard:-}; do
    wait_rows "$s" "SELECT refreshed_at FROM personalize.global_model_state" "$t" 30 || return 1
  done
}
sync_ease() {   # the model server's ease lists on every shard
  local s want
  want=$(qm -c "SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM (SELECT measure, product_id, neighbor_ids, scores, counts FROM personalize.neighbors) n")
  for s in s1 s2 ${extra_shard:-}; do
    wait_rows "$s" "SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM (SELECT measure, product_id, neighbor_ids, scores, counts FROM personalize.neighbors) n" "$want" 30 || return 1
  done
}
refresh_all() {
  echo "# $SECONDS s: refresh"
  round || return 1
  qsg -c 'CALL personalize.refresh()' >/dev/null || return 1
  qm -c 'CALL personalize.refresh_ease()' >/dev/null 2>&1 && qsg -c 'CALL personalize.refresh_ease()' >/dev/null 2>&1 || return 1
  sync_ease
}
refresh_all; ok $? "the shards fold, the model server's round and refresh_ease() reach every shard"

compare_all() {   # $1: label
  local q
  echo "# $SECONDS s: comparing ($1)"
  q='SELECT md5(string_agg(x::text, $$;$$ ORDER BY x::text)) FROM (SELECT product_a, product_b, customers FROM personalize.pair_counts) x'
  is "$(qm -c "$q")" "$(qsg -c "$q")" "$1: every pair count of the model server equals the single server's ($(qsg -c 'SELECT count(*) FROM personalize.pair_counts') pairs)"
  q='SELECT md5(string_agg(x::text, $$;$$ ORDER BY x::text)) FROM (SELECT product_id, customers FROM personalize.item_counts) x'
  is "$(qm -c "$q")|$(qm -c 'SELECT sum(customers) FROM personalize.customer_totals')" \
     "$(qsg -c "$q")|$(qsg -c 'SELECT sum(customers) FROM personalize.customer_totals')" "$1: every product count and the customer total equal"
  q="SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM (SELECT measure, product_id, neighbor_ids, scores, counts FROM personalize.neighbors) n"
  is "$(qm -c "$q")" "$(qsg -c "$q")" "$1: every neighbour list (llr, cosine, jaccard, ease) of the model server equals the single server's ($(qsg -c 'SELECT count(*) FROM personalize.neighbors') lists)"
  is "$(qs s1 -c "$q")|$(qs s2 -c "$q")" "$(qm -c "$q")|$(qm -c "$q")" "$1: and every shard serves them"
  q="SELECT md5(string_agg(p::text, ';' ORDER BY rank)) || (SELECT md5(s::text) FROM personalize.popular_scores s) FROM (SELECT rank, product_id, customers, share, source, window_end FROM personalize.popular) p"
  is "$(qs s1 -c "$q")|$(qm -c "$q")" "$(qsg -c "$q")|$(qsg -c "$q")" "$1: the popularity list and its scores equal (shard, model server)"
  q="SELECT md5(string_agg(r::text, ';' ORDER BY c, vo, o)) FROM generate_series(0, 181) c,
       unnest(ARRAY[NULL, 'hybrid', 'cooccurrence', 'popular', 'ease', 'cooc_cosine', 'cooc_jaccard']) WITH ORDINALITY v(variant, vo),
       LATERAL personalize.recommend(c, v.variant, 10) WITH ORDINALITY r(product_id, score, reason, o)"
  is "$(qr -c "$q")" "$(qsg -c "$q")" "$1: recommend() through the router equals the single server's for 182 customers x 7 variants"
  q="SELECT md5(string_agg(r::text, ';' ORDER BY p, o)) FROM generate_series(1, 40) p, LATERAL personalize.similar_items(p, 5) WITH ORDINALITY r(product_id, score, reason, o)"
  is "$(qr -c "$q")" "$(qsg -c "$q")" "$1: similar_items() through the router (any shard) equals the single server's for 40 products"
}
compare_all "after the events"

# ---- a shard down ----
bucket_cust() { qsg -c "SELECT min(g) FROM generate_series(1, 180) g WHERE personalize.bucket_of(g) % 2 = $1 AND EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = g)"; }
c1=$(bucket_cust 0) c2=$(bucket_cust 1)
before1=$(qr -c "SELECT string_agg(product_id::text, ',') FROM personalize.recommend($c1)")
lists_before=$(qm -c "SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM personalize.neighbors n")
shc_stop_one s2
err=$(qr -c "SELECT * FROM personalize.recommend($c2)" 2>&1 >/dev/null)
[[ $err == *"port ${shc_port[s2]} failed"* ]]; ok $? "s2 down: a call for its customer $c2 fails naming s2's port ${shc_port[s2]}"
printf '#   %s\n' "$(echo "$err" | head -n 1)"
is "$(qr -c "SELECT string_agg(product_id::text, ',') FROM personalize.recommend($c1)")" "$before1" "s2 down: customer $c1 of s1 is served as before"
qr -c "SELECT personalize.log_event($c1, 3, 'view', '2024-01-31 10:00+00')" >/dev/null; ok $? "s2 down: events of s1's customers are taken"
qsg -c "SELECT personalize.log_event($c1, 3, 'view', '2024-01-31 10:00+00')" >/dev/null
qs s1 -c 'CALL personalize.refresh()' >/dev/null
err=$(qm -c 'CALL personalize.refresh()' 2>&1 >/dev/null)
[[ $err == *personalize_shard_s2* ]]; ok $? "s2 down: the model server's round fails naming the shard"
printf '#   %s\n' "$(echo "$err" | head -n 1)"
is "$(qm -c "SELECT status || ' ' || (error LIKE '%personalize_shard_s2%') FROM personalize.maintenance_runs WHERE job = 'refresh' ORDER BY run_id DESC LIMIT 1")|$(qm -c "SELECT md5(string_agg(n::text, ';' ORDER BY measure, product_id)) FROM personalize.neighbors n")" \
   "failed true|$lists_before" "s2 down: the failed round is logged with its error and no list changed"
shc_restart s2 || die "s2 does not restart"

# ---- the model server down ----
refresh_all || die "the round after s2 came back failed"
compare_all "s2 back"
shc_stop_one model
served=$(qr -c "SELECT string_agg(product_id::text, ',') FROM personalize.recommend($c1)")
is "$served" "$(qsg -c "SELECT string_agg(product_id::text, ',') FROM personalize.recommend($c1)")" "model server down: the router still serves customer $c1 from the last lists"
h1=$(qs s1 -c "SELECT value FROM personalize.health WHERE \"check\" = 'global_model'")
sleep 2.2
h2=$(PGOPTIONS="$PGOPTIONS -c personalize.health_refresh_warn=2" qs s1 -c "SELECT value || ' ' || status || ' ' || (detail LIKE '%worker is not running%') FROM personalize.health WHERE \"check\" = 'global_model'")
v2=${h2%% *}
awk -v a="$h1" -v b="$v2" 'BEGIN { exit !(b >= a + 2) }'; ok $? "model server down: s1's global_model age grows ($h1 s, then $v2 s)"
[[ $h2 == *" warn "* || $h2 == *" critical "* ]]; ok $? "model server down: the check turns warn past personalize.health_refresh_warn (got: $h2)"
shc_restart model || die "the model server does not restart"
qr -c "SELECT personalize.log_event($c1, 4, 'purchase', '2024-01-31 11:00+00')" >/dev/null
qsg -c "SELECT personalize.log_event($c1, 4, 'purchase', '2024-01-31 11:00+00')" >/dev/null
refresh_all; ok $? "model server back: the round runs and reaches every shard"
is "$(qs s1 -c "SELECT status FROM personalize.health WHERE \"check\" = 'global_model'")" ok "model server back: s1's global_model check is ok again"
compare_all "model server back"

# ---- a shard added, a bucket moved to it ----
shc_start s3 "max_connections = 40" || die "s3 does not start"
qs s3 -d postgres -c 'CREATE DATABASE shop' -c "ALTER DATABASE shop SET personalize.as_of = '2024-02-01 00:00+00'" >/dev/null
contrib/sharding/personalize-layout setup --model "$(conn model)" --router "$(conn single router)" \
  --shard s1="$(conn s1)" --shard s2="$(conn s2)" --shard s3="$(conn s3)" > "$shc_work/setup3.log" 2>&1 \
  || { sed 's/^/# /' "$shc_work/setup3.log" | tail -n 20; die "personalize-layout setup with s3 failed"; }
qs s3 -c 'SELECT personalize.rebuild(6)' >/dev/null 2>&1
extra_shard=s3
is "$(qr -c "SELECT string_agg(srvoptions::text, '') LIKE '%port=${shc_port[s3]}%' FROM pg_foreign_server WHERE srvname = 'personalize_shards'")" f \
   "adding s3 leaves the router's buckets where they are (nothing moves until move-bucket)"
b=0
in_b="SELECT count(*) || '/' || (SELECT count(*) FROM personalize.customers WHERE personalize.bucket_of(customer_id) = $b) FROM personalize.interactions WHERE personalize.bucket_of(customer_id) = $b"
want=$(qs s1 -c "$in_b")
contrib/sharding/personalize-layout move-bucket --router "$(conn single router)" --bucket $b \
  --from-conn "$(conn s1)" --to-conn "$(conn s3)" --to-name s3 --settle 0 > "$shc_work/move.log" 2>&1
ok $? "personalize-layout move-bucket moves bucket $b from s1 to s3"
sed 's/^/#   /' "$shc_work/move.log" | tail -n 3
is "$(qs s3 -c "$in_b")|$(qs s1 -c "$in_b")" "$want|0/0" "every event and customer of bucket $b is on s3 (events/customers $want), none left on s1"
is "$(events)" "$(qsg -c 'SELECT count(*) FROM personalize.interactions')" "no event lost or doubled: s1 + s2 + s3 hold as many events as the single server"
cm=$(qsg -c "SELECT min(g) FROM generate_series(1, 180) g WHERE personalize.bucket_of(g) = $b AND EXISTS (SELECT FROM personalize.interactions i WHERE i.customer_id = g)")
qr -c "SELECT personalize.log_event($cm, 5, 'purchase', '2024-01-31 12:00+00')" >/dev/null
qsg -c "SELECT personalize.log_event($cm, 5, 'purchase', '2024-01-31 12:00+00')" >/dev/null
is "$(qs s3 -c "SELECT count(*) FROM personalize.interactions WHERE customer_id = $cm AND product_id = 5 AND occurred_at = '2024-01-31 12:00+00'")" 1 \
   "the router sends bucket $b's new events to s3"
refresh_all; ok $? "after the move the round runs over three shards"
# The lists of a product are recomputed when its own pairs change; the move changed the
# pairs of every product its customers hold on s1 and s3, the single server's only those of
# the one new event: the lists are compared after a full recompute on both sides.
qm -c 'CALL personalize.global_refresh(all_products => true)' >/dev/null && round &&
  qsg -c 'SELECT personalize.refresh_neighbors(all_products => true)' >/dev/null
ok $? "a full recompute on both sides (global_refresh(all_products => true), refresh_neighbors(all_products => true))"
compare_all "after the move"
