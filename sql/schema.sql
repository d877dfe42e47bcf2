-- The catalog schema of issue 2, read from the system catalogs: tables, columns,
-- types, defaults, constraints, indexes, the updated_at trigger, the pg_dump
-- registration, privileges for PUBLIC, and good rows in every table.
-- Later issues add their own tables to the schema: the per-table queries below
-- look at the six catalog tables only, the invariants look at every table.
\set VERBOSITY terse
CREATE TEMP TABLE catalog_tables (relname name PRIMARY KEY);
INSERT INTO catalog_tables VALUES
    ('products'), ('customers'), ('event_types'), ('interactions'),
    ('customer_feedback'), ('marketing_campaigns');

-- the tables exist, are ordinary logged tables, and carry a comment
SELECT t.relname, c.relkind, c.relpersistence,
       obj_description(c.oid, 'pg_class') IS NOT NULL AS commented
FROM catalog_tables t
LEFT JOIN pg_class c ON c.relname = t.relname AND c.relnamespace = 'personalize'::regnamespace
ORDER BY t.relname COLLATE "C";

-- invariants for every table of the schema, whichever issue added it:
-- a member of the extension, a comment, a primary key (expect no rows); but model_deltas,
-- the append-only log of pending count changes, has no index at all by design (issue 14)
SELECT c.relname,
       d.objid IS NOT NULL AS member,
       obj_description(c.oid, 'pg_class') IS NOT NULL AS commented,
       EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_pkey
FROM pg_class c
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
    AND d.refclassid = 'pg_extension'::regclass
    AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')
WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'p')
  AND (d.objid IS NULL OR obj_description(c.oid, 'pg_class') IS NULL
       OR (NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')
           AND c.relname <> 'model_deltas'))
ORDER BY c.relname COLLATE "C";

-- columns: type, NOT NULL, identity, default
SELECT c.relname AS "table", a.attname AS "column",
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, a.attidentity AS identity,
       pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM catalog_tables t
JOIN pg_class c ON c.relname = t.relname AND c.relnamespace = 'personalize'::regnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
ORDER BY c.relname COLLATE "C", a.attnum;

-- constraints: primary keys, unique, foreign keys, checks
SELECT c.relname AS "table", k.conname, k.contype, pg_get_constraintdef(k.oid) AS definition
FROM catalog_tables t
JOIN pg_class c ON c.relname = t.relname AND c.relnamespace = 'personalize'::regnamespace
JOIN pg_constraint k ON k.conrelid = c.oid
ORDER BY c.relname COLLATE "C", k.conname COLLATE "C";

-- the indexes issue 2 asks for (later issues may add more)
SELECT i.indexname, x.indexname IS NOT NULL AS present, x.indexdef
FROM (VALUES ('products_pkey'), ('products_sku_key'), ('products_category_idx'),
             ('customers_pkey'), ('event_types_pkey'),
             ('interactions_pkey'), ('interactions_customer_product_idx'), ('interactions_product_idx'),
             ('customer_feedback_pkey'), ('customer_feedback_product_idx'), ('customer_feedback_customer_idx'),
             ('marketing_campaigns_pkey'), ('marketing_campaigns_product_idx'),
             ('marketing_campaigns_period_idx')) AS i(indexname)
LEFT JOIN pg_indexes x ON x.schemaname = 'personalize' AND x.indexname = i.indexname
ORDER BY i.indexname COLLATE "C";

-- every foreign key of the catalog tables is the leading column of an index,
-- except interactions.event_type: four rows are referenced by the whole event
-- log, and an index there would be paid by every insert into the hottest table
SELECT c.relname AS "table", a.attname AS fk_column, f.relname AS "references",
       EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = k.conkey[1]) AS indexed
FROM catalog_tables t
JOIN pg_class c ON c.relname = t.relname AND c.relnamespace = 'personalize'::regnamespace
JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
JOIN pg_class f ON f.oid = k.confrelid
ORDER BY c.relname COLLATE "C", a.attname COLLATE "C";

-- the trigger that keeps products.updated_at true, and its function
SELECT tgname, tgenabled, pg_get_triggerdef(oid) AS definition
FROM pg_trigger
WHERE tgrelid = 'personalize.products'::regclass AND tgname = 'products_touch_updated_at';
SELECT p.proname, l.lanname, p.prosecdef, p.provolatile, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid = 'personalize._touch_updated_at()'::regprocedure;

-- pg_dump keeps user data: each catalog table and its identity sequence is
-- registered with pg_extension_config_dump (event_types: the rows a user adds)
SELECT r.relname, cfg.relname IS NOT NULL AS registered, cfg.condition
FROM (VALUES ('products'), ('customers'), ('event_types'), ('interactions'),
             ('interactions_interaction_id_seq'), ('customer_feedback'),
             ('customer_feedback_feedback_id_seq'), ('marketing_campaigns'),
             ('marketing_campaigns_campaign_id_seq')) AS r(relname)
