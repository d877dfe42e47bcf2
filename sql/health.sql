-- Operations (issue 11): variants rows are validated on INSERT and UPDATE like
-- create_variant(); a row that is invalid anyway (written before the trigger existed, or
-- with it disabled) is skipped by the refresh with a WARNING and recorded, never stopping
-- the others; personalize.health names it, and a role granted only SELECT on the view
-- reads every row. (In 0.1.0 the plain UPDATE below went through and every refresh
-- failed for every variant.)
\set VERBOSITY terse
SET personalize.health_expected_jobs = '';   -- pg_cron jobs: test/scripts/health.sh

SELECT personalize.create_variant('regress_health_cos', 'cooccurrence', '{"measure": "cosine"}') IS NOT NULL AS created;
-- the refusal path: a plain UPDATE or INSERT with invalid parameters
UPDATE personalize.variants SET params = '{"measure": "bogus"}' WHERE name = 'regress_health_cos';
UPDATE personalize.variants SET params = '{"half_life_days": 0}' WHERE name = 'regress_health_cos';
INSERT INTO personalize.variants (name, algorithm, params) VALUES ('regress_health_bad', 'hybrid', '{"neighbors": -1}');
-- a valid edit goes through
UPDATE personalize.variants SET params = '{"measure": "cosine", "neighbors": 20}' WHERE name = 'regress_health_cos';
SELECT name, params FROM personalize.variants WHERE name LIKE 'regress_health%' ORDER BY name;

-- the skip path: a bad row written past the trigger (as the owner, replica mode)
SET session_replication_role = replica;
UPDATE personalize.variants SET params = '{"measure": "bogus"}' WHERE name = 'regress_health_cos';
RESET session_replication_role;
INSERT INTO personalize.products (product_id, name) SELECT g, 'health product ' || g FROM generate_series(990001, 990030) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(990001, 990020) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT c, 990001 + (c * 7 + i * 3) % 30, 'purchase' FROM generate_series(990001, 990020) c, generate_series(1, 4) i;
SELECT pending_changes > 0 AS pending FROM personalize.model_stats;
CALL personalize.refresh();
SELECT job, status, details -> 'skipped_variants' AS skipped
FROM personalize.maintenance_runs ORDER BY run_id DESC LIMIT 1;
-- the others were refreshed: no dirty product left, llr lists for the new products
SELECT count(*) AS still_dirty FROM personalize.dirty_products;
SELECT count(*) > 0 AS llr_lists FROM personalize.neighbors WHERE measure = 'llr' AND product_id > 990000;
SELECT personalize.refresh_neighbors(NULL, true) >= 0 AS refreshed_all;
SELECT details -> 'skipped_variants' -> 0 ->> 'variant' AS skipped
FROM personalize.maintenance_runs WHERE job = 'refresh_neighbors' ORDER BY run_id DESC LIMIT 1;

-- health names it; the checks this test controls (the pair store from the statistics)
ANALYZE personalize.pair_counts_base;
SELECT "check", status, detail FROM personalize.health WHERE "check" = 'variants';
SELECT "check", status, value IS NOT NULL AS has_value
FROM personalize.health
WHERE "check" IN ('refresh_age', 'neighbor_backlog', 'neighbor_backlog_age', 'popular_age', 'variants', 'pair_store')
ORDER BY "check";
SELECT count(*) = count(DISTINCT "check") AS one_row_per_check,
       bool_and(status IN ('ok', 'warn', 'critical')) AS known_statuses
FROM personalize.health;

-- the thresholds are settings
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (990001, 990030, 'view');
SET personalize.health_backlog_warn = 1;
SELECT "check", status FROM personalize.health WHERE "check" = 'neighbor_backlog';
SET personalize.health_backlog_critical = 1;
SELECT "check", status FROM personalize.health WHERE "check" = 'neighbor_backlog';
SET personalize.health_refresh_warn = '2h';
SHOW personalize.health_refresh_warn;
SET personalize.health_expected_jobs = 'refresh, nonsense';
SET personalize.health_backlog_warn = -1;
SHOW personalize.health_refresh_critical;
RESET personalize.health_backlog_warn;
RESET personalize.health_backlog_critical;
RESET personalize.health_refresh_warn;

-- a monitoring role with SELECT on the view alone reads every row; others read nothing
CREATE ROLE regress_health_monitor;
CREATE ROLE regress_health_nobody;
GRANT SELECT ON personalize.health TO regress_health_monitor;
SELECT count(*) AS rows_as_owner FROM personalize.health \gset
SET ROLE regress_health_monitor;
SELECT count(*) = :rows_as_owner AS every_row, count(*) FILTER (WHERE "check" = 'variants' AND status = 'critical') AS bad_variant
FROM personalize.health;
SELECT personalize._health_cron_jobs() ? 'state' AS cron_readable;
SELECT count(*) FROM personalize.maintenance_runs;
RESET ROLE;
SET ROLE regress_health_nobody;
SELECT count(*) FROM personalize.health;
SELECT personalize._health_cron_jobs();
RESET ROLE;

-- fixed, health is ok about variants again
UPDATE personalize.variants SET params = '{"measure": "cosine"}' WHERE name = 'regress_health_cos';
SELECT "check", status, value FROM personalize.health WHERE "check" = 'variants';

-- clean up
SELECT personalize.drop_variant('regress_health_cos');
DELETE FROM personalize.interactions WHERE customer_id > 990000;
DELETE FROM personalize.customers WHERE customer_id > 990000;
DELETE FROM personalize.products WHERE product_id > 990000;
REVOKE SELECT ON personalize.health FROM regress_health_monitor;
DROP ROLE regress_health_monitor;
DROP ROLE regress_health_nobody;
RESET personalize.health_expected_jobs;
