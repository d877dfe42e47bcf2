-- A/B testing (issue 5): experiments and their validation, deterministic assignment,
-- serving through recommend(customer_id, NULL), the exposure log, the results view and
-- its statistics, feature flags, privileges. Salts are fixed so that output is stable.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;

-- the distribution functions against known values
SELECT round(personalize._normal_cdf(1.959963984540054)::numeric, 6) AS phi_1_96,
       round(personalize._normal_cdf(-1)::numeric, 6) AS phi_minus_1,
       round(personalize._chisq_sf(3.841458820694124, 1)::numeric, 6) AS chisq_3_84_df1,
       round(personalize._chisq_sf(10, 5)::numeric, 6) AS chisq_10_df5,
       round(personalize._chisq_sf(0, 3)::numeric, 6) AS chisq_0,
       round((2 * personalize._t_cdf(-2.0, 10))::numeric, 4) AS t_2_df10_two_sided,
       round(personalize._t_cdf(1.812461, 10)::numeric, 6) AS t_95_df10,
       round(personalize._t_cdf(12.706205, 1)::numeric, 6) AS t_975_df1,
       round(personalize._t_cdf(1.959963984540054, 1e7)::numeric, 6) AS t_large_df;
SELECT personalize._chisq_sf(1, 0);
\echo SQLSTATE :SQLSTATE
SELECT personalize._t_cdf(1, 'NaN');
\echo SQLSTATE :SQLSTATE

-- the bucket is pinned: a change of the hash or of its byte layout would move every customer
SELECT personalize._bucket('pinned', 0) AS b0, personalize._bucket('pinned', 1) AS b1,
       personalize._bucket('pinned', -1) AS b_minus_1, personalize._bucket('other', 1) AS other_salt;
SELECT min(personalize._bucket('range', g)) >= 0 AS at_least_0, max(personalize._bucket('range', g)) < 1 AS below_1
FROM generate_series(1, 10000) g;

-- every bad input is refused with a clear error, and nothing is created
SELECT personalize.create_experiment(NULL, ARRAY['hybrid', 'popular']);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', NULL);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], NULL, NULL);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('Bad Name', ARRAY['hybrid', 'popular']);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid']);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', '{}'::text[]);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', NULL]);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'hybrid']);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'nope', 'also_nope']);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1, 0}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1, -2}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1, NaN}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1, Infinity}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1, NULL}');
\echo SQLSTATE :SQLSTATE
-- each finite, their sum not: refused (every customer would land in the last arm)
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1e308, 1e308}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1.7976931348623157e308, 1e292}');
\echo SQLSTATE :SQLSTATE
SAVEPOINT finite_sum;
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], '{1.7976931348623157e308, 1e291}') > 0 AS finite_sum_accepted;
ROLLBACK TO SAVEPOINT finite_sum;
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], traffic => 1.5);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], traffic => -0.1);
\echo SQLSTATE :SQLSTATE
SELECT personalize.create_experiment('x', ARRAY['hybrid', 'popular'], traffic => 'NaN');
\echo SQLSTATE :SQLSTATE
SELECT (SELECT count(*) FROM personalize.experiments) AS experiments,
       (SELECT count(*) FROM personalize.experiment_arms) AS arms;
-- the tables refuse what the functions refuse
INSERT INTO personalize.experiments (name, status) VALUES ('x', 'paused');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.experiments (name, traffic) VALUES ('x', 2);
\echo SQLSTATE :SQLSTATE

-- a good experiment: the first variant is the control (arm 0), weights default to equal
SELECT personalize.create_variant('cooc_plain', 'cooccurrence', '{"popular_fill": true}');
SELECT personalize.create_experiment('hybrid_vs_popular', ARRAY['hybrid', 'popular']) > 0 AS created;
SELECT name, status, traffic, attribution_window, length(salt) AS salt_length,
       created_at IS NOT NULL AS has_created, started_at IS NULL AS not_started
FROM personalize.experiments;
SELECT e.name, a.arm, a.variant, a.weight
FROM personalize.experiment_arms a JOIN personalize.experiments e USING (experiment_id)
ORDER BY a.arm;
SELECT personalize.create_experiment('three_way', ARRAY['popular', 'hybrid', 'cooc_plain'], '{2, 3, 5}', 0.5) > 0 AS created;
SELECT personalize.create_experiment('hybrid_vs_popular', ARRAY['hybrid', 'popular']);
\echo SQLSTATE :SQLSTATE
-- two experiments get different salts
SELECT count(DISTINCT salt) AS distinct_salts FROM personalize.experiments;
UPDATE personalize.experiments SET salt = 'salt-' || name;

