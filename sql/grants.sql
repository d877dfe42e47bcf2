-- Grant sets (issue 11, part 6) and column comments. Every column of every table and view
-- of the schema has a comment (found from the catalog). grant_application(),
-- grant_monitoring() and grant_bi() grant exactly their documented sets (every other
-- table, view and function of the schema, found from the catalog, stays refused), are
-- idempotent, not executable by PUBLIC, run as the caller; revoke_all() takes everything back.
-- Roles live inside one rolled-back transaction. The TCP test is test/scripts/grant_sets.sh.
\set VERBOSITY terse
\set ON_ERROR_ROLLBACK on

-- columns without a comment (none)
SELECT c.relname, a.attname
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND col_description(c.oid, a.attnum) IS NULL
ORDER BY 1, 2;

-- the grant functions: not for PUBLIC, run as the caller; erase_customer() runs as the owner
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace
  AND p.proname IN ('grant_application', 'grant_monitoring', 'grant_bi', 'revoke_all', 'erase_customer',
                    '_grant_set', '_grant_apply', '_grant_check_role', '_grant_count')
ORDER BY p.proname COLLATE "C";

BEGIN;
CREATE ROLE regress_g_app;
CREATE ROLE regress_g_mon;
CREATE ROLE regress_g_bi;
CREATE ROLE regress_g_other;
SELECT personalize.grant_application('regress_g_app');
SELECT personalize.grant_monitoring('regress_g_mon');
SELECT personalize.grant_bi('regress_g_bi');
CREATE TEMP TABLE acl_once AS
SELECT c.oid::regclass::text AS obj, c.relacl::text AS acl FROM pg_class c WHERE c.relnamespace = 'personalize'::regnamespace
UNION ALL
SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace;
-- idempotent: a second call grants nothing new
SELECT count(*) AS statements FROM (
    SELECT personalize.grant_application('regress_g_app') UNION ALL
    SELECT personalize.grant_monitoring('regress_g_mon') UNION ALL
    SELECT personalize.grant_bi('regress_g_bi')) s;
SELECT count(*) AS changed_acls FROM (
    SELECT c.oid::regclass::text AS obj, c.relacl::text AS acl FROM pg_class c WHERE c.relnamespace = 'personalize'::regnamespace
    UNION ALL
    SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
    EXCEPT SELECT * FROM acl_once) d;

-- every table, view and sequence of the schema: what each role may do (all others: nothing)
SELECT r.rolname, c.relname,
       string_agg(p.privilege, ', ' ORDER BY p.n) AS privileges
FROM (VALUES ('regress_g_app'), ('regress_g_mon'), ('regress_g_bi'), ('regress_g_other')) AS r(rolname)
CROSS JOIN pg_class c
CROSS JOIN (VALUES (1, 'SELECT'), (2, 'INSERT'), (3, 'UPDATE'), (4, 'DELETE'),
                   (5, 'TRUNCATE'), (6, 'REFERENCES'), (7, 'TRIGGER')) AS p(n, privilege)
WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND has_table_privilege(r.rolname, c.oid, p.privilege)
GROUP BY r.rolname, c.relname
ORDER BY r.rolname COLLATE "C", c.relname COLLATE "C";
SELECT r.rolname, count(*) AS usable_sequences
FROM (VALUES ('regress_g_app'), ('regress_g_mon'), ('regress_g_bi')) AS r(rolname), pg_class c
WHERE c.relnamespace = 'personalize'::regnamespace AND c.relkind = 'S'
  AND (has_sequence_privilege(r.rolname, c.oid, 'USAGE') OR has_sequence_privilege(r.rolname, c.oid, 'SELECT')
       OR has_sequence_privilege(r.rolname, c.oid, 'UPDATE'))
GROUP BY 1 ORDER BY 1;
-- every function and procedure PUBLIC may not execute: who may
SELECT r.rolname, p.oid::regprocedure AS function
FROM (VALUES ('regress_g_app'), ('regress_g_mon'), ('regress_g_bi'), ('regress_g_other')) AS r(rolname)
CROSS JOIN pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace
  AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
  AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')
ORDER BY 1, 2::text COLLATE "C";

-- refusals: no role, PUBLIC, the owner
SELECT personalize.grant_bi(NULL);
\echo SQLSTATE :SQLSTATE
SELECT personalize.grant_bi('-');
\echo SQLSTATE :SQLSTATE
SELECT personalize.grant_application(current_user::regrole);
\echo SQLSTATE :SQLSTATE
SELECT personalize.revoke_all(current_user::regrole);
\echo SQLSTATE :SQLSTATE
-- a role that is not the owner cannot call them ...
SET LOCAL ROLE regress_g_other;
SELECT personalize.grant_application('regress_g_other');
\echo SQLSTATE :SQLSTATE
SELECT personalize.revoke_all('regress_g_app');
\echo SQLSTATE :SQLSTATE
RESET ROLE;
-- ... and one granted EXECUTE cannot grant what it does not hold WITH GRANT OPTION: nothing is granted
GRANT EXECUTE ON FUNCTION personalize.grant_application(regrole), personalize._grant_apply(text, regrole),
    personalize._grant_check_role(regrole), personalize._grant_set(text) TO regress_g_other;
GRANT SELECT ON personalize.products TO regress_g_other WITH GRANT OPTION;
SET LOCAL ROLE regress_g_other;
SELECT personalize.grant_application('regress_g_mon');
\echo SQLSTATE :SQLSTATE
RESET ROLE;
SELECT has_table_privilege('regress_g_mon', 'personalize.products', 'SELECT') AS mon_reads_products;

-- revoke_all takes every privilege back, the sets and a hand-made grant alike
GRANT DELETE ON personalize.customers TO regress_g_app;
GRANT SELECT (name) ON personalize.experiments TO regress_g_bi;
SELECT personalize.revoke_all('regress_g_app') AS app, personalize.revoke_all('regress_g_mon') AS mon,
       personalize.revoke_all('regress_g_bi') AS bi, personalize.revoke_all('regress_g_bi') AS bi_again;
SELECT count(*) AS privileges_left FROM (
    SELECT a.grantee FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'personalize'::regnamespace
    UNION ALL
    SELECT a.grantee FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
    WHERE c.relnamespace = 'personalize'::regnamespace
    UNION ALL
    SELECT a.grantee FROM pg_proc p, aclexplode(p.proacl) a WHERE p.pronamespace = 'personalize'::regnamespace) g
WHERE g.grantee IN ('regress_g_app'::regrole, 'regress_g_mon'::regrole, 'regress_g_bi'::regrole);
ROLLBACK;
