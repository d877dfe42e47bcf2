------------------------------------------------------------------------------
-- Retention and archival (issue 11), pg_partman style: one row per target in
-- personalize.retention, applied by CALL personalize.maintenance() (scheduled with
-- schedule_maintenance()). Old events are either forgotten (deleted: the model
-- subtracts them) or archived (moved to interactions_archive: the model keeps them).
------------------------------------------------------------------------------

-- Archived events: the columns of interactions, plus when they were archived. They keep
-- counting in the model: its trigger recomputes the (customer, product) rows any change
-- touches from interactions and this table together (src/trigger.c), so no flag or
-- privilege decides whether the model follows a statement. User data: dumped.
CREATE TABLE @extschema@.interactions_archive (
    interaction_id bigint PRIMARY KEY,
    customer_id    bigint NOT NULL REFERENCES @extschema@.customers (customer_id),
    product_id     bigint NOT NULL REFERENCES @extschema@.products (product_id),
    event_type     text NOT NULL REFERENCES @extschema@.event_types (event_type),
    quantity       integer NOT NULL,
    occurred_at    timestamptz NOT NULL,
    event_key      text,
    archived_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.interactions_archive IS 'Events moved out of interactions by archive_events() (retention mode archive): they no longer load the event log but still count in the model; forget_customer() erases them too.';
COMMENT ON COLUMN @extschema@.interactions_archive.interaction_id IS 'The event''s id in interactions, kept: its order still decides which products are in-model (cap rule).';
COMMENT ON COLUMN @extschema@.interactions_archive.customer_id IS 'Who (references customers); forget_customer() erases the row, merge_customers() moves it.';
COMMENT ON COLUMN @extschema@.interactions_archive.product_id IS 'Which product (references products).';
COMMENT ON COLUMN @extschema@.interactions_archive.event_type IS 'What happened (references event_types).';
COMMENT ON COLUMN @extschema@.interactions_archive.quantity IS 'How many, as it was in interactions.';
COMMENT ON COLUMN @extschema@.interactions_archive.occurred_at IS 'When, as it was in interactions (the archive holds the events older than the retention''s keep).';
COMMENT ON COLUMN @extschema@.interactions_archive.event_key IS 'The event''s idempotency key, as it was in interactions (not unique here).';
COMMENT ON COLUMN @extschema@.interactions_archive.archived_at IS 'When archive_events() moved the event here.';
CREATE INDEX interactions_archive_customer_product_idx ON @extschema@.interactions_archive (customer_id, product_id);
CREATE INDEX interactions_archive_product_idx ON @extschema@.interactions_archive (product_id);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.interactions_archive', '');

CREATE FUNCTION @extschema@._archive_trigger() RETURNS trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_archive_trigger';
CREATE TRIGGER interactions_archive_model_insert AFTER INSERT ON @extschema@.interactions_archive
    REFERENCING NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._archive_trigger();
CREATE TRIGGER interactions_archive_model_delete AFTER DELETE ON @extschema@.interactions_archive
    REFERENCING OLD TABLE AS personalize_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._archive_trigger();
CREATE TRIGGER interactions_archive_model_update AFTER UPDATE ON @extschema@.interactions_archive
    REFERENCING OLD TABLE AS personalize_old NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._archive_trigger();
CREATE TRIGGER interactions_archive_model_truncate AFTER TRUNCATE ON @extschema@.interactions_archive
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._archive_trigger();

-- The retention config is in two pieces so that pg_dump keeps what a DBA changed: the
-- defaults live in code (_retention_defaults()), the DBA's changes in retention_settings (one
-- row per changed target, dumped whole: it is empty after CREATE EXTENSION, so a restore's
-- rows collide with nothing). personalize.retention, the view DBAs read and UPDATE, shows
-- the effective setting of every target; its INSTEAD OF trigger writes retention_settings.
CREATE FUNCTION @extschema@._retention_defaults()
    RETURNS TABLE (target text, keep interval, mode text, batch_size integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    -- defaults that delete none of the user's data: events, archived events and exposures are
    -- kept forever; the extension's own run logs 90 days
    VALUES ('archived_events', NULL::interval, NULL::text, 10000), ('events', NULL, 'archive', 10000),
           ('exposures', NULL, NULL, 10000), ('impressions', '90 days', NULL, 10000),
           ('ingest_batches', '90 days', NULL, 10000),
           ('llm_rejections', '90 days', NULL, 10000), ('llm_runs', '90 days', NULL, 10000),
           ('maintenance_runs', '90 days', NULL, 10000)
$$;
COMMENT ON FUNCTION @extschema@._retention_defaults() IS 'The default retention setting of every target (personalize.retention shows them where retention_settings holds no row).';

CREATE TABLE @extschema@.retention_settings (
    target     text PRIMARY KEY,
    keep       interval,
    mode       text,
    batch_size integer NOT NULL DEFAULT 10000,
    CONSTRAINT retention_target_check CHECK (target OPERATOR(pg_catalog.=) ANY (ARRAY['events', 'archived_events',
        'exposures', 'maintenance_runs', 'llm_runs', 'llm_rejections', 'ingest_batches', 'impressions'])),
    CONSTRAINT retention_keep_check CHECK (keep OPERATOR(pg_catalog.>) '0'::interval),
    CONSTRAINT retention_mode_check CHECK ((target OPERATOR(pg_catalog.=) 'events' AND mode OPERATOR(pg_catalog.=) ANY (ARRAY['forget', 'archive']))
                                           OR (target OPERATOR(pg_catalog.<>) 'events' AND mode IS NULL)),
    CONSTRAINT retention_batch_size_check CHECK (batch_size OPERATOR(pg_catalog.>=) 1
                                                 AND batch_size OPERATOR(pg_catalog.<=) 1000000)
);
COMMENT ON TABLE @extschema@.retention_settings IS 'The retention settings a DBA changed, one row per target (written through UPDATE personalize.retention; a target without a row has its default). Dumped: a restore keeps them.';
COMMENT ON COLUMN @extschema@.retention_settings.target IS 'The target (see personalize.retention).';
COMMENT ON COLUMN @extschema@.retention_settings.keep IS 'Age beyond which maintenance() removes a row; NULL keeps every row.';
COMMENT ON COLUMN @extschema@.retention_settings.mode IS 'events only: forget or archive.';
COMMENT ON COLUMN @extschema@.retention_settings.batch_size IS 'Rows per transaction.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.retention_settings', '');

