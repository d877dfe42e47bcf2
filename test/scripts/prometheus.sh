#!/bin/bash
# Prometheus (issue 11, part 3): Debian's prometheus-postgres-exporter (installed by
# test/setup.sh) started on its own free loopback port with the shipped queries file
# (personalize-queries.yaml, from the extension's install directory), connecting over TCP
# as a monitoring role that has only the documented grants (pg_monitor; SELECT on
# personalize.health, maintenance_runs, llm_runs). /metrics is scraped with curl and the
# personalize_* series are checked against known events; the shipped alert rules
# (personalize-alerts.yaml) are parsed and each one's expression is evaluated against the
# scrape in the state that provokes it (and in a healthy state, where none may fire).
# Runs inside pg_virtualenv (pg_cron in database postgres). TAP output.
set -uo pipefail
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1; }
exporter=/usr/bin/prometheus-postgres-exporter
sharedir=$(pg_config --sharedir 2>/dev/null || /usr/lib/postgresql/15/bin/pg_config --sharedir)
# the queries file as make install put it (extension_destdir in a private install)
queries=
for d in "$(psql -X -At -d postgres -c 'SHOW extension_destdir' 2>/dev/null)$sharedir/extension" "$sharedir/extension"; do
  [ -f "$d/personalize-queries.yaml" ] && { queries=$d/personalize-queries.yaml; alerts=$d/personalize-alerts.yaml; break; }
done
if [ ! -x "$exporter" ] || [ -z "$queries" ]; then
  echo "not ok 1 - prometheus-postgres-exporter ($exporter) or the installed personalize-queries.yaml is missing (run test/setup.sh)"
  exit 0
fi
shop=personalize_prom_$$
mon=regress_prom_mon_$$
pw=prom-mon-pw-$$
work=$(mktemp -d)
exp_pid=
cleanup() {
  [ -n "$exp_pid" ] && kill "$exp_pid" 2>/dev/null && wait "$exp_pid" 2>/dev/null
  q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'personalize-refresh@$shop'" >/dev/null 2>&1
  dropdb --if-exists "$shop" >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $mon" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null
createdb "$shop"
# the documented grant set, nothing more (docs/monitoring.md); the thresholds for the role
# as a DBA would set them (small, so that a test-sized backlog reaches them)
q -d "$shop" <<SQL >/dev/null
CREATE ROLE $mon LOGIN PASSWORD '$pw';
GRANT pg_monitor TO $mon;
CREATE EXTENSION personalize;
GRANT SELECT ON personalize.health, personalize.maintenance_runs, personalize.llm_runs TO $mon;
ALTER ROLE $mon IN DATABASE $shop SET personalize.health_backlog_warn = 10;
ALTER ROLE $mon IN DATABASE $shop SET personalize.health_backlog_critical = 20;
INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 60) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 300) g;
SELECT personalize.schedule_refresh('0 0 1 1 *');
SQL
is "$(PGPASSWORD=$pw psql -X -q -At -h 127.0.0.1 -U "$mon" -d "$shop" -c 'SELECT count(*) FROM personalize.interactions' 2>&1)" \
   "ERROR:  permission denied for table interactions" "the monitoring role has no grant beyond the documented set"

# a free loopback port of our own
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PGPORT_=${PGPORT:-5432}
# a clean environment: lib/pq refuses some PG* variables pg_virtualenv sets (PGSYSCONFDIR)
env -i PATH="$PATH" DATA_SOURCE_NAME="postgresql://$mon:$pw@127.0.0.1:$PGPORT_/$shop?sslmode=disable" \
  timeout 600 "$exporter" --web.listen-address="127.0.0.1:$port" --extend.query-path="$queries" \
  --log.level=warn >"$work/exporter.log" 2>&1 &
exp_pid=$!
up=1
for _ in $(seq 1 50); do
  curl -s -m 2 "http://127.0.0.1:$port/metrics" >/dev/null 2>&1 && { up=0; break; }
  sleep 0.2
