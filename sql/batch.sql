-- Batch recommendations and impressions (issue 12, parts 3 and 5): the rules and errors of
-- refresh_batch_recommendations(), its incremental runs (exactly the changed customers), a
-- failed run leaving the published set untouched, erasure and merge, the opt-in impression
-- log and its click-through view on a hand-computed example. Not in one transaction (the
-- procedure commits); customers 9001..9008 and products 9001..9010, removed at the end.
-- Other tests' customers are in the database too: the checks count ours, or compare all.
\set VERBOSITY terse
SET personalize.as_of = '2024-06-30 12:00+00';
INSERT INTO personalize.products (product_id, sku, name, category)
SELECT g, 'BATCH-' || g, 'batch product ' || g, CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END
FROM generate_series(9001, 9010) g;
INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(9001, 9008) g;
-- customer c bought product p when (c + p) % 3 = 0; 9007 and 9008 have no events
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, p, 'purchase', '2024-06-01 10:00+00'
FROM generate_series(9001, 9006) c, generate_series(9001, 9010) p WHERE (c + p) % 3 = 0 ORDER BY c, p;
SELECT personalize.refresh_neighbors() > 0 AS lists;
-- what recommend() says, for every customer: the batch table must equal it
CREATE FUNCTION pg_temp.batch_diff(k integer, v text DEFAULT NULL, ids bigint[] DEFAULT NULL) RETURNS TABLE (missing bigint, extra bigint) LANGUAGE sql AS $$
    WITH want AS (SELECT c.customer_id, x.ord::integer AS rank, x.product_id, x.score, x.reason
                  FROM personalize.customers c, personalize.recommend(c.customer_id, v, k) WITH ORDINALITY x(product_id, score, reason, ord)
                  WHERE ids IS NULL OR c.customer_id = ANY (ids)),
         got AS (SELECT b.customer_id, b.rank, b.product_id, b.score, b.reason FROM personalize.batch_recommendations b
                 WHERE ids IS NULL OR b.customer_id = ANY (ids))
    SELECT (SELECT count(*) FROM (TABLE want EXCEPT TABLE got) d), (SELECT count(*) FROM (TABLE got EXCEPT TABLE want) d)
$$;

-- bad arguments: clear errors, nothing recorded
CALL personalize.refresh_batch_recommendations(k => 0);
CALL personalize.refresh_batch_recommendations(k => 1001);
CALL personalize.refresh_batch_recommendations(k => NULL);
CALL personalize.refresh_batch_recommendations(only_changed => NULL);
CALL personalize.refresh_batch_recommendations(batch_size => 0);
CALL personalize.refresh_batch_recommendations(batch_size => 100001);
CALL personalize.refresh_batch_recommendations(variant => 'no_such_variant');
-- inside a transaction block: refused before anything is locked or written
BEGIN;
CALL personalize.refresh_batch_recommendations();
ROLLBACK;
SELECT count(*) AS runs FROM personalize.batch_recommendation_runs;
SELECT count(*) AS locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- the first run is a full one: every customer, equal to recommend(c, NULL, 3)
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, batch_size => 2);
RESET client_min_messages;
SELECT run_id = (SELECT max(run_id) FROM personalize.batch_recommendation_runs) AS last, status, mode, full_reason,
       customers_total = (SELECT count(*) FROM personalize.customers) AS all_customers, customers_done = customers_total AS done,
       rows_published = (SELECT count(*) FROM personalize.batch_recommendations) AS published, finished_at IS NOT NULL AS finished, error
FROM personalize.batch_recommendation_runs;
SELECT * FROM pg_temp.batch_diff(3);
SELECT customer_id, rank, product_id, product_name, category, variant FROM personalize.batch_recommendations_named
WHERE customer_id IN (9001, 9007) ORDER BY customer_id, rank;
SELECT (SELECT count(*) FROM personalize._batch_todo) AS todo, (SELECT count(*) FROM personalize._batch_staging) AS staging,
       (SELECT count(*) FROM personalize._batch_stale) AS stale_marks,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks;

