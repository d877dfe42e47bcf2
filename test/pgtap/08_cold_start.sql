-- personalize: the OpenAI cold start's tables, keys, constraints, dump registration,
-- settings and privileges (issue 4). Its behaviour is tested against the mock server in
-- test/scripts/llm_refresh.sh, openai_http.sh and openai_spec.sh, and offline in sql/llm.sql.
BEGIN;
SELECT plan(44);

-- tables and columns ------------------------------------------------------------------
SELECT columns_are('personalize', 'llm_runs', ARRAY['run_id', 'kind', 'status', 'started_at', 'finished_at', 'model',
    'customers', 'requests', 'retries', 'failures', 'rejections', 'prompt_tokens', 'completion_tokens', 'error',
    'pid', 'backend_start', 'details'], 'llm_runs has the columns of the issue and its bookkeeping');
SELECT columns_are('personalize', 'llm_recommendations', ARRAY['customer_id', 'rank', 'product_id', 'reason', 'run_id',
    'generated_at', 'model'], 'llm_recommendations columns');
SELECT columns_are('personalize', 'llm_rejections', ARRAY['rejection_id', 'run_id', 'customer_id', 'product_id', 'reason',
    'detail', 'rejected_at'], 'llm_rejections columns');
SELECT columns_are('personalize', 'llm_batches', ARRAY['batch_id', 'run_id', 'input_file_id', 'output_file_id',
    'error_file_id', 'status', 'requests', 'customers', 'created_at', 'checked_at', 'finished_at', 'ingest_run_id'],
    'llm_batches columns');
SELECT columns_are('personalize', 'llm_batch_requests', ARRAY['batch_id', 'custom_id', 'customer_ids'], 'llm_batch_requests columns');
SELECT columns_are('personalize', 'product_embeddings', ARRAY['product_id', 'model', 'embedding', 'text_md5', 'embedded_at'],
    'product_embeddings columns');
SELECT col_type_is('personalize', 'product_embeddings', 'embedding', 'real[]', 'embeddings are real[]');
SELECT col_type_is('personalize', 'llm_runs', 'prompt_tokens', 'bigint', 'token counts are bigint');

-- keys and constraints ------------------------------------------------------------------
SELECT col_is_pk('personalize', 'llm_runs', 'run_id', 'llm_runs primary key');
SELECT col_is_pk('personalize', 'llm_recommendations', ARRAY['customer_id', 'rank'], 'one row per customer and rank');
SELECT col_is_unique('personalize', 'llm_recommendations', ARRAY['customer_id', 'product_id'], 'a product at most once per customer');
SELECT fk_ok('personalize', 'llm_recommendations', 'customer_id', 'personalize', 'customers', 'customer_id',
    'llm_recommendations reference customers');
SELECT fk_ok('personalize', 'llm_recommendations', 'product_id', 'personalize', 'products', 'product_id',
    'llm_recommendations reference products');
SELECT fk_ok('personalize', 'product_embeddings', 'product_id', 'personalize', 'products', 'product_id',
    'product_embeddings reference products');
SELECT fk_ok('personalize', 'llm_batch_requests', 'batch_id', 'personalize', 'llm_batches', 'batch_id',
    'llm_batch_requests reference llm_batches');
SELECT col_is_pk('personalize', 'llm_batches', 'batch_id', 'llm_batches primary key');
SELECT throws_ok($$INSERT INTO personalize.llm_runs (kind) VALUES ('guess')$$, '23514', NULL, 'llm_runs.kind is checked');
SELECT throws_ok($$INSERT INTO personalize.llm_runs (kind, status) VALUES ('refresh', 'finished')$$, '23514', NULL,
    'llm_runs.status is checked');
SELECT throws_ok($$INSERT INTO personalize.llm_rejections (run_id, reason) VALUES (1, 'bad vibes')$$, '23514', NULL,
    'llm_rejections.reason is one of the documented reasons');
INSERT INTO personalize.products (product_id, name) VALUES (1, 'WHITE METAL LANTERN');
INSERT INTO personalize.customers (customer_id) VALUES (1);
SELECT throws_ok($$INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, run_id) VALUES (1, 0, 1, 1)$$,
    '23514', NULL, 'ranks start at 1');
