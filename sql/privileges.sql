-- Privileges. A plain application role (LOGIN, not superuser, not owner) with
-- the grant set documented in docs/reference.md writes customers, events and
-- feedback and reads the catalog, but cannot change configuration. A role with
-- no grants sees the schema's name and reads nothing. Everything runs in one
-- transaction that is rolled back, so no role or row outlives the test.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE ROLE regress_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE regress_nobody LOGIN NOSUPERUSER;
GRANT SELECT ON personalize.products, personalize.event_types, personalize.marketing_campaigns TO regress_app;
GRANT SELECT, INSERT, UPDATE ON personalize.customers TO regress_app;
GRANT SELECT, INSERT ON personalize.interactions, personalize.customer_feedback TO regress_app;
SELECT r.rolname, r.rolsuper, r.rolcanlogin,
       pg_has_role(r.oid, (SELECT relowner FROM pg_class WHERE oid = 'personalize.products'::regclass), 'MEMBER') AS owner_rights
FROM pg_roles r WHERE r.rolname IN ('regress_app', 'regress_nobody') ORDER BY r.rolname COLLATE "C";

-- personalize.neighbors_k is PGC_SUSET. Before the library is loaded in a
-- session the name is only a placeholder that anyone may set; loading the
-- library throws away a value a non-superuser set (with a warning)
SET ROLE regress_app;
SET personalize.neighbors_k = 5;
SHOW personalize.neighbors_k;
RESET ROLE;
LOAD 'personalize';
SHOW personalize.neighbors_k;
-- once loaded, the application can neither set it nor store it for itself
SET ROLE regress_app;
SET personalize.neighbors_k = 7;
\echo SQLSTATE :SQLSTATE
SELECT set_config('personalize.neighbors_k', '7', false);
\echo SQLSTATE :SQLSTATE
ALTER ROLE regress_app SET personalize.neighbors_k = 7;
\echo SQLSTATE :SQLSTATE
SET personalize.no_such_setting = 1;
\echo SQLSTATE :SQLSTATE
SHOW personalize.neighbors_k;
RESET ROLE;
-- a superuser can
SET personalize.neighbors_k = 7;
SHOW personalize.neighbors_k;
RESET personalize.neighbors_k;

-- the privileges each role holds on each table of issue 2
SELECT r.rolname, t.relname,
       string_agg(p.privilege, ', ' ORDER BY p.n) FILTER (
           WHERE has_table_privilege(r.rolname, 'personalize.' || t.relname, p.privilege)) AS privileges
FROM (VALUES ('regress_app'), ('regress_nobody')) AS r(rolname)
CROSS JOIN (VALUES ('products'), ('customers'), ('event_types'), ('interactions'),
                   ('customer_feedback'), ('marketing_campaigns')) AS t(relname)
CROSS JOIN (VALUES (1, 'SELECT'), (2, 'INSERT'), (3, 'UPDATE'), (4, 'DELETE'),
                   (5, 'TRUNCATE'), (6, 'REFERENCES'), (7, 'TRIGGER')) AS p(n, privilege)
GROUP BY r.rolname, t.relname
ORDER BY r.rolname COLLATE "C", t.relname COLLATE "C";

-- configuration the superuser sets up
INSERT INTO personalize.products (product_id, sku, name, price) VALUES (1, 'MUG-1', 'Enamel mug', 4.50), (2, 'TOWEL-1', 'Tea towel', 3.00);
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Winter mugs', 1, '2024-12-01 00:00:00+00', '2025-01-01 00:00:00+00');

-- the application reads the catalog
SET ROLE regress_app;
SELECT current_user;
SELECT product_id, sku, name, price FROM personalize.products ORDER BY product_id;
SELECT event_type, weight FROM personalize.event_types ORDER BY weight;
SELECT name, product_id, boost FROM personalize.marketing_campaigns ORDER BY name COLLATE "C";
-- it writes customers (insert, upsert, update), events and feedback
INSERT INTO personalize.customers (customer_id, country) VALUES (10, 'France'), (11, NULL);
INSERT INTO personalize.customers (customer_id, country) VALUES (11, 'Spain')
ON CONFLICT (customer_id) DO UPDATE SET country = excluded.country;
UPDATE personalize.customers SET attributes = '{"segment": "retail"}' WHERE customer_id = 10;
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
VALUES (10, 1, 'view'), (10, 1, 'cart'), (11, 2, 'click')
RETURNING customer_id, product_id, event_type, interaction_id IS NOT NULL AS has_id;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity)
VALUES (10, 1, 'purchase', 2);
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment)
VALUES (10, 1, 5, 'Lovely.')
RETURNING customer_id, product_id, rating, feedback_id IS NOT NULL AS has_id;
SELECT customer_id, country, attributes FROM personalize.customers ORDER BY customer_id;
SELECT customer_id, product_id, event_type, quantity FROM personalize.interactions
ORDER BY customer_id, product_id, event_type COLLATE "C";
-- bad input is still bad input
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 999, 'view');
\echo SQLSTATE :SQLSTATE

