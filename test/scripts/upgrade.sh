#!/bin/bash
# Upgrades: for the same data (the whole Online Retail file plus feedback, a campaign, a
# user variant, an experiment with exposures, a flag and a custom event type),
#   (a) CREATE EXTENSION personalize VERSION '0.1.0', load, ALTER EXTENSION ... UPDATE;
#   (b) a fresh CREATE EXTENSION personalize (the default version), load;
#   (c) pg_dump -Fc of (a), pg_restore into a new database;
# the three have the same schema (pg_dump --binary-upgrade --schema-only, which dumps an
# extension's member objects, normalised; plus member list, ACLs, initial privileges,
# comments and pg_extension_config_dump registrations), the same data and model, and
# recommend() answers the same. Also: the update keeps every row and count of 0.1.0, the
# frozen 0.1.0 script is byte-identical, every version has a path, and a library newer
# than the installed SQL refuses with a hint instead of misbehaving.
# Runs inside pg_virtualenv (see test/in_cluster.sh). TAP output; creates and drops
# personalize_up_{a,b,c,d,e}_<pid>. (d): 0.1.0 holding events outside the occurred_at range
# the update adds is refused with 23514 and changes nothing; once they are fixed it goes on.
# (e): a 0.1.0 event log wedged by explicit ids ahead of its sequence is repaired by the
# update (the sequence advances, no row changes) and its ids become GENERATED ALWAYS.
# (f): recommend() gains filter parameters (a new signature): a user view over 0.1.0's
# recommend() makes the update refuse with 2BP01 naming it, changing nothing; without it the
# update carries the old function's grants to the new one, as the user's own (pg_dump dumps
# them), and the old call shapes answer as before.
set -uo pipefail
cd "$(dirname "$0")/../.."
a=personalize_up_a_$$ b=personalize_up_b_$$ c=personalize_up_c_$$ odd=personalize_up_d_$$ wedged=personalize_up_e_$$ grants=personalize_up_f_$$
app_role=personalize_up_app_$$
work=$(mktemp -d)
n=0
cleanup() { for x in "$a" "$b" "$c" "$odd" "$wedged" "$grants"; do dropdb --if-exists "$x" >/dev/null 2>&1; done
            psql -X -q -d postgres -c "DROP ROLE IF EXISTS $app_role" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
die() { echo "upgrade: $*" >&2; echo "Bail out! $*"; exit 2; }
ok()  { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is()  { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q()   { local d=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$d" "$@"; }

# sha256 of sql/personalize--0.1.0.sql when 0.1.0 was frozen (commit 5d5c08e)
frozen=7a576972fc15c2814456fb26bc8b8d243b443550f9ce370d33a37a9e1c191bfd
is "$(sha256sum sql/personalize--0.1.0.sql | cut -d' ' -f1)" "$frozen" "the 0.1.0 install script is byte-identical to the frozen release"

# what every database gets besides the events: run under 0.1.0 (a) and the new version (b)
extras() {
  q "$1" <<'SQL'
INSERT INTO personalize.event_types (event_type, weight) VALUES ('wishlist', 2);
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment)
SELECT customer_id, product_id, 1 + (customer_id + product_id) % 5, 'fine'
FROM (SELECT DISTINCT customer_id, product_id FROM personalize.interactions ORDER BY 1, 2 LIMIT 500) s;
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
SELECT 'Christmas', product_id, '2011-11-01', '2031-12-31', 1.5
FROM personalize.item_counts ORDER BY customers DESC, product_id LIMIT 3;
SELECT personalize.create_variant('cooc_cosine', 'cooccurrence', '{"measure": "cosine"}');
SELECT personalize.create_experiment('home', ARRAY['cooccurrence', 'cooc_cosine']);
UPDATE personalize.experiments SET salt = 'upgrade-test' WHERE name = 'home';   -- the same arms everywhere
SELECT personalize.start_experiment('home');
SELECT personalize.log_exposure(c.customer_id, ARRAY[1::bigint, 2], NULL)
FROM (SELECT customer_id FROM personalize.customers ORDER BY customer_id LIMIT 200) c;
INSERT INTO personalize.flags (name, rollout, salt) VALUES ('new_widget', 0.25, 'upgrade-test');
UPDATE personalize.model_settings SET max_items_per_customer = max_items_per_customer;
SQL
}
load() {   # $1 = database: the real file through the triggers, then the extras
  PGDATABASE=$1 bash test/load_online_retail.sh > "$work/load_$1" 2>&1 || { cat "$work/load_$1"; die "cannot load Online Retail into $1"; }
  extras "$1" > /dev/null || die "cannot add the extras to $1"
}

# Every user and model table: rows and an md5 of their content without the columns that
# hold the time of the load (created_at, updated_at, refreshed_at, rebuilt_at, since,
# shown_at, started_at): these differ between databases loaded at different times. NULLs are
# left out (jsonb_strip_nulls), so a nullable column an update adds (interactions.event_key,
# issue 11) leaves the rows of the older version unchanged.
# The model's counts are read through the views item_counts and pair_counts (the folded base
# plus the pending changes: a database loaded through the trigger has them pending, an
# updated one folded), not from item_counts_base, pair_counts_base and model_deltas.
fingerprint() {
  q "$1" <<'SQL'
SELECT format($f$SELECT %L || ' ' || count(*) || ' ' || coalesce(md5(string_agg(j, ',' ORDER BY j COLLATE "C")), '-')
                FROM (SELECT (jsonb_strip_nulls(to_jsonb(t)) - ARRAY['created_at', 'updated_at', 'refreshed_at', 'rebuilt_at', 'since',
                                                  'shown_at', 'started_at'])::text AS j FROM personalize.%I t) s$f$,
              c.relname, c.relname)
FROM pg_class c
WHERE c.relnamespace = 'personalize'::regnamespace
  AND ((c.relkind = 'r' AND c.relname <> ALL (ARRAY['maintenance_runs', 'item_counts_base', 'pair_counts_base', 'model_deltas']))
       OR (c.relkind = 'v' AND c.relname = ANY (ARRAY['item_counts', 'pair_counts'])))
ORDER BY c.relname COLLATE "C" \gexec
SQL
}

# The schema of the extension: pg_dump's binary-upgrade mode dumps member objects (a plain
# dump names only CREATE EXTENSION); OIDs, relfilenodes, xids and the \restrict key are
# the only lines that may differ and are dropped.
schema() {
  pg_dump --binary-upgrade --schema-only -d "$1" \
    | grep -vE '^(\\(un)?restrict |SELECT pg_catalog\.binary_upgrade_set_next_|SELECT pg_catalog\.binary_upgrade_set_missing_value|SELECT pg_catalog\.binary_upgrade_create_empty_extension)' \
    | sed -E "s/relfrozenxid = '[0-9]+', relminmxid = '[0-9]+'/relfrozenxid = X/; s/^WHERE oid = '[0-9]+';/WHERE oid = X;/" \
    | grep -vE '^-- Dumped (from|by)|^-- .*set missing value|^$'
  # what the dump leaves implicit: members, ACLs against the initial privileges, comments,
  # the config_dump registrations (the create_empty_extension line above, by OID)
  q "$1" <<'SQL'
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
    WHERE e.extname = 'personalize' AND d.deptype = 'e')
SELECT x FROM (
    SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0) FROM members m
    UNION ALL
    SELECT 'init_priv ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text || ' ' || i.initprivs::text
    FROM pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
    UNION ALL
    SELECT 'acl ' || p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '-') FROM pg_proc p
    WHERE p.pronamespace = 'personalize'::regnamespace
    UNION ALL
    SELECT 'acl ' || c.oid::regclass::text || ' ' || coalesce(c.relacl::text, '-') FROM pg_class c
    WHERE c.relnamespace = 'personalize'::regnamespace
    UNION ALL
    SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description
    FROM pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
    UNION ALL
    SELECT 'config_dump ' || c.oid::regclass::text || ' ' || coalesce(e.extcondition[i], '')
    FROM pg_extension e, generate_subscripts(e.extconfig, 1) i, pg_class c
    WHERE e.extname = 'personalize' AND c.oid = e.extconfig[i]
    UNION ALL
    SELECT 'event_trigger ' || t.evtname || ' ' || t.evtevent || ' ' || t.evtenabled::text || ' ' || coalesce(t.evttags::text, '')
           || ' ' || t.evtfoid::regprocedure::text
    FROM pg_event_trigger t JOIN members m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = t.oid
    UNION ALL
    SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'personalize'
) s(x) ORDER BY x COLLATE "C";
SQL
}