LEFT JOIN (SELECT c.relname, u.condition
           FROM pg_extension e,
                unnest(e.extconfig, e.extcondition) AS u(reloid, condition)
                JOIN pg_class c ON c.oid = u.reloid
           WHERE e.extname = 'personalize') cfg ON cfg.relname = r.relname
ORDER BY r.relname COLLATE "C";

-- the sequence of every registered table is registered too (expect no rows)
SELECT s.relname AS unregistered_sequence
FROM pg_extension e
JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (e.extconfig)
    AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
WHERE e.extname = 'personalize' AND NOT s.oid = ANY (e.extconfig)
ORDER BY s.relname COLLATE "C";

-- PUBLIC holds nothing on any relation of the schema, only USAGE on the schema
SELECT c.relname, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'personalize'::regnamespace AND a.grantee = 0
ORDER BY c.relname COLLATE "C", a.privilege_type COLLATE "C";
SELECT has_schema_privilege('public', 'personalize', 'USAGE') AS public_usage,
       has_schema_privilege('public', 'personalize', 'CREATE') AS public_create;

-- the built-in event types
SELECT event_type, weight, description FROM personalize.event_types ORDER BY weight;

-- good rows in every table, with the defaults filled in (rolled back at the end)
BEGIN;
INSERT INTO personalize.products (product_id, sku, name, category, price, attributes)
VALUES (1, 'MUG-1', 'Enamel mug', 'kitchen', 4.50, '{"colour": "blue"}'),
       (2, NULL, 'Free sample', NULL, 0, NULL);
INSERT INTO personalize.products (product_id, name, price) VALUES (3, 'Tea towel', 9999999999.99);
SELECT product_id, sku, name, category, price, active, attributes,
       created_at = now() AS created_now, updated_at = now() AS updated_now
FROM personalize.products ORDER BY product_id;
INSERT INTO personalize.customers (customer_id, country, attributes)
VALUES (10, 'France', '{"segment": "retail"}'), (11, NULL, NULL);
SELECT customer_id, country, attributes, created_at = now() AS created_now
FROM personalize.customers ORDER BY customer_id;
INSERT INTO personalize.event_types (event_type, weight, description)
VALUES ('wishlist', 3, 'Added to a wish list.'), ('return_2', 1000, NULL);
SELECT event_type, weight FROM personalize.event_types ORDER BY weight, event_type COLLATE "C";
INSERT INTO personalize.interactions (customer_id, product_id, event_type)
VALUES (10, 1, 'view'), (10, 1, 'wishlist');
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
VALUES (11, 2, 'purchase', 3, '2011-06-15 09:00:00+00');
SELECT customer_id, product_id, event_type, quantity,
       interaction_id IS NOT NULL AS has_id, occurred_at = now() AS occurred_now,
       occurred_at = '2011-06-15 09:00:00+00' AS occurred_given
FROM personalize.interactions ORDER BY customer_id, event_type COLLATE "C";
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating, comment)
VALUES (10, 1, 1, 'Chipped on arrival.'), (10, 1, 5, NULL), (11, 2, 3, 'Fine.');
SELECT customer_id, product_id, rating, comment,
       feedback_id IS NOT NULL AS has_id, created_at = now() AS created_now
FROM personalize.customer_feedback ORDER BY customer_id, rating;
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at)
VALUES ('Winter mugs', 1, '2024-12-01 00:00:00+00', '2025-01-01 00:00:00+00');
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Sample week', 2, '2024-12-01 00:00:00+00', '2024-12-01 00:00:01+00', 0.01),
       ('Forever', 2, '2024-01-01 00:00:00+00', 'infinity', 20);
SELECT name, product_id, boost, ends_at > starts_at AS ordered, campaign_id IS NOT NULL AS has_id
FROM personalize.marketing_campaigns ORDER BY name COLLATE "C";

-- the trigger: any UPDATE of a product sets updated_at, even one that names it
UPDATE personalize.products SET created_at = '2020-01-01 00:00:00+00',
                                updated_at = '2020-01-01 00:00:00+00'
WHERE product_id = 1;
SELECT product_id, created_at = '2020-01-01 00:00:00+00' AS created_kept, updated_at = now() AS touched
FROM personalize.products WHERE product_id = 1;
SAVEPOINT before_update;
ALTER TABLE personalize.products DISABLE TRIGGER products_touch_updated_at;
UPDATE personalize.products SET updated_at = '2020-01-01 00:00:00+00' WHERE product_id IN (1, 2);
ALTER TABLE personalize.products ENABLE TRIGGER products_touch_updated_at;
UPDATE personalize.products SET price = 5.00 WHERE product_id = 1;
SELECT product_id, price, updated_at = now() AS touched
FROM personalize.products WHERE product_id IN (1, 2) ORDER BY product_id;
ROLLBACK TO SAVEPOINT before_update;
ROLLBACK;

-- nothing is left behind: the tables are empty again
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.event_types) AS event_types,
       (SELECT count(*) FROM personalize.interactions) AS interactions,
       (SELECT count(*) FROM personalize.customer_feedback) AS customer_feedback,
       (SELECT count(*) FROM personalize.marketing_campaigns) AS marketing_campaigns;