-- starting and stopping
SELECT personalize.stop_experiment('hybrid_vs_popular');
\echo SQLSTATE :SQLSTATE
SELECT personalize.start_experiment('no_such_experiment');
\echo SQLSTATE :SQLSTATE
SELECT personalize.start_experiment(NULL);
\echo SQLSTATE :SQLSTATE
SELECT personalize.start_experiment('hybrid_vs_popular') = now() AS started;
SELECT personalize.start_experiment('hybrid_vs_popular');
\echo SQLSTATE :SQLSTATE
SELECT personalize.start_experiment('three_way');
\echo SQLSTATE :SQLSTATE
SELECT name, status, started_at IS NOT NULL AS has_started FROM personalize.experiments ORDER BY name COLLATE "C";
-- the index refuses a second running experiment even behind the functions' back
UPDATE personalize.experiments SET status = 'running' WHERE name = 'three_way';
\echo SQLSTATE :SQLSTATE
SELECT personalize.stop_experiment('hybrid_vs_popular') = now() AS stopped;
SELECT personalize.stop_experiment('hybrid_vs_popular');
\echo SQLSTATE :SQLSTATE
SELECT personalize.start_experiment('hybrid_vs_popular');
\echo SQLSTATE :SQLSTATE
SELECT personalize.stop_experiment(NULL);
\echo SQLSTATE :SQLSTATE
SELECT name, status, stopped_at IS NOT NULL AS has_stopped FROM personalize.experiments ORDER BY name COLLATE "C";

-- assignment: deterministic, split by the weights, NULL outside the traffic fraction
SELECT personalize.assigned_variant('no_such_experiment', 1);
\echo SQLSTATE :SQLSTATE
SELECT personalize.assigned_variant('three_way', NULL) IS NULL AS null_in_null_out;
SELECT array_agg(personalize.assigned_variant('hybrid_vs_popular', g) ORDER BY g) AS first_ten
FROM generate_series(1, 10) g;
SELECT count(*) FILTER (WHERE personalize.assigned_variant('hybrid_vs_popular', g)
                        IS DISTINCT FROM personalize.assigned_variant('hybrid_vs_popular', g)) AS unstable
FROM generate_series(1, 1000) g;
SELECT coalesce(v, '(default)') AS variant, round(count(*) / 10000.0, 2) AS share
FROM (SELECT personalize.assigned_variant('three_way', g) AS v FROM generate_series(1, 10000) g) s
GROUP BY v ORDER BY v COLLATE "C";
-- the arm is the bucket within the traffic: out of traffic exactly when the bucket is >= 0.5
SELECT count(*) FILTER (WHERE (personalize.assigned_variant('three_way', g) IS NULL)
                        <> (personalize._bucket('salt-three_way', g) >= 0.5)) AS mismatches
FROM generate_series(1, 1000) g;

-- serving: recommend(c, NULL) serves the running experiment's arm; out of traffic or
-- with no experiment running, the default (hybrid); an explicit variant always wins
INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, 'product ' || g, 'c' || (g % 3), 2.50 * g FROM generate_series(1, 12) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 40) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, 1 + (c * p) % 12, 'purchase', now() - interval '2 days'
FROM generate_series(1, 40) c, generate_series(1, 3) p;
SELECT personalize.refresh_neighbors() > 0 AS lists_refreshed;
SELECT personalize.refresh_popular() > 0 AS popular_refreshed;
CREATE TEMP TABLE served AS
SELECT c, v,
       (SELECT array_agg(r.product_id ORDER BY r.ord) FROM personalize.recommend(c, v, 5) WITH ORDINALITY r(product_id, score, reason, ord)) AS ids
FROM generate_series(1, 40) c, (VALUES ('hybrid'), ('popular'), ('cooc_plain'), (NULL)) AS x(v);
SELECT count(*) FILTER (WHERE s.ids IS DISTINCT FROM h.ids) AS differs_from_hybrid_without_experiment
FROM served s JOIN served h ON h.c = s.c AND h.v = 'hybrid' WHERE s.v IS NULL;
SELECT count(*) FILTER (WHERE p.ids IS DISTINCT FROM h.ids) > 0 AS popular_differs_from_hybrid
FROM served p JOIN served h ON h.c = p.c AND h.v = 'hybrid' WHERE p.v = 'popular';
SELECT personalize.start_experiment('three_way') = now() AS started;
SELECT * FROM (
SELECT coalesce(personalize.assigned_variant('three_way', s.c), '(default)') AS assigned,
       count(*) AS customers,
       count(*) FILTER (WHERE (SELECT array_agg(r.product_id ORDER BY r.ord)
                               FROM personalize.recommend(s.c, NULL, 5) WITH ORDINALITY r(product_id, score, reason, ord))
                              IS NOT DISTINCT FROM a.ids) AS served_the_assigned_variant
FROM served s
JOIN served a ON a.c = s.c AND a.v = coalesce(personalize.assigned_variant('three_way', s.c), 'hybrid')
WHERE s.v IS NULL
GROUP BY 1) x ORDER BY assigned COLLATE "C";
-- an explicit variant wins over the assignment
SELECT count(*) FILTER (WHERE (SELECT array_agg(r.product_id ORDER BY r.ord)
                               FROM personalize.recommend(s.c, 'popular', 5) WITH ORDINALITY r(product_id, score, reason, ord))
                              IS DISTINCT FROM s.ids) AS explicit_mismatches
