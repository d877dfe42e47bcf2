#!/bin/bash
# Privacy: a role with no grant, connected over TCP with a password as an outside client
# would, learns nothing about a customer: recommend() is refused (its reasons name the
# customer's purchases and its exclusions give the purchase set away), every table and
# view of the schema is refused (found from the catalog), and what PUBLIC may execute is
# only model-level and arithmetic functions (not assignment and flags: their names, a draft
# experiment's arms and a rollout are the shop's). An application role granted EXECUTE on
# recommend(), assigned_variant() and flag_enabled() is served over the same connection path.
# Runs inside pg_virtualenv. TAP output; creates and drops personalize_privacy_<pid> and two roles.
set -uo pipefail
db=personalize_privacy_$$ nogrant=regress_nogrant_$$ app=regress_app_$$
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
tcp() { local role=$1; shift; PGHOST=127.0.0.1 PGUSER=$role PGPASSWORD=secret-$$ psql -X -q -At -d "$db" "$@" 2>&1; }
cleanup() { dropdb --if-exists "$db" >/dev/null 2>&1; psql -X -q -d postgres -c "DROP ROLE IF EXISTS $nogrant" -c "DROP ROLE IF EXISTS $app" >/dev/null 2>&1; }
trap cleanup EXIT
createdb "$db" || { echo "Bail out! cannot create $db"; exit 2; }
q >/dev/null <<SQL || { echo "Bail out! cannot set up $db"; exit 2; }
CREATE EXTENSION personalize;
CREATE ROLE $nogrant LOGIN PASSWORD 'secret-$$';
CREATE ROLE $app LOGIN PASSWORD 'secret-$$';
GRANT EXECUTE ON FUNCTION personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) TO $app;
INSERT INTO personalize.products (product_id, name) SELECT g, 'SECRET PRODUCT ' || g FROM generate_series(1, 20) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 10) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 3 + i) % 20, 'purchase' FROM generate_series(1, 10) c, generate_series(1, 3) i;
CALL personalize.refresh();
SQL
is "$(tcp "$nogrant" -c 'SELECT current_user, inet_client_addr() IS NOT NULL')" "$nogrant|t" "the no-grant role is connected over TCP with a password"

err=$(tcp "$nogrant" -c 'SELECT * FROM personalize.recommend(1)')
ok $([[ "$err" == *"permission denied for function recommend"* && "$err" != *SECRET* ]] && echo 0 || echo 1) \
   "recommend() is refused to a role without the grant, and shows nothing (${err%%$'\n'*})"
err=$(tcp "$nogrant" -c "SELECT * FROM personalize.recommend(1, 'llm', 5)")
ok $([[ "$err" == *"permission denied"* ]] && echo 0 || echo 1) "so is its llm variant (reasons written from the profile)"

# every table and view, from the catalog
readable=0 total=0
while read -r rel; do
  total=$((total + 1))
  out=$(tcp "$nogrant" -c "SELECT count(*) FROM $rel")
  [[ "$out" == *"permission denied"* ]] || { readable=$((readable + 1)); echo "# readable: $rel ($out)"; }
done < <(q -c "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'personalize' AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY 1")
ok $([ "$total" -gt 30 ] && [ "$readable" = 0 ] && echo 0 || echo 1) "none of the schema's $total tables and views is readable without a grant"

# what PUBLIC may execute: nothing that reads a customer's events, feedback or answers
public=$(q -c "SELECT string_agg(p.proname, ',' ORDER BY p.proname COLLATE \"C\") FROM pg_proc p
               WHERE p.pronamespace = 'personalize'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')")
is "$public" "_chisq_sf,_echo,_health_cron_jobs,_health_settings,_ingest_columns,_ingest_timestamptz,_normal_cdf,_retention_defaults,_t_cdf,_variant_problem,cooccurrence_count,similarity" \
   "PUBLIC executes only arithmetic, model-level counts, what personalize.health calls and ingest()'s parsers"
err=$(tcp "$nogrant" -c 'SELECT personalize._health_cron_jobs()')
ok $([[ "$err" == *"permission denied for view health"* ]] && echo 0 || echo 1) \
   "_health_cron_jobs() answers only roles that may read personalize.health (${err%%$'\n'*})"
is "$(tcp "$nogrant" -c 'SELECT personalize.cooccurrence_count(1, 2) >= 0')" t "the model-level count stays open (it names no customer)"

# experiments and flags: a no-grant role cannot probe their names, a draft's arms or a rollout
q >/dev/null -c "SELECT personalize.create_experiment('secret_launch', ARRAY['hybrid', 'popular'])" \
  -c "INSERT INTO personalize.flags (name, rollout) VALUES ('secret_checkout', 0.5)"
err=$(tcp "$nogrant" -c "SELECT personalize.assigned_variant('secret_launch', 1)")
ok $([[ "$err" == *"permission denied for function assigned_variant"* && "$err" != *hybrid* && "$err" != *popular* ]] && echo 0 || echo 1) \
   "assigned_variant() is refused to a role without the grant: no draft arm, no name probe (${err%%$'\n'*})"
err=$(tcp "$nogrant" -c "SELECT personalize.flag_enabled('secret_checkout', 1)")
ok $([[ "$err" == *"permission denied for function flag_enabled"* ]] && echo 0 || echo 1) "so is flag_enabled()"
err=$(tcp "$nogrant" -c "SELECT personalize.assigned_variant('no_such_experiment', 1)")
ok $([[ "$err" == *"permission denied"* && "$err" != *"unknown experiment"* ]] && echo 0 || echo 1) \
   "an unknown name gets the same refusal (nothing to tell names that exist apart)"
q >/dev/null -c "GRANT EXECUTE ON FUNCTION personalize.assigned_variant(text, bigint), personalize.flag_enabled(text, bigint) TO $app"
is "$(tcp "$app" -c "SELECT personalize.assigned_variant('secret_launch', 1) IN ('hybrid', 'popular'), personalize.flag_enabled('secret_checkout', 1) IS NOT NULL")" "t|t" \
   "the application role granted them assigns and reads flags"

# the application role, granted recommend(), is served over TCP
rows=$(tcp "$app" -c 'SELECT count(*) FROM personalize.recommend(1)')
ok $([ "$rows" -gt 0 ] 2>/dev/null && echo 0 || echo 1) "an application role with EXECUTE on recommend() is served ($rows rows)"
err=$(tcp "$app" -c 'SELECT count(*) FROM personalize.interactions')
ok $([[ "$err" == *"permission denied"* ]] && echo 0 || echo 1) "and needs no table privilege for it (it has none)"
exit 0
