------------------------------------------------------------------------------
-- Scheduling with pg_cron: every schedule_*/unschedule_* pair
------------------------------------------------------------------------------

-- pg_cron plumbing shared by every schedule_* function: a clear error with a hint where
-- pg_cron is not installed in this database
CREATE FUNCTION @extschema@._cron_schedule(job text, schedule text, command text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('The job %s is scheduled with pg_cron.', job),
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name to this database, run CREATE EXTENSION pg_cron; or run %s from your own scheduler.', command);
    END IF;
    RETURN cron.schedule(job, schedule, command);
END $$;

CREATE FUNCTION @extschema@._cron_unschedule(job text) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = 'feature_not_supported', HINT = 'Nothing is scheduled without pg_cron.';
    END IF;
    RETURN cron.unschedule(job);
END $$;

CREATE FUNCTION @extschema@.schedule_refresh(schedule text DEFAULT '* * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-refresh', schedule, 'CALL personalize.refresh()');
COMMENT ON FUNCTION @extschema@.schedule_refresh(text) IS 'Schedule CALL personalize.refresh() with pg_cron (job name personalize-refresh); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_refresh() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-refresh');
COMMENT ON FUNCTION @extschema@.unschedule_refresh() IS 'Remove the pg_cron job that schedule_refresh() created.';

CREATE FUNCTION @extschema@.schedule_llm_refresh(schedule text DEFAULT '0 3 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-refresh', schedule, 'CALL personalize.llm_refresh()');
COMMENT ON FUNCTION @extschema@.schedule_llm_refresh(text) IS 'Schedule CALL personalize.llm_refresh() with pg_cron (job personalize-llm-refresh); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_refresh() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-refresh');
COMMENT ON FUNCTION @extschema@.unschedule_llm_refresh() IS 'Remove the pg_cron job of schedule_llm_refresh().';

CREATE FUNCTION @extschema@.schedule_llm_batch(schedule text DEFAULT '0 2 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-batch-submit', schedule, 'CALL personalize.llm_batch_submit()');
COMMENT ON FUNCTION @extschema@.schedule_llm_batch(text) IS 'Schedule CALL personalize.llm_batch_submit() with pg_cron (job personalize-llm-batch-submit); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_batch() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-batch-submit');
COMMENT ON FUNCTION @extschema@.unschedule_llm_batch() IS 'Remove the pg_cron job of schedule_llm_batch().';

CREATE FUNCTION @extschema@.schedule_llm_batch_poll(schedule text DEFAULT '*/10 * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-llm-batch-poll', schedule, 'CALL personalize.llm_batch_poll()');
COMMENT ON FUNCTION @extschema@.schedule_llm_batch_poll(text) IS 'Schedule CALL personalize.llm_batch_poll() with pg_cron (job personalize-llm-batch-poll); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_llm_batch_poll() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-llm-batch-poll');
COMMENT ON FUNCTION @extschema@.unschedule_llm_batch_poll() IS 'Remove the pg_cron job of schedule_llm_batch_poll().';

CREATE FUNCTION @extschema@.schedule_embed_products(schedule text DEFAULT '30 * * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-embed-products', schedule, 'CALL personalize.embed_products()');
COMMENT ON FUNCTION @extschema@.schedule_embed_products(text) IS 'Schedule CALL personalize.embed_products() with pg_cron (job personalize-embed-products); returns the job id.';
CREATE FUNCTION @extschema@.unschedule_embed_products() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-embed-products');
COMMENT ON FUNCTION @extschema@.unschedule_embed_products() IS 'Remove the pg_cron job of schedule_embed_products().';
