-- Right to erasure (issue 10): forget_customer() removes every row of the extension that
-- names the customer. The tables are found from the catalog, not from a list: every table
-- of the schema with a customer_id bigint or customer_ids bigint[] column. A table added
-- later shows up here (and must be filled below, and erased by forget_customer()).
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
\i test/model_check.sql

-- rows naming a customer, per table and column that can name one
CREATE FUNCTION pg_temp.naming(id bigint) RETURNS TABLE (tbl text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname, a.attname
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'p')
               AND a.attnum > 0 AND NOT a.attisdropped
               AND ((a.attname = 'customer_id' AND a.atttypid = 'bigint'::regtype)
                    OR (a.attname = 'customer_ids' AND a.atttypid = 'bigint[]'::regtype))
             ORDER BY c.relname COLLATE "C", a.attname COLLATE "C" LOOP
        tbl := r.relname || '.' || r.attname;
        EXECUTE format('SELECT count(*) FROM personalize.%I WHERE $1 = %s', r.relname,
                       CASE WHEN r.attname = 'customer_ids' THEN format('ANY (%I)', r.attname)
                            ELSE quote_ident(r.attname) END)
            INTO n USING id;
        RETURN NEXT;
    END LOOP;
END $$;

-- three customers with rows everywhere a customer can be named
INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, 'product ' || g, 'c' || (g % 3), 1.50 * g FROM generate_series(1, 8) g;
INSERT INTO personalize.customers (customer_id, country) VALUES (501, 'France'), (502, 'Spain'), (503, 'Italy');
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
VALUES (501, 1, 'view'), (501, 2, 'purchase'), (501, 3, 'cart'), (501, 2, 'view'),
       (502, 1, 'purchase'), (502, 2, 'view'), (502, 4, 'click'),
       (503, 2, 'purchase'), (503, 3, 'view');
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment)
VALUES (501, 2, 4, 'Fine.'), (502, 1, 5, 'Great.');
-- exposures, through the API, with an experiment running
SELECT personalize.create_experiment('erasure_ab', ARRAY['hybrid', 'popular']) > 0 AS created;
SELECT personalize.start_experiment('erasure_ab') = now() AS started;
SELECT c, personalize.log_exposure(c, '{1, 2}', 'popular') AS logged,
       personalize.log_exposure(c, '{3}', 'hybrid') AS logged_again
FROM (VALUES (501), (502)) AS v(c);
-- what the LLM cold start keeps (no API without the network: inserted as the owner)
INSERT INTO personalize.llm_runs (kind) VALUES ('batch_submit');
SELECT max(run_id) AS run FROM personalize.llm_runs \gset
INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, reason, run_id)
VALUES (501, 1, 5, 'For 501.', :run), (501, 2, 6, 'For 501.', :run), (502, 1, 6, 'For 502.', :run);
INSERT INTO personalize.llm_rejections (run_id, customer_id, product_id, reason, detail)
VALUES (:run, 501, 99, 'unknown_product', 'product 99 is not in the catalog'),
       (:run, 502, NULL, 'missing_customer', 'the answer has no entry for this customer');
INSERT INTO personalize.llm_batches (batch_id, run_id, input_file_id, status, requests, customers)
VALUES ('batch_erasure', :run, 'file-erasure', 'in_progress', 3, 4);
INSERT INTO personalize.llm_batch_requests (batch_id, custom_id, customer_ids)
VALUES ('batch_erasure', 'run-1', '{501, 502}'), ('batch_erasure', 'run-2', '{501}'),
       ('batch_erasure', 'run-3', '{502, 503}');
