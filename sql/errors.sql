-- Bad input gets a clear error with a sensible SQLSTATE, and changes nothing.
-- Each failing statement is followed by the SQLSTATE psql recorded for it, and
-- each group by counts that show nothing was written. Everything runs in one
-- transaction that is rolled back; ON_ERROR_ROLLBACK keeps it usable after an error.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
INSERT INTO personalize.products (product_id, sku, name, price) VALUES (1, 'MUG-1', 'Enamel mug', 4.50);
INSERT INTO personalize.customers (customer_id, country) VALUES (10, 'France');

-- products: negative, not-a-number and too large prices
INSERT INTO personalize.products (product_id, name, price) VALUES (2, 'Tea towel', -0.01);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name, price) VALUES (2, 'Tea towel', 'NaN');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name, price) VALUES (2, 'Tea towel', 1e10);
\echo SQLSTATE :SQLSTATE
-- products: empty or missing name, missing key, duplicates
INSERT INTO personalize.products (product_id, name) VALUES (2, '');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name) VALUES (2, NULL);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name) VALUES (NULL, 'Tea towel');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name) VALUES (1, 'Tea towel');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, sku, name) VALUES (3, 'MUG-1', 'Tea towel');
\echo SQLSTATE :SQLSTATE
-- products: attributes that are not a JSON object (SQL NULL is fine)
INSERT INTO personalize.products (product_id, name, attributes) VALUES (2, 'Tea towel', '[1, 2]');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name, attributes) VALUES (2, 'Tea towel', '"red"');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name, attributes) VALUES (2, 'Tea towel', 'null');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name, attributes) VALUES (2, 'Tea towel', '{"colour": ');
\echo SQLSTATE :SQLSTATE
-- products: updates are checked the same way
UPDATE personalize.products SET price = -1 WHERE product_id = 1;
\echo SQLSTATE :SQLSTATE
UPDATE personalize.products SET name = '' WHERE product_id = 1;
\echo SQLSTATE :SQLSTATE
SELECT product_id, sku, name, price, attributes FROM personalize.products ORDER BY product_id;

-- customers: missing key, duplicate, attributes that are not an object
INSERT INTO personalize.customers (customer_id) VALUES (NULL);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customers (customer_id, country) VALUES (10, 'Spain');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customers (customer_id, attributes) VALUES (11, '[]');
\echo SQLSTATE :SQLSTATE
SELECT customer_id, country, attributes FROM personalize.customers ORDER BY customer_id;

-- event types: weight out of (0, 1000], missing, names that are not lower-case identifiers
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 0);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', -1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 1000.5);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 'NaN');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', NULL);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('Share', 1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('', 1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('add to cart', 1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES (NULL, 1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.event_types (event_type, weight) VALUES ('view', 1);
\echo SQLSTATE :SQLSTATE
UPDATE personalize.event_types SET weight = 0 WHERE event_type = 'purchase';
\echo SQLSTATE :SQLSTATE
SELECT event_type, weight FROM personalize.event_types ORDER BY weight;

-- interactions: unknown product, customer or event type
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 999, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (999, 1, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'like');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'VIEW');
\echo SQLSTATE :SQLSTATE
-- interactions: NULL keys
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (NULL, 1, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, NULL, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, NULL);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id) VALUES (10, 1);
\echo SQLSTATE :SQLSTATE
-- interactions: quantity not positive or missing, time missing
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'purchase', 0);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'purchase', -3);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'purchase', NULL);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at) VALUES (10, 1, 'view', NULL);
\echo SQLSTATE :SQLSTATE
-- interactions: one bad row rejects the whole statement
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
VALUES (10, 1, 'view'), (10, 1, 'click'), (10, 999, 'cart');
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS interactions FROM personalize.interactions;

-- customer feedback: rating out of 1..5, missing or not a smallint
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 0);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 6);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, -1);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 70000);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 'five');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, NULL);
\echo SQLSTATE :SQLSTATE
-- customer feedback: unknown or missing product and customer
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 999, 4);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (999, 1, 4);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (NULL, 1, 4);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, NULL, 4);
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS customer_feedback FROM personalize.customer_feedback;

-- marketing campaigns: ending before or at the start, missing times
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Backwards', 1, '2024-12-31 00:00:00+00', '2024-12-01 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Instant', 1, '2024-12-01 00:00:00+00', '2024-12-01 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('No start', 1, NULL, '2024-12-01 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('No end', 1, '2024-12-01 00:00:00+00', NULL);
\echo SQLSTATE :SQLSTATE
-- marketing campaigns: boost not a positive finite number, or missing
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Zero', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', 0);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Negative', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', -1.5);
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Not a number', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', 'NaN');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Infinite', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', 'Infinity');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Missing', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', NULL);
\echo SQLSTATE :SQLSTATE
-- marketing campaigns: unknown or missing product, empty or missing name
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Ghost', 999, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Nothing', NULL, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES (NULL, 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00');
\echo SQLSTATE :SQLSTATE
SELECT count(*) AS marketing_campaigns FROM personalize.marketing_campaigns;

-- the event log keeps what it references: no deleting (or renumbering) a
-- product, customer or event type that interactions point to
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view');
DELETE FROM personalize.products WHERE product_id = 1;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.customers WHERE customer_id = 10;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.event_types WHERE event_type = 'view';
\echo SQLSTATE :SQLSTATE
UPDATE personalize.products SET product_id = 1000 WHERE product_id = 1;
\echo SQLSTATE :SQLSTATE
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.event_types) AS event_types,
       (SELECT count(*) FROM personalize.interactions) AS interactions;
ROLLBACK;

-- after the rollback the tables are as the test found them
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.event_types) AS event_types,
       (SELECT count(*) FROM personalize.interactions) AS interactions,
       (SELECT count(*) FROM personalize.customer_feedback) AS customer_feedback,
       (SELECT count(*) FROM personalize.marketing_campaigns) AS marketing_campaigns;
