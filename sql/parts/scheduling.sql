------------------------------------------------------------------------------
-- Scheduling with pg_cron: every schedule_*/unschedule_* pair
------------------------------------------------------------------------------

-- pg_cron plumbing shared by every schedule_* function. A job is named
-- personalize-<what>@<database> (two databases' jobs never collide) and runs in the
-- database that scheduled it. pg_cron's functions live in the database named by
-- cron.database_name: from there they are called directly, from any other database
-- through _cron_remote() (src/cron.c: a background worker that connects to pg_cron's
-- database as the calling role and calls cron.schedule_in_database()).
CREATE FUNCTION @extschema@._cron_remote(operation text, job text, schedule text, command text) RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_cron_remote';

-- pg_cron's settings are readable by superusers (and pg_read_all_settings) only: the two
-- that scheduling needs, for the roles that may schedule
CREATE FUNCTION @extschema@._cron_setting(name text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN name IN ('database_name', 'use_background_workers')
                THEN nullif(current_setting('cron.' || name, true), '') END;

-- where pg_cron lives: its database, after a clear error when it is not loaded or not
-- installed there (only its own database can tell the second; _cron_remote() checks it)
CREATE FUNCTION @extschema@._cron_database(command text) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cron_db text := @extschema@._cron_setting('database_name');
BEGIN
    IF cron_db IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not loaded'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('%s is scheduled with pg_cron.', command),
                  HINT = format('Add pg_cron to shared_preload_libraries and restart, then CREATE EXTENSION pg_cron in the database named by cron.database_name; or run %s from your own scheduler.', command);
    END IF;
    IF cron_db = current_database() AND NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('cron.database_name is "%s", this database.', cron_db),
                  HINT = 'Run CREATE EXTENSION pg_cron in this database.';
    END IF;
    RETURN cron_db;
END $$;

CREATE FUNCTION @extschema@._cron_schedule(job text, schedule text, command text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text := job || '@' || current_database();
    cron_db text := @extschema@._cron_database(command);
BEGIN
    IF @extschema@._cron_setting('use_background_workers') = 'off' THEN
        RAISE NOTICE 'pg_cron will run % over a new connection to this database, as %', command, current_user
            USING DETAIL = 'With cron.use_background_workers = off, pg_cron connects like a client (cron.host, default localhost): without a password in the server''s ~/.pgpass or a trust/peer rule in pg_hba.conf, every run fails with "connection failed" (cron.job_run_details).',
                  HINT = 'Set cron.use_background_workers = on (a restart), or provide the password; then check that the first run succeeded.';
    END IF;
    IF cron_db = current_database() THEN
        RETURN cron.schedule(name, schedule, command);
    END IF;
    RETURN @extschema@._cron_remote('schedule', name, schedule, command);
END $$;

-- true if the job existed and was removed, false if there was none (or pg_cron is not loaded)
CREATE FUNCTION @extschema@._cron_unschedule(job text) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text := job || '@' || current_database();
    cron_db text := @extschema@._cron_setting('database_name');
BEGIN
    IF cron_db IS NULL OR (cron_db = current_database() AND NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')) THEN
        RETURN false;
    ELSIF cron_db = current_database() THEN
        RETURN (SELECT count(cron.unschedule(j.jobid)) > 0 FROM cron.job j
                WHERE j.jobname = name AND j.database = current_database());
    END IF;
    RETURN @extschema@._cron_remote('unschedule', name, NULL, NULL) > 0;
END $$;

-- Every personalize-* job of this database (DROP EXTENSION runs it): how many were
-- removed. Never stops the drop: a pg_cron that cannot be reached gets a WARNING.
CREATE FUNCTION @extschema@._cron_unschedule_all() RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cron_db text := @extschema@._cron_setting('database_name');
    msg text;
BEGIN
    IF cron_db IS NULL OR (cron_db = current_database() AND NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')) THEN
        RETURN 0;
    ELSIF cron_db = current_database() THEN
        RETURN (SELECT count(cron.unschedule(j.jobid)) FROM cron.job j
                WHERE j.jobname LIKE 'personalize-%' AND j.database = current_database());
    END IF;
    RETURN @extschema@._cron_remote('unschedule_all', NULL, NULL, NULL);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
    RAISE WARNING 'could not remove the personalize pg_cron jobs of this database: %', msg
        USING HINT = format('In database %s: SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE ''personalize-%%'' AND database = %L;',
                            coalesce(cron_db, 'postgres'), current_database());
    RETURN 0;
END $$;

CREATE FUNCTION @extschema@.schedule_refresh(schedule text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-refresh', schedule, 'CALL personalize.refresh()');
COMMENT ON FUNCTION @extschema@.schedule_refresh(text) IS 'Schedule CALL personalize.refresh() with pg_cron (job personalize-refresh@<database>, run in this database); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_refresh() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-refresh');
COMMENT ON FUNCTION @extschema@.unschedule_refresh() IS 'Remove the pg_cron job that schedule_refresh() created.';

CREATE FUNCTION @extschema@.schedule_llm_refresh(schedule text DEFAULT '0 3 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-refresh', schedule, 'CALL personalize.llm_refresh()');
COMMENT ON FUNCTION @extschema@.schedule_llm_refresh(text) IS 'Schedule CALL personalize.llm_refresh() with pg_cron (job personalize-llm-refresh@<database>, run in this database); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_refresh() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-refresh');
COMMENT ON FUNCTION @extschema@.unschedule_llm_refresh() IS 'Remove the pg_cron job of schedule_llm_refresh().';

CREATE FUNCTION @extschema@.schedule_llm_batch(schedule text DEFAULT '0 2 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-batch-submit', schedule, 'CALL personalize.llm_batch_submit()');
COMMENT ON FUNCTION @extschema@.schedule_llm_batch(text) IS 'Schedule CALL personalize.llm_batch_submit() with pg_cron (job personalize-llm-batch-submit@<database>, run in this database); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_batch() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-batch-submit');
COMMENT ON FUNCTION @extschema@.unschedule_llm_batch() IS 'Remove the pg_cron job of schedule_llm_batch().';

CREATE FUNCTION @extschema@.schedule_llm_batch_poll(schedule text DEFAULT '*/10 * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-batch-poll', schedule, 'CALL personalize.llm_batch_poll()');
COMMENT ON FUNCTION @extschema@.schedule_llm_batch_poll(text) IS 'Schedule CALL personalize.llm_batch_poll() with pg_cron (job personalize-llm-batch-poll@<database>, run in this database); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_batch_poll() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-batch-poll');
COMMENT ON FUNCTION @extschema@.unschedule_llm_batch_poll() IS 'Remove the pg_cron job of schedule_llm_batch_poll().';

CREATE FUNCTION @extschema@.schedule_embed_products(schedule text DEFAULT '30 * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-embed-products', schedule, 'CALL personalize.embed_products()');
COMMENT ON FUNCTION @extschema@.schedule_embed_products(text) IS 'Schedule CALL personalize.embed_products() with pg_cron (job personalize-embed-products@<database>, run in this database); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_embed_products() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-embed-products');
COMMENT ON FUNCTION @extschema@.unschedule_embed_products() IS 'Remove the pg_cron job of schedule_embed_products().';
