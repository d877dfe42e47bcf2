-- The install script is safe against a hostile search_path, tested the way
-- pg_cron's regression test does it: an unprivileged role plants objects that
-- shadow what the script uses, each one recording its call, then a superuser
-- runs CREATE EXTENSION and nothing planted may have run or be depended on.
-- Objects are planted in two places:
--  1. a schema the superuser's search_path puts before pg_catalog;
--  2. the extension's own schema, which outlives DROP EXTENSION and in which a
--     careless grant lets the role create. CREATE EXTENSION runs the script with
--     search_path = personalize, pg_temp (pg_catalog implicitly first), so there
--     only an object that matches better than pg_catalog's can capture a call:
--     an operator >= (numeric, integer), which pg_catalog does not have.
-- Everything runs in one transaction that is rolled back: afterwards the
-- extension is the one the install test created, with a clean search_path.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE ROLE regress_attacker LOGIN NOSUPERUSER;
CREATE SCHEMA regress_hostile;
GRANT USAGE, CREATE ON SCHEMA regress_hostile TO regress_attacker;
DROP EXTENSION personalize CASCADE;
SELECT nspname, has_schema_privilege('regress_attacker', oid, 'CREATE') AS attacker_can_create
FROM pg_namespace WHERE nspname = 'personalize';
GRANT CREATE ON SCHEMA personalize TO regress_attacker;

-- the attacker plants functions and operators that log every call
SET ROLE regress_attacker;
CREATE TABLE regress_hostile.calls (what text NOT NULL);
GRANT SELECT, INSERT, DELETE ON regress_hostile.calls TO PUBLIC;
CREATE FUNCTION regress_hostile.log_call(what text) RETURNS void
LANGUAGE sql AS $$ INSERT INTO regress_hostile.calls VALUES (what) $$;