CREATE VIEW @extschema@.retention AS
SELECT d.target,
       CASE WHEN s.target IS NULL THEN d.keep ELSE s.keep END AS keep,
       CASE WHEN s.target IS NULL THEN d.mode ELSE s.mode END AS mode,
       CASE WHEN s.target IS NULL THEN d.batch_size ELSE s.batch_size END AS batch_size,
       s.target IS NOT NULL AS changed
FROM @extschema@._retention_defaults() d
LEFT JOIN @extschema@.retention_settings s ON s.target OPERATOR(pg_catalog.=) d.target;
COMMENT ON VIEW @extschema@.retention IS 'What maintenance() removes: per target, rows older than keep (NULL: keep forever), batch_size rows per transaction. Change keep, mode and batch_size with UPDATE (kept by pg_dump); DELETE restores a target''s defaults; the targets are fixed.';
COMMENT ON COLUMN @extschema@.retention.target IS 'events (interactions), archived_events (interactions_archive, forgotten), exposures (of experiments stopped longer ago than keep), maintenance_runs, llm_runs (finished, and no longer serving llm_recommendations), llm_rejections, ingest_batches (with their ingest_rejects), impressions (the opt-in impression log).';
COMMENT ON COLUMN @extschema@.retention.keep IS 'Age (occurred_at, archived_at, stopped_at, finished_at, rejected_at, started_at, shown_at) beyond which maintenance() removes a row; NULL keeps every row.';
COMMENT ON COLUMN @extschema@.retention.mode IS 'events only: forget (delete; the model subtracts them) or archive (move to interactions_archive; the model keeps them).';
COMMENT ON COLUMN @extschema@.retention.batch_size IS 'Rows per transaction (maintenance() commits after each batch).';
COMMENT ON COLUMN @extschema@.retention.changed IS 'Whether the setting differs from the default (a row of retention_settings, which pg_dump keeps).';

-- UPDATE and DELETE of personalize.retention: a setting equal to the default removes the
-- target's row of retention_settings, any other is written there (its CHECKs apply);
-- DELETE restores the defaults. SECURITY DEFINER: whoever may UPDATE the view may change
-- the settings without privileges on retention_settings.
CREATE FUNCTION @extschema@._retention_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
BEGIN
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.target IS DISTINCT FROM OLD.target) THEN
        RAISE EXCEPTION 'the targets of personalize.retention are fixed'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('Got %s of target %s.', lower(TG_OP), coalesce(NEW.target, 'NULL')),
                  HINT = 'UPDATE personalize.retention SET keep = ..., mode = ..., batch_size = ... WHERE target = ...;';
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM @extschema@.retention_settings s WHERE s.target = OLD.target;
        RETURN OLD;
    END IF;
    SELECT * INTO d FROM @extschema@._retention_defaults() x WHERE x.target = NEW.target;
    IF (NEW.keep, NEW.mode, NEW.batch_size) IS NOT DISTINCT FROM (d.keep, d.mode, d.batch_size) THEN
        DELETE FROM @extschema@.retention_settings s WHERE s.target = NEW.target;
        NEW.changed := false;
    ELSE
        INSERT INTO @extschema@.retention_settings AS s (target, keep, mode, batch_size)
        VALUES (NEW.target, NEW.keep, NEW.mode, NEW.batch_size)
        ON CONFLICT (target) DO UPDATE SET keep = EXCLUDED.keep, mode = EXCLUDED.mode, batch_size = EXCLUDED.batch_size;
        NEW.changed := true;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER retention_write INSTEAD OF INSERT OR UPDATE OR DELETE ON @extschema@.retention
    FOR EACH ROW EXECUTE FUNCTION @extschema@._retention_write();