done
tap $up "the exporter listens on 127.0.0.1:$port"
[ $up = 0 ] || { sed 's/^/# exporter: /' "$work/exporter.log"; exit 0; }

scrape() { curl -s -m 20 "http://127.0.0.1:$port/metrics" >"$work/metrics" 2>/dev/null; }
# metric NAME [LABEL=VALUE]: the sample's value as printed (or 'absent')
metric() {
  python3 - "$work/metrics" "$@" <<'PY'
import re, sys
path, name = sys.argv[1], sys.argv[2]
want = dict(a.split("=", 1) for a in sys.argv[3:])
for line in open(path):
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line.strip())
    if not m or m.group(1) != name:
        continue
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    if all(labels.get(k) == v for k, v in want.items()):
        v = float(m.group(3))
        print(int(v) if v == int(v) else v) if v == v else print("NaN")
        break
else:
    print("absent")
PY
}
# the alerts whose expression is true on the last scrape (sorted, space-separated)
firing() {
  python3 - "$work/metrics" "$alerts" <<'PY'
import re, sys, yaml
samples = []
for line in open(sys.argv[1]):
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line.strip())
    if m:
        samples.append((m.group(1), dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")), float(m.group(3))))
def select(sel):
    m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?', sel.strip())
    if not m:
        raise SystemExit("unsupported selector: " + sel)
    matchers = re.findall(r'([a-zA-Z_]+)\s*(=~|!=|=)\s*"([^"]*)"', m.group(2) or "")
    out = []
    for name, labels, v in samples:
        if name != m.group(1):
            continue
        ok = True
        for k, op, val in matchers:
            x = labels.get(k, "")
            ok &= (x == val) if op == "=" else (x != val) if op == "!=" else bool(re.fullmatch(val, x))
        if ok:
            out.append(v)
    return out
ops = {">=": float.__ge__, ">": float.__gt__, "==": float.__eq__, "<": float.__lt__, "<=": float.__le__, "!=": float.__ne__}
fired = []
for group in yaml.safe_load(open(sys.argv[2]))["groups"]:
    for rule in group["rules"]:
        expr = rule["expr"].strip()
        m = re.fullmatch(r'absent\((.*)\)', expr)
        if m:
            hit = not select(m.group(1))
        else:
            m = re.fullmatch(r'(.*?)\s*(>=|<=|==|!=|>|<)\s*([0-9.]+)', expr)
            if not m:
                raise SystemExit("unsupported expression: " + expr)
            hit = any(ops[m.group(2)](v, float(m.group(3))) for v in select(m.group(1)))
        if hit:
            fired.append(rule["alert"])
print(" ".join(sorted(fired)))
PY
}

scrape
# fresh database, refresh job scheduled, no event: all ok, nothing fires
is "$(metric personalize_health_status check=refresh_age)" 0 "health refresh_age is served, ok (0)"
is "$(metric personalize_health_status check=cron_job:refresh)" 0 "the scheduled refresh job: ok"
is "$(metric personalize_table_rows_inserted_total table=interactions)" 0 "no event yet"
is "$(metric personalize_llm_runs_total kind=refresh)" 0 "an LLM series exists before the first run (0)"
is "$(firing)" "" "no alert fires in the healthy state"

# N events on 25 products: the event counter says N; the backlog (the pending count changes
# of 25 products, issue 14) is above the role's critical threshold (20)
q -d "$shop" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type)
                 SELECT 1 + g % 300, 1 + g % 25, 'purchase' FROM generate_series(1, 137) g" >/dev/null
scrape
is "$(metric personalize_table_rows_inserted_total table=interactions)" 137 "events ingested: 137"
is "$(metric personalize_health_value check=neighbor_backlog)" \
   "$(q -d "$shop" -c 'SELECT (SELECT count(*) FROM personalize.dirty_products) + (SELECT pending_changes FROM personalize.model_stats)')" \
   "the backlog value is the dirty products' count plus the pending count changes"
