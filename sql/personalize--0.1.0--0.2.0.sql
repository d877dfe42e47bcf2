-- personalize 0.1.0 -> 0.2.0 (see CHANGELOG.md). Run by ALTER EXTENSION personalize UPDATE.
--
-- Every name is schema-qualified (@extschema@ or pg_catalog). A fresh install of 0.2.0
-- (built from sql/parts/) must equal 0.1.0 plus this script: test/scripts/upgrade.sh
-- proves it on every run. Functions that exist in 0.1.0 are replaced in place (same
-- signature); new ones are created and, as in a fresh install, not granted to PUBLIC.
-- Nothing is rebuilt and no user row is touched.

\echo Use "ALTER EXTENSION personalize UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------------
-- Refresh: every run of refresh() logged, a failed one with its error
------------------------------------------------------------------------------

ALTER TABLE @extschema@.maintenance_runs
    ADD COLUMN status text NOT NULL DEFAULT 'succeeded',
    ADD COLUMN error  text,
    ADD CONSTRAINT maintenance_runs_status_check CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed']));
COMMENT ON TABLE @extschema@.maintenance_runs IS 'One row per finished rebuild(), refresh_neighbors(), refresh_popular() and refresh() run; a refresh() that failed has status failed and its error (SQLSTATE: message).';

-- The top personalize.neighbors_k neighbours of each product under each measure, from
-- the exact counts (pairs seen by at least personalize.neighbors_min_count customers):
-- what refresh stores in neighbors, and what recommend() computes on the spot for a
-- product whose list is not stored yet.
CREATE FUNCTION @extschema@._compute_neighbors(measures text[], product_ids bigint[])
    RETURNS TABLE (measure text, product_id bigint, neighbor_ids bigint[], scores double precision[], counts bigint[])
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH settings AS (
        SELECT coalesce(current_setting('personalize.neighbors_k', true), '50')::integer AS k,
               coalesce(current_setting('personalize.neighbors_min_count', true), '2')::integer AS min_count,
               (SELECT coalesce(sum(t.customers), 0)::bigint FROM @extschema@.customer_totals t) AS n_total)
    SELECT r.measure, r.p, array_agg(r.q ORDER BY r.rn), array_agg(r.s ORDER BY r.rn), array_agg(r.ab ORDER BY r.rn)
    FROM (
        SELECT s.measure, s.p, s.q, s.ab, s.s,
               row_number() OVER (PARTITION BY s.measure, s.p ORDER BY s.s DESC, s.ab DESC, s.q) AS rn
        FROM (
            SELECT m.measure, pr.p, pr.q, pr.ab,
                   @extschema@.similarity(m.measure, pr.ab, ia.customers, ib.customers,
                                          greatest(st.n_total, ia.customers, ib.customers)) AS s
            FROM settings st,
                 LATERAL (SELECT pc.product_a AS p, pc.product_b AS q, pc.customers AS ab
                          FROM @extschema@.pair_counts pc
                          WHERE pc.product_a = ANY (product_ids) AND pc.customers >= st.min_count
                          UNION ALL
                          SELECT pc.product_b, pc.product_a, pc.customers
                          FROM @extschema@.pair_counts pc
                          WHERE pc.product_b = ANY (product_ids) AND pc.customers >= st.min_count) pr
            JOIN @extschema@.item_counts ia ON ia.product_id = pr.p
            JOIN @extschema@.item_counts ib ON ib.product_id = pr.q
            CROSS JOIN unnest(measures) AS m(measure)
        ) s
        WHERE s.s > 0
    ) r, settings st
    WHERE r.rn <= st.k
    GROUP BY r.measure, r.p
$$;

