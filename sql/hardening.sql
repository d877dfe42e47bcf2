-- Hardening (issue 10, defect 13, the smaller ones): similarity() on counts near the int64
-- limit, the statistics for very large degrees of freedom, and a personalize.as_of that
-- the setting accepts but recommend() could not use.
\set VERBOSITY terse

-- Jaccard stays in [0, 1] where a + b - ab overflows bigint (0.1.0 returned a negative
-- score); LLR and lift on huge counts are finite
SELECT personalize.similarity('jaccard', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9000000000000000000) AS jaccard_huge,
       personalize.similarity('jaccard', 2, 4, 3, 6) AS jaccard_small,
       personalize.similarity('llr', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9223372036854775807) >= 0 AS llr_finite,
       personalize.similarity('lift', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9000000000000000000) AS lift_huge;

-- P(T <= 1.96) and P(X > df + 1.645 sqrt(2 df)) approach 0.975 and 0.05 as df grows; in
-- 0.1.0 they left [0, 1] (1.42 at 1e15) or became NaN (1e300). At 1e300 the 1.645 sqrt(2 df)
-- offset is lost in float8 (x = df), so 0.5 is the right answer there
SELECT df,
       round(personalize._t_cdf(1.96, df)::numeric, 4) AS t_cdf,
       round(personalize._chisq_sf(df + sqrt(2 * df) * 1.645, df)::numeric, 3) AS chisq_sf,
       personalize._t_cdf(1.96, df) BETWEEN 0 AND 1 AND personalize._chisq_sf(df, df) BETWEEN 0 AND 1 AS in_range
FROM unnest(ARRAY[1e6, 1e8, 1e15, 1e300]::float8[]) AS df ORDER BY df;

-- personalize.as_of: a date timestamptz cannot hold is refused when it is set
SET personalize.as_of = '294277-01-01';
\echo SQLSTATE :SQLSTATE
SET personalize.as_of = '2011-12-10 00:00+00';
SHOW personalize.as_of;
SELECT count(*) >= 0 AS recommend_answers FROM personalize.recommend(0);
RESET personalize.as_of;

-- Defect 11: a role that may insert events cannot choose interaction ids. In 0.1.0 an
-- explicit id just ahead of the identity sequence was accepted, and every later default
-- insert then failed with 23505. interaction_id is GENERATED ALWAYS now (428C9), and ids
-- ahead of the sequence that OVERRIDING SYSTEM VALUE or COPY bring are refused (42501)
-- from a role without UPDATE on the sequence; ids behind it cannot collide with a later
-- default insert and are accepted.
CREATE ROLE regress_ids_app NOLOGIN;
GRANT SELECT, INSERT ON personalize.interactions TO regress_ids_app;
INSERT INTO personalize.products (product_id, name) VALUES (9101, 'id guard product');
INSERT INTO personalize.customers (customer_id) VALUES (9101);
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next_id
  FROM personalize.interactions_interaction_id_seq \gset
SET ROLE regress_ids_app;
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
VALUES (:next_id, 9101, 9101, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
OVERRIDING SYSTEM VALUE VALUES (:next_id, 9101, 9101, 'view');
\echo SQLSTATE :SQLSTATE
COPY personalize.interactions (interaction_id, customer_id, product_id, event_type) FROM stdin;
9000000000000000000	9101	9101	view
\.
\echo SQLSTATE :SQLSTATE
-- the next default insert takes the sequence's next id, as every one after it
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (9101, 9101, 'view')
RETURNING interaction_id = :next_id AS took_next_id;
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (9101, 9101, 'click')
RETURNING interaction_id = :next_id + 1 AS took_next_id;
-- an id behind the sequence (here below its start) collides with no later insert
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
OVERRIDING SYSTEM VALUE VALUES (-9101, 9101, 9101, 'cart') RETURNING interaction_id;
RESET ROLE;
-- nobody moves an id by UPDATE (GENERATED ALWAYS), not even the owner
UPDATE personalize.interactions SET interaction_id = 9000000000000000000 WHERE interaction_id = -9101;
\echo SQLSTATE :SQLSTATE
-- the owner may choose ids ahead (migrations, pg_dump --inserts), and then advances the sequence
INSERT INTO personalize.interactions (interaction_id, customer_id, product_id, event_type)
OVERRIDING SYSTEM VALUE VALUES (:next_id + 10, 9101, 9101, 'view');
SELECT setval('personalize.interactions_interaction_id_seq', max(interaction_id)) = :next_id + 10 AS advanced
  FROM personalize.interactions;
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (9101, 9101, 'view')
RETURNING interaction_id = :next_id + 11 AS took_next_id;
SELECT events, purchases FROM personalize.customer_items WHERE customer_id = 9101;
SELECT * FROM personalize.forget_customer(9101);
DELETE FROM personalize.products WHERE product_id = 9101;
REVOKE ALL ON personalize.interactions FROM regress_ids_app;
DROP ROLE regress_ids_app;

-- Defect 13: log_exposure() takes at most 1000 products (recommend()'s k maximum); 0.1.0
-- stored arrays of any size
\set VERBOSITY default
SELECT personalize.log_exposure(1, array(SELECT g::bigint FROM generate_series(1, 1001) g));
\set VERBOSITY terse
BEGIN;
SELECT personalize.log_exposure(1, array(SELECT g::bigint FROM generate_series(1, 1000) g)) IS NOT NULL AS accepted;
ROLLBACK;

-- Defect 13: statement-sized arrays in the trigger are huge allocations and reach SPI in
-- chunks of 10,000 elements (0.1.0 failed with XX000 past palloc's 1 GB: about 19 M
-- changed or 33 M inserted (customer, product) pairs, too many for this test). Statements
-- of 12,000 customers and 24,000 (customer, product) pairs, with 12,000 distinct product
-- pairs, go through every chunked path (insert, update, delete) and stay exact.
BEGIN;
\set ECHO none
\i test/model_check.sql
\set ECHO all
INSERT INTO personalize.products (product_id, name) SELECT 800000 + g, 'bulk ' || g FROM generate_series(1, 400) g;
INSERT INTO personalize.customers (customer_id) SELECT 800000 + g FROM generate_series(1, 12000) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
SELECT 800000 + g, 800000 + p, 'view'
FROM generate_series(1, 12000) g, LATERAL (VALUES (1 + g % 100), (101 + g / 100)) AS x(p);
SELECT count(*) AS pairs FROM personalize.pair_counts WHERE product_a > 800000;
SELECT * FROM pg_temp.model_check();
UPDATE personalize.interactions SET product_id = product_id + 150
 WHERE customer_id > 800000 AND product_id > 800100;
SELECT * FROM pg_temp.model_check();
DELETE FROM personalize.interactions WHERE customer_id > 800000;
SELECT count(*) AS pairs_left FROM personalize.pair_counts WHERE product_a > 800000;
SELECT * FROM pg_temp.model_check();
ROLLBACK;