SELECT throws_ok($$INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, run_id) VALUES (1, 1, 999, 1)$$,
    '23503', NULL, 'a recommendation of an unknown product cannot be stored');
SELECT throws_ok($$INSERT INTO personalize.product_embeddings (product_id, model, embedding, text_md5) VALUES (1, 'm', '{}', 'x')$$,
    '23514', NULL, 'an empty embedding is refused');
SELECT throws_ok($$INSERT INTO personalize.product_embeddings (product_id, model, embedding, text_md5) VALUES (1, 'm', '{1,NULL}', 'x')$$,
    '23514', NULL, 'an embedding with a NULL is refused');
SELECT throws_ok($$INSERT INTO personalize.product_embeddings (product_id, model, embedding, text_md5) VALUES (1, 'm', '{{1},{2}}', 'x')$$,
    '23514', NULL, 'a two-dimensional embedding is refused');
INSERT INTO personalize.llm_recommendations (customer_id, rank, product_id, run_id) VALUES (1, 1, 1, 1);
DELETE FROM personalize.products WHERE product_id = 1;
SELECT is((SELECT count(*) FROM personalize.llm_recommendations), 0::bigint, 'deleting a product deletes its LLM recommendations');
SELECT has_index('personalize', 'llm_recommendations', 'llm_recommendations_product_idx', 'the product FK is indexed');
SELECT has_index('personalize', 'llm_runs', 'llm_runs_running_idx', 'running runs are found by an index');

-- pg_dump keeps what cost money to get -------------------------------------------------
SELECT bag_has($$SELECT c.oid::regclass::text FROM pg_extension e, unnest(e.extconfig) r JOIN pg_class c ON c.oid = r
                 WHERE e.extname = 'personalize'$$,
    $$VALUES ('personalize.llm_runs'), ('personalize.llm_runs_run_id_seq'), ('personalize.llm_recommendations'),
             ('personalize.llm_rejections'), ('personalize.llm_rejections_rejection_id_seq'), ('personalize.llm_batches'),
             ('personalize.llm_batch_requests'), ('personalize.product_embeddings')$$,
    'the cold start tables and their sequences are registered with pg_extension_config_dump');

-- the built-in llm variant --------------------------------------------------------------
SELECT results_eq($$SELECT algorithm, builtin FROM personalize.variants WHERE name = 'llm'$$,
    $$VALUES ('llm', true)$$, 'the built-in variant llm serves the stored answers');

-- settings ------------------------------------------------------------------------------
SELECT is(current_setting('personalize.openai_base_url'), 'https://api.openai.com/v1', 'the base URL defaults to OpenAI');
SELECT is(current_setting('personalize.llm_customers_per_request'), '25', 'about 25 customers per request by default');
SELECT is(current_setting('personalize.llm_max_interactions'), '3', 'cold means fewer than 3 interactions by default');
SELECT is((SELECT context FROM pg_settings WHERE name = 'personalize.openai_concurrency'), 'superuser',
    'the OpenAI settings are superuser-only to change');
SELECT is((SELECT count(*) FROM pg_settings WHERE name = 'personalize.openai_api_key'), 0::bigint,
    'the key is not in pg_settings, even for a superuser');
SELECT throws_ok($$SET personalize.openai_base_url = 'file:///etc/passwd'$$, '22023', NULL, 'only http(s) base URLs');

-- privileges: nothing of it for PUBLIC, and the key hidden from a non-superuser ------------
CREATE ROLE regress_cold LOGIN;
SELECT table_privs_are('personalize', t, 'public', ARRAY[]::text[], format('PUBLIC has no privilege on %s', t))
FROM unnest(ARRAY['llm_runs', 'llm_recommendations', 'llm_rejections', 'llm_batches', 'llm_batch_requests',
                  'product_embeddings']) t;
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p
                  WHERE p.pronamespace = 'personalize'::regnamespace
                    AND (p.proname ~ '(llm|openai|embed|content)') AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'no cold start function or procedure is executable by PUBLIC');
SET ROLE regress_cold;
SELECT throws_ok($$SELECT current_setting('personalize.openai_api_key')$$, '42501', NULL,
    'a non-superuser cannot read the key');
SELECT throws_ok($$CALL personalize.llm_refresh()$$, '42501', NULL, 'nor run a refresh');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