-- it cannot change configuration: event types, products, campaigns
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 3);
\echo SQLSTATE :SQLSTATE
UPDATE personalize.event_types SET weight = 100 WHERE event_type = 'view';
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.event_types WHERE event_type = 'view';
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.products (product_id, name) VALUES (3, 'Teapot');
\echo SQLSTATE :SQLSTATE
UPDATE personalize.products SET price = 0 WHERE product_id = 1;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.products WHERE product_id = 2;
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Mine first', 2, '2024-12-01 00:00:00+00', '2025-01-01 00:00:00+00');
\echo SQLSTATE :SQLSTATE
UPDATE personalize.marketing_campaigns SET boost = 100;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.marketing_campaigns;
\echo SQLSTATE :SQLSTATE
-- nor rewrite or erase history
UPDATE personalize.interactions SET quantity = 100;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.interactions;
\echo SQLSTATE :SQLSTATE
TRUNCATE personalize.interactions;
\echo SQLSTATE :SQLSTATE
UPDATE personalize.customer_feedback SET rating = 1;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.customer_feedback;
\echo SQLSTATE :SQLSTATE
DELETE FROM personalize.customers WHERE customer_id = 11;
\echo SQLSTATE :SQLSTATE
SELECT setval('personalize.interactions_interaction_id_seq', 1);
\echo SQLSTATE :SQLSTATE
-- nor change the extension's objects or add its own to the schema
DROP TABLE personalize.interactions;
\echo SQLSTATE :SQLSTATE
ALTER TABLE personalize.products ADD COLUMN note text;
\echo SQLSTATE :SQLSTATE
ALTER TABLE personalize.customer_feedback DROP CONSTRAINT customer_feedback_rating_check;
\echo SQLSTATE :SQLSTATE
ALTER TABLE personalize.products DISABLE TRIGGER products_touch_updated_at;
\echo SQLSTATE :SQLSTATE
CREATE INDEX ON personalize.interactions (occurred_at);
\echo SQLSTATE :SQLSTATE
CREATE TABLE personalize.mine (id int);
\echo SQLSTATE :SQLSTATE
CREATE FUNCTION personalize.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.now()';
\echo SQLSTATE :SQLSTATE
SELECT personalize._touch_updated_at();
\echo SQLSTATE :SQLSTATE
DROP EXTENSION personalize;
\echo SQLSTATE :SQLSTATE
ALTER EXTENSION personalize UPDATE;
\echo SQLSTATE :SQLSTATE
RESET ROLE;

-- configuration is as the superuser left it, the application's rows are there
SELECT product_id, name, price FROM personalize.products ORDER BY product_id;
SELECT event_type, weight FROM personalize.event_types ORDER BY weight;
SELECT name, boost FROM personalize.marketing_campaigns ORDER BY name COLLATE "C";
SELECT (SELECT count(*) FROM personalize.interactions) AS interactions,
       (SELECT count(*) FROM personalize.customer_feedback) AS customer_feedback,
       (SELECT count(*) FROM personalize.customers) AS customers;
SELECT count(*) AS extra_columns FROM pg_attribute
WHERE attrelid = 'personalize.products'::regclass AND attname = 'note';

-- a role with no grants sees that the schema exists, and reads or writes nothing
SET ROLE regress_nobody;
SELECT nspname FROM pg_namespace WHERE nspname = 'personalize';
SELECT has_schema_privilege('personalize', 'USAGE') AS usage,
       has_schema_privilege('personalize', 'CREATE') AS "create";
SELECT count(*) FROM personalize.products;
\echo SQLSTATE :SQLSTATE
SELECT count(*) FROM personalize.event_types;
\echo SQLSTATE :SQLSTATE
SELECT count(*) FROM personalize.customers;
\echo SQLSTATE :SQLSTATE
SELECT count(*) FROM personalize.interactions;
\echo SQLSTATE :SQLSTATE
SELECT count(*) FROM personalize.customer_feedback;
\echo SQLSTATE :SQLSTATE
SELECT count(*) FROM personalize.marketing_campaigns;
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view');
\echo SQLSTATE :SQLSTATE
INSERT INTO personalize.customers (customer_id) VALUES (12);
\echo SQLSTATE :SQLSTATE
RESET ROLE;

-- the roles go; nothing of theirs is left that would stop DROP ROLE
REVOKE ALL ON ALL TABLES IN SCHEMA personalize FROM regress_app;
DROP ROLE regress_app, regress_nobody;
ROLLBACK;

SELECT count(*) AS regress_roles FROM pg_roles WHERE rolname IN ('regress_app', 'regress_nobody');
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.interactions) AS interactions,
       (SELECT count(*) FROM personalize.customer_feedback) AS customer_feedback,
       (SELECT count(*) FROM personalize.marketing_campaigns) AS marketing_campaigns;