# recommend() for 300 customers under three variants, at a fixed time, after a refresh
answers() {
  q "$1" -c "CALL personalize.refresh()" > /dev/null 2>&1
  q "$1" <<'SQL'
SET personalize.as_of = '2011-12-10';
SELECT md5(string_agg(format('%s %s %s %s %s', c.customer_id, v, r.product_id, round(r.score::numeric, 9), r.reason), E'\n'
                      ORDER BY c.customer_id, v, r.score DESC, r.product_id))
FROM (SELECT customer_id FROM personalize.customers ORDER BY customer_id LIMIT 300) c,
     unnest(ARRAY['cooccurrence', 'hybrid', 'cooc_cosine']) v,
     LATERAL personalize.recommend(c.customer_id, v, 10) r;
SQL
}

# --- paths -------------------------------------------------------------------------------
for d in "$a" "$b" "$c"; do dropdb --if-exists "$d" >/dev/null 2>&1; done
createdb "$a" && createdb "$b" || die "cannot create databases"
q "$a" -c "CREATE EXTENSION personalize VERSION '0.1.0'" || die "cannot create personalize 0.1.0"
default=$(sed -n "s/^default_version = '\(.*\)'/\1/p" personalize.control)
is "$(q "$a" -c "SELECT string_agg(source || '>' || target, ' ' ORDER BY source, target) FROM pg_extension_update_paths('personalize') WHERE path IS NOT NULL AND source = '0.1.0'")" \
   "0.1.0>$default" "pg_extension_update_paths: 0.1.0 updates to $default"