-- incremental: new events for 9002 and 9005, an updated event of 9003, deleted events of
-- 9004: exactly those four are recomputed
CREATE TEMP TABLE before AS SELECT * FROM personalize.batch_recommendations;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
VALUES (9002, 9010, 'purchase', '2024-06-20 10:00+00'), (9005, 9001, 'view', '2024-06-20 10:00+00');
UPDATE personalize.interactions SET quantity = 2 WHERE customer_id = 9003 AND product_id = 9003;
DELETE FROM personalize.interactions WHERE customer_id = 9004 AND product_id = 9005;
SELECT customer_id FROM personalize._batch_stale ORDER BY customer_id;
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT status, mode, full_reason, customers_total, customers_done FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT DISTINCT b.customer_id AS recomputed FROM personalize.batch_recommendations b
WHERE NOT EXISTS (SELECT FROM before o WHERE o.customer_id = b.customer_id AND o.generated_at = b.generated_at) ORDER BY 1;
SELECT * FROM pg_temp.batch_diff(3);
SELECT count(*) AS stale_marks FROM personalize._batch_stale;
-- nothing changed: an incremental run computes nobody and publishes nothing
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT status, mode, customers_total, rows_published FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
-- moving old events to the archive changes no recommendation: nobody is marked
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
VALUES (9006, 9010, 'view', '2001-01-01 10:00+00');
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT personalize.archive_events('2001-01-02 00:00+00') AS archived;
SELECT count(*) AS stale_marks FROM personalize._batch_stale;
-- a new customer, and a customer deleted without forget_customer(): computed, and removed
INSERT INTO personalize.customers (customer_id) VALUES (9009);
DELETE FROM personalize.customers WHERE customer_id = 9008;
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT mode, customers_total FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT customer_id, count(*) FROM personalize.batch_recommendations WHERE customer_id IN (9008, 9009) GROUP BY 1 ORDER BY 1;
-- another k (or variant) than the last successful run: a full run, saying why
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 2, variant => 'popular');
RESET client_min_messages;
SELECT mode, full_reason, customers_total = (SELECT count(*) FROM personalize.customers) AS all_customers
FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT * FROM pg_temp.batch_diff(2, 'popular');
SELECT DISTINCT variant FROM personalize.batch_recommendations;
-- only_changed => false: full
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, only_changed => false);
RESET client_min_messages;
SELECT mode, full_reason FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT * FROM pg_temp.batch_diff(3);
-- the variant served outside experiments is the default variant
SELECT personalize.set_default_variant('popular');
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, only_changed => false);
RESET client_min_messages;
SELECT DISTINCT variant FROM personalize.batch_recommendations;
SELECT * FROM pg_temp.batch_diff(3);
SELECT personalize.set_default_variant(NULL);
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, only_changed => false);
RESET client_min_messages;

-- a run that fails midway (here: a trigger refusing customer 9004's rows, batches of one)
-- is recorded as failed with its error; the published rows are untouched, staging emptied
CREATE TEMP TABLE published AS SELECT * FROM personalize.batch_recommendations;
CREATE FUNCTION pg_temp.refuse_9004() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.customer_id = 9004 THEN
        RAISE EXCEPTION 'refused customer 9004' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_9004 BEFORE INSERT ON personalize._batch_staging FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_9004();
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, only_changed => false, batch_size => 1);
RESET client_min_messages;
SELECT status, customers_done > 0 AS some_batches_committed, customers_done < customers_total AS unfinished, rows_published, error
FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT (SELECT count(*) FROM (TABLE published EXCEPT TABLE personalize.batch_recommendations) d) AS lost,
       (SELECT count(*) FROM (TABLE personalize.batch_recommendations EXCEPT TABLE published) d) AS added,
       (SELECT count(*) FROM personalize._batch_staging) AS staging,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks;
DROP TRIGGER refuse_9004 ON personalize._batch_staging;
-- a run whose session died stays "running" until the next run finds it
INSERT INTO personalize.batch_recommendation_runs (k, only_changed, batch_size, pid) VALUES (3, true, 1000, 0);
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT status, error FROM personalize.batch_recommendation_runs WHERE pid = 0;
SELECT status, mode, customers_total FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;

-- impressions: opt-in; the same input rules as log_exposure()
SELECT personalize.log_impressions(9001, ARRAY[9002, 9003]) AS logged_while_off;
SELECT count(*) AS impressions FROM personalize.impressions;
SELECT personalize.log_impressions(NULL, ARRAY[9002]);
SELECT personalize.log_impressions(9001, NULL);
SELECT personalize.log_impressions(9001, ARRAY(SELECT generate_series(1, 1001)::bigint));
SELECT personalize.log_impressions(9001, ARRAY[9002, NULL]);
SELECT personalize.log_impressions(9001, ARRAY[9002], placement => '');
SELECT personalize.log_impressions(9001, ARRAY[9002], placement => repeat('x', 65));
SELECT personalize.log_impressions(9001, ARRAY[9002], variant => 'no_such_variant');
SELECT personalize.set_impression_log(NULL);
SELECT personalize.set_impression_log(true);
SELECT log_impressions FROM personalize.serving_settings;
-- the hand-computed example: 2024-06-10, 9001 is shown 9002, 9003, 9004 on home (hybrid,
-- the default) and clicks 9002 within the hour, buys 9004 25 hours later (too late); 9002 is
-- shown 9001 on home and 9005 in an e-mail (variant popular) and carts both 2 hours later:
-- home 4 shown, 2 clicked (0.5); email 1 shown, 1 clicked
BEGIN;
SET LOCAL TimeZone = 'UTC';
SELECT personalize.log_impressions(9001, ARRAY[9002, 9003, 9004], placement => 'home');
SELECT personalize.log_impressions(9002, ARRAY[9001], placement => 'home');
SELECT personalize.log_impressions(9002, ARRAY[9005], 'popular', 'email');
UPDATE personalize.impressions SET shown_at = '2024-06-10 09:00+00';
COMMIT;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES
    (9001, 9002, 'click', '2024-06-10 09:30+00'), (9001, 9004, 'purchase', '2024-06-11 10:00+00'),
    (9001, 9003, 'view', '2024-06-10 09:10+00'),
    (9002, 9001, 'cart', '2024-06-10 11:00+00'), (9002, 9005, 'cart', '2024-06-10 11:00+00');
