-- personalize: what the lifecycle issue (9) adds to the schema: the update path, the drop
-- guard's event trigger and setting, maintenance_runs' status and error, the new internal
-- functions and their privileges. Behaviour: test/scripts/upgrade.sh, uninstall.sh,
-- cron_shop.sh and sql/first_hour.sql.
BEGIN;
SELECT plan(26);

SELECT is((SELECT string_agg(path, ' ') FROM pg_extension_update_paths('personalize')
           WHERE source = '0.1.0' AND target = '0.2.0'), '0.1.0--0.2.0', 'an update path from 0.1.0 to 0.2.0');
SELECT is((SELECT count(*)::integer FROM pg_available_extension_versions WHERE name = 'personalize'), 2,
          'two versions are installable: the frozen 0.1.0 and 0.2.0');

-- the drop guard
SELECT is((SELECT evtevent || ' ' || evtenabled::text || ' ' || array_to_string(evttags, ',') || ' ' || evtfoid::regprocedure::text
           FROM pg_event_trigger WHERE evtname = 'personalize_guard_drop'),
          'ddl_command_start A DROP EXTENSION,DROP SCHEMA,DROP OWNED personalize._guard_drop()',
          'event trigger personalize_guard_drop: enabled always (also as a replica), before DROP EXTENSION, DROP SCHEMA and DROP OWNED');
SELECT is((SELECT count(*)::integer FROM pg_depend d JOIN pg_event_trigger t ON t.oid = d.objid
           WHERE d.classid = 'pg_event_trigger'::regclass AND d.deptype = 'e'
             AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')), 1,
          'the event trigger belongs to the extension (dropped with it)');
SELECT is(current_setting('personalize.allow_drop_with_data'), 'off', 'personalize.allow_drop_with_data is off by default');
SELECT is((SELECT context FROM pg_settings WHERE name = 'personalize.allow_drop_with_data'), 'user',
          'any role may set it for its session (dropping still needs ownership)');
SELECT is(obj_description('personalize._guard_drop()'::regprocedure, 'pg_proc') IS NOT NULL, true, '_guard_drop() has a comment');
SELECT is((SELECT prosecdef FROM pg_proc WHERE oid = 'personalize._guard_drop()'::regprocedure), false,
          '_guard_drop() runs as the role that drops (it checks that role may drop at all)');

-- maintenance_runs: status and error
SELECT columns_are('personalize', 'maintenance_runs',
    ARRAY['run_id', 'job', 'started_at', 'finished_at', 'items', 'details', 'status', 'error'],
    'maintenance_runs columns: 0.1.0''s, then status and error');
SELECT col_not_null('personalize', 'maintenance_runs', 'status', 'status is not null');
SELECT col_default_is('personalize', 'maintenance_runs', 'status', 'succeeded', 'status defaults to succeeded');
SELECT col_is_null('personalize', 'maintenance_runs', 'error', 'error is null for a run that succeeded');
SELECT throws_ok($$INSERT INTO personalize.maintenance_runs (job, started_at, items, status) VALUES ('x', now(), 0, 'running')$$,
                 '23514', NULL, 'status is succeeded or failed');

-- the new internal functions: there, and nothing for PUBLIC
SELECT has_function('personalize', '_compute_neighbors', ARRAY['text[]', 'bigint[]'], '_compute_neighbors(text[], bigint[])');
SELECT has_function('personalize', '_popular_all_time', ARRAY['integer'], '_popular_all_time(integer)');
SELECT has_function('personalize', '_cron_remote', ARRAY['text', 'text', 'text', 'text'], '_cron_remote(text, text, text, text)');
SELECT has_function('personalize', '_cron_database', ARRAY['text'], '_cron_database(text)');
SELECT has_function('personalize', '_cron_unschedule_all', '_cron_unschedule_all()');
SELECT has_function('personalize', '_cron_setting', ARRAY['text'], '_cron_setting(text)');
SELECT is(personalize._cron_setting('host'), NULL, '_cron_setting() reads only the two settings scheduling needs');
SELECT volatility_is('personalize', '_compute_neighbors', ARRAY['text[]', 'bigint[]'], 'stable', '_compute_neighbors is stable (recommend() reads it)');
SELECT volatility_is('personalize', '_popular_all_time', ARRAY['integer'], 'stable', '_popular_all_time is stable');
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
           FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
             AND p.proname IN ('_compute_neighbors', '_popular_all_time', '_cron_remote', '_cron_database',
                               '_cron_setting', '_cron_unschedule_all', '_guard_drop')
             AND has_function_privilege('public', p.oid, 'EXECUTE')), NULL,
          'none of the new functions is executable by PUBLIC');
SELECT is((SELECT count(*)::integer FROM pg_proc p WHERE p.pronamespace = 'personalize'::regnamespace
             AND p.proname IN ('_compute_neighbors', '_popular_all_time', '_cron_remote', '_cron_database',
                               '_cron_setting', '_cron_unschedule_all', '_guard_drop')), 7, 'all seven are there');

-- the computation recommend() and the refresh share: on an empty model, nothing
SELECT is((SELECT count(*)::integer FROM personalize._compute_neighbors(ARRAY['llr'], ARRAY[1::bigint, 2])), 0,
          '_compute_neighbors() on an empty model returns no list');
SELECT is((SELECT count(*)::integer FROM personalize._popular_all_time(10)), 0, '_popular_all_time() on an empty model returns nothing');

SELECT * FROM finish();
ROLLBACK;
