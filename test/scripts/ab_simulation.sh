#!/bin/bash
# A/B testing end to end (issue 5), on simulated traffic. TAP output.
#  - an A/B test, 20,000 customers, true conversion rates 5% (control) and 6.5%:
#    experiment_results recovers both rates and calls the difference significant
#  - an A/A test (two identical variants, 5% each): not significant
#  - a skewed split (10% of one arm's exposures lost): the SRM flag is raised
#  - 100,000 ids split 50/50 and 20/30/50 pass a chi-square test; two experiments'
#    assignments are independent (chi-square on the 2x2 table)
#  - assignment is identical in another session and after a server restart
# Randomness is fixed (setseed, fixed salts), so every figure is reproducible.
# Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER set).
set -uo pipefail
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
check() { tap "$([ "$(q -c "SELECT ($1)::boolean")" = t ] && echo 0 || echo 1)" "$2"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
db=personalize_ab
dropdb --if-exists "$db" >/dev/null 2>&1
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null

# ---------------------------------------------------------------- simulated experiments
# simulate NAME FIRST_ID RATE_ARM0 RATE_ARM1 SEED [LOSS]: log an exposure of products
# {1,2,3} for 20,000 customers (FIRST_ID ..), then a purchase of product 1 one hour
# later with the arm's true rate; LOSS drops that fraction of arm 1's exposures
simulate() {
  q <<SQL >/dev/null
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series($2, $2 + 19999) g;
SELECT personalize.start_experiment('$1');
SELECT setseed($5);
CREATE TEMP TABLE sim AS
SELECT g AS customer_id, personalize.assigned_variant('$1', g) AS variant, random() AS loss, random() AS r
FROM generate_series($2, $2 + 19999) g ORDER BY g;
SELECT count(*) FILTER (WHERE personalize.log_exposure(s.customer_id, '{1,2,3}'))
FROM sim s JOIN personalize.experiment_arms a ON a.variant = s.variant
 AND a.experiment_id = (SELECT experiment_id FROM personalize.experiments WHERE name = '$1')
WHERE NOT (a.arm = 1 AND s.loss < ${6:-0});
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
SELECT x.customer_id, 1, 'purchase', 1, x.shown_at + interval '1 hour'
FROM personalize.exposures x
JOIN personalize.experiments e ON e.experiment_id = x.experiment_id AND e.name = '$1'
JOIN sim s ON s.customer_id = x.customer_id
WHERE s.r < CASE x.arm WHEN 0 THEN $3 ELSE $4 END;
SELECT personalize.stop_experiment('$1');
SQL
}
row() { q -F ' ' -c "SELECT $2 FROM personalize.experiment_results WHERE experiment = '$1' ORDER BY arm"; }

q <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name, price) SELECT g, 'product ' || g, 10 FROM generate_series(1, 20) g;
SELECT personalize.create_variant('hybrid_copy', 'hybrid', '{"measure": "llr", "popularity_weight": 0.4}');
SELECT personalize.create_experiment('ab_sim', ARRAY['hybrid', 'popular']);
SELECT personalize.create_experiment('aa_sim', ARRAY['hybrid', 'hybrid_copy']);
SELECT personalize.create_experiment('srm_sim', ARRAY['hybrid', 'popular']);
UPDATE personalize.experiments SET salt = 'sim-' || name;
SQL

t0=$(date +%s.%N)
simulate ab_sim 1 0.05 0.065 0.42
t1=$(date +%s.%N)
echo "# A/B: 20,000 customers assigned, logged and converted in $(echo "$t1 - $t0" | bc) s"
echo "# A/B results (arm customers conversions rate revenue_per_customer lift ci_low ci_high p revenue_p srm_p srm_flag):"
row ab_sim "arm, exposed_customers, conversions, round(conversion_rate::numeric, 4), round(revenue_per_customer::numeric, 3),
  round(lift::numeric, 3), round(lift_ci_low::numeric, 3), round(lift_ci_high::numeric, 3), p_value, revenue_p_value,
  round(srm_p_value::numeric, 4), srm_flag" | sed 's/^/#   /'
ab="(SELECT conversion_rate FROM personalize.experiment_results WHERE experiment = 'ab_sim' AND arm ="
check "$ab 0) BETWEEN 0.04 AND 0.06" "A/B: the control's rate is recovered (5% +- 1 point)"
check "$ab 1) BETWEEN 0.055 AND 0.075" "A/B: the treatment's rate is recovered (6.5% +- 1 point)"
check "(SELECT p_value < 0.05 FROM personalize.experiment_results WHERE experiment = 'ab_sim' AND arm = 1)" \
  "A/B: the difference is significant (p < 0.05)"
check "(SELECT revenue_p_value < 0.05 FROM personalize.experiment_results WHERE experiment = 'ab_sim' AND arm = 1)" \
  "A/B: the revenue difference is significant (Welch p < 0.05)"
check "(SELECT lift_ci_low < 0.3 AND 0.3 < lift_ci_high AND lift_ci_low > 0 FROM personalize.experiment_results WHERE experiment = 'ab_sim' AND arm = 1)" \
  "A/B: the 95% CI of the lift excludes 0 and covers the true lift (+30%)"
check "(SELECT sum(exposed_customers) = 20000 AND NOT bool_or(srm_flag) FROM personalize.experiment_results WHERE experiment = 'ab_sim')" \
  "A/B: every customer counted once, no sample-ratio mismatch"