-- The all-time bestsellers among active products, by distinct customers (item_counts):
-- the second part of the popularity list, and what recommend() serves before the first
-- refresh_popular().
CREATE FUNCTION @extschema@._popular_all_time(n integer)
    RETURNS TABLE (product_id bigint, customers bigint)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ic.product_id, ic.customers FROM @extschema@.item_counts ic
    JOIN @extschema@.products p ON p.product_id = ic.product_id AND p.active
    ORDER BY ic.customers DESC, ic.product_id LIMIT n
$$;

-- Recompute the top-K neighbour lists of up to max_products dirty products (all products
-- with all_products), logging the run unless log_run is false (refresh() logs its own).
CREATE OR REPLACE FUNCTION @extschema@._refresh_neighbors(max_products integer, all_products boolean, log_run boolean)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    measures text[];
    batch bigint[];
    done bigint := 0;
    started timestamptz := clock_timestamp();
    last_notice timestamptz := clock_timestamp();
BEGIN
    IF max_products IS NOT NULL AND max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_products),
                  HINT = 'Pass NULL to refresh every dirty product.';
    END IF;
    IF all_products THEN
        INSERT INTO @extschema@.dirty_products (product_id)
        SELECT product_id FROM @extschema@.item_counts ORDER BY product_id
        ON CONFLICT (product_id) DO NOTHING;
        -- the 'content' lists (embed_products) do not depend on co-occurrence: kept
        DELETE FROM @extschema@.neighbors n
        WHERE n.measure OPERATOR(pg_catalog.<>) 'content'
          AND NOT EXISTS (SELECT FROM @extschema@.item_counts i WHERE i.product_id = n.product_id);
    END IF;
    SELECT array_agg(DISTINCT m ORDER BY m) INTO measures
    FROM (SELECT @extschema@._validate_variant(v.name, v.algorithm, v.params) AS m
          FROM @extschema@.variants v) s
    WHERE m IS NOT NULL;
    LOOP
        WITH d AS (
            DELETE FROM @extschema@.dirty_products dp
            WHERE dp.product_id IN (SELECT x.product_id FROM @extschema@.dirty_products x
                                    ORDER BY x.product_id
                                    LIMIT least(500, coalesce(max_products - done, 500))
                                    FOR UPDATE SKIP LOCKED)
            RETURNING dp.product_id)
        SELECT array_agg(d.product_id ORDER BY d.product_id) INTO batch FROM d;
        EXIT WHEN batch IS NULL;

        DELETE FROM @extschema@.neighbors n
        WHERE n.product_id = ANY (batch) AND n.measure OPERATOR(pg_catalog.<>) 'content';
        IF measures IS NOT NULL THEN
            INSERT INTO @extschema@.neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT c.measure, c.product_id, c.neighbor_ids, c.scores, c.counts
            FROM @extschema@._compute_neighbors(measures, batch) c;
        END IF;
        done := done + cardinality(batch);
        IF clock_timestamp() - last_notice > interval '5 seconds' THEN
            RAISE NOTICE 'refresh_neighbors: % products refreshed, % still dirty', done,
                (SELECT count(*) FROM @extschema@.dirty_products);
            last_notice := clock_timestamp();
        END IF;
        EXIT WHEN max_products IS NOT NULL AND done >= max_products;
    END LOOP;
    IF log_run THEN
        INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
        VALUES ('refresh_neighbors', started, done, jsonb_build_object('measures', measures, 'all_products', all_products,
                                  'k', coalesce(current_setting('personalize.neighbors_k', true), '50')::integer));
    END IF;
    RETURN done;
END $$;