CREATE FUNCTION regress_hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION regress_hostile.length(text) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('length(text)'); RETURN pg_catalog.length($1); END $$;
CREATE FUNCTION regress_hostile.lower(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('lower(text)'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION regress_hostile.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('jsonb_typeof(jsonb)'); RETURN pg_catalog.jsonb_typeof($1); END $$;
CREATE FUNCTION regress_hostile.pg_extension_config_dump(regclass, text) RETURNS void LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('pg_extension_config_dump(regclass, text)'); END $$;
CREATE FUNCTION regress_hostile.generate_series(integer, integer) RETURNS SETOF integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('generate_series(integer, integer)');
         RETURN QUERY SELECT pg_catalog.generate_series($1, $2); END $$;

CREATE FUNCTION regress_hostile.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('text = text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION regress_hostile.bigint_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('bigint = bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION regress_hostile.text_match(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('text ~ text'); RETURN $1 OPERATOR(pg_catalog.~) $2; END $$;
CREATE FUNCTION regress_hostile.numeric_ge_int(numeric, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('numeric >= integer'); RETURN $1 OPERATOR(pg_catalog.>=) $2; END $$;
CREATE FUNCTION regress_hostile.float_gt_int(double precision, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('double precision > integer'); RETURN $1 OPERATOR(pg_catalog.>) $2; END $$;
CREATE FUNCTION regress_hostile.float_le_int(double precision, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM regress_hostile.log_call('double precision <= integer'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
CREATE OPERATOR regress_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_hostile.text_eq);
CREATE OPERATOR regress_hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_hostile.bigint_eq);
CREATE OPERATOR regress_hostile.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_hostile.text_match);
CREATE OPERATOR regress_hostile.>= (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = regress_hostile.numeric_ge_int);
CREATE OPERATOR regress_hostile.> (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = regress_hostile.float_gt_int);
CREATE OPERATOR regress_hostile.<= (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = regress_hostile.float_le_int);
-- in the extension's schema: the operators that beat pg_catalog's
CREATE OPERATOR personalize.>= (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = regress_hostile.numeric_ge_int);
CREATE OPERATOR personalize.> (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = regress_hostile.float_gt_int);
CREATE OPERATOR personalize.<= (LEFTARG = double precision, RIGHTARG = integer, FUNCTION = regress_hostile.float_le_int);
RESET ROLE;

-- the bait works: unqualified SQL under these search paths calls it
SET search_path = regress_hostile, pg_catalog, public;
SELECT now() IS NOT NULL AS now, length('abc') AS length, lower('ABC') AS lower,
       jsonb_typeof('{}') AS jsonb_typeof, 'a' = 'a' AS text_eq, 1::bigint = 1::bigint AS bigint_eq,
       'abc' ~ '^a' AS text_match, 1.5 >= 0 AS numeric_ge, 2.0::float8 > 0 AS float_gt,
       2.0::float8 <= 1000 AS float_le;
SELECT count(*) AS rows FROM generate_series(1, 3);
SELECT pg_extension_config_dump('regress_hostile.calls', '');
RESET search_path;
SELECT what, count(*) AS calls FROM regress_hostile.calls GROUP BY what ORDER BY what COLLATE "C";
DELETE FROM regress_hostile.calls;
SET search_path = personalize, pg_temp;
SELECT 1.5 >= 0 AS numeric_ge, 2.0::float8 > 0 AS float_gt, 2.0::float8 <= 1000 AS float_le,
       now() IS NOT NULL AS now, length('abc') AS length;
RESET search_path;
SELECT what, count(*) AS calls FROM regress_hostile.calls GROUP BY what ORDER BY what COLLATE "C";
DELETE FROM regress_hostile.calls;

-- the superuser installs the extension with the hostile schema first in its path
SET search_path = regress_hostile, personalize, pg_catalog, public;
CREATE EXTENSION personalize;
-- and uses it: defaults, checks, foreign keys and the trigger all still work
INSERT INTO personalize.products (product_id, sku, name, price, attributes)
VALUES (1, 'MUG-1', 'Enamel mug', 4.50, '{"colour": "blue"}');
INSERT INTO personalize.products (product_id, name, price) VALUES (2, 'Tea towel', -1);
INSERT INTO personalize.products (product_id, name) VALUES (2, '');
INSERT INTO personalize.products (product_id, name, attributes) VALUES (2, 'Tea towel', '[]');
INSERT INTO personalize.customers (customer_id, country, attributes) VALUES (10, 'France', '{}');
INSERT INTO personalize.event_types (event_type, weight) VALUES ('share', 0);
INSERT INTO personalize.event_types (event_type, weight) VALUES ('Share', 1);
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'view');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (10, 1, 'like');
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity) VALUES (10, 1, 'cart', 0);
INSERT INTO personalize.customer_feedback (customer_id, product_id, rating) VALUES (10, 1, 6);
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Backwards', 1, '2024-12-31 00:00:00+00', '2024-12-01 00:00:00+00', 2);
INSERT INTO personalize.marketing_campaigns (name, product_id, starts_at, ends_at, boost)
VALUES ('Zero', 1, '2024-12-01 00:00:00+00', '2024-12-31 00:00:00+00', 0);
UPDATE personalize.products SET price = 5.00;
RESET search_path;

-- nothing planted ran
SELECT what, count(*) AS calls FROM regress_hostile.calls GROUP BY what ORDER BY what COLLATE "C";
-- nothing depends on a planted object except the attacker's own operators
SELECT dependent, planted FROM (
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS dependent,
           pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS planted
    FROM pg_depend d
    WHERE ((d.refclassid = 'pg_proc'::regclass
            AND d.refobjid IN (SELECT oid FROM pg_proc WHERE proowner = 'regress_attacker'::regrole))
        OR (d.refclassid = 'pg_operator'::regclass
            AND d.refobjid IN (SELECT oid FROM pg_operator WHERE oprowner = 'regress_attacker'::regrole)))
      AND NOT (d.classid = 'pg_operator'::regclass
               AND d.objid IN (SELECT oid FROM pg_operator WHERE oprowner = 'regress_attacker'::regrole))
) deps
ORDER BY dependent COLLATE "C", planted COLLATE "C";
-- the rows that went in, with the trigger's work
SELECT product_id, name, price, updated_at = now() AS touched FROM personalize.products ORDER BY product_id;
SELECT (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.interactions) AS interactions,
       (SELECT count(*) FROM personalize.event_types) AS event_types,
       (SELECT count(*) FROM personalize.customer_feedback) AS customer_feedback,
       (SELECT count(*) FROM personalize.marketing_campaigns) AS marketing_campaigns;
ROLLBACK;

-- the rollback restored the extension the install test created, and removed
-- the role, its schema and its grant
SELECT e.extname, e.extversion, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'personalize';
SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'regress_attacker') AS attacker_roles,
       (SELECT count(*) FROM pg_namespace WHERE nspname = 'regress_hostile') AS hostile_schemas,
       has_schema_privilege('public', 'personalize', 'CREATE') AS public_can_create;
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.event_types) AS event_types,
       (SELECT count(*) FROM personalize.interactions) AS interactions;