-- Move at most batch_size events that occurred before older_than from interactions to the
-- archive, oldest first, in one statement: the model does not change (its triggers recompute
-- the touched rows from both tables and find the same counts). Returns the events moved.
CREATE FUNCTION @extschema@.archive_events(older_than timestamptz, batch_size integer DEFAULT 10000)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'archive_events needs a cut-off time and a positive batch size'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got older_than %s, batch_size %s.', coalesce(older_than::text, 'NULL'), coalesce(batch_size::text, 'NULL')),
                  HINT = 'For example: SELECT personalize.archive_events(now() - interval ''1 year'');';
    END IF;
    WITH moved AS (
        DELETE FROM @extschema@.interactions i
         WHERE i.interaction_id IN (SELECT o.interaction_id FROM @extschema@.interactions o
                                    WHERE o.occurred_at < older_than
                                    ORDER BY o.occurred_at, o.interaction_id LIMIT batch_size)
        RETURNING i.interaction_id, i.customer_id, i.product_id, i.event_type, i.quantity, i.occurred_at, i.event_key)
    INSERT INTO @extschema@.interactions_archive
        (interaction_id, customer_id, product_id, event_type, quantity, occurred_at, event_key)
    SELECT m.interaction_id, m.customer_id, m.product_id, m.event_type, m.quantity, m.occurred_at, m.event_key
    FROM moved m;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION @extschema@.archive_events(timestamptz, integer) IS
    'Move at most batch_size events older than older_than (oldest first) from interactions to interactions_archive in one statement; the model keeps their contribution. Returns the number moved.';

-- One batch of one retention target: the rows it removed (or moved).
CREATE FUNCTION @extschema@._retention_batch(target text, cutoff timestamptz, mode text, batch_size integer)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    CASE target
    WHEN 'events' THEN
        IF mode = 'archive' THEN
            RETURN @extschema@.archive_events(cutoff, batch_size);
        END IF;
        DELETE FROM @extschema@.interactions i
         WHERE i.interaction_id IN (SELECT o.interaction_id FROM @extschema@.interactions o WHERE o.occurred_at < cutoff
                                    ORDER BY o.occurred_at, o.interaction_id LIMIT batch_size);
    WHEN 'archived_events' THEN
        DELETE FROM @extschema@.interactions_archive a
         WHERE a.interaction_id IN (SELECT o.interaction_id FROM @extschema@.interactions_archive o WHERE o.archived_at < cutoff
                                    ORDER BY o.archived_at, o.interaction_id LIMIT batch_size);
    WHEN 'exposures' THEN
        DELETE FROM @extschema@.exposures x
         WHERE x.exposure_id IN (SELECT o.exposure_id FROM @extschema@.exposures o
                                 JOIN @extschema@.experiments e ON e.experiment_id = o.experiment_id
                                 WHERE e.status = 'stopped' AND e.stopped_at < cutoff LIMIT batch_size);
    WHEN 'maintenance_runs' THEN
        DELETE FROM @extschema@.maintenance_runs r
         WHERE r.run_id IN (SELECT o.run_id FROM @extschema@.maintenance_runs o WHERE o.finished_at < cutoff
                            ORDER BY o.run_id LIMIT batch_size);
    WHEN 'llm_runs' THEN
        DELETE FROM @extschema@.llm_runs r
         WHERE r.run_id IN (SELECT o.run_id FROM @extschema@.llm_runs o
                            WHERE o.status <> 'running' AND coalesce(o.finished_at, o.started_at) < cutoff
                              AND NOT EXISTS (SELECT FROM @extschema@.llm_recommendations l WHERE l.run_id = o.run_id)
                            ORDER BY o.run_id LIMIT batch_size);
    WHEN 'llm_rejections' THEN
        DELETE FROM @extschema@.llm_rejections r
         WHERE r.rejection_id IN (SELECT o.rejection_id FROM @extschema@.llm_rejections o WHERE o.rejected_at < cutoff
                                  ORDER BY o.rejection_id LIMIT batch_size);
    WHEN 'ingest_batches' THEN
        -- their rejects go with them (ON DELETE CASCADE)
        DELETE FROM @extschema@.ingest_batches b
         WHERE b.batch_id IN (SELECT o.batch_id FROM @extschema@.ingest_batches o WHERE o.started_at < cutoff
                              ORDER BY o.batch_id LIMIT batch_size);
    WHEN 'impressions' THEN
        DELETE FROM @extschema@.impressions m
         WHERE m.impression_id IN (SELECT o.impression_id FROM @extschema@.impressions o WHERE o.shown_at < cutoff
                                   ORDER BY o.shown_at, o.impression_id LIMIT batch_size);
    END CASE;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Apply personalize.retention: each target in batches, one transaction each (so no lock
-- is held for long and a long run keeps what it did), NOTICEs as it goes, and one
-- maintenance_runs row (job 'maintenance', status, error, rows per target). A failing
-- target is recorded and the others still run; the call then fails with the first error.
-- A procedure without SET clauses (they would forbid its COMMITs): every name is qualified.
CREATE PROCEDURE @extschema@.maintenance()
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
    r record;
    n bigint;
    total bigint;
    all_rows bigint := 0;
    done jsonb := '{}';
    errors text[] := '{}';
    first_state text;
    msg text;
    st text;