-- Recompute the popularity list as of a time.
CREATE OR REPLACE FUNCTION @extschema@.refresh_popular(window_length interval DEFAULT '7 days', as_of timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t_end timestamptz := coalesce(as_of, nullif(current_setting('personalize.as_of', true), '')::timestamptz, now());
    started timestamptz := clock_timestamp();
    n bigint;
BEGIN
    IF window_length IS NULL OR window_length <= interval '0' THEN
        RAISE EXCEPTION 'window_length must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(window_length::text, 'NULL')),
                  HINT = 'For example interval ''7 days''.';
    END IF;
    -- one refresh at a time (readers keep reading the old list until we commit)
    LOCK TABLE @extschema@.popular IN EXCLUSIVE MODE;
    DELETE FROM @extschema@.popular;
    INSERT INTO @extschema@.popular (rank, product_id, customers, share, source, window_start, window_end)
    SELECT row_number() OVER (ORDER BY y.src, y.n DESC, y.product_id), y.product_id, y.n,
           y.n::double precision / max(y.n) OVER (PARTITION BY y.src),
           CASE y.src WHEN 1 THEN 'window' ELSE 'all_time' END, t_end - window_length, t_end
    FROM (
        SELECT DISTINCT ON (x.product_id) x.src, x.product_id, x.n
        FROM (
            SELECT 1 AS src, w.product_id, w.n FROM (
                SELECT i.product_id, count(DISTINCT i.customer_id) AS n
                FROM @extschema@.interactions i
                JOIN @extschema@.products p ON p.product_id = i.product_id AND p.active
                WHERE i.occurred_at > t_end - window_length AND i.occurred_at <= t_end
                GROUP BY i.product_id ORDER BY n DESC, i.product_id LIMIT 1000) w
            UNION ALL
            SELECT 2, a.product_id, a.customers FROM @extschema@._popular_all_time(1000) a
        ) x
        ORDER BY x.product_id, x.src
    ) y
    ORDER BY 1 LIMIT 1000;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM @extschema@.popular_scores;
    INSERT INTO @extschema@.popular_scores (product_ids, scores, window_days)
    SELECT coalesce(array_agg(p.product_id ORDER BY p.rank), '{}'),
           coalesce(array_agg(CASE p.source WHEN 'window' THEN 0.5 + 0.5 * p.share ELSE 0.5 * p.share END
                              ORDER BY p.rank), '{}'),
           extract(epoch FROM window_length)::double precision / 86400
    FROM @extschema@.popular p;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('refresh_popular', started, n, jsonb_build_object('window', window_length, 'as_of', t_end));
    RETURN n;
END $$;

-- Periodic upkeep: neighbour lists of dirty products, then popularity. Commits after
-- every batch of 100 products, so that writers re-marking a product dirty wait at
-- most one batch (a procedure with COMMIT cannot have a SET clause: search_path is
-- set for each transaction instead). Every run leaves a maintenance_runs row: a
-- failed one (an error, a cancel, a statement_timeout) with status failed and its
-- error, then the error is raised again so that pg_cron records it too. The work
-- committed before the failure stays.
CREATE OR REPLACE PROCEDURE @extschema@.refresh()
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    n bigint;
    done bigint := 0;
    popular bigint;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
BEGIN
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        BEGIN
            n := @extschema@._refresh_neighbors(100, false, false);
            IF n < 100 THEN
                popular := @extschema@.refresh_popular();
            END IF;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                    e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
        END;
        EXIT WHEN e_state IS NOT NULL;
        done := done + n;
        EXIT WHEN n < 100;
        COMMIT;
    END LOOP;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details, status, error)
    VALUES ('refresh', started, done, pg_catalog.jsonb_build_object('neighbor_lists', done, 'popular', popular),
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The lists refreshed before the error are kept; the next run continues with the rest.');
    END IF;
END $$;
COMMENT ON PROCEDURE @extschema@.refresh() IS 'Refresh dirty neighbour lists (committing every 100 products) and the popularity list; what the scheduled job runs. Logs every run, a failed one with its error, in maintenance_runs. CALL it outside a transaction block.';

------------------------------------------------------------------------------
-- Variants: a new variant is servable at once (recommend() computes missing lists live)
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.create_variant(name text, algorithm text, params jsonb DEFAULT '{}')
    RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    needs_measure text;
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid variant name %', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A variant name is 1 to 63 lower-case letters, digits and underscores, starting with a letter.',
                  HINT = 'For example ''cooc_jaccard''.';
    END IF;
    needs_measure := @extschema@._validate_variant(name, algorithm, coalesce(params, '{}'));
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = create_variant.name) THEN
        RAISE EXCEPTION 'variant "%" already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Drop it first with personalize.drop_variant(), or pick another name.';
    END IF;
    IF needs_measure IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.neighbors n WHERE n.measure = needs_measure LIMIT 1)
       AND EXISTS (SELECT FROM @extschema@.item_counts LIMIT 1) THEN
        INSERT INTO @extschema@.dirty_products (product_id)
        SELECT ic.product_id FROM @extschema@.item_counts ic ORDER BY ic.product_id ON CONFLICT (product_id) DO NOTHING;
        RAISE NOTICE 'variant "%" is served from live counts until the next refresh stores its "%" lists', name, needs_measure
            USING DETAIL = 'Every product was marked for refresh; until then recommend() computes the lists it needs on the spot (reason "... (live)").',
                  HINT = 'Run CALL personalize.refresh(), or wait for the scheduled refresh.';
    END IF;
    INSERT INTO @extschema@.variants (name, algorithm, params) VALUES (name, algorithm, coalesce(params, '{}'));
    RETURN name;