FROM served s WHERE s.v = 'popular';
-- recommend() stays read-only
SELECT provolatile, prosecdef FROM pg_proc WHERE oid = 'personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])'::regprocedure;

-- the exposure log: in traffic logs under the arm; out of traffic logs nothing; an explicit
-- variant is logged without an arm (QA, not counted); with no experiment running, nothing
SELECT min(g) AS in_traffic FROM generate_series(1, 40) g WHERE personalize.assigned_variant('three_way', g) IS NOT NULL \gset
SELECT min(g) AS out_of_traffic FROM generate_series(1, 40) g WHERE personalize.assigned_variant('three_way', g) IS NULL \gset
SELECT personalize.log_exposure(:in_traffic, '{1, 2, 3}') AS logged_in_traffic,
       personalize.log_exposure(:out_of_traffic, '{1, 2, 3}') AS logged_out_of_traffic,
       personalize.log_exposure(:out_of_traffic, '{4}', 'popular') AS logged_explicit;
SELECT personalize.log_exposure(NULL, '{1}');
\echo SQLSTATE :SQLSTATE
SELECT personalize.log_exposure(1, NULL);
\echo SQLSTATE :SQLSTATE
SELECT x.customer_id = :in_traffic AS in_traffic_customer, x.variant = personalize.assigned_variant('three_way', x.customer_id) AS assigned,
       x.arm IS NOT NULL AS has_arm, x.product_ids, x.shown_at = now() AS shown_now
FROM personalize.exposures x ORDER BY x.exposure_id;
-- recommend_logged serves recommend(c, NULL, k) and logs exactly what it served
SELECT array_agg(product_id) = (SELECT array_agg(r.product_id) FROM personalize.recommend(:in_traffic, NULL, 4) r) AS same_rows
FROM personalize.recommend_logged(:in_traffic, 4);
SELECT x.product_ids = (SELECT array_agg(r.product_id) FROM personalize.recommend(:in_traffic, NULL, 4) r) AS logged_what_was_served
FROM personalize.exposures x ORDER BY x.exposure_id DESC LIMIT 1;
SELECT count(*) AS rows_out_of_traffic FROM personalize.recommend_logged(:out_of_traffic, 3);
SELECT count(*) AS exposures FROM personalize.exposures;

-- results: one customer per arm converts (hybrid, cooc_plain: a click, then a purchase of 2
-- x 5.00; popular: a purchase of 1 x 2.50 two days later); its events outside the window,
-- before the exposure or of products not shown do not count
DELETE FROM personalize.exposures;
CREATE TEMP TABLE arm_customer AS
SELECT DISTINCT ON (v) personalize.assigned_variant('three_way', g) AS v, g AS c
FROM generate_series(1, 40) g WHERE personalize.assigned_variant('three_way', g) IS NOT NULL ORDER BY v, g;
SELECT count(*) FILTER (WHERE personalize.log_exposure(g, '{1, 2}')) AS logged, count(*) AS customers
FROM generate_series(1, 40) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
SELECT a.c, 2, e.t, e.q, now() + interval '1 hour'
FROM arm_customer a, (VALUES ('click', 1), ('purchase', 2)) AS e(t, q) WHERE a.v IN ('hybrid', 'cooc_plain');
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT a.c, x.p, 'purchase', x.at
FROM arm_customer a, (VALUES (1, now() + interval '2 days'), (1, now() + interval '8 days'),
                             (1, now() - interval '1 hour'), (7, now() + interval '1 hour')) AS x(p, at)
WHERE a.v = 'popular';
SELECT experiment, variant, arm, customers, exposed_customers, exposures, conversions,
       round(conversion_rate::numeric, 4) AS conversion_rate, round(revenue_per_customer::numeric, 4) AS revenue_per_customer,
       round(lift::numeric, 4) AS lift, lift_ci_low < lift AND lift < lift_ci_high AS ci_around_lift,
       round(p_value::numeric, 4) AS p_value, round(revenue_p_value::numeric, 4) AS revenue_p_value,
       round(srm_p_value::numeric, 4) AS srm_p_value, srm_flag
