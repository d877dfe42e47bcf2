-- Retention and archival (issue 11, part 4): archived events leave interactions but keep
-- counting in the model (every pair count kept, rebuild() equal to the incremental model,
-- model_check() counting the archive); forget mode subtracts; maintenance() prunes the run
-- tables by personalize.retention; forget_customer() erases archived events too.
-- Not in one transaction: maintenance() commits; the test cleans up after itself.
\set VERBOSITY terse
\i test/model_check.sql
SELECT target, keep, mode, batch_size FROM personalize.retention ORDER BY target;
INSERT INTO personalize.products (product_id, sku, name)
SELECT g, 'RET-' || g, 'retention product ' || g FROM generate_series(7001, 7008) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(7001, 7012) g;
-- three and a half months of events: customer c sees product p when (c + p) % 3 <> 0, and
-- buys it when (c * p) % 4 = 0; day numbers spread from 10 to 110 days ago
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, p, CASE WHEN (c * p) % 4 = 0 THEN 'purchase' ELSE 'view' END,
       now() - ((c - 7000) * 7 + (p - 7000) * 3 + 10) * interval '1 day'
FROM generate_series(7001, 7012) c, generate_series(7001, 7008) p WHERE (c + p) % 3 <> 0
ORDER BY c, p;
-- a second event on some pairs, recent: the pair stays in interactions when its old event goes
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, p, 'click', now() - interval '2 days'
FROM generate_series(7001, 7012) c, generate_series(7001, 7008) p WHERE (c + p) % 3 = 1 AND c % 2 = 0;
SELECT count(*) AS events, min(occurred_at) < now() - interval '100 days' AS old FROM personalize.interactions;
SELECT * FROM pg_temp.model_check();
CREATE TEMP TABLE pairs_before AS SELECT * FROM personalize.pair_counts;
CREATE TEMP TABLE items_before AS SELECT * FROM personalize.customer_items;
-- archive the oldest month (events older than 80 days), in batches of 7
SELECT personalize.archive_events(now() - interval '80 days', 7) AS first_batch;
DO $$ BEGIN WHILE personalize.archive_events(now() - interval '80 days', 7) > 0 LOOP END LOOP; END $$;
SELECT (SELECT count(*) FROM personalize.interactions_archive) AS archived,
       (SELECT count(*) FROM personalize.interactions WHERE occurred_at < now() - interval '80 days') AS old_left,
       (SELECT count(*) FROM personalize.interactions) AS live;
-- every pair count, every history row (events, weight, first id, last_at: recency) kept
SELECT (SELECT count(*) FROM (TABLE pairs_before EXCEPT TABLE personalize.pair_counts) d) AS pairs_lost,
       (SELECT count(*) FROM (TABLE personalize.pair_counts EXCEPT TABLE pairs_before) d) AS pairs_new,
       (SELECT count(*) FROM (TABLE items_before EXCEPT TABLE personalize.customer_items) d) AS items_changed,
       (SELECT count(*) FROM (TABLE personalize.customer_items EXCEPT TABLE items_before) d) AS items_new;
SELECT * FROM pg_temp.model_check();
-- rebuild() reads the archive too: equal to the incremental model (its progress NOTICEs,
-- which carry timings, are not compared: the row it returns says the same)
SET client_min_messages = warning;
SELECT customers, products, pairs FROM personalize.rebuild();
RESET client_min_messages;
SELECT * FROM pg_temp.model_check();
SELECT (SELECT count(*) FROM (TABLE pairs_before EXCEPT TABLE personalize.pair_counts) d) AS pairs_lost,
       (SELECT count(*) FROM (TABLE personalize.pair_counts EXCEPT TABLE pairs_before) d) AS pairs_new,
       (SELECT count(*) FROM (TABLE items_before EXCEPT TABLE personalize.customer_items) d) AS items_changed;