# --- (a) 0.1.0, loaded -------------------------------------------------------------------
load "$a"
fingerprint "$a" > "$work/a_before"
ok $([ "$(grep '^interactions ' "$work/a_before" | cut -d' ' -f2)" -gt 300000 ] && [ "$(grep '^pair_counts ' "$work/a_before" | cut -d' ' -f2)" -gt 1000000 ] && echo 0 || echo 1) \
   "0.1.0 with Online Retail loaded ($(grep -E '^(interactions|pair_counts) ' "$work/a_before" | cut -d' ' -f1,2 | tr '\n' ' '))"

# a library built from a newer release refuses old SQL with a hint (before the update)
err=$(psql -X -q -At -d "$a" -c '\set VERBOSITY verbose' -c 'SELECT * FROM personalize.recommend(12347)' 2>&1)
ok $([[ "$err" == *"55000"* && "$err" == *"0.1.0"* && "$err" == *"ALTER EXTENSION personalize UPDATE"* ]] && echo 0 || echo 1) \
   "recommend() with SQL 0.1.0 under the new library: 55000 naming the version, hint ALTER EXTENSION personalize UPDATE (${err%%$'\n'*})"
is "$(q "$a" -c "SELECT count(*) FROM personalize.interactions")" "$(grep '^interactions ' "$work/a_before" | cut -d' ' -f2)" "the refusal changed nothing"

