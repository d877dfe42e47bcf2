#!/bin/bash
# Grant sets (issue 11, part 6): an application, a monitoring and a BI role, each given its
# documented set by grant_application(), grant_monitoring() and grant_bi() and nothing else,
# connect over TCP with a password as outside clients would. Each can do exactly its set and
# is refused (42501) the rest: every other table and view of the schema, and every function
# and procedure PUBLIC may not execute, found from the catalog, plus the writes its tables do
# not allow. The monitoring set names no customer; the BI set only by id, in the batch
# recommendations and the impression log (issue 12), and never their events or details.
# revoke_all() takes a set back. Runs inside pg_virtualenv. TAP output; creates and drops
# personalize_grants_<pid> and four roles.
set -uo pipefail
db=personalize_grants_$$ app=regress_app_$$ mon=regress_mon_$$ bi=regress_bi_$$ nogrant=regress_nogrant_$$
pw=secret-$$
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
tcp() { local role=$1; shift; PGHOST=127.0.0.1 PGUSER=$role PGPASSWORD=$pw PGCONNECT_TIMEOUT=10 psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
cleanup() { dropdb --if-exists "$db" >/dev/null 2>&1
            for r in $app $mon $bi $nogrant; do psql -X -q -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1; done; }
trap cleanup EXIT
createdb "$db" || { echo "Bail out! cannot create $db"; exit 2; }
q >/dev/null <<SQL || { echo "Bail out! cannot set up $db"; exit 2; }
CREATE EXTENSION personalize;
CREATE ROLE $app LOGIN PASSWORD '$pw';
CREATE ROLE $mon LOGIN PASSWORD '$pw';
CREATE ROLE $bi LOGIN PASSWORD '$pw';
CREATE ROLE $nogrant LOGIN PASSWORD '$pw';
INSERT INTO personalize.products (product_id, name) SELECT g, 'Product ' || g FROM generate_series(1, 20) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 10) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 3 + i) % 20, 'purchase' FROM generate_series(1, 10) c, generate_series(1, 3) i;
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (5, 1, 4);
CALL personalize.refresh();
SELECT personalize.create_experiment('launch', ARRAY['hybrid', 'popular']);
SELECT personalize.start_experiment('launch');
INSERT INTO personalize.flags (name, rollout) VALUES ('checkout', 0.5);
SQL

# the sets, as documented in docs/reference.md ("Grant sets")
app_set="table personalize.products SELECT
table personalize.event_types SELECT
table personalize.marketing_campaigns SELECT
table personalize.customers SELECT, INSERT, UPDATE
table personalize.interactions SELECT, INSERT
table personalize.customer_feedback SELECT, INSERT
function personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) EXECUTE
function personalize.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) EXECUTE
function personalize.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb) EXECUTE
function personalize.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[]) EXECUTE
function personalize.recommend_logged(bigint, integer) EXECUTE
function personalize.log_exposure(bigint, bigint[], text) EXECUTE
function personalize.assigned_variant(text, bigint) EXECUTE
function personalize.flag_enabled(text, bigint) EXECUTE
function personalize.erase_customer(bigint) EXECUTE
function personalize.log_impressions(bigint, bigint[], text, text) EXECUTE
function personalize.log_event(bigint, bigint, text, timestamptz, integer, text) EXECUTE"
mon_set="table personalize.health SELECT
table personalize.model_stats SELECT
table personalize.maintenance_runs SELECT
table personalize.llm_runs SELECT
table personalize.llm_batches SELECT
table personalize.ingest_batches SELECT
table personalize.batch_recommendation_runs SELECT"
bi_set="table personalize.products SELECT
table personalize.event_types SELECT
table personalize.marketing_campaigns SELECT
table personalize.variants SELECT
table personalize.popular SELECT
table personalize.neighbor_list SELECT
table personalize.cooccurrence SELECT
table personalize.model_stats SELECT
table personalize.experiment_results SELECT
table personalize.batch_recommendations SELECT
table personalize.batch_recommendations_named SELECT
table personalize.impressions SELECT
table personalize.impression_ctr SELECT"
for s in application:"$app_set" monitoring:"$mon_set" bi:"$bi_set"; do
  is "$(q -c "SELECT object_type || ' ' || object || ' ' || privileges FROM personalize._grant_set('${s%%:*}')")" "${s#*:}" \
     "the ${s%%:*} set is the documented one"
done

out=$(q -c "SELECT count(*) FROM personalize.grant_application('$app')" -c "SELECT count(*) FROM personalize.grant_monitoring('$mon')" \
        -c "SELECT count(*) FROM personalize.grant_bi('$bi')" -c "SELECT count(*) FROM personalize.grant_bi('$bi')")
is "$(echo $out)" "17 7 13 13" "the owner grants the three sets (a second grant_bi() is a no-op that says the same)"
is "$(tcp "$nogrant" -c "SELECT personalize.grant_application('$nogrant')" | grep -o 'permission denied for function grant_application')" \
   "permission denied for function grant_application" "a role without the grant cannot grant itself a set"