is "$(metric personalize_health_status check=neighbor_backlog)" 2 "backlog status critical (2)"
is "$(metric personalize_health_status check=refresh_age)" 2 "no refresh yet while the model has products: critical"
is "$(firing)" "PersonalizeBacklogHigh PersonalizeRefreshStale" "backlog high and refresh stale fire"

# a refresh: one run of refresh, no failure; nothing fires any more
q -d "$shop" -c 'CALL personalize.refresh()' >/dev/null
scrape
is "$(metric personalize_maintenance_runs_total job=refresh)" 1 "refresh runs: 1"
is "$(metric personalize_maintenance_failures_total job=refresh)" 0 "refresh failures: 0"
is "$(metric personalize_maintenance_last_failed job=refresh)" 0 "the last refresh did not fail"
is "$(metric personalize_health_value check=neighbor_backlog)" 0 "backlog 0 after the refresh"
is "$(firing)" "" "no alert fires after the refresh"

# a variant broken past its trigger (session_replication_role = replica): the refresh
# skips it and succeeds; health says critical
q -d "$shop" -c "SELECT personalize.create_variant('cos', 'cooccurrence', '{\"measure\": \"cosine\"}')" \
  -c "SET session_replication_role = replica" \
  -c "UPDATE personalize.variants SET params = '{\"measure\": \"bogus\"}' WHERE name = 'cos'" >/dev/null
q -d "$shop" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (1, 30, 'view')" \
  -c 'CALL personalize.refresh()' >/dev/null 2>&1
scrape
is "$(metric personalize_maintenance_runs_total job=refresh)" 2 "refresh runs: 2"
is "$(metric personalize_health_status check=variants)" 2 "health variants: critical (2)"
is "$(metric personalize_health_value check=variants)" 1 "one invalid variant"
is "$(firing)" "PersonalizeVariantInvalid" "the invalid-variant alert fires"
q -d "$shop" -c "UPDATE personalize.variants SET params = '{\"measure\": \"cosine\"}' WHERE name = 'cos'" >/dev/null

# a failing refresh: another session holds the popularity list past the lock_timeout
q -d "$shop" -c "INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (2, 31, 'view')" >/dev/null
PGAPPNAME=prom_locker psql -X -q -d "$shop" -c 'BEGIN' -c 'LOCK TABLE personalize.popular IN ACCESS EXCLUSIVE MODE' \
  -c 'SELECT pg_sleep(30)' -c 'COMMIT' >/dev/null 2>&1 &
locker=$!
for _ in $(seq 1 50); do
  [ "$(q -d "$shop" -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'prom_locker' AND l.mode = 'AccessExclusiveLock' AND l.granted")" != 0 ] && break
  sleep 0.1
done
q -d "$shop" -c "SET lock_timeout = '1s'" -c 'CALL personalize.refresh()' >/dev/null 2>&1
q -d "$shop" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'prom_locker'" >/dev/null
wait "$locker" 2>/dev/null
scrape
is "$(metric personalize_maintenance_runs_total job=refresh)" 3 "refresh runs: 3"
is "$(metric personalize_maintenance_failures_total job=refresh)" 1 "refresh failures: 1"
is "$(metric personalize_maintenance_last_failed job=refresh)" 1 "the last refresh failed"
is "$(firing)" "PersonalizeJobFailing" "the job-failing alert fires"
q -d "$shop" -c 'CALL personalize.refresh()' >/dev/null

# the pg_cron job stopped, then gone
q -d postgres -c "SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = 'personalize-refresh@$shop'" >/dev/null
scrape
is "$(metric personalize_health_status check=cron_job:refresh)" 2 "a stopped refresh job: critical (2)"
is "$(firing)" "PersonalizeCronJobMissingOrInactive" "the cron-job alert fires for a stopped job"
q -d "$shop" -c 'SELECT personalize.unschedule_refresh()' >/dev/null
scrape
is "$(firing)" "PersonalizeCronJobMissingOrInactive" "and for a missing one"
q -d "$shop" -c "SELECT personalize.schedule_refresh('0 0 1 1 *')" >/dev/null

