-- personalize: pg_extension_config_dump registrations, so pg_dump keeps user data.
-- The round trip itself (pg_dump -Fc | pg_restore) is test/scripts/dump_restore.sh.
BEGIN;
SELECT plan(7);

CREATE FUNCTION pg_temp.dump_config() RETURNS TABLE (rel text, relkind text, cond text) LANGUAGE sql AS $$
    SELECT c.oid::regclass::text, c.relkind::text, x.cond
    FROM pg_extension e,
         unnest(e.extconfig, e.extcondition) AS x(reloid, cond)
         JOIN pg_class c ON c.oid = x.reloid
    WHERE e.extname = 'personalize'
$$;

-- (tables a later feature derives from these, such as the co-occurrence model, are rebuilt
-- rather than dumped and are not listed here)
SELECT bag_has('SELECT rel, relkind FROM pg_temp.dump_config()',
    $$VALUES ('personalize.products', 'r'), ('personalize.customers', 'r'), ('personalize.event_types', 'r'),
             ('personalize.interactions', 'r'), ('personalize.customer_feedback', 'r'),
             ('personalize.marketing_campaigns', 'r'),
             ('personalize.interactions_interaction_id_seq', 'S'),
             ('personalize.customer_feedback_feedback_id_seq', 'S'),
             ('personalize.marketing_campaigns_campaign_id_seq', 'S')$$,
    'every user-data table and its identity sequence is registered with pg_extension_config_dump');
SELECT bag_has('SELECT rel FROM pg_temp.dump_config()',
    $$SELECT d.objid::regclass::text FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        AND d.refobjid::regclass::text IN (SELECT rel FROM pg_temp.dump_config() WHERE relkind = 'r')
        AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'$$,
    'every sequence owned by a dumped table is registered too, so restored tables continue their numbering');
SELECT is_empty($$SELECT rel FROM pg_temp.dump_config() WHERE rel <> 'personalize.event_types' AND cond <> ''
                    AND rel IN ('personalize.products', 'personalize.customers', 'personalize.interactions',
                                'personalize.customer_feedback', 'personalize.marketing_campaigns',
                                'personalize.interactions_interaction_id_seq', 'personalize.customer_feedback_feedback_id_seq',
                                'personalize.marketing_campaigns_campaign_id_seq')$$,
    'user-data tables and sequences are dumped whole (empty condition)');
SELECT is((SELECT cond FROM pg_temp.dump_config() WHERE rel = 'personalize.event_types'),
    $$WHERE event_type NOT IN ('view', 'click', 'cart', 'purchase')$$,
    'event_types is dumped with a filter that leaves out the four built-in types');

-- the filter, as pg_dump applies it (COPY (SELECT ... FROM event_types <condition>))
CREATE FUNCTION pg_temp.dumped_event_types() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'SELECT event_type FROM personalize.event_types '
        || (SELECT cond FROM pg_temp.dump_config() WHERE rel = 'personalize.event_types')
        || ' ORDER BY event_type COLLATE "C"';
END $$;
-- right after CREATE EXTENSION nothing passes it: a restore, whose CREATE EXTENSION ships
-- the built-ins again, would otherwise fail on a duplicate key
SELECT is_empty('SELECT * FROM pg_temp.dumped_event_types()',
    'on a fresh install the filter selects none of the rows the install script ships');
INSERT INTO personalize.event_types (event_type, weight, description) VALUES
    ('wishlist', 3, 'Added to a wish list.'), ('return', 0.5, NULL);
SELECT results_eq('SELECT * FROM pg_temp.dumped_event_types()', $$VALUES ('return'::text), ('wishlist')$$,
    'user-added event types pass the filter, so pg_dump keeps them');
-- Known, documented limitation: a changed weight of a built-in type is not dumped; after a
-- restore it is back to the shipped value and must be set again.
UPDATE personalize.event_types SET weight = 5 WHERE event_type = 'view';
SELECT results_eq('SELECT * FROM pg_temp.dumped_event_types()', $$VALUES ('return'::text), ('wishlist')$$,
    'a built-in type with a changed weight still does not pass the filter (documented limitation)');

SELECT * FROM finish();
ROLLBACK;