# the rest, from the catalog: for each role, one DO block over TCP tries every table and view
# not in its set (SELECT) and every function and procedure PUBLIC may not execute that is not
# in its set (called with NULL arguments, from subqueries so that no strict function is folded
# away before the privilege check; CALL takes no subquery and checks first); it counts 42501
refusals() { # role set
  local stmts
  stmts=$(q -c "
    WITH granted AS (SELECT object FROM personalize._grant_set('$2'))
    SELECT string_agg(quote_literal(s), ', ') FROM (
      SELECT format('SELECT count(*) FROM %s', c.oid::regclass) AS s
      FROM pg_class c WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
        AND c.oid NOT IN (SELECT object::regclass FROM granted WHERE object !~ '\\(')
      UNION ALL
      SELECT format('%s %I.%I(%s)', CASE p.prokind WHEN 'p' THEN 'CALL' ELSE 'SELECT' END, 'personalize', p.proname,
                    (SELECT string_agg(CASE p.prokind WHEN 'p' THEN format('NULL::%s', format_type(t, NULL))
                                                        ELSE format('(SELECT NULL::%s)', format_type(t, NULL)) END, ', ' ORDER BY o)
                     FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)))
      FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
        AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
        AND p.oid NOT IN (SELECT object::regprocedure FROM granted WHERE object ~ '\\(')) x")
  tcp "$1" <<SQL
DO \$\$
DECLARE s text; refused int := 0; total int := 0; allowed text := '';
BEGIN
  FOREACH s IN ARRAY ARRAY[$stmts]::text[] LOOP
    total := total + 1;
    BEGIN
      EXECUTE s;
      allowed := allowed || s || '; ';
    EXCEPTION WHEN insufficient_privilege THEN refused := refused + 1;
              WHEN others THEN allowed := allowed || s || ' (' || SQLSTATE || '); ';
    END;
  END LOOP;
  RAISE NOTICE 'refused % of %; not refused: [%]', refused, total, allowed;
END \$\$;
SQL
}
for r in "$app application" "$mon monitoring" "$bi bi"; do
  set -- $r
  res=$(refusals "$1" "$2")
  [[ "$res" =~ refused\ ([0-9]+)\ of\ ([0-9]+)\;\ not\ refused:\ \[(.*)\] ]]
  ok $([ -n "${BASH_REMATCH[1]:-}" ] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ -z "${BASH_REMATCH[3]}" ] \
       && [ "${BASH_REMATCH[2]}" -gt 90 ] && echo 0 || echo 1) \
     "the $2 role, over TCP, is refused (42501) every other table, view, function and procedure (${res##*NOTICE:  })"
done

# the application role: exactly its set works, over TCP
is "$(tcp "$app" -c 'SELECT current_user = session_user, inet_client_addr() IS NOT NULL')" "t|t" "the application role is connected over TCP with a password"
out=$(tcp "$app" <<'SQL'
SELECT count(*) FROM personalize.products;
SELECT count(*) FROM personalize.event_types;
SELECT count(*) FROM personalize.marketing_campaigns;
INSERT INTO personalize.customers (customer_id, country) VALUES (11, 'France')
ON CONFLICT (customer_id) DO UPDATE SET country = excluded.country;
UPDATE personalize.customers SET attributes = '{"tier": "gold"}' WHERE customer_id = 11;
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (11, 2, 'view') RETURNING customer_id;
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (11, 2, 5) RETURNING rating;
SELECT count(*) > 0 FROM personalize.recommend(1);
SELECT count(DISTINCT variant) FROM personalize.recommend_served(1, k => 3, exclude_products => '{1}');
SELECT count(*) > 0 FROM personalize.similar_items(2, 3);
SELECT count(*) > 0 FROM personalize.recommend_for_items('{1, 2}', 3, customer_id => 1, exclude_interacted => '{view}');
SELECT count(*) > 0 FROM personalize.recommend_logged(2);
SELECT personalize.log_exposure(3, ARRAY[1, 2]::bigint[]) IS NOT NULL;
SELECT personalize.assigned_variant('launch', 1) IN ('hybrid', 'popular');
SELECT personalize.flag_enabled('checkout', 1) IS NOT NULL;
SELECT interactions, feedback, customer FROM personalize.erase_customer(5);
SQL
)
is "$(echo $out)" "20 4 0 11 5 t 1 t t t t t t 3|1|t" "the application role reads the catalog, upserts customers, sends events and feedback, recommends (customer, product page, cart, the variant served), logs exposures, assigns, reads flags and erases a customer"
is "$(q -c "SELECT (SELECT count(*) FROM personalize.interactions WHERE customer_id = 5) + (SELECT count(*) FROM personalize.customers WHERE customer_id = 5)
             + (SELECT count(*) FROM personalize.customer_items WHERE customer_id = 5) + (SELECT count(*) FROM personalize.customer_feedback WHERE customer_id = 5)")" 0 \
   "erase_customer() erased every row of the customer, the model's included"