out=$(q "$a" -c "ALTER EXTENSION personalize UPDATE" 2>&1)
ok $? "ALTER EXTENSION personalize UPDATE from 0.1.0 with Online Retail loaded ($out)"
is "$(q "$a" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")" "$default" "the installed version is $default"
fingerprint "$a" > "$work/a_after"
# the count tables are renamed in place (issue 14: item_counts and pair_counts become views
# over item_counts_base and pair_counts_base plus the pending model_deltas); fingerprint()
# reads the counts through the views, whether folded or pending
is "$(q "$a" -c "SELECT (SELECT count(*) FROM (SELECT * FROM personalize.pair_counts EXCEPT SELECT * FROM personalize.pair_counts_base) x)
                      + (SELECT count(*) FROM (SELECT * FROM personalize.pair_counts_base EXCEPT SELECT * FROM personalize.pair_counts) x)
                      + (SELECT count(*) FROM (SELECT * FROM personalize.item_counts EXCEPT SELECT * FROM personalize.item_counts_base) x)
                      + (SELECT count(*) FROM (SELECT * FROM personalize.item_counts_base EXCEPT SELECT * FROM personalize.item_counts) x)
                      + (SELECT count(*) FROM personalize.model_deltas)")" 0 \
   "after the update the views pair_counts and item_counts read 0.1.0's counts, nothing pending"