simulate aa_sim 100001 0.05 0.05 0.17
echo "# A/A results:"
row aa_sim "arm, exposed_customers, conversions, round(conversion_rate::numeric, 4), round(lift::numeric, 3), p_value, revenue_p_value, round(srm_p_value::numeric, 4)" | sed 's/^/#   /'
check "(SELECT p_value > 0.05 FROM personalize.experiment_results WHERE experiment = 'aa_sim' AND arm = 1)" \
  "A/A: the difference is not significant (p > 0.05)"
check "(SELECT lift_ci_low < 0 AND 0 < lift_ci_high FROM personalize.experiment_results WHERE experiment = 'aa_sim' AND arm = 1)" \
  "A/A: the CI of the lift covers 0"

simulate srm_sim 200001 0.05 0.05 0.23 0.1
echo "# skewed split (10% of arm 1's exposures lost):"
row srm_sim "arm, exposed_customers, srm_p_value, srm_flag" | sed 's/^/#   /'
check "(SELECT bool_and(srm_flag) FROM personalize.experiment_results WHERE experiment = 'srm_sim')" \
  "skewed split: srm_flag is raised (p < 0.001)"

# ---------------------------------------------------------------- assignment quality
q <<'SQL' >/dev/null
SELECT personalize.create_experiment('split_5050', ARRAY['hybrid', 'popular']);
SELECT personalize.create_experiment('split_235', ARRAY['hybrid', 'popular', 'hybrid_copy'], '{20, 30, 50}');
SELECT personalize.create_experiment('other_5050', ARRAY['hybrid', 'popular']);
SELECT personalize.create_experiment('random_salt', ARRAY['hybrid', 'popular', 'hybrid_copy'], traffic => 0.7);
UPDATE personalize.experiments SET salt = 'split-' || name WHERE name <> 'random_salt';
CREATE TABLE split AS
SELECT g, personalize.assigned_variant('split_5050', g) AS a, personalize.assigned_variant('split_235', g) AS b,
       personalize.assigned_variant('other_5050', g) AS c
FROM generate_series(1, 100000) g;
SQL
gof() {  # chi-square p of column $1 against expected shares $2 (variant => share)
  q -c "SELECT personalize._chisq_sf(sum((o.n - 100000 * e.share) ^ 2 / (100000 * e.share)), count(*) - 1)
        FROM (SELECT $1 AS v, count(*) AS n FROM split GROUP BY 1) o
        JOIN (VALUES $2) AS e(v, share) ON e.v = o.v"
}
p=$(gof a "('hybrid', 0.5), ('popular', 0.5)")
echo "# 50/50 counts: $(q -c "SELECT string_agg(a || ' ' || n, ', ' ORDER BY a) FROM (SELECT a, count(*) n FROM split GROUP BY a) s"), chi-square p = $p"
check "$p > 0.01" "100,000 ids split 50/50 pass a chi-square test (p = $p > 0.01)"
p=$(gof b "('hybrid', 0.2), ('popular', 0.3), ('hybrid_copy', 0.5)")
echo "# 20/30/50 counts: $(q -c "SELECT string_agg(b || ' ' || n, ', ' ORDER BY b) FROM (SELECT b, count(*) n FROM split GROUP BY b) s"), chi-square p = $p"
check "$p > 0.01" "100,000 ids split 20/30/50 pass a chi-square test (p = $p > 0.01)"
p=$(q -c "WITH t AS (SELECT a, c, count(*)::float8 AS n FROM split GROUP BY a, c),
               r AS (SELECT a, sum(n) AS n FROM t GROUP BY a), k AS (SELECT c, sum(n) AS n FROM t GROUP BY c)
          SELECT personalize._chisq_sf(sum((t.n - r.n * k.n / 100000) ^ 2 / (r.n * k.n / 100000)), 1)
          FROM t JOIN r USING (a) JOIN k USING (c)")
echo "# two experiments, 2x2 table: $(q -c "SELECT string_agg(a || '/' || c || ' ' || n, ', ' ORDER BY a, c) FROM (SELECT a, c, count(*) n FROM split GROUP BY a, c) s"), chi-square p = $p"
check "$p > 0.01" "two experiments' assignments are independent (2x2 chi-square p = $p > 0.01)"

# ---------------------------------------------------------------- stability
fingerprint() {
  q -c "SELECT md5(string_agg(coalesce(personalize.assigned_variant('split_235', g), '-') || ','
                   || coalesce(personalize.assigned_variant('random_salt', g), '-'), ';' ORDER BY g))
        FROM generate_series(-5000, 5000) g"
}
before=$(fingerprint)
other=$(fingerprint)
is_same() { [ "$1" = "$2" ]; tap $? "$3"; }
is_same "$other" "$before" "assignment is identical in another session ($before)"
cluster=$(pg_lsclusters -h | awk -v port="$PGPORT" '$3 == port { print $1, $2 }')
# on a loaded machine the stop can outlast pg_ctlcluster's wait ("Cluster is already
# running"): one more try after a pause; the start time below proves a real restart
out=$(pg_ctlcluster $cluster restart 2>&1) || { sleep 5; out=$(pg_ctlcluster $cluster restart 2>&1); }
tap $? "the server restarts (pg_ctlcluster $cluster restart) $out"
for i in $(seq 1 30); do pg_isready -q && break; sleep 1; done
started=$(q -c "SELECT pg_postmaster_start_time() > now() - interval '1 minute'")
is_same "$started" t "the server is a new postmaster"
after=$(fingerprint)
is_same "$after" "$before" "assignment is identical after the restart ($after)"
check "(SELECT count(*) = 100000 FROM split WHERE (a, b, c) IS NOT DISTINCT FROM (personalize.assigned_variant('split_5050', g), personalize.assigned_variant('split_235', g), personalize.assigned_variant('other_5050', g)))" \
  "all 100,000 stored assignments are recomputed identically after the restart"
exit 0