BEGIN
    FOR r IN SELECT t.target, t.keep, t.mode, t.batch_size FROM @extschema@.retention t
             WHERE t.keep IS NOT NULL ORDER BY t.target LOOP
        total := 0;
        LOOP
            BEGIN
                n := @extschema@._retention_batch(r.target, pg_catalog.now() OPERATOR(pg_catalog.-) r.keep, r.mode, r.batch_size);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, st = RETURNED_SQLSTATE;
                errors := errors OPERATOR(pg_catalog.||) pg_catalog.format('%s: %s: %s', r.target, st, msg);
                first_state := coalesce(first_state, st);
                RAISE WARNING 'maintenance: % failed: %', r.target, msg;
                n := NULL;
            END;
            EXIT WHEN n IS NULL;
            total := total OPERATOR(pg_catalog.+) n;
            COMMIT;
            IF n OPERATOR(pg_catalog.>) 0 THEN
                RAISE NOTICE 'maintenance: % (%, older than %): % rows so far', r.target,
                    coalesce(r.mode, 'delete'), r.keep, total;
            END IF;
            EXIT WHEN n OPERATOR(pg_catalog.<) r.batch_size;
        END LOOP;
        done := done OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(r.target, total);
        all_rows := all_rows OPERATOR(pg_catalog.+) total;
    END LOOP;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details, status, error)
    VALUES ('maintenance', started, all_rows, pg_catalog.jsonb_build_object('rows', done),
            CASE WHEN pg_catalog.cardinality(errors) OPERATOR(pg_catalog.=) 0 THEN 'succeeded' ELSE 'failed' END,
            pg_catalog.array_to_string(errors, '; ')::text);
    COMMIT;
    IF first_state IS NOT NULL THEN
        RAISE EXCEPTION 'maintenance: % target(s) failed', pg_catalog.cardinality(errors)
            USING ERRCODE = first_state, DETAIL = pg_catalog.array_to_string(errors, '; '),
                  HINT = 'The other targets were applied; see personalize.maintenance_runs.';
    END IF;
    RAISE NOTICE 'maintenance: % rows in % s', all_rows,
        pg_catalog.round(EXTRACT(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)::numeric, 1);
END $$;
COMMENT ON PROCEDURE @extschema@.maintenance() IS
    'Apply personalize.retention: remove (or, for events in mode archive, move to interactions_archive) rows older than each target''s keep, batch_size rows per transaction; records a maintenance_runs row (job maintenance) with the rows per target, or status failed and the error. CALL it outside a transaction block.';

CREATE FUNCTION @extschema@.schedule_maintenance(schedule text DEFAULT '30 4 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-maintenance', schedule, 'CALL personalize.maintenance()');
COMMENT ON FUNCTION @extschema@.schedule_maintenance(text) IS 'Schedule CALL personalize.maintenance() with pg_cron (job personalize-maintenance@<database>, run in this database; default 04:30 every day); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_maintenance() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-maintenance');
COMMENT ON FUNCTION @extschema@.unschedule_maintenance() IS 'Remove the personalize-maintenance@<database> pg_cron job; false if there was none.';