-- the archive cannot be emptied behind the model's back; interactions alone neither
TRUNCATE personalize.interactions_archive;
TRUNCATE personalize.interactions;
SELECT count(*) AS archived FROM personalize.interactions_archive;
-- deleting archived events subtracts them (the archive's trigger)
DELETE FROM personalize.interactions_archive WHERE customer_id = 7012 AND product_id = 7001;
SELECT * FROM pg_temp.model_check();
-- forget_customer() erases the customer's archived events, and the model subtracts them
SELECT count(*) AS archived_7010 FROM personalize.interactions_archive WHERE customer_id = 7010;
SELECT * FROM personalize.forget_customer(7010);
SELECT count(*) AS archived_7010 FROM personalize.interactions_archive WHERE customer_id = 7010;
SELECT count(*) AS history_7010 FROM personalize.customer_items WHERE customer_id = 7010;
SELECT * FROM pg_temp.model_check();
-- merge_customers() moves archived events too, the model following
SELECT * FROM personalize.merge_customers(7011, 7009);
SELECT count(*) AS archived_7011 FROM personalize.interactions_archive WHERE customer_id = 7011;
SELECT * FROM pg_temp.model_check();
-- maintenance(): forget mode deletes events older than keep and the model subtracts them
UPDATE personalize.retention SET keep = '60 days', mode = 'forget', batch_size = 5 WHERE target = 'events';
CREATE TEMP TABLE pairs_mid AS SELECT * FROM personalize.pair_counts;
-- run tables: one row well past 90 days, one recent, in each
INSERT INTO personalize.maintenance_runs (job, started_at, finished_at, items)
VALUES ('retention-test', now() - interval '100 days', now() - interval '100 days', 1),
       ('retention-test', now() - interval '10 days', now() - interval '10 days', 2);
INSERT INTO personalize.ingest_batches (source, loaded_by, create_customers, started_at) VALUES ('old', current_user, false, now() - interval '100 days'), ('new', current_user, false, now() - interval '10 days');
CALL personalize.maintenance();
SELECT count(*) AS live_older_than_60_days FROM personalize.interactions WHERE occurred_at < now() - interval '60 days';
SELECT count(*) AS archived FROM personalize.interactions_archive;
SELECT (SELECT sum(customers) FROM personalize.pair_counts) < (SELECT sum(customers) FROM pairs_mid) AS model_shrank;
SELECT * FROM pg_temp.model_check();
SELECT items FROM personalize.maintenance_runs WHERE job = 'retention-test' ORDER BY items;
SELECT count(*) AS ingest_batches FROM personalize.ingest_batches WHERE started_at < now() - interval '90 days';
SELECT job, status, error, details FROM personalize.maintenance_runs WHERE job = 'maintenance';
-- archive mode through maintenance(): the model keeps everything
UPDATE personalize.retention SET keep = '20 days', mode = 'archive' WHERE target = 'events';
CREATE TEMP TABLE pairs_arch AS SELECT * FROM personalize.pair_counts;
CALL personalize.maintenance();
SELECT count(*) AS live_older_than_20_days FROM personalize.interactions WHERE occurred_at < now() - interval '20 days';
SELECT (SELECT count(*) FROM (TABLE pairs_arch EXCEPT TABLE personalize.pair_counts) d) AS pairs_lost,
       (SELECT count(*) FROM (TABLE personalize.pair_counts EXCEPT TABLE pairs_arch) d) AS pairs_new;
SELECT * FROM pg_temp.model_check();
SELECT status, items, details FROM personalize.maintenance_runs WHERE job = 'maintenance' ORDER BY run_id DESC LIMIT 1;
-- the settings are checked
UPDATE personalize.retention SET mode = 'archive' WHERE target = 'llm_runs';
UPDATE personalize.retention SET mode = 'shred' WHERE target = 'events';
SELECT personalize.archive_events(NULL);
-- the settings are stored as changes from the defaults (retention_settings, which pg_dump
-- keeps): a value equal to the default stores nothing, DELETE restores the default, the
-- targets are fixed
SELECT * FROM personalize.retention_settings ORDER BY target;
UPDATE personalize.retention SET keep = '1 day' WHERE target = 'llm_runs';
SELECT target, keep, changed FROM personalize.retention WHERE target = 'llm_runs';
UPDATE personalize.retention SET keep = '90 days' WHERE target = 'llm_runs';
SELECT * FROM personalize.retention_settings ORDER BY target;
DELETE FROM personalize.retention WHERE target = 'events';
SELECT target, keep, mode, batch_size, changed FROM personalize.retention WHERE target = 'events';
SELECT count(*) AS settings FROM personalize.retention_settings;
INSERT INTO personalize.retention (target, keep) VALUES ('orders', '1 day');
UPDATE personalize.retention SET target = 'orders' WHERE target = 'events';
-- a target that fails (here a trigger refusing deletes from llm_rejections) is recorded,
-- the others still run, and the call fails with its SQLSTATE
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN RAISE EXCEPTION 'llm_rejections are frozen' USING ERRCODE = 'P0042'; END$$;
CREATE TRIGGER retention_test_refuse BEFORE DELETE ON personalize.llm_rejections
    FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
INSERT INTO personalize.llm_rejections (run_id, reason, rejected_at) VALUES (1, 'truncated', now() - interval '100 days');
INSERT INTO personalize.maintenance_runs (job, started_at, finished_at, items)
VALUES ('retention-test', now() - interval '100 days', now() - interval '100 days', 3);
CALL personalize.maintenance();
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS old_rejections FROM personalize.llm_rejections;
SELECT items FROM personalize.maintenance_runs WHERE job = 'retention-test' ORDER BY items;
SELECT status, error, details FROM personalize.maintenance_runs WHERE job = 'maintenance' ORDER BY run_id DESC LIMIT 1;
DROP TRIGGER retention_test_refuse ON personalize.llm_rejections;
DELETE FROM personalize.llm_rejections;
-- clean up: both tables in one TRUNCATE empty the model
TRUNCATE personalize.interactions, personalize.interactions_archive;
SELECT * FROM pg_temp.model_check();
DELETE FROM personalize.maintenance_runs WHERE job IN ('maintenance', 'retention-test', 'rebuild');
DELETE FROM personalize.ingest_batches;
UPDATE personalize.retention SET keep = NULL, mode = 'archive', batch_size = 10000 WHERE target = 'events';
DELETE FROM personalize.customers WHERE customer_id BETWEEN 7001 AND 7012;
DELETE FROM personalize.products WHERE product_id BETWEEN 7001 AND 7008;