-- rows ingest() rejected (an unknown product) name them too (issue 11)
CREATE TEMP TABLE erasure_staging (customer_id bigint, product_id bigint, event_type text);
INSERT INTO erasure_staging VALUES (501, 99, 'view'), (502, 99, 'view');
SELECT rule, rows FROM personalize.ingest('erasure_staging') WHERE rows > 0;
-- batch recommendations, a running batch run's work list and staging, a change mark (an
-- updated event), impressions (issue 12)
INSERT INTO personalize.batch_recommendations (customer_id, rank, product_id, score, reason, variant, generated_at)
VALUES (501, 1, 1, 1, 'r', 'hybrid', now()), (502, 1, 1, 1, 'r', 'hybrid', now());
INSERT INTO personalize._batch_todo (customer_id) VALUES (501), (502);
INSERT INTO personalize._batch_staging (customer_id, rank, product_id, score, reason, variant, generated_at)
VALUES (501, 1, 1, 1, 'r', 'hybrid', now()), (502, 1, 1, 1, 'r', 'hybrid', now());
UPDATE personalize.interactions SET quantity = 2 WHERE customer_id IN (501, 502) AND event_type = 'view';
INSERT INTO personalize.impressions (customer_id, variant, product_ids) VALUES (501, 'hybrid', '{1, 2}'), (502, 'hybrid', '{1}');

-- every table that can name a customer names 501 (so the check below checks something)
SELECT * FROM pg_temp.naming(501);
CREATE TEMP TABLE others_before AS
SELECT c, x.tbl, x.n FROM (VALUES (502), (503)) AS v(c), pg_temp.naming(c) x;
SELECT * FROM pg_temp.model_check();

-- erase 501: nothing anywhere names them any more
SELECT * FROM personalize.forget_customer(501);
SELECT * FROM pg_temp.naming(501) WHERE n <> 0;
SELECT count(*) AS columns_checked FROM pg_temp.naming(501);
-- the other customers keep every row; a batch request keeps its other customers, and one
-- that asked about 501 alone goes
SELECT b.c, b.tbl, b.n AS before, a.n AS after
FROM others_before b JOIN (SELECT c, x.tbl, x.n FROM (VALUES (502), (503)) AS v(c), pg_temp.naming(c) x) a
     USING (c, tbl)
WHERE a.n IS DISTINCT FROM b.n;
SELECT custom_id, customer_ids FROM personalize.llm_batch_requests ORDER BY custom_id COLLATE "C";
SELECT customer_id, count(*) AS exposures FROM personalize.exposures GROUP BY 1 ORDER BY 1;
-- the model equals a recount from the remaining events
SELECT * FROM pg_temp.model_check();
-- an answer to a batch sent before the erasure records nothing about 501: their entry
-- names an id that is no customer's (rejected without the id); 502's answer is stored; a
-- failed request is recorded for the customers still asked about
SELECT stored, rejected, failures FROM personalize._llm_batch_ingest(:run, 'batch_erasure',
    jsonb_build_object('custom_id', 'run-1', 'response', jsonb_build_object('status_code', 200, 'body',
        jsonb_build_object('object', 'chat.completion', 'model', 'gpt-test', 'choices', jsonb_build_array(
            jsonb_build_object('index', 0, 'finish_reason', 'stop', 'message', jsonb_build_object(
                'role', 'assistant', 'content',
                '{"customers": [{"customer_id": 501, "recommendations": [{"product_id": 1, "reason": "a"}]},
                                {"customer_id": 502, "recommendations": [{"product_id": 3, "reason": "b"}]}]}'))))))::text
    || E'\n' || '{"custom_id": "run-3", "error": {"code": "server_error", "message": "boom"}}');
-- so is a request that failed after the erasure (llm_refresh() holds its customers in memory)
SELECT personalize._llm_reject_all(:run, ARRAY[501, 503], 'request_failed', 'HTTP 500') AS rejected;
SELECT customer_id, product_id, reason, detail FROM personalize.llm_rejections ORDER BY rejection_id;
SELECT customer_id, rank, product_id, reason FROM personalize.llm_recommendations ORDER BY 1, 2;
SELECT * FROM pg_temp.naming(501) WHERE n <> 0;
-- again: nothing left to erase
SELECT * FROM personalize.forget_customer(501);
ROLLBACK;