for stmt in "UPDATE personalize.interactions SET quantity = 2" "DELETE FROM personalize.interactions" "DELETE FROM personalize.customers WHERE customer_id = 11" \
            "UPDATE personalize.customer_feedback SET rating = 1" "INSERT INTO personalize.products (product_id, name) VALUES (99, 'x')" \
            "UPDATE personalize.event_types SET weight = 100" "DELETE FROM personalize.marketing_campaigns" "TRUNCATE personalize.interactions" \
            "SELECT personalize.forget_customer(1)" "SELECT setval('personalize.interactions_interaction_id_seq', 1)"; do
  out=$(tcp "$app" -v VERBOSITY=sqlstate -c "$stmt")
  is "$out" "ERROR:  42501" "the application role is refused: $stmt"
done

# the monitoring role: health (pg_cron's jobs included), the run tables, nothing that names a customer
out=$(tcp "$mon" <<'SQL'
SELECT count(*) > 5, bool_or("check" = 'refresh_age') FROM personalize.health;
SELECT customers >= 0 FROM personalize.model_stats;
SELECT count(*) > 0 FROM personalize.maintenance_runs WHERE job = 'refresh' AND status = 'succeeded';
SELECT count(*) FROM personalize.llm_runs;
SELECT count(*) FROM personalize.llm_batches;
SELECT count(*) FROM personalize.ingest_batches;
SQL
)
is "$(echo $out)" "t|t t t 0 0 0" "the monitoring role reads health, model_stats and the run tables over TCP"
for stmt in "DELETE FROM personalize.maintenance_runs" "INSERT INTO personalize.ingest_batches DEFAULT VALUES" "UPDATE personalize.llm_runs SET error = NULL" \
            "SELECT count(*) FROM personalize.llm_rejections" "SELECT personalize._health_cron_jobs() IS NULL AND false"; do
  out=$(tcp "$mon" -v VERBOSITY=sqlstate -c "$stmt")
  [[ "$stmt" == *_health_cron_jobs* ]] && { ok $([[ "$out" != *ERROR* ]] && echo 0 || echo 1) "the monitoring role may call _health_cron_jobs() (it reads personalize.health)"; continue; }
  is "$out" "ERROR:  42501" "the monitoring role is refused: $stmt"
done

# the BI role: the catalog and the aggregate results
out=$(tcp "$bi" <<'SQL'
SELECT count(*) FROM personalize.products;
SELECT count(*) FROM personalize.variants WHERE builtin;
SELECT count(*) > 0 FROM personalize.popular;
SELECT count(*) > 0 FROM personalize.neighbor_list;
SELECT count(*) > 0 FROM personalize.cooccurrence;
SELECT products > 0 FROM personalize.model_stats;
SELECT count(*) FROM personalize.experiment_results WHERE experiment = 'launch';
SELECT count(*) FROM personalize.event_types;
SELECT count(*) FROM personalize.marketing_campaigns;
SQL
)
is "$(echo $out)" "20 5 t t t t 2 4 0" "the BI role reads the catalog, popularity, neighbour lists, co-occurrence, model_stats and experiment_results over TCP"
is "$(tcp "$bi" -c "SELECT count(*) FROM personalize.batch_recommendations_named" -c "SELECT count(*) FROM personalize.impression_ctr" | paste -sd' ')" "0 0" \
   "the BI role reads the batch recommendations with product names and the click-through view (issue 12)"
for stmt in "UPDATE personalize.products SET name = 'x'" "INSERT INTO personalize.variants (name, algorithm) VALUES ('mine', 'popular')" \
            "SELECT count(*) FROM personalize.exposures" "SELECT count(*) FROM personalize.experiments" "SELECT * FROM personalize.recommend(1)"; do
  out=$(tcp "$bi" -v VERBOSITY=sqlstate -c "$stmt")
  is "$out" "ERROR:  42501" "the BI role is refused: $stmt"
done
is "$(q -c "SELECT string_agg(format('%s.%s', s.object, a.attname), ', ' ORDER BY s.object COLLATE \"C\")
            FROM (SELECT object FROM personalize._grant_set('monitoring') UNION SELECT object FROM personalize._grant_set('bi')) s
            JOIN pg_attribute a ON a.attrelid = s.object::regclass AND a.attnum > 0 AND NOT a.attisdropped
            WHERE a.attname IN ('customer_id', 'customer_ids')")" \
   "personalize.batch_recommendations.customer_id, personalize.batch_recommendations_named.customer_id, personalize.impressions.customer_id" \
   "no relation of the monitoring or BI set has a customer_id column but the BI set's batch recommendations and impressions"

# revoke_all() takes a set back; the roles then read nothing
out=$(q -c "SELECT personalize.revoke_all('$app'), personalize.revoke_all('$mon'), personalize.revoke_all('$bi')")
is "$out" "21|7|13" "revoke_all() removes each role's privileges (21, 7, 13: one per table privilege and function)"
for r in "$app recommend(1)" "$mon health" "$bi neighbor_list"; do
  set -- $r
  out=$(tcp "$1" -v VERBOSITY=sqlstate -c "SELECT count(*) FROM personalize.$2")
  is "$out" "ERROR:  42501" "after revoke_all(), $1 is refused personalize.$2"
done
exit 0