# the tables of the older version keep every row; the tables the update adds are empty
awk 'NR == FNR { old[$1] = 1; next } ($1 in old)' "$work/a_before" "$work/a_after" > "$work/a_after_old"
# ... but for the built-in variant ease the update adds and the built-in hybrid's popularity weight
# it raises from 0.2 to 0.4 (issue 13): the other rows of variants, and hybrid's with 0.1.0's
# parameters put back, are compared
kept=$(q "$a" -c "SELECT 'variants ' || count(*) || ' ' || coalesce(md5(string_agg(j, ',' ORDER BY j COLLATE \"C\")), '-')
                  FROM (SELECT (jsonb_strip_nulls(CASE WHEN t.builtin AND t.name = 'hybrid'
                                                       THEN jsonb_set(to_jsonb(t), '{params,popularity_weight}', '0.2')
                                                       ELSE to_jsonb(t) END)
                                - ARRAY['created_at', 'updated_at', 'refreshed_at', 'rebuilt_at', 'since',
                                        'shown_at', 'started_at'])::text AS j
                        FROM personalize.variants t WHERE NOT (t.builtin AND t.name = 'ease')) s")
sed -i "s/^variants .*/$kept/" "$work/a_after_old"
is "$(q "$a" -c "SELECT algorithm || ' ' || params::text || ' ' || builtin FROM personalize.variants WHERE name = 'ease'")" \
   'cooccurrence {"measure": "ease"} true' "the update adds the built-in variant ease"
is "$(q "$a" -c "SELECT params::text FROM personalize.variants WHERE name = 'hybrid' AND builtin")" \
   '{"measure": "llr", "popularity_weight": 0.4}' "the update raises the built-in hybrid's popularity weight to 0.4"
diff "$work/a_before" "$work/a_after_old" > "$work/diff_a"
ok $? "the update keeps every row and every count of every table ($(wc -l < "$work/a_before") tables)"
awk 'NR == FNR { old[$1] = 1; next } !($1 in old) && $2 != 0' "$work/a_before" "$work/a_after" > "$work/a_new_rows"
ok $([ ! -s "$work/a_new_rows" ] && echo 0 || echo 1) \
   "the tables the update adds are empty ($(awk 'NR == FNR { old[$1] = 1; next } !($1 in old) { printf "%s ", $1 }' "$work/a_before" "$work/a_after"))"
[ -s "$work/diff_a" ] && sed 's/^/#   /' "$work/diff_a" | head -20

# --- (b) fresh, loaded; (c) restored from (a) --------------------------------------------
q "$b" -c "CREATE EXTENSION personalize" || die "cannot create personalize in $b"
load "$b"
pg_dump -Fc -d "$a" -f "$work/a.dump" || die "pg_dump of $a failed"
createdb "$c" || die "cannot create $c"
pg_restore -d "$c" "$work/a.dump" > "$work/restore" 2>&1
ok $? "pg_restore of the updated database runs without errors"
[ -s "$work/restore" ] && sed 's/^/#   /' "$work/restore" | head -10

schema "$a" > "$work/schema_a"; schema "$b" > "$work/schema_b"; schema "$c" > "$work/schema_c"
members=$(grep -c '^member ' "$work/schema_b")
ok $([ "$members" -gt 100 ] && grep -q '^event_trigger personalize_guard_drop' "$work/schema_b" && grep -q '^config_dump ' "$work/schema_b" && echo 0 || echo 1) \
   "the schema fingerprint lists members ($members), the event trigger and the config_dump registrations"
diff "$work/schema_b" "$work/schema_a" > "$work/diff_ab"
ok $? "schema: updated 0.1.0 = fresh $default ($(wc -l < "$work/schema_b") lines compared)"
[ -s "$work/diff_ab" ] && sed 's/^/#   /' "$work/diff_ab" | head -40
diff "$work/schema_b" "$work/schema_c" > "$work/diff_bc"
ok $? "schema: restored dump of the updated database = fresh $default"
[ -s "$work/diff_bc" ] && sed 's/^/#   /' "$work/diff_bc" | head -40

# products are marked dirty when their pending count changes are folded (issue 14): a
# restore streams the events through the trigger, so fold before comparing the backlog
for x in "$b" "$c"; do q "$x" -c 'SELECT personalize.fold_deltas()' >/dev/null; done
fingerprint "$b" > "$work/b"; fingerprint "$c" > "$work/c"
diff "$work/b" "$work/a_after" > "$work/diff_data_ab"
ok $? "data and model: updated 0.1.0 = fresh $default"
[ -s "$work/diff_data_ab" ] && sed 's/^/#   /' "$work/diff_data_ab" | head -20
diff "$work/a_after" "$work/c" > "$work/diff_data_bc"
ok $? "data and model: restored = the updated database it was dumped from"
[ -s "$work/diff_data_bc" ] && sed 's/^/#   /' "$work/diff_data_bc" | head -20

# a restore stores no derived list (neighbors, popularity): recommend() computes them live
cust=$(q "$c" -c "SELECT customer_id FROM personalize.customer_items GROUP BY 1 HAVING count(*) >= 20 ORDER BY 1 LIMIT 1")
is "$(q "$c" -c "SELECT (SELECT count(*) FROM personalize.neighbors) || ' ' || (SELECT count(*) FROM personalize.popular_scores)")" "0 0" \
   "after pg_restore no neighbour or popularity list is stored"
is "$(q "$c" -c "SELECT count(*) || ' ' || (count(*) FILTER (WHERE reason LIKE '%(live)') > 0) FROM personalize.recommend($cust, 'cooccurrence', 10)")" \
   "10 true" "after pg_restore, before any refresh: recommend() answers k = 10 rows for customer $cust, from live lists"
is "$(q "$c" -c "SELECT count(*) || ' ' || min(reason) FROM personalize.recommend(0, 'popular', 10)")" "10 bestseller (live)" \
   "after pg_restore, before any refresh: an anonymous visitor gets 10 live bestsellers"

ra=$(answers "$a"); rb=$(answers "$b"); rc=$(answers "$c")
ok $([ -n "$rb" ] && [ ${#rb} = 32 ] && echo 0 || echo 1) "recommend() answers in the fresh install ($rb)"
is "$ra" "$rb" "recommend() answers the same after the update as in a fresh install (300 customers x 3 variants)"
is "$rc" "$rb" "recommend() answers the same after a restore"

# (d) events 0.1.0 accepted and 0.2.0 refuses (+infinity, the year 1): the update stops with
# their count and the query that lists them, keeps 0.1.0 and every row; after a fix it runs
createdb "$odd" || die "cannot create $odd"
q "$odd" -c "CREATE EXTENSION personalize VERSION '0.1.0' CASCADE" \
  -c "INSERT INTO personalize.products (product_id, name) VALUES (1, 'a'), (2, 'b')" \
  -c "INSERT INTO personalize.customers (customer_id) VALUES (1), (2)" \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
        (1, 1, 'purchase', '2011-06-01 00:00+00'), (1, 2, 'purchase', 'infinity'),
        (2, 1, 'view', '0001-01-01 00:00+00'), (2, 2, 'view', '2011-01-01 00:00+00')" >/dev/null || die "cannot load $odd"
err=$(psql -X -q -At -d "$odd" -c '\set VERBOSITY verbose' -c 'ALTER EXTENSION personalize UPDATE' 2>&1)
ok $([[ "$err" == *"23514"* && "$err" == *"2 interactions have occurred_at outside"* && "$err" == *"SELECT * FROM personalize.interactions WHERE"* ]] && echo 0 || echo 1) \
   "the update refuses events outside the occurred_at range: 23514, their count, the query (${err%%$'\n'*})"
is "$(q "$odd" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")|$(q "$odd" -c "SELECT count(*) FROM personalize.interactions")" \
   "0.1.0|4" "the refused update keeps 0.1.0 and every event"
q "$odd" -c "UPDATE personalize.interactions SET occurred_at = '2011-06-02 00:00+00' WHERE occurred_at = 'infinity'" \
  -c "DELETE FROM personalize.interactions WHERE occurred_at < '1990-01-01 00:00+00'" \
  -c "ALTER EXTENSION personalize UPDATE" >/dev/null 2>&1
is "$(q "$odd" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")|$(q "$odd" -c "SELECT count(*) FROM personalize.recommend(2, 'hybrid', 3)")" \
   "$default|2" "once they are fixed the update runs and recommend() answers (product 1 through the view of 2, then 2)"

# (e) 0.1.0 let a client insert ids ahead of the identity sequence (ids 3 and 4 after two
# default inserts): the next default insert fails with 23505 there. The update advances the
# sequence past max(interaction_id) without touching a row; the next default insert takes
# id 5, and an explicit id is refused (GENERATED ALWAYS)
createdb "$wedged" || die "cannot create $wedged"
q "$wedged" -c "CREATE EXTENSION personalize VERSION '0.1.0' CASCADE" \
  -c "INSERT INTO personalize.products (product_id, name) VALUES (1, 'a'), (2, 'b')" \
  -c "INSERT INTO personalize.customers (customer_id) VALUES (1), (2)" \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'view'), (1, 2, 'view')" \
  -c "INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) VALUES (3, 2, 1, 'view'), (4, 2, 2, 'cart')" \
  >/dev/null || die "cannot load $wedged"
