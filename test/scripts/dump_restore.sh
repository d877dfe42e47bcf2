#!/bin/bash
# pg_dump -Fc / pg_restore round trip keeps personalize's user data.
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER set; see test/in_cluster.sh).
# Creates personalize_dump_src_<pid> and personalize_dump_dst_<pid> and a role
# regress_dump_app_<pid>, drops them at the end. Prints TAP lines; exits 0 even when a test
# is "not ok", non-zero only if the script itself cannot run.
#
# Expected behaviour, by design (see pg_extension_config_dump in the install script):
#   - every row of products, customers, interactions, customer_feedback and
#     marketing_campaigns comes back, and their identity sequences continue after the
#     restored ids;
#   - of event_types only the rows a user added are dumped. The four built-in types come
#     from CREATE EXTENSION on restore, so a CHANGED WEIGHT OF A BUILT-IN TYPE IS NOT
#     KEPT: it is back to its shipped value and must be set again after a restore;
#   - the retention settings a DBA changed (personalize.retention, stored in
#     retention_settings) come back.
set -uo pipefail

src=personalize_dump_src_$$
dst=personalize_dump_dst_$$
role=regress_dump_app_$$
work=$(mktemp -d)
n=0

drop_all() {
  dropdb --if-exists "$src" >/dev/null 2>&1
  dropdb --if-exists "$dst" >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
}
trap 'drop_all; rm -rf "$work"' EXIT
die() { echo "dump_restore: $*" >&2; echo "Bail out! $*"; exit 2; }
ok()  { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
# is GOT WANT DESCRIPTION
is()  { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q()   { psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

drop_all
createdb "$src" || die "cannot create $src"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<SQL || die "cannot fill $src"
CREATE EXTENSION personalize;
CREATE ROLE $role;
GRANT SELECT ON personalize.products, personalize.event_types, personalize.marketing_campaigns TO $role;
GRANT SELECT, INSERT, UPDATE ON personalize.customers TO $role;
GRANT SELECT, INSERT ON personalize.interactions, personalize.customer_feedback TO $role;

INSERT INTO personalize.products (product_id, sku, name, category, price, active, attributes, created_at, updated_at) VALUES
  (1, '85123A', 'White hanging heart T-light holder', 'home', 2.55, true, '{"color": "white", "tags": ["heart"]}', '2010-12-01 08:26+00', '2010-12-01 08:26+00'),
  (2, '71053', 'White metal lantern', 'home', 3.39, true, NULL, '2010-12-01 08:26+00', '2011-06-01 10:00+00'),
  (3, '84406B', 'Cream Cupid hearts coat hanger, "quoted", with commas', NULL, NULL, false, '{}', '2010-12-02 09:00+00', '2010-12-02 09:00+00'),
  (7, NULL, E'Tab\tand newline\nin a name', 'gifts', 0, true, '{"note": "backslash \\\\ here"}', '2011-01-01 00:00+00', '2011-01-01 00:00+00');
INSERT INTO personalize.customers (customer_id, country, attributes, created_at) VALUES
  (17850, 'United Kingdom', '{"segment": "retail"}', '2010-12-01 08:26+00'),
  (13047, 'France', NULL, '2010-12-01 08:34+00'),
  (12583, NULL, '{"vip": true}', '2010-12-01 08:45+00');
-- a user-added event type (dumped) and a changed built-in weight (deliberately not dumped)
INSERT INTO personalize.event_types (event_type, weight, description) VALUES ('wishlist', 3.5, 'Added to a wish list.');
UPDATE personalize.event_types SET weight = 1.5 WHERE event_type = 'view';
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at) VALUES
  (17850, 1, 'view', 1, '2010-12-01 08:20+00'),
  (17850, 1, 'purchase', 6, '2010-12-01 08:26+00'),
  (17850, 2, 'cart', 2, '2010-12-01 08:25+00'),
  (13047, 3, 'wishlist', 1, '2010-12-01 08:30+00'),
  (12583, 7, 'click', 1, '2010-12-01 08:40+00'),
  (12583, 2, 'purchase', 1, '2010-12-01 08:45+00');
-- (no DELETE here: deleting events is the engine's business and tested there)
-- a gap, as a rolled-back insert leaves one: the sequence is ahead of max(interaction_id)
DO \$\$
BEGIN
    INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (12583, 999, 'view');
EXCEPTION WHEN foreign_key_violation THEN NULL;
END \$\$;
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment, created_at) VALUES
  (17850, 1, 5, 'Lovely', '2010-12-05 10:00+00'),
  (13047, 3, 2, NULL, '2010-12-06 11:00+00'),
  (12583, 7, 4, 'ok; "fine"', '2010-12-07 12:00+00');
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost) VALUES
  ('Christmas', 1, '2010-12-01 00:00+00', '2010-12-25 00:00+00', 2.0),
  ('Clearance', 2, '2011-01-01 00:00+00', '2011-02-01 00:00+00', 1.5),
  ('Spring', 7, '2011-03-01 00:00+00', '2011-04-01 00:00+00', 0.75);
-- retention settings a DBA changed (kept by the dump, unlike a built-in event type's weight);
-- one set back to its default, so not stored as a change
UPDATE personalize.retention SET keep = '2 years', mode = 'forget', batch_size = 5000 WHERE target = 'events';
UPDATE personalize.retention SET keep = NULL WHERE target = 'maintenance_runs';
UPDATE personalize.retention SET keep = '1 day' WHERE target = 'llm_runs';
UPDATE personalize.retention SET keep = '90 days' WHERE target = 'llm_runs';
SQL

tables="products customers event_types interactions customer_feedback marketing_campaigns"
seqs="interactions_interaction_id_seq customer_feedback_feedback_id_seq marketing_campaigns_campaign_id_seq"
for t in $tables; do
  c=$(q "$src" "SELECT count(*) FROM personalize.$t") || die "cannot count $t"
  [ "$c" -ge 3 ] || die "source table $t has only $c rows"
done

echo "# pg_dump -Fc $src"
pg_dump -Fc -f "$work/dump" "$src" 2> "$work/dump.err"
ok $? "pg_dump -Fc succeeds"
[ -s "$work/dump.err" ] && sed 's/^/# /' "$work/dump.err"
createdb "$dst" || die "cannot create $dst"
echo "# pg_restore -d $dst"
pg_restore -d "$dst" "$work/dump" 2> "$work/restore.err"
rc=$?
[ -s "$work/restore.err" ] && sed 's/^/# /' "$work/restore.err"
ok $rc "pg_restore into a fresh database succeeds"
is "$(grep -ci 'error' "$work/restore.err")" 0 "pg_restore reports no error"
is "$(q "$dst" "SELECT extversion FROM pg_extension WHERE extname = 'personalize'")" "$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$(dirname "$0")/../../personalize.control")" \
   "the restored database has personalize at the default version (CREATE EXTENSION, not its tables)"

# every table: same rows, compared as text in a fixed order
rows() {  # db table [where]
  q "$1" "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text COLLATE \"C\"), ''))
          FROM personalize.$2 t ${3:-}"
}
for t in products customers interactions customer_feedback marketing_campaigns; do
  a=$(rows "$src" $t); b=$(rows "$dst" $t)
  is "$b" "$a" "$t: all ${a%% *} rows identical after restore"
done
a=$(rows "$src" event_types "WHERE event_type <> 'view'"); b=$(rows "$dst" event_types "WHERE event_type <> 'view'")
is "$b" "$a" "event_types: the user-added type and the unchanged built-ins identical after restore"
is "$(q "$dst" "SELECT weight || ' ' || description FROM personalize.event_types WHERE event_type = 'wishlist'")" \
   "3.5 Added to a wish list." "event_types: the user-added type 'wishlist' kept its weight and description"
is "$(q "$dst" "SELECT weight FROM personalize.event_types WHERE event_type = 'view'")" "1" \
   "event_types: the changed weight of built-in 'view' (1.5) is not dumped; it is back to 1 (documented)"
is "$(q "$dst" "SELECT string_agg(event_type, ',' ORDER BY event_type COLLATE \"C\") FROM personalize.event_types")" \
   "cart,click,purchase,view,wishlist" "event_types: built-ins once each plus the user's type"

# the retention settings a DBA changed come back; the others are the defaults
ret="SELECT string_agg(concat_ws(' ', target, coalesce(keep::text, 'forever'), mode, batch_size, changed), ', ' ORDER BY target) FROM personalize.retention"
is "$(q "$dst" "$ret")" "$(q "$src" "$ret")" "retention: every target's effective setting identical after restore"
is "$(q "$dst" "SELECT string_agg(target || ' ' || coalesce(keep::text, 'forever') || ' ' || coalesce(mode, '-') || ' ' || batch_size, ', ' ORDER BY target) FROM personalize.retention WHERE changed")" \
   "events 2 years forget 5000, maintenance_runs forever - 10000" "retention: the changed events (2 years, forget, 5000) and maintenance_runs (forever) settings survive the dump and restore"

# sequences continue after the restored ids
for s in $seqs; do
  a=$(q "$src" "SELECT last_value || ' ' || is_called FROM personalize.$s"); b=$(q "$dst" "SELECT last_value || ' ' || is_called FROM personalize.$s")
  is "$b" "$a" "$s: last_value and is_called restored"
done
next() {  # db: insert one row without id into each identity table, print the three new ids
  q "$1" "WITH i AS (INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (13047, 1, 'view') RETURNING interaction_id),
               f AS (INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (13047, 2, 3) RETURNING feedback_id),
               c AS (INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at) VALUES ('After', 3, now(), now() + interval '1 day') RETURNING campaign_id)
          SELECT (SELECT interaction_id FROM i) || ' ' || (SELECT feedback_id FROM f) || ' ' || (SELECT campaign_id FROM c)"
}
max_before=$(q "$dst" "SELECT (SELECT max(interaction_id) FROM personalize.interactions) || ' ' || (SELECT max(feedback_id) FROM personalize.customer_feedback) || ' ' || (SELECT max(campaign_id) FROM personalize.marketing_campaigns)")
new_dst=$(next "$dst" 2>&1); rc=$?
ok $rc "after restore, inserts without an id into interactions, customer_feedback and marketing_campaigns succeed (no key collision)"
[ $rc = 0 ] || echo "# $new_dst"
new_src=$(next "$src")
is "$new_dst" "$new_src" "after restore, the next ids are the ones the source would have given ($new_src)"
read -r mi mf mc <<< "$max_before"; read -r ni nf nc <<< "${new_dst:-0 0 0}"
[ "$ni" -gt "$mi" ] 2>/dev/null && [ "$nf" -gt "$mf" ] && [ "$nc" -gt "$mc" ]
ok $? "after restore, new ids ($new_dst) are above the restored maxima ($max_before)"

# what goes with the data: grants to application roles, the trigger
acl() { q "$1" "SELECT string_agg(c.relname || '=' || coalesce(c.relacl::text, ''), ' ' ORDER BY c.relname COLLATE \"C\")
                FROM pg_class c WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind = 'r'"; }
is "$(acl "$dst")" "$(acl "$src")" "grants on the tables (an application role's, PUBLIC's) are restored"
is "$(q "$dst" "SELECT has_table_privilege('$role', 'personalize.interactions', 'INSERT') AND NOT has_table_privilege('$role', 'personalize.event_types', 'UPDATE')")" \
   "t" "the application role can still record events and still cannot change weights"
is "$(q "$dst" "UPDATE personalize.products SET price = 2.75 WHERE product_id = 1 RETURNING updated_at = now()")" \
   "t" "the products.updated_at trigger works on the restored table"

echo "1..$n"
exit 0