SET TimeZone = 'UTC';
SELECT customer_id, variant, product_ids, placement FROM personalize.impressions ORDER BY impression_id;
SELECT * FROM personalize.impression_ctr ORDER BY day, variant, placement COLLATE "C";
RESET TimeZone;
-- the impression log is a retention target (default 90 days)
SELECT target, keep, mode, batch_size, changed FROM personalize.retention WHERE target = 'impressions';
SET client_min_messages = warning;
CALL personalize.maintenance();
RESET client_min_messages;
SELECT count(*) AS impressions_left FROM personalize.impressions;

-- erasure and merge: forget_customer() erases the customer's batch rows, stale marks and
-- impressions; merge_customers() drops the visitor's batch rows and moves their impressions
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT personalize.log_impressions(9005, ARRAY[9001]), personalize.log_impressions(9006, ARRAY[9002]);
UPDATE personalize.interactions SET quantity = 3 WHERE customer_id = 9005 AND product_id = 9001;
SELECT (SELECT count(*) FROM personalize.batch_recommendations WHERE customer_id = 9005) AS batch_rows,
       (SELECT count(*) FROM personalize.impressions WHERE customer_id = 9005) AS impressions,
       (SELECT count(*) FROM personalize._batch_stale WHERE customer_id = 9005) AS stale_marks;
SELECT * FROM personalize.forget_customer(9005);
SELECT (SELECT count(*) FROM personalize.batch_recommendations WHERE customer_id = 9005) AS batch_rows,
       (SELECT count(*) FROM personalize.impressions WHERE customer_id = 9005) AS impressions,
       (SELECT count(*) FROM personalize._batch_stale WHERE customer_id = 9005) AS stale_marks;
SELECT * FROM personalize.merge_customers(9006, 9007);
SELECT (SELECT count(*) FROM personalize.batch_recommendations WHERE customer_id = 9006) AS visitor_rows,
       (SELECT count(*) FROM personalize.batch_recommendations WHERE customer_id = 9007) AS account_rows,
       (SELECT array_agg(customer_id) FROM personalize.impressions WHERE product_ids = ARRAY[9002::bigint]) AS moved_to;
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3);
RESET client_min_messages;
SELECT mode, customers_total FROM personalize.batch_recommendation_runs ORDER BY run_id DESC LIMIT 1;
SELECT * FROM pg_temp.batch_diff(3, NULL, ARRAY[9007::bigint]);
-- the others' history did not change, but the model did (9005's purchases left the pair
-- counts): an incremental run does not follow model changes; a full run does
SELECT (SELECT missing FROM pg_temp.batch_diff(3)) > 0 AS model_drift;
SET client_min_messages = warning;
CALL personalize.refresh_batch_recommendations(k => 3, only_changed => false);
RESET client_min_messages;
SELECT * FROM pg_temp.batch_diff(3);

-- schedule: the arguments are checked before anything is scheduled
SELECT personalize.schedule_batch_recommendations(k => 0);
SELECT personalize.schedule_batch_recommendations(variant => 'no_such_variant');
SELECT personalize.unschedule_batch_recommendations() AS removed;

-- privileges: nothing for PUBLIC
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
  AND (p.proname LIKE '%batch%' OR p.proname LIKE '%impression%' OR p.proname = '_served_variant');
SELECT c.relname AS readable_by_public FROM pg_class c
WHERE c.relnamespace = 'personalize'::regnamespace AND c.relacl::text LIKE '%=r%' AND c.relname ~ 'batch|impression';

-- clean up
SELECT personalize.set_impression_log(false);
DELETE FROM personalize.impressions;
DELETE FROM personalize.batch_recommendations;
DELETE FROM personalize.batch_recommendation_runs;
SELECT personalize.forget_customer(c) IS NOT NULL FROM generate_series(9001, 9009) c ORDER BY c;
DELETE FROM personalize._batch_stale;
DELETE FROM personalize.neighbors WHERE product_id BETWEEN 9001 AND 9010;
DELETE FROM personalize.products WHERE product_id BETWEEN 9001 AND 9010;
