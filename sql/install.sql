-- The extension installs, is not relocatable and sits in schema personalize.
CREATE EXTENSION personalize;
SELECT extname, extversion, extrelocatable, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'personalize';
-- pg_cron is used where present but is not required
SELECT count(*) AS requires FROM pg_depend d JOIN pg_extension e ON e.oid = d.objid
WHERE e.extname = 'personalize' AND d.refclassid = 'pg_extension'::regclass;