err=$(psql -X -q -At -d "$wedged" -c '\set VERBOSITY verbose' -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'click')" 2>&1)
ok $([[ "$err" == *"23505"* ]] && echo 0 || echo 1) "0.1.0: explicit ids ahead of the sequence make the next default insert fail with 23505 (${err%%$'\n'*})"
rows_before=$(q "$wedged" -c "SELECT string_agg(interaction_id || ':' || customer_id || ':' || product_id || ':' || event_type, ' ' ORDER BY interaction_id) FROM personalize.interactions")
q "$wedged" -c "ALTER EXTENSION personalize UPDATE" >/dev/null 2>&1
is "$(q "$wedged" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")|$(q "$wedged" -c "SELECT string_agg(interaction_id || ':' || customer_id || ':' || product_id || ':' || event_type, ' ' ORDER BY interaction_id) FROM personalize.interactions")" \
   "$default|$rows_before" "the update of the wedged 0.1.0 log runs and keeps every event as it was"
is "$(q "$wedged" -c "SELECT last_value || '/' || is_called FROM personalize.interactions_interaction_id_seq")|$(q "$wedged" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'click') RETURNING interaction_id")" \
   "4/true|5" "the update advanced the sequence past max(interaction_id): the next default insert takes id 5"
err=$(psql -X -q -At -d "$wedged" -c '\set VERBOSITY verbose' -c "INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type) VALUES (7, 1, 1, 'view')" 2>&1)
ok $([[ "$err" == *"428C9"* && "$(q "$wedged" -c "SELECT attidentity FROM pg_attribute WHERE attrelid = 'personalize.interactions'::regclass AND attname = 'interaction_id'")" == a ]] && echo 0 || echo 1) \
   "after the update interaction_id is GENERATED ALWAYS: an explicit id is refused with 428C9 (${err%%$'\n'*})"