END $$;

------------------------------------------------------------------------------
-- Scheduling from the shop's own database; jobs named personalize-<what>@<database>
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

CREATE OR REPLACE FUNCTION @extschema@._cron_schedule(job text, schedule text, command text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text := job || '@' || current_database();
BEGIN
    IF @extschema@._cron_setting('use_background_workers') = 'off' THEN
        RAISE NOTICE 'pg_cron will run % over a new connection to this database, as %', command, current_user
            USING DETAIL = 'With cron.use_background_workers = off, pg_cron connects like a client (cron.host, default localhost): without a password in the server''s ~/.pgpass or a trust/peer rule in pg_hba.conf, every run fails with "connection failed" (cron.job_run_details).',
                  HINT = 'Set cron.use_background_workers = on (a restart), or provide the password; then check that the first run succeeded.';
    END IF;
    IF @extschema@._cron_database(command) = current_database() THEN
        RETURN cron.schedule(name, schedule, command);
    END IF;
    RETURN @extschema@._cron_remote('schedule', name, schedule, command);
END $$;

-- true if the job existed and was removed, false if there was none (or pg_cron is not loaded)
CREATE OR REPLACE FUNCTION @extschema@._cron_unschedule(job text) RETURNS boolean
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

COMMENT ON FUNCTION @extschema@.schedule_refresh(text) IS 'Schedule CALL personalize.refresh() with pg_cron (job personalize-refresh@<database>, run in this database); returns the job id.';
COMMENT ON FUNCTION @extschema@.schedule_llm_refresh(text) IS 'Schedule CALL personalize.llm_refresh() with pg_cron (job personalize-llm-refresh@<database>, run in this database); returns the job id.';
COMMENT ON FUNCTION @extschema@.schedule_llm_batch(text) IS 'Schedule CALL personalize.llm_batch_submit() with pg_cron (job personalize-llm-batch-submit@<database>, run in this database); returns the job id.';
COMMENT ON FUNCTION @extschema@.schedule_llm_batch_poll(text) IS 'Schedule CALL personalize.llm_batch_poll() with pg_cron (job personalize-llm-batch-poll@<database>, run in this database); returns the job id.';
COMMENT ON FUNCTION @extschema@.schedule_embed_products(text) IS 'Schedule CALL personalize.embed_products() with pg_cron (job personalize-embed-products@<database>, run in this database); returns the job id.';

-- 0.1.0 named its jobs personalize-<what> and could only schedule them in pg_cron's own
-- database: those of this database get their new name, so unschedule_*() finds them
DO $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        UPDATE cron.job j SET jobname = j.jobname || '@' || current_database()
        WHERE j.jobname IN ('personalize-refresh', 'personalize-llm-refresh', 'personalize-llm-batch-submit',
                            'personalize-llm-batch-poll', 'personalize-embed-products')
          AND j.database = current_database();
    END IF;
END $$;

------------------------------------------------------------------------------
-- Lifecycle: DROP EXTENSION personalize (DROP SCHEMA personalize, DROP OWNED BY
-- its owner) never deletes the shop's data without a confirmation (src/lifecycle.c): while
-- products, customers or interactions hold rows it is refused unless
-- personalize.allow_drop_with_data is on; a drop that goes ahead first removes
-- this database's personalize-* pg_cron jobs. See "Uninstalling" in
-- docs/reference.md.
------------------------------------------------------------------------------

-- not SECURITY DEFINER: it asks whether the current role may drop the extension at all
CREATE FUNCTION @extschema@._guard_drop() RETURNS event_trigger
    LANGUAGE c SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_guard_drop';
COMMENT ON FUNCTION @extschema@._guard_drop() IS
    'Event trigger: refuses DROP EXTENSION/SCHEMA personalize (and DROP OWNED BY its owner) while the shop''s data is there, unless personalize.allow_drop_with_data is on.';
CREATE EVENT TRIGGER personalize_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION @extschema@._guard_drop();
-- also under session_replication_role = replica (a restore or a replica's apply worker)
ALTER EVENT TRIGGER personalize_guard_drop ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER personalize_guard_drop IS
    'personalize: DROP EXTENSION personalize keeps the shop''s data unless personalize.allow_drop_with_data is on.';

------------------------------------------------------------------------------
-- Privileges of the new functions: as in a fresh install, nothing for PUBLIC
------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@._compute_neighbors(text[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._popular_all_time(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_remote(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_database(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_setting(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_unschedule_all() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._guard_drop() FROM PUBLIC;

------------------------------------------------------------------------------
-- Hardening (issue 10): interactions.occurred_at within [1990-01-01, 2200-01-01) UTC
-- (no +-infinity, no 0001-01-01 "zero time"). Events outside it stop the update with a
-- count and how to fix them: their rows are the shop's, never changed here. The constraint
-- is written exactly as in
-- sql/parts/catalog.sql (a fresh install and an updated one are the same).
------------------------------------------------------------------------------
DO $$
DECLARE
    n bigint;
    lo timestamptz;
    hi timestamptz;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT count(*), min(i.occurred_at), max(i.occurred_at) INTO n, lo, hi
    FROM @extschema@.interactions i
    WHERE i.occurred_at < '1990-01-01 00:00:00+00'::timestamptz
       OR i.occurred_at >= '2200-01-01 00:00:00+00'::timestamptz;
    IF n > 0 THEN
        RAISE EXCEPTION 'cannot update personalize: % interactions have occurred_at outside the supported range', n
            USING ERRCODE = 'check_violation',
                  DETAIL = format('personalize 0.2.0 accepts occurred_at from 1990-01-01 00:00 UTC up to (not including) 2200-01-01 00:00 UTC; the rows outside it lie between %s and %s.', lo, hi),
                  HINT = 'Correct or delete them (they are SELECT * FROM @extschema@.interactions WHERE occurred_at < ''1990-01-01 00:00+00'' OR occurred_at >= ''2200-01-01 00:00+00''), then run ALTER EXTENSION personalize UPDATE again.';
    END IF;
END $$;
ALTER TABLE @extschema@.interactions ADD CONSTRAINT interactions_occurred_at_range CHECK (
        occurred_at OPERATOR(pg_catalog.>=) '1990-01-01 00:00:00+00'::pg_catalog.timestamptz
        AND occurred_at OPERATOR(pg_catalog.<) '2200-01-01 00:00:00+00'::pg_catalog.timestamptz);
