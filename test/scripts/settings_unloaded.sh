#!/bin/bash
# Settings stored before the library is loaded (issue 10, defect 12): without personalize in
# shared_preload_libraries, ALTER DATABASE ... SET personalize.neighbors_k = 0 stores a
# placeholder nothing has checked. In 0.1.0 the SQL side of the refresh read it with
# current_setting() and a full refresh deleted every neighbour list. Now every SQL path reads
# the settings through _engine_settings(), which loads the library first: the bad value is
# dropped with a WARNING and the default (50) is used.
# Starts its own throw-away cluster without preloading personalize (the suite's cluster
# preloads it, which hides the defect). TAP output.
set -uo pipefail
if [ -z "${SETTINGS_INSIDE:-}" ]; then
  port=
  for p in $(seq 5471 5499); do ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }; done
  [ -n "$port" ] || { echo "Bail out! no free port"; exit 2; }
  export SETTINGS_INSIDE=1
  out=$(pg_virtualenv -t -c "-p $port" -o shared_preload_libraries= bash "$0" 2>&1)
  rc=$?
  echo "$out" | grep -E '^(ok|not ok|#|Bail)'
  exit $rc
fi
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d settings "$@" 2>&1; }
createdb settings
q >/dev/null <<'SQL'
CREATE EXTENSION personalize;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 30) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 40) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 1 + (c * 7 + i * 3) % 30, 'purchase' FROM generate_series(1, 40) c, generate_series(1, 4) i;
SELECT personalize.refresh_neighbors(all_products => true);
SQL
lists=$(q -c 'SELECT count(*) FROM personalize.neighbors')
ok $([ "$lists" -gt 0 ] 2>/dev/null && echo 0 || echo 1) "neighbour lists exist ($lists)"
q -c 'ALTER DATABASE settings SET personalize.neighbors_k = 0' >/dev/null
is "$(q -c "SELECT count(*) FROM pg_db_role_setting WHERE setconfig::text LIKE '%neighbors_k=0%'")" 1 "a placeholder neighbors_k = 0 is stored for the database"
# a new session that has not loaded the library: the full refresh must not delete the lists
out=$(q -c 'SELECT personalize.refresh_neighbors(all_products => true)')
ok $([[ "$out" == *"WARNING"*"neighbors_k"* ]] && echo 0 || echo 1) "the stored value is refused when the refresh loads the library (${out%%$'\n'*})"
is "$(q -c 'SELECT count(*) FROM personalize.neighbors')" "$lists" "the full refresh kept every neighbour list (0.1.0 deleted them all)"
is "$(q -c "SELECT max(cardinality(neighbor_ids)) <= 50 FROM personalize.neighbors")" t "lists are cut at the default k, not at the placeholder"
is "$(q -c "SELECT personalize._engine_settings() ->> 'neighbors_k'" | tail -n 1)" 50 "_engine_settings() reports the validated value"
exit 0