FROM personalize.experiment_results ORDER BY experiment COLLATE "C", arm;
-- one experiment's weights written past create_experiment(), absurd but allowed by the
-- table's CHECK: assignment still splits by them, and experiment_results answers for every
-- experiment (it raised 22003 for all of them)
SAVEPOINT absurd_weights;
UPDATE personalize.experiment_arms a SET weight = 1e308
FROM personalize.experiments e WHERE e.experiment_id = a.experiment_id AND e.name = 'hybrid_vs_popular';
SELECT coalesce(v, '(default)') AS variant, round(count(*) / 10000.0, 2) AS share
FROM (SELECT personalize.assigned_variant('hybrid_vs_popular', g) AS v FROM generate_series(1, 10000) g) s
GROUP BY v ORDER BY v COLLATE "C";
INSERT INTO personalize.exposures (experiment_id, customer_id, variant, arm, product_ids)
SELECT a.experiment_id, g, a.variant, a.arm, '{1, 2}'
FROM personalize.experiments e JOIN personalize.experiment_arms a USING (experiment_id), generate_series(1, 40) g
WHERE e.name = 'hybrid_vs_popular' AND a.variant = personalize.assigned_variant('hybrid_vs_popular', g);
SELECT experiment, variant, arm, customers, conversions, round(srm_p_value::numeric, 4) AS srm_p_value, srm_flag
FROM personalize.experiment_results ORDER BY experiment COLLATE "C", arm;
-- a share that underflows float8 (5e-324 against 1e308): the check flags it, nothing raises
UPDATE personalize.experiment_arms a SET weight = 5e-324
FROM personalize.experiments e WHERE e.experiment_id = a.experiment_id AND e.name = 'hybrid_vs_popular' AND a.arm = 0;
SELECT experiment, variant, arm, customers, round(srm_p_value::numeric, 4) AS srm_p_value, srm_flag
FROM personalize.experiment_results ORDER BY experiment COLLATE "C", arm;
ROLLBACK TO SAVEPOINT absurd_weights;
SELECT personalize.stop_experiment('three_way') = now() AS stopped;
SELECT personalize.log_exposure(:in_traffic, '{1}') AS logged_after_stop;

-- feature flags on the same bucketing: rollout fraction, widening keeps those already in
INSERT INTO personalize.flags (name, rollout, salt, description) VALUES ('new_checkout', 0.1, 'flag-salt', 'The one-page checkout.');
SELECT round(avg(personalize.flag_enabled('new_checkout', g)::int), 2) AS share_on FROM generate_series(1, 10000) g;
CREATE TEMP TABLE on_at_10 AS SELECT g FROM generate_series(1, 10000) g WHERE personalize.flag_enabled('new_checkout', g);
UPDATE personalize.flags SET rollout = 0.5 WHERE name = 'new_checkout';
SELECT round(avg(personalize.flag_enabled('new_checkout', g)::int), 2) AS share_on,
       (SELECT bool_and(personalize.flag_enabled('new_checkout', g)) FROM on_at_10) AS earlier_still_on
FROM generate_series(1, 10000) g;
SELECT updated_at = now() AS touched FROM personalize.flags;
SELECT personalize.flag_enabled('no_such_flag', 1);
\echo SQLSTATE :SQLSTATE
SELECT personalize.flag_enabled('new_checkout', NULL) IS NULL AS null_in_null_out;
INSERT INTO personalize.flags (name, rollout) VALUES ('too_wide', 1.5);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.flags (name, rollout) VALUES ('Bad Flag', 0.5);
\echo SQLSTATE :SQLSTATE

-- declared properties, pg_dump registration and privileges for PUBLIC
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace
  AND p.proname IN ('create_experiment', 'start_experiment', 'stop_experiment', 'assigned_variant', 'log_exposure',
                    'recommend_logged', 'flag_enabled', '_bucket', '_normal_cdf', '_chisq_sf', '_t_cdf')
ORDER BY p.proname COLLATE "C";
SELECT c.relname, c.oid = ANY (e.extconfig) AS dumped
FROM pg_class c, pg_extension e
WHERE e.extname = 'personalize' AND c.relnamespace = 'personalize'::regnamespace
  AND c.relname IN ('experiments', 'experiments_experiment_id_seq', 'experiment_arms', 'exposures',
                    'exposures_exposure_id_seq', 'flags', 'experiment_results')
ORDER BY c.relname COLLATE "C";
ROLLBACK;