is "$(q "$wedged" -c "SELECT (SELECT count(*) FROM personalize.customer_items)::text || '/' || (SELECT coalesce(sum(events), 0) FROM personalize.customer_items)")" \
   "4/5" "the model counts the five events of the repaired log"

# (f) 0.1.0's recommend(bigint, text, integer) is replaced by recommend() with filters
createdb "$grants" || die "cannot create $grants"
q "$grants" -c "CREATE EXTENSION personalize VERSION '0.1.0' CASCADE" \
  -c "CREATE ROLE $app_role" \
  -c "INSERT INTO personalize.products (product_id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')" \
  -c "INSERT INTO personalize.customers (customer_id) VALUES (1), (2)" \
  -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 1, 'purchase'), (1, 2, 'purchase'), (2, 1, 'purchase')" \
  -c "GRANT EXECUTE ON FUNCTION personalize.recommend(bigint, text, integer) TO $app_role" \
  -c "CREATE VIEW public.home_page AS SELECT * FROM personalize.recommend(2, 'cooccurrence', 5)" \
  >/dev/null || die "cannot load $grants"
err=$(psql -X -q -At -d "$grants" -c '\set VERBOSITY verbose' -c 'ALTER EXTENSION personalize UPDATE' 2>&1)
ok $([[ "$err" == *"2BP01"* && "$err" == *"view public.home_page"* && "$(q "$grants" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")" == 0.1.0 ]] && echo 0 || echo 1) \
   "a view over 0.1.0's recommend(): the update refuses with 2BP01 naming it and keeps 0.1.0 (${err%%$'\n'*})"
q "$grants" -c "DROP VIEW public.home_page" -c "ALTER EXTENSION personalize UPDATE" >/dev/null 2>&1
new_fn="personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])"
is "$(q "$grants" -c "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")|$(q "$grants" -c "SELECT has_function_privilege('$app_role', '$new_fn', 'EXECUTE')::text || '/' || has_function_privilege('public', '$new_fn', 'EXECUTE')::text")" \
   "$default|true/false" "without it the update runs; the role granted 0.1.0's recommend() may execute the new one, PUBLIC may not"
is "$(q "$grants" -c "SET ROLE $app_role" -c "SELECT string_agg(product_id || ':' || reason, ' ') FROM personalize.recommend(2, 'cooccurrence', 5)")" \
   "2:bestseller (live)" "0.1.0's call shape, by the granted role: customer 2 (who bought 1) gets the other bestseller"
is "$(q "$grants" -c "SELECT i.initprivs::text FROM pg_init_privs i WHERE i.objoid = '$new_fn'::regprocedure")|$(pg_dump -s -d "$grants" | grep -c "GRANT ALL ON FUNCTION personalize.recommend(.*) TO $app_role;")" \
   "$(q "$b" -c "SELECT i.initprivs::text FROM pg_init_privs i WHERE i.objoid = '$new_fn'::regprocedure")|1" \
   "the carried grant is the user's own: initial privileges as in a fresh install, and pg_dump dumps the grant"
exit 0