# a failed OpenAI run (it cannot read llm_recommendations: another session holds a lock)
q -d "$shop" -c 'BEGIN' -c 'LOCK TABLE personalize.llm_recommendations IN ACCESS EXCLUSIVE MODE' \
  -c 'SELECT pg_sleep(3)' -c 'COMMIT' >/dev/null &
locker=$!
sleep 1
q -d "$shop" -c "SET lock_timeout = '300ms'" -c 'CALL personalize.llm_refresh()' >/dev/null 2>&1
wait "$locker"
scrape
is "$(metric personalize_llm_runs_total kind=refresh)" 1 "LLM refresh runs: 1"
is "$(metric personalize_llm_failed_runs_total kind=refresh)" 1 "LLM failed runs: 1"
is "$(metric personalize_health_status check=llm_refresh)" 1 "health llm_refresh: warn (1)"
is "$(firing)" "PersonalizeLLMFailing" "the LLM alert fires"
q -d "$shop" -c "UPDATE personalize.llm_runs SET status = 'completed', finished_at = now()" >/dev/null

# a sample ratio mismatch: two equal arms, 200 customers exposed to one, 20 to the other
q -d "$shop" <<SQL >/dev/null 2>&1
SELECT personalize.create_variant('llr_b', 'cooccurrence', '{"measure": "llr"}');
SELECT personalize.create_experiment('srm', ARRAY['cos', 'llr_b']);
SELECT personalize.start_experiment('srm');
CALL personalize.refresh();
INSERT INTO personalize.exposures (experiment_id, customer_id, variant, arm, product_ids)
SELECT e.experiment_id, g, CASE WHEN g <= 200 THEN 'cos' ELSE 'llr_b' END, CASE WHEN g <= 200 THEN 0 ELSE 1 END, ARRAY[1]
FROM personalize.experiments e, generate_series(1, 220) g WHERE e.name = 'srm';
SQL
scrape
is "$(metric personalize_health_status check=experiment_srm)" 1 "health experiment_srm: warn (1)"
is "$(metric personalize_table_rows_inserted_total table=exposures)" 220 "exposures: 220"
is "$(firing)" "PersonalizeSampleRatioMismatch" "the SRM alert fires"
q -d "$shop" -c "DELETE FROM personalize.exposures" >/dev/null

errs=$(grep -i 'level=error' "$work/exporter.log" | head -3)
is "$errs" "" "the exporter logged no error so far (every query ran with the grant set)"

# the monitoring role loses its grant: the health series disappear
q -d "$shop" -c "REVOKE SELECT ON personalize.health FROM $mon" >/dev/null
scrape
is "$(metric personalize_health_status check=refresh_age)" absent "no health series without the grant"
is "$(firing)" "PersonalizeMetricsMissing" "the metrics-missing alert fires"
q -d "$shop" -c "GRANT SELECT ON personalize.health TO $mon" >/dev/null
scrape
is "$(firing)" "" "nothing fires once all is repaired"

# the exporter's own (default) metrics work with pg_monitor; and it logged no other error
is "$(metric pg_up)" 1 "pg_up = 1"
is "$(metric pg_stat_database_xact_commit datname=$shop | grep -c '^[0-9]')" 1 "pg_stat_database metrics are served"
# (on the last scrape, where every series exists) the alert rules file: valid YAML, the rule keys Prometheus needs, and every metric an
# expression names exists in the exporter's output
out=$(python3 - "$alerts" "$work/metrics" <<'PY' 2>&1
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
names = {re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)', l).group(1) for l in open(sys.argv[2]) if l[0].isalpha()}
bad = []
for g in doc["groups"]:
    assert g["name"] and g["rules"]
    for r in g["rules"]:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
        assert r["alert"] and r["expr"] and r["labels"]["severity"] in ("warning", "critical"), r
        for metric in re.findall(r'(personalize_[a-z_]+)', r["expr"]):
            if metric not in names:
                bad.append(r["alert"] + ": " + metric)
print("ok" if not bad else "unknown metrics: " + ", ".join(bad))
PY
)
is "$out" ok "the alert rules parse and name only metrics the exporter serves"

exit 0
