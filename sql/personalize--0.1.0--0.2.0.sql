-- personalize 0.1.0 -> 0.2.0 (see CHANGELOG.md). Run by ALTER EXTENSION personalize UPDATE.
--
-- Every name is schema-qualified (@extschema@ or pg_catalog). A fresh install of 0.2.0
-- (built from sql/parts/) must equal 0.1.0 plus this script: test/scripts/upgrade.sh
-- proves it on every run. Functions that exist in 0.1.0 are replaced in place (same
-- signature); new ones are created and, as in a fresh install, not granted to PUBLIC.
-- Nothing is rebuilt and no user row is touched.

\echo Use "ALTER EXTENSION personalize UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------------
-- ==== issue 14: pending count changes (model_deltas, fold_deltas()) ====
-- The trigger appends each statement's count changes to model_deltas instead of updating
-- the count rows; the 0.1.0 count tables are renamed to *_base in place (their rows are
-- the counts, nothing is rebuilt) and item_counts / pair_counts become views that add the
-- pending changes. 0.1.0's objects bound to the tables at creation (cooccurrence_count(),
-- the views cooccurrence and model_stats) are bound to the views here. First in this
-- script, so that everything below names the views.
------------------------------------------------------------------------------

-- The counts as of the last fold (fold_deltas()). The trigger never updates them: it
-- appends each statement's changes to model_deltas, and the views item_counts and
-- pair_counts add the pending changes to these (issue 14: no hot rows, fewer index writes).
ALTER TABLE @extschema@.item_counts RENAME TO item_counts_base;
COMMENT ON TABLE @extschema@.item_counts_base IS 'Distinct customers whose in-model history holds the product, as of the last fold_deltas(); read item_counts for the exact count.';

ALTER TABLE @extschema@.pair_counts RENAME TO pair_counts_base;
COMMENT ON TABLE @extschema@.pair_counts_base IS 'Co-occurrence (product_a < product_b) as of the last fold_deltas(); read pair_counts for the exact count.';

-- Each statement's net count changes, appended by the trigger (one row per 10,000
-- changes, no index): a[i] < b[i] a pair, a[i] = b[i] a product. fold_deltas() sums them
-- into the base tables, marks their products dirty and deletes them.
CREATE TABLE @extschema@.model_deltas (
    at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    entries integer NOT NULL,
    a       bigint[] NOT NULL,
    b       bigint[] NOT NULL,
    d       bigint[] NOT NULL
);
COMMENT ON TABLE @extschema@.model_deltas IS 'Count changes of committed statements not yet folded into item_counts_base and pair_counts_base (fold_deltas(), run by the refresh): a[i] = b[i] changes product a[i]''s count by d[i], a[i] < b[i] the pair''s.';

-- The exact counts at commit: the folded base plus the pending changes.
CREATE VIEW @extschema@.item_counts AS
    SELECT x.product_id, sum(x.customers)::bigint AS customers
    FROM (SELECT ib.product_id, ib.customers FROM @extschema@.item_counts_base ib
          UNION ALL
          SELECT u.a, u.d FROM @extschema@.model_deltas m, unnest(m.a, m.b, m.d) AS u(a, b, d)
          WHERE u.a OPERATOR(pg_catalog.=) u.b) x
    GROUP BY x.product_id
    HAVING sum(x.customers) OPERATOR(pg_catalog.<>) 0;
COMMENT ON VIEW @extschema@.item_counts IS 'Distinct customers whose in-model history holds the product: exact at commit (item_counts_base plus the pending model_deltas).';

CREATE VIEW @extschema@.pair_counts AS
    SELECT x.product_a, x.product_b, sum(x.customers)::bigint AS customers
    FROM (SELECT pb.product_a, pb.product_b, pb.customers FROM @extschema@.pair_counts_base pb
          UNION ALL
          SELECT u.a, u.b, u.d FROM @extschema@.model_deltas m, unnest(m.a, m.b, m.d) AS u(a, b, d)
          WHERE u.a OPERATOR(pg_catalog.<) u.b) x
    GROUP BY x.product_a, x.product_b
    HAVING sum(x.customers) OPERATOR(pg_catalog.<>) 0;
COMMENT ON VIEW @extschema@.pair_counts IS 'Co-occurrence: distinct customers whose in-model history holds both products (stored once, product_a < product_b), exact at commit (pair_counts_base plus the pending model_deltas).';

CREATE FUNCTION @extschema@.fold_deltas(budget_kb integer DEFAULT NULL, wait boolean DEFAULT true) RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_fold_deltas';
COMMENT ON FUNCTION @extschema@.fold_deltas(integer, boolean) IS
    'Fold the committed pending count changes (model_deltas) into item_counts_base and pair_counts_base and mark their products dirty; returns how many changes it folded. One fold at a time; event writers never wait for it. budget_kb bounds its memory (NULL: maintenance_work_mem). With wait => false it returns NULL at once when another fold is running. The refresh runs it first.';

REVOKE ALL ON FUNCTION @extschema@.fold_deltas(integer, boolean) FROM PUBLIC;
-- as a fresh install's REVOKE ALL ON ALL TABLES records them
REVOKE ALL ON TABLE @extschema@.model_deltas, @extschema@.item_counts, @extschema@.pair_counts FROM PUBLIC;

-- bound to the views now
CREATE OR REPLACE FUNCTION @extschema@.cooccurrence_count(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT CASE WHEN a = b
                THEN coalesce((SELECT ic.customers FROM @extschema@.item_counts ic WHERE ic.product_id = a), 0)
                ELSE coalesce((SELECT pc.customers FROM @extschema@.pair_counts pc
                               WHERE pc.product_a = least(a, b) AND pc.product_b = greatest(a, b)), 0)
           END;
END;

CREATE OR REPLACE VIEW @extschema@.cooccurrence AS
    SELECT pc.product_a, pc.product_b, pc.customers,
           ia.customers AS customers_a, ib.customers AS customers_b
    FROM @extschema@.pair_counts pc
    JOIN @extschema@.item_counts ia ON ia.product_id = pc.product_a
    JOIN @extschema@.item_counts ib ON ib.product_id = pc.product_b;

CREATE OR REPLACE VIEW @extschema@.model_stats AS
    SELECT (SELECT sum(t.customers) FROM @extschema@.customer_totals t)::bigint AS customers,
           (SELECT count(*) FROM @extschema@.item_counts) AS products,
           (SELECT count(*) FROM @extschema@.pair_counts) AS pairs,
           (SELECT count(*) FROM @extschema@.dirty_products) AS dirty_products,
           (SELECT s.max_items_per_customer FROM @extschema@.model_settings s) AS max_items_per_customer,
           (SELECT s.rebuilt_at FROM @extschema@.model_settings s) AS rebuilt_at,
           (SELECT coalesce(sum(m.entries), 0) FROM @extschema@.model_deltas m)::bigint AS pending_changes;

COMMENT ON COLUMN @extschema@.item_counts.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.item_counts.customers IS 'Distinct customers whose in-model history holds the product.';
COMMENT ON COLUMN @extschema@.pair_counts.product_a IS 'The smaller product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts.product_b IS 'The larger product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts.customers IS 'Co-occurrence count: customers whose in-model history holds both.';
COMMENT ON COLUMN @extschema@.item_counts_base.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.item_counts_base.customers IS 'Its count as of the last fold_deltas().';
COMMENT ON COLUMN @extschema@.pair_counts_base.product_a IS 'The smaller product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts_base.product_b IS 'The larger product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts_base.customers IS 'Its count as of the last fold_deltas().';
COMMENT ON COLUMN @extschema@.model_deltas.at IS 'When the statement that made the changes ran (its transaction start).';
COMMENT ON COLUMN @extschema@.model_deltas.entries IS 'Number of changes in the row (the length of a, b and d).';
COMMENT ON COLUMN @extschema@.model_deltas.a IS 'A product (a[i] = b[i]) or the smaller product of a pair.';
COMMENT ON COLUMN @extschema@.model_deltas.b IS 'The same product, or the larger product of the pair.';
COMMENT ON COLUMN @extschema@.model_deltas.d IS 'The change of the count (never 0).';
COMMENT ON COLUMN @extschema@.model_stats.pending_changes IS 'Count changes not folded yet (model_deltas entries): what the next fold_deltas() applies.';
-- ==== end of issue 14: pending count changes ====

------------------------------------------------------------------------------
-- Refresh: every run of refresh() logged, a failed one with its error
------------------------------------------------------------------------------

ALTER TABLE @extschema@.maintenance_runs
    ADD COLUMN status text NOT NULL DEFAULT 'succeeded',
    ADD COLUMN error  text,
    ADD CONSTRAINT maintenance_runs_status_check CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed']));
COMMENT ON TABLE @extschema@.maintenance_runs IS 'One row per finished rebuild(), refresh_neighbors(), refresh_popular() and refresh() run; a refresh() that failed has status failed and its error (SQLSTATE: message).';

-- The engine's settings as the library validated them (src/guc.c); calling it loads the
-- library, so a placeholder stored before it was loaded is never read unchecked.
CREATE FUNCTION @extschema@._engine_settings() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_engine_settings';

-- The top personalize.neighbors_k neighbours of each product under each measure, from
-- exact counts (pairs seen by at least personalize.neighbors_min_count customers) held in
-- the given pair and product count tables (n_total customers): what refresh stores in
-- neighbors from the live counts, and what evaluate() stores from the counts as of a cut.
CREATE FUNCTION @extschema@._neighbor_lists(pair_counts regclass, item_counts regclass, n_total bigint,
                                            measures text[], product_ids bigint[])
    RETURNS TABLE (measure text, product_id bigint, neighbor_ids bigint[], scores double precision[], counts bigint[])
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH settings AS (
        SELECT (e.s ->> 'neighbors_k')::integer AS k, (e.s ->> 'neighbors_min_count')::integer AS min_count
        FROM (SELECT @extschema@._engine_settings() AS s) e)
    SELECT r.measure, r.p, array_agg(r.q ORDER BY r.rn), array_agg(r.s ORDER BY r.rn), array_agg(r.ab ORDER BY r.rn)
    FROM (
        SELECT s.measure, s.p, s.q, s.ab, s.s,
               row_number() OVER (PARTITION BY s.measure, s.p ORDER BY s.s DESC, s.ab DESC, s.q) AS rn
        FROM (
            SELECT m.measure, pr.p, pr.q, pr.ab,
                   @extschema@.similarity(m.measure, pr.ab, ia.customers, ib.customers,
                                          greatest($1, ia.customers, ib.customers)) AS s
            FROM settings st,
                 LATERAL (SELECT pc.product_a AS p, pc.product_b AS q, pc.customers AS ab
                          FROM %1$s pc
                          WHERE pc.product_a = ANY ($3) AND pc.customers >= st.min_count
                          UNION ALL
                          SELECT pc.product_b, pc.product_a, pc.customers
                          FROM %1$s pc
                          WHERE pc.product_b = ANY ($3) AND pc.customers >= st.min_count) pr
            JOIN %2$s ia ON ia.product_id = pr.p
            JOIN %2$s ib ON ib.product_id = pr.q
            CROSS JOIN unnest($2) AS m(measure)
        ) s
        WHERE s.s > 0
    ) r, settings st
    WHERE r.rn <= st.k
    GROUP BY r.measure, r.p $q$, pair_counts, item_counts)
    USING n_total, measures, product_ids;
END $f$;

-- The lists of the live model: what refresh stores in neighbors, and what recommend()
-- computes on the spot for a product whose list is not stored yet.
CREATE FUNCTION @extschema@._compute_neighbors(measures text[], product_ids bigint[])
    RETURNS TABLE (measure text, product_id bigint, neighbor_ids bigint[], scores double precision[], counts bigint[])
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._neighbor_lists('@extschema@.pair_counts', '@extschema@.item_counts',
        (SELECT coalesce(sum(t.customers), 0)::bigint FROM @extschema@.customer_totals t), measures, product_ids)
$$;

-- The all-time bestsellers among active products, by distinct customers in the given
-- product count table: the second part of the popularity list.
CREATE FUNCTION @extschema@._popular_all_time_of(item_counts regclass, n integer)
    RETURNS TABLE (product_id bigint, customers bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RETURN QUERY EXECUTE format($q$
    SELECT ic.product_id, ic.customers FROM %s ic
    JOIN @extschema@.products p ON p.product_id = ic.product_id AND p.active
    ORDER BY ic.customers DESC, ic.product_id LIMIT $1 $q$, item_counts) USING n;
END $f$;

-- The live all-time bestsellers (item_counts): what recommend() serves before the first
-- refresh_popular().
CREATE FUNCTION @extschema@._popular_all_time(n integer)
    RETURNS TABLE (product_id bigint, customers bigint)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM @extschema@._popular_all_time_of('@extschema@.item_counts', n)
$$;

-- The popularity list as of t_end: the products bought by the most distinct customers in
-- the window ending at t_end (interactions; an event at t_end itself only with
-- end_included: evaluate() counts it after its cut), then the all-time bestsellers of the given
-- product count table; at most 1,000, each with its rank, share of the top one in its
-- part, and the score recommend() gives it (0.5 + 0.5 * share in the window, 0.5 * share
-- all-time). refresh_popular() stores it; evaluate() builds it as of its cut.
CREATE FUNCTION @extschema@._popular_list(t_end timestamptz, window_length interval, item_counts regclass,
                                          end_included boolean)
    RETURNS TABLE (rank bigint, product_id bigint, customers bigint, share double precision, source text,
                   score double precision)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT z.rank, z.product_id, z.n, z.share, z.source,
           CASE z.source WHEN 'window' THEN 0.5 + 0.5 * z.share ELSE 0.5 * z.share END
    FROM (
        SELECT row_number() OVER (ORDER BY y.src, y.n DESC, y.product_id) AS rank, y.product_id, y.n,
               y.n::double precision / max(y.n) OVER (PARTITION BY y.src) AS share,
               CASE y.src WHEN 1 THEN 'window' ELSE 'all_time' END AS source
        FROM (
            SELECT DISTINCT ON (x.product_id) x.src, x.product_id, x.n
            FROM (
                SELECT 1 AS src, w.product_id, w.n FROM (
                    SELECT i.product_id, count(DISTINCT i.customer_id) AS n
                    FROM @extschema@.interactions i
                    JOIN @extschema@.products p ON p.product_id = i.product_id AND p.active
                    WHERE i.occurred_at > t_end - window_length
                      AND (i.occurred_at < t_end OR (end_included AND i.occurred_at = t_end))
                    GROUP BY i.product_id ORDER BY n DESC, i.product_id LIMIT 1000) w
                UNION ALL
                SELECT 2, a.product_id, a.customers FROM @extschema@._popular_all_time_of(item_counts, 1000) a
            ) x
            ORDER BY x.product_id, x.src
        ) y
        ORDER BY 1 LIMIT 1000
    ) z
$$;

-- Recompute the top-K neighbour lists of up to max_products dirty products (all products
-- with all_products), logging the run unless log_run is false (refresh() logs its own).
-- _refresh_neighbors(): replaced further down (its final body; one definition per function)

-- Recompute the popularity list as of a time.
CREATE OR REPLACE FUNCTION @extschema@.refresh_popular(window_length interval DEFAULT '7 days', as_of timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t_end timestamptz := coalesce(as_of, (@extschema@._engine_settings() ->> 'as_of')::timestamptz, now());
    started timestamptz := clock_timestamp();
    n bigint;
BEGIN
    IF window_length IS NULL OR window_length <= interval '0' THEN
        RAISE EXCEPTION 'window_length must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(window_length::text, 'NULL')),
                  HINT = 'For example interval ''7 days''.';
    END IF;
    -- one refresh at a time (readers keep reading the old list until we commit)
    PERFORM @extschema@.fold_deltas();
    LOCK TABLE @extschema@.popular IN EXCLUSIVE MODE;
    DELETE FROM @extschema@.popular;
    DELETE FROM @extschema@.popular_scores;
    WITH l AS MATERIALIZED (SELECT * FROM @extschema@._popular_list(t_end, window_length, '@extschema@.item_counts_base', true)),
         stored AS (
            INSERT INTO @extschema@.popular (rank, product_id, customers, share, source, window_start, window_end)
            SELECT l.rank, l.product_id, l.customers, l.share, l.source, t_end - window_length, t_end FROM l
            RETURNING 1)
    INSERT INTO @extschema@.popular_scores (product_ids, scores, window_days)
    SELECT coalesce(array_agg(l.product_id ORDER BY l.rank), '{}'), coalesce(array_agg(l.score ORDER BY l.rank), '{}'),
           extract(epoch FROM window_length)::double precision / 86400
    FROM l;
    SELECT count(*) INTO n FROM @extschema@.popular;
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
-- refresh(): replaced further down (its final body; one definition per function)
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
        RAISE EXCEPTION 'invalid variant name %', coalesce(quote_literal(@extschema@._echo(name)), 'NULL')
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A variant name is 1 to 63 lower-case letters, digits and underscores, starting with a letter.',
                  HINT = 'For example ''cooc_jaccard''.';
    END IF;
    needs_measure := @extschema@._validate_variant(name, algorithm, coalesce(params, '{}'));
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = create_variant.name) THEN
        RAISE EXCEPTION 'variant "%" already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Drop it first with personalize.drop_variant(), or pick another name.';
    END IF;
    IF needs_measure = 'ease' THEN
        IF NOT EXISTS (SELECT FROM @extschema@.neighbors n WHERE n.measure = 'ease' LIMIT 1) THEN
            RAISE NOTICE 'variant "%" is served from the "llr" lists until personalize.refresh_ease() stores the "ease" lists', name
                USING DETAIL = 'A history product without an "ease" list (none yet, or not among personalize.ease_products) takes its "llr" list.',
                      HINT = 'Run CALL personalize.refresh_ease(), or schedule it with personalize.schedule_ease().';
        END IF;
        needs_measure := 'llr';  -- the fallback lists, which the refresh stores
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
REVOKE ALL ON FUNCTION @extschema@._engine_settings() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_remote(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_database(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_setting(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_unschedule_all() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._guard_drop() FROM PUBLIC;

------------------------------------------------------------------------------
-- Privacy (issue 10): recommend() reveals a customer's purchases (the reason names
-- them, and what it leaves out is the purchase set): no longer executable by PUBLIC.
-- Grant it to the application role (docs/reference.md, Security and privacy).
------------------------------------------------------------------------------
REVOKE EXECUTE ON FUNCTION @extschema@.recommend(bigint, text, integer) FROM PUBLIC;

------------------------------------------------------------------------------
-- Keys never stored (issue 10, defect 7)
------------------------------------------------------------------------------
-- What is stored from OpenAI's answers never holds a key: the LLM's reasons, rejection
-- details and run errors pass through _redact_columns() (src/openai.c), which replaces the
-- configured key and every "sk-..." word, after JSON escapes were decoded
CREATE FUNCTION @extschema@._redact_columns() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'personalize_redact_columns';
CREATE TRIGGER llm_recommendations_redact BEFORE INSERT OR UPDATE ON @extschema@.llm_recommendations
    FOR EACH ROW EXECUTE FUNCTION @extschema@._redact_columns('reason');
CREATE TRIGGER llm_rejections_redact BEFORE INSERT OR UPDATE ON @extschema@.llm_rejections
    FOR EACH ROW EXECUTE FUNCTION @extschema@._redact_columns('detail');
CREATE TRIGGER llm_runs_redact BEFORE INSERT OR UPDATE ON @extschema@.llm_runs
    FOR EACH ROW EXECUTE FUNCTION @extschema@._redact_columns('error');
REVOKE ALL ON FUNCTION @extschema@._redact_columns() FROM PUBLIC;

-- Hardening (issue 10): forget_customer() erases every row that names the customer
-- (exposures, their id in llm_batch_requests too); an LLM answer never records an id
-- that is not a customer's; create_experiment() refuses weights whose sum overflows
-- and experiment_results computes the sample-ratio check in numeric (one experiment's
-- absurd weights written past create_experiment() no longer make it raise 22003).
-- As in the fresh install, these run with pg_catalog alone on the search_path.
------------------------------------------------------------------------------
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- forget_customer(): replaced further down (its final body; one definition per function)
COMMENT ON FUNCTION @extschema@.forget_customer(bigint) IS
    'Erase a customer: every row that names them (interactions and archived events, whose model contribution is subtracted exactly, feedback, exposures, LLM answers and rejections, their id in unfinished batch requests) and their customer row.';

CREATE OR REPLACE FUNCTION @extschema@._llm_reject_all(run bigint, asked bigint[], reason text, detail text) RETURNS integer
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    WITH ins AS (
        INSERT INTO @extschema@.llm_rejections (run_id, customer_id, reason, detail)
        SELECT run, a, reason, left(detail, 500) FROM unnest(asked) a
         WHERE EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = a) RETURNING 1)
    SELECT count(*)::integer FROM ins
$$;

-- _llm_ingest(): replaced further down (its final body; one definition per function)

CREATE OR REPLACE FUNCTION @extschema@.create_experiment(name text, variants text[],
        weights double precision[] DEFAULT NULL, traffic double precision DEFAULT 1.0)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer;
    missing text;
    known text;
    new_id bigint;
BEGIN
    IF name IS NULL OR variants IS NULL OR traffic IS NULL THEN
        RAISE EXCEPTION 'name, variants and traffic must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'For example personalize.create_experiment(''hybrid_vs_popular'', ARRAY[''hybrid'', ''popular'']).';
    END IF;
    IF name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid experiment name %', quote_literal(@extschema@._echo(name))
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'An experiment name is 1 to 63 lower-case letters, digits and underscores, starting with a letter.',
                  HINT = 'For example ''hybrid_vs_popular''.';
    END IF;
    n := cardinality(variants);
    IF n < 2 OR array_ndims(variants) <> 1 THEN
        RAISE EXCEPTION 'an experiment needs at least 2 arms'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s variant(s).', n),
                  HINT = 'Pass the control variant first, then the variants to test against it.';
    END IF;
    IF array_position(variants, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'variants must not contain null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Name every arm''s variant.';
    END IF;
    IF (SELECT count(DISTINCT v) FROM unnest(variants) AS v) < n THEN
        RAISE EXCEPTION 'duplicate variants in experiment %', quote_literal(name)
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', @extschema@._echo(array_to_string(variants, ', '))),
                  HINT = 'Each variant may be one arm only; give it a larger weight instead.';
    END IF;
    SELECT string_agg(v, ', ' ORDER BY o) INTO missing FROM unnest(variants) WITH ORDINALITY AS u(v, o)
    WHERE NOT EXISTS (SELECT FROM @extschema@.variants x WHERE x.name = u.v);
    IF missing IS NOT NULL THEN
        SELECT string_agg(x.name, ', ' ORDER BY x.name COLLATE "C") INTO known FROM @extschema@.variants x;
        RAISE EXCEPTION 'unknown variant(s): %', @extschema@._echo(missing)
            USING ERRCODE = 'undefined_object', DETAIL = format('Known variants: %s.', known),
                  HINT = 'Create a variant first with personalize.create_variant().';
    END IF;
    IF weights IS NOT NULL THEN
        IF cardinality(weights) <> n OR array_ndims(weights) <> 1 THEN
            RAISE EXCEPTION 'weights do not match the variants'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s weight(s) for %s variants.', cardinality(weights), n),
                      HINT = 'Pass one weight per variant, in the same order, or NULL for equal weights.';
        END IF;
        IF EXISTS (SELECT FROM unnest(weights) AS w
                   WHERE w IS NULL OR w = 'NaN'::float8 OR w = 'Infinity'::float8 OR w <= 0) THEN
            RAISE EXCEPTION 'weights must be positive finite numbers'
                USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', weights),
                      HINT = 'Weights are relative: {1,1} and {50,50} both split evenly.';
        END IF;
        -- assignment walks their float8 sum: it must be finite (the sum raises 22003 if not)
        BEGIN
            PERFORM sum(w) FROM unnest(weights) AS w;
        EXCEPTION WHEN numeric_value_out_of_range THEN
            RAISE EXCEPTION 'the sum of the weights is out of range'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Got %s: their sum is not a finite double precision number.', weights),
                      HINT = 'Weights are relative: scale them down; {1,1} and {50,50} both split evenly.';
        END;
    END IF;
    IF traffic = 'NaN'::float8 OR traffic < 0 OR traffic > 1 THEN
        RAISE EXCEPTION 'traffic must be between 0 and 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', traffic),
                  HINT = 'traffic is the fraction of customers in the experiment; the rest see the default variant.';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.experiments e WHERE e.name = create_experiment.name) THEN
        RAISE EXCEPTION 'experiment "%" already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Pick another name: a stopped experiment keeps its name and results.';
    END IF;
    INSERT INTO @extschema@.experiments (name, traffic) VALUES (name, traffic) RETURNING experiment_id INTO new_id;
    INSERT INTO @extschema@.experiment_arms (experiment_id, arm, variant, weight)
    SELECT new_id, (u.o - 1)::smallint, u.v, coalesce(weights[u.o], 1.0)
    FROM unnest(variants) WITH ORDINALITY AS u(v, o);
    RETURN new_id;
END $$;

CREATE OR REPLACE VIEW @extschema@.experiment_results AS
WITH per_customer AS (
    SELECT x.experiment_id, x.customer_id, min(x.arm) AS arm, count(*) AS exposures
    FROM @extschema@.exposures x
    WHERE x.arm IS NOT NULL
    GROUP BY x.experiment_id, x.customer_id
), hits AS (
    SELECT DISTINCT x.experiment_id, x.customer_id, i.interaction_id, i.event_type, i.quantity, i.product_id
    FROM @extschema@.exposures x
    JOIN @extschema@.experiments e ON e.experiment_id = x.experiment_id
    JOIN @extschema@.interactions i ON i.customer_id = x.customer_id AND i.product_id = ANY (x.product_ids)
        AND i.occurred_at > x.shown_at AND i.occurred_at <= x.shown_at + e.attribution_window
        AND i.event_type IN ('click', 'cart', 'purchase')
    WHERE x.arm IS NOT NULL
), outcome AS (
    SELECT h.experiment_id, h.customer_id,
           sum(CASE WHEN h.event_type = 'purchase' THEN h.quantity * coalesce(p.price, 0) ELSE 0 END)::float8 AS revenue
    FROM hits h LEFT JOIN @extschema@.products p ON p.product_id = h.product_id
    GROUP BY h.experiment_id, h.customer_id
), per_arm AS (
    SELECT c.experiment_id, c.arm, count(*) AS n, sum(c.exposures) AS exposures, count(o.customer_id) AS conv,
           sum(coalesce(o.revenue, 0)) AS rev, sum(coalesce(o.revenue, 0) ^ 2) AS rev2
    FROM per_customer c
    LEFT JOIN outcome o ON o.experiment_id = c.experiment_id AND o.customer_id = c.customer_id
    GROUP BY c.experiment_id, c.arm
), arms AS (
    SELECT e.experiment_id, e.name, a.arm, a.variant, a.weight,
           coalesce(p.n, 0) AS n, coalesce(p.exposures, 0)::bigint AS exposures, coalesce(p.conv, 0) AS conv,
           coalesce(p.rev, 0) AS rev, coalesce(p.rev2, 0) AS rev2,
           sum(coalesce(p.n, 0)) OVER w AS n_total, sum(a.weight::numeric) OVER w AS w_total
    FROM @extschema@.experiments e
    JOIN @extschema@.experiment_arms a ON a.experiment_id = e.experiment_id
    LEFT JOIN per_arm p ON p.experiment_id = a.experiment_id AND p.arm = a.arm
    WINDOW w AS (PARTITION BY e.experiment_id)
), srm AS (
    -- in numeric: weights near the float8 limits (a row written past create_experiment())
    -- can neither overflow their sum nor underflow an arm's share; the statistic is capped
    -- where its p-value is 0 anyway
    SELECT s.experiment_id,
           CASE WHEN min(s.n_total) > 0 THEN @extschema@._chisq_sf(least(
               sum((s.n - s.n_total * s.weight::numeric / s.w_total) ^ 2
                   / nullif(s.n_total * s.weight::numeric / s.w_total, 0)), 1e300)::float8,
               count(*) - 1) END AS p
    FROM arms s GROUP BY s.experiment_id
), st AS (
    SELECT a.*, a.conv::float8 / nullif(a.n, 0) AS rate, a.rev / nullif(a.n, 0) AS rpc,
           CASE WHEN a.n > 1 THEN greatest((a.rev2 - a.rev ^ 2 / a.n) / (a.n - 1), 0) END AS rev_var
    FROM arms a
), cmp AS (
    SELECT t.*, c.rate AS c_rate, c.n AS c_n, c.rpc AS c_rpc, c.rev_var AS c_rev_var,
           t.rate - c.rate AS diff,
           sqrt(t.rate * (1 - t.rate) / nullif(t.n, 0) + c.rate * (1 - c.rate) / nullif(c.n, 0)) AS se,
           (t.conv + c.conv)::float8 / nullif(t.n + c.n, 0) AS pooled,
           t.rev_var / nullif(t.n, 0) AS vt, c.rev_var / nullif(c.n, 0) AS vc
    FROM st t JOIN st c ON c.experiment_id = t.experiment_id AND c.arm = 0
)
SELECT m.name AS experiment, m.variant, m.arm,
       m.n AS customers, m.n AS exposed_customers, m.exposures, m.conv AS conversions,
       m.rate AS conversion_rate, m.rpc AS revenue_per_customer,
       CASE WHEN m.arm <> 0 THEN m.rate / nullif(m.c_rate, 0) - 1 END AS lift,
       CASE WHEN m.arm <> 0 THEN (m.diff - 1.959963984540054 * m.se) / nullif(m.c_rate, 0) END AS lift_ci_low,
       CASE WHEN m.arm <> 0 THEN (m.diff + 1.959963984540054 * m.se) / nullif(m.c_rate, 0) END AS lift_ci_high,
       CASE WHEN m.arm <> 0 THEN 2 * @extschema@._normal_cdf(-abs(m.diff)
           / nullif(sqrt(m.pooled * (1 - m.pooled) * (1.0 / nullif(m.n, 0) + 1.0 / nullif(m.c_n, 0))), 0)) END AS p_value,
       CASE WHEN m.arm <> 0 AND m.vt + m.vc > 0 AND m.n > 1 AND m.c_n > 1
            THEN 2 * @extschema@._t_cdf(-abs(m.rpc - m.c_rpc) / sqrt(m.vt + m.vc),
                 (m.vt + m.vc) ^ 2 / (m.vt ^ 2 / (m.n - 1) + m.vc ^ 2 / (m.c_n - 1))) END AS revenue_p_value,
       s.p AS srm_p_value,
       s.p < 0.001 AS srm_flag
FROM cmp m JOIN srm s ON s.experiment_id = m.experiment_id;

SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);

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

------------------------------------------------------------------------------
-- Hardening (issue 10, defect 13): error messages echo at most 64 characters of a
-- caller's name (_echo(), the C side's echo_name()); assigned_variant() and
-- flag_enabled() are no longer executable by PUBLIC (a caller could list experiment and
-- flag names by probing, read a draft experiment's arms and every flag's rollout): grant
-- them to the application role (docs/reference.md, Privileges).
------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._echo(s text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_echo';
COMMENT ON FUNCTION @extschema@._echo(text) IS
    'A caller-supplied name as error messages echo it: whole up to 64 characters, else its first 60 and "...".';
REVOKE ALL ON FUNCTION @extschema@._echo(text) FROM PUBLIC;  -- the ACL a fresh install writes, in its order
GRANT EXECUTE ON FUNCTION @extschema@._echo(text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.assigned_variant(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.flag_enabled(text, bigint) FROM PUBLIC;
CREATE OR REPLACE FUNCTION @extschema@.drop_variant(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = drop_variant.name AND v.builtin) THEN
        RAISE EXCEPTION 'variant "%" is built in and cannot be dropped', name
            USING ERRCODE = 'object_in_use', HINT = 'Built-in variants are popular, cooccurrence, hybrid, ease and llm.';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.serving_settings s WHERE s.default_variant = drop_variant.name) THEN
        RAISE EXCEPTION 'variant "%" is the default variant and cannot be dropped', @extschema@._echo(name)
            USING ERRCODE = 'object_in_use', HINT = 'Choose another default first with personalize.set_default_variant().';
    END IF;
    DELETE FROM @extschema@.variants v WHERE v.name = drop_variant.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(name) USING ERRCODE = 'undefined_object';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.start_experiment(name text) RETURNS timestamptz
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur text;
    other text;
    t timestamptz := now();
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'experiment name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- serialise starts, so that two sessions cannot both pass the check below
    LOCK TABLE @extschema@.experiments IN SHARE ROW EXCLUSIVE MODE;
    SELECT e.status INTO cur FROM @extschema@.experiments e WHERE e.name = start_experiment.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown experiment "%"', @extschema@._echo(name)
            USING ERRCODE = 'undefined_object', HINT = 'Create it first with personalize.create_experiment().';
    ELSIF cur = 'running' THEN
        RAISE EXCEPTION 'experiment "%" is already running', name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF cur = 'stopped' THEN
        RAISE EXCEPTION 'experiment "%" was stopped and cannot be restarted', name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Its results cover the period it ran.',
                  HINT = 'Create a new experiment (its salt, and so its assignment, will differ).';
    END IF;
    SELECT e.name INTO other FROM @extschema@.experiments e WHERE e.status = 'running';
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'experiment "%" is running', other
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'One experiment runs at a time: it decides the default variant of recommend().',
                  HINT = format('Stop it first: SELECT personalize.stop_experiment(%L).', other);
    END IF;
    UPDATE @extschema@.experiments e SET status = 'running', started_at = t WHERE e.name = start_experiment.name;
    RETURN t;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.stop_experiment(name text) RETURNS timestamptz
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur text;
    t timestamptz := now();
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'experiment name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT e.status INTO cur FROM @extschema@.experiments e WHERE e.name = stop_experiment.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown experiment "%"', @extschema@._echo(name) USING ERRCODE = 'undefined_object';
    ELSIF cur <> 'running' THEN
        RAISE EXCEPTION 'experiment "%" is not running', name
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = format('Its status is %s.', cur);
    END IF;
    UPDATE @extschema@.experiments e SET status = 'stopped', stopped_at = t WHERE e.name = stop_experiment.name;
    RETURN t;
END $$;

CREATE OR REPLACE FUNCTION @extschema@.flag_enabled(name text, customer_id bigint) RETURNS boolean
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f record;
BEGIN
    SELECT x.salt, x.rollout INTO f FROM @extschema@.flags x WHERE x.name = flag_enabled.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown flag "%"', @extschema@._echo(name)
            USING ERRCODE = 'undefined_object', HINT = 'Add it with INSERT INTO personalize.flags (name, rollout) VALUES (...).';
    END IF;
    RETURN @extschema@._bucket(f.salt, customer_id) < f.rollout;
END $$;
-- Hardening (issue 10, defect 8): an open transaction, even of a role granted only
-- recommend(), made rebuild() wait for ever for its TRUNCATE's lock, and every event insert
-- and recommend() queued behind it. rebuild() (same signature and attributes) and the
-- trigger's TRUNCATE of the model now take their locks through _lock_bounded(): attempts
-- of at most 100 ms, 55P03 naming the blockers after personalize.model_lock_wait.
-- Written exactly as in sql/parts/model.sql.
------------------------------------------------------------------------------
-- Take table locks that conflict with readers or writers without letting anyone queue
-- long behind them (issue 10, defect 8). A lock request waits in the table's queue and
-- everyone who comes after waits behind it, so each attempt takes the locks in order
-- under a lock_timeout that ends the attempt within 100 ms; a timed-out attempt gives back
-- what it took (its subtransaction rolls back), says who holds the lock (NOTICE, at most
-- every 5 s) and pauses (50 ms doubling to 1 s) so the queue drains. After
-- personalize.model_lock_wait in all (0: one attempt) it raises 55P03 naming the blockers.
-- The locks it took are held to the end of the transaction; lock_timeout is the caller's
-- again on return (a SET clause restores only the settings it names: restored by hand).
CREATE FUNCTION @extschema@._lock_bounded(job text, relations regclass[], modes text[])
    RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    wait_ms bigint := (@extschema@._engine_settings() ->> 'model_lock_wait')::bigint;
    callers_lock_timeout text := current_setting('lock_timeout');
    started timestamptz := clock_timestamp();
    attempt_end timestamptz;
    pause double precision := 0.05;
    last_notice timestamptz;
    cur integer;
    conflicting text[];
    blockers text;
    first_pid integer;
BEGIN
    IF relations IS NULL OR cardinality(relations) IS DISTINCT FROM cardinality(modes)
       OR NOT modes <@ ARRAY['SHARE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE'] THEN
        RAISE EXCEPTION '_lock_bounded: one mode (SHARE, EXCLUSIVE or ACCESS EXCLUSIVE) per relation'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        attempt_end := clock_timestamp() + interval '100 ms';
        BEGIN
            FOR i IN 1 .. cardinality(relations) LOOP
                cur := i;
                PERFORM set_config('lock_timeout',
                    greatest(1, ceil(extract(epoch FROM attempt_end - clock_timestamp()) * 1000))::bigint || 'ms', true);
                EXECUTE format('LOCK TABLE %s IN %s MODE', relations[i], modes[i]);
            END LOOP;
            PERFORM set_config('lock_timeout', callers_lock_timeout, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- every lock this attempt took is given back
        END;
        -- who holds relations[cur] in a mode that conflicts with ours
        conflicting := CASE modes[cur]
            WHEN 'SHARE' THEN ARRAY['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareRowExclusiveLock',
                                    'ExclusiveLock', 'AccessExclusiveLock']
            WHEN 'EXCLUSIVE' THEN ARRAY['RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                                        'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
            ELSE ARRAY['AccessShareLock', 'RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                       'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'] END;
        SELECT string_agg(CASE WHEN b.pid IS NULL THEN 'a prepared transaction (see pg_prepared_xacts)'
                               ELSE format('pid %s (role %s, application_name %L, state %s, transaction open %s s)',
                                           b.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''),
                                           coalesce(a.state, 'not visible to you'),
                                           coalesce(round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1)::text, '?'))
                          END, '; ' ORDER BY b.pid),
               min(b.pid)
          INTO blockers, first_pid
        FROM (SELECT DISTINCT l.pid FROM pg_locks l
              WHERE l.locktype = 'relation' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                AND l.relation = relations[cur] AND l.granted AND l.mode = ANY (conflicting)
                AND l.pid IS DISTINCT FROM pg_backend_pid()) b
        LEFT JOIN pg_stat_activity a ON a.pid = b.pid;
        IF clock_timestamp() >= started + wait_ms * interval '1 ms' THEN
            RAISE EXCEPTION '%: could not lock % within personalize.model_lock_wait (% ms)', job, relations[cur], wait_ms
                USING ERRCODE = 'lock_not_available',
                      DETAIL = CASE WHEN blockers IS NULL
                                    THEN format('It needs %s mode; the sessions that held the lock have just released it.', modes[cur])
                                    ELSE format('It needs %s mode, which conflicts with the lock held by %s.', modes[cur], blockers) END,
                      HINT = CASE WHEN first_pid IS NULL THEN format('Run %s again.', job)
                                  ELSE format('End the blocking transaction (SELECT pg_terminate_backend(%s)) or wait until it ends, then run %s again; or allow a longer wait with SET personalize.model_lock_wait.', first_pid, job) END;
        END IF;
        IF last_notice IS NULL OR clock_timestamp() - last_notice >= interval '5 s' THEN
            RAISE NOTICE '%: waiting for % mode on %, held by %; trying for % s more', job, modes[cur], relations[cur],
                coalesce(blockers, 'a session that has just released it'),
                round(extract(epoch FROM started + wait_ms * interval '1 ms' - clock_timestamp())::numeric, 1);
            last_notice := clock_timestamp();
        END IF;
        PERFORM pg_sleep(least(pause, greatest(0, extract(epoch FROM started + wait_ms * interval '1 ms' - clock_timestamp()))));
        pause := least(pause * 2, 1.0);
    END LOOP;
END $$;

REVOKE ALL ON FUNCTION @extschema@._lock_bounded(text, regclass[], text[]) FROM PUBLIC;

-- Every (customer, product) of the events before cut (all of them when cut is NULL), the
-- archived ones included (issue 11), as customer_items holds them: in_model marks each
-- customer's first cap products by first interaction id. rebuild() stores it;
-- evaluate() builds it as of its cut.
CREATE FUNCTION @extschema@._customer_items_as_of(cut timestamptz, cap integer)
    RETURNS TABLE (customer_id bigint, product_id bigint, events integer, purchases integer, weight double precision,
                   first_interaction_id bigint, last_at timestamptz, in_model boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.customer_id, g.product_id, g.events, g.purchases, g.weight, g.first_id, g.last_at,
           row_number() OVER (PARTITION BY g.customer_id ORDER BY g.first_id, g.product_id) <= cap
    FROM (SELECT i.customer_id, i.product_id, count(*)::integer AS events,
                 (count(*) FILTER (WHERE i.event_type = 'purchase'))::integer AS purchases,
                 sum(e.weight) AS weight, min(i.interaction_id) AS first_id, max(i.occurred_at) AS last_at
          FROM (SELECT x.interaction_id, x.customer_id, x.product_id, x.event_type, x.occurred_at
                FROM @extschema@.interactions x WHERE cut IS NULL OR x.occurred_at < cut
                UNION ALL
                SELECT a.interaction_id, a.customer_id, a.product_id, a.event_type, a.occurred_at
                FROM @extschema@.interactions_archive a WHERE cut IS NULL OR a.occurred_at < cut) i
          JOIN @extschema@.event_types e ON e.event_type = i.event_type
          GROUP BY i.customer_id, i.product_id) g
$$;

-- Recompute the whole model from interactions, set-wise, under the same cap rule as the trigger.
CREATE OR REPLACE FUNCTION @extschema@.rebuild(max_items_per_customer integer DEFAULT NULL)
    RETURNS TABLE (customers bigint, products bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cap integer;
    started timestamptz := clock_timestamp();
    phase_at timestamptz;
    n_customers bigint;
    n_products bigint;
    n_pairs bigint;
    n_lists bigint;
BEGIN
    IF max_items_per_customer IS NOT NULL AND (max_items_per_customer < 2 OR max_items_per_customer > 10000) THEN
        RAISE EXCEPTION 'max_items_per_customer must be between 2 and 10000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_items_per_customer),
                  HINT = 'Pass NULL to keep the current value.';
    END IF;
    -- every lock it needs, up front and each for a bounded time (55P03 after
    -- personalize.model_lock_wait): SHARE on interactions (writers of events wait until
    -- the rebuild commits), ACCESS EXCLUSIVE on the tables it empties (recommend() waits
    -- too from here), EXCLUSIVE on the ones it updates in place and on popular
    -- (refresh_popular), so that no statement below waits on a lock
    PERFORM @extschema@._lock_bounded('rebuild()',
        ARRAY['@extschema@.interactions', '@extschema@.interactions_archive', '@extschema@.customer_items', '@extschema@.customer_state',
              '@extschema@.item_counts_base', '@extschema@.pair_counts_base', '@extschema@.model_deltas',
              '@extschema@.dirty_products', '@extschema@.customer_totals', '@extschema@.model_settings',
              '@extschema@.popular']::regclass[],
        ARRAY['SHARE', 'SHARE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE',
              'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'EXCLUSIVE', 'EXCLUSIVE', 'EXCLUSIVE']);
    UPDATE @extschema@.model_settings s
       SET max_items_per_customer = coalesce(rebuild.max_items_per_customer, s.max_items_per_customer),
           rebuilt_at = now()
    RETURNING s.max_items_per_customer INTO cap;

    PERFORM set_config('application_name', 'personalize.rebuild: 1/5 customer items', true);
    phase_at := clock_timestamp();
    TRUNCATE @extschema@.customer_items, @extschema@.customer_state, @extschema@.item_counts_base,
             @extschema@.pair_counts_base, @extschema@.model_deltas, @extschema@.dirty_products;
    -- the 'content' lists come from embeddings (embed_products), not from the events, and the
    -- 'ease' lists are replaced only by refresh_ease() (served until then)
    DELETE FROM @extschema@.neighbors n WHERE n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease']);
    INSERT INTO @extschema@.customer_items
        (customer_id, product_id, events, purchases, weight, first_interaction_id, last_at, in_model)
    SELECT * FROM @extschema@._customer_items_as_of(NULL, cap);
    GET DIAGNOSTICS n_customers = ROW_COUNT;
    RAISE NOTICE 'rebuild: 1/5 customer items: % rows (% s)', n_customers,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 2/5 customers and products', true);
    phase_at := clock_timestamp();
    INSERT INTO @extschema@.customer_state (customer_id, items, model_items, max_model_first_id)
    SELECT ci.customer_id, count(*), count(*) FILTER (WHERE ci.in_model),
           max(ci.first_interaction_id) FILTER (WHERE ci.in_model)
    FROM @extschema@.customer_items ci GROUP BY ci.customer_id;
    GET DIAGNOSTICS n_customers = ROW_COUNT;
    INSERT INTO @extschema@.item_counts_base (product_id, customers)
    SELECT ci.product_id, count(*) FROM @extschema@.customer_items ci WHERE ci.in_model GROUP BY ci.product_id;
    GET DIAGNOSTICS n_products = ROW_COUNT;
    UPDATE @extschema@.customer_totals t SET customers = coalesce(
        (SELECT count(*) FROM @extschema@.customer_state s
         WHERE s.model_items > 0 AND ((s.customer_id % 16) + 16) % 16 = t.shard), 0);
    RAISE NOTICE 'rebuild: 2/5 % customers, % products (% s)', n_customers, n_products,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 3/5 pairs', true);
    phase_at := clock_timestamp();
    -- in memory within maintenance_work_mem, written in key order (src/rebuild.c)
    n_pairs := @extschema@._rebuild_pairs('@extschema@.pair_counts_base');
    RAISE NOTICE 'rebuild: 3/5 % pairs (% s)', n_pairs, round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 4/5 neighbour lists', true);
    phase_at := clock_timestamp();
    n_lists := @extschema@.refresh_neighbors(NULL, true);
    RAISE NOTICE 'rebuild: 4/5 neighbour lists for % products (% s)', n_lists,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 5/5 popularity', true);
    PERFORM @extschema@.refresh_popular();
    RAISE NOTICE 'rebuild: 5/5 done in % s', round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('rebuild', started, n_pairs, jsonb_build_object('customers', n_customers, 'products', n_products,
            'pairs', n_pairs, 'max_items_per_customer', cap));
    RETURN QUERY SELECT n_customers, n_products, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END $$;
COMMENT ON FUNCTION @extschema@.rebuild(integer) IS
    'Recompute the whole model from interactions (optionally with a new max_items_per_customer). Blocks event writers and recommend() while it runs; waits at most personalize.model_lock_wait for its locks, in short attempts that never hold the queue up, then fails with 55P03 naming the blocking sessions.';
-- Hardening (issue 10, defects 2 and 4): a poisoned OpenAI answer (\u0000, nesting
-- deeper than the stack, a number outside bigint, a character the database encoding
-- lacks) is rejected for its own customers or products, with its SQLSTATE, and the
-- run goes on: a Batch API output line is read on its own (llm_batch_poll() no longer
-- stops at such a batch), a chat answer (llm_refresh()) and an embeddings answer
-- (embed_products()) too; an embedding component below 1e-37 is stored as 0. The
-- bodies as in sql/parts/cold_start.sql (same signatures, grants and comments kept).
------------------------------------------------------------------------------
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Validate one chat completion (a 2xx body) against the catalog and the customers that
-- were asked about; store what passes (replacing the customer's older answer) and
-- record what does not. outcome: 'ok', 'split' (truncated: ask again in halves),
-- 'failed' (nothing usable). A poisoned answer (\u0000, nesting deeper than the stack
-- allows, a token count outside bigint, a character the database encoding lacks) is
-- rejected like any malformed one, with its SQLSTATE: it is parsed in blocks that write
-- nothing, so the error undoes nothing else and costs no subtransaction id. A cancel or a
-- timeout (57014) is not caught.
CREATE OR REPLACE FUNCTION @extschema@._llm_ingest(run bigint, asked bigint[], body text,
        OUT stored integer, OUT rejected integer, OUT outcome text,
        OUT prompt_tokens bigint, OUT completion_tokens bigint)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    resp jsonb;
    choice jsonb;
    answer jsonb;
    k integer := (@extschema@._llm_settings() ->> 'llm_k')::integer;
    model text;
    failed text;
BEGIN
    stored := 0; rejected := 0; outcome := 'ok'; prompt_tokens := 0; completion_tokens := 0;
    BEGIN
        resp := body::jsonb;
        prompt_tokens := coalesce(CASE WHEN jsonb_typeof(resp #> '{usage,prompt_tokens}') = 'number' THEN (resp #>> '{usage,prompt_tokens}')::numeric::bigint END, 0);
        completion_tokens := coalesce(CASE WHEN jsonb_typeof(resp #> '{usage,completion_tokens}') = 'number' THEN (resp #>> '{usage,completion_tokens}')::numeric::bigint END, 0);
    EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS failed = RETURNED_SQLSTATE;
        failed := failed || ': ' || SQLERRM;
        resp := NULL; prompt_tokens := 0; completion_tokens := 0;
    END;
    IF resp IS NULL OR jsonb_typeof(resp) <> 'object' OR jsonb_typeof(resp -> 'choices') <> 'array' THEN
        rejected := @extschema@._llm_reject_all(run, asked, 'malformed_response',
            'the response is not a chat completion' || coalesce(' (' || failed || ')', '') || ': ' || left(body, 200));
        outcome := 'failed';
        RETURN;
    END IF;
    model := coalesce(resp ->> 'model', (@extschema@._llm_settings() ->> 'openai_model'));
    choice := resp -> 'choices' -> 0;
    IF choice IS NULL THEN
        rejected := @extschema@._llm_reject_all(run, asked, 'malformed_response', 'the response has no choices');
        outcome := 'failed';
        RETURN;
    END IF;
    IF choice ->> 'finish_reason' = 'length' THEN
        IF cardinality(asked) > 1 THEN
            outcome := 'split';
        ELSE
            rejected := @extschema@._llm_reject_all(run, asked, 'truncated',
                'the answer for one customer did not fit in the completion limit (finish_reason = length)');
            outcome := 'failed';
        END IF;
        RETURN;
    END IF;
    IF jsonb_typeof(choice #> '{message,refusal}') = 'string' THEN
        rejected := @extschema@._llm_reject_all(run, asked, 'refusal', choice #>> '{message,refusal}');
        outcome := 'failed';
        RETURN;
    END IF;
    IF choice ->> 'finish_reason' = 'content_filter' THEN
        rejected := @extschema@._llm_reject_all(run, asked, 'content_filter', 'the answer was withheld by the content filter');
        outcome := 'failed';
        RETURN;
    END IF;
    BEGIN
        answer := (choice #>> '{message,content}')::jsonb;
    EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS failed = RETURNED_SQLSTATE;
        failed := failed || ': ' || SQLERRM;
        answer := NULL;
    END;
    IF answer IS NULL OR jsonb_typeof(answer -> 'customers') IS DISTINCT FROM 'array' THEN
        rejected := @extschema@._llm_reject_all(run, asked, 'malformed_json',
            'the message content is not the JSON object the schema asks for' || coalesce(' (' || failed || ')', '')
            || ': ' || left(choice #>> '{message,content}', 200));
        outcome := 'failed';
        RETURN;
    END IF;

    -- every (customer entry, recommendation) of the answer, classified in one pass
    IF to_regclass('pg_temp.personalize_llm_items') IS NULL THEN
        CREATE TEMP TABLE personalize_llm_items (
        ord bigint, entry bigint, item bigint, customer_id bigint, customer_text text, product_id bigint, product_text text,
        reason text, verdict text) ON COMMIT DROP;
    END IF;
    TRUNCATE pg_temp.personalize_llm_items;
    INSERT INTO pg_temp.personalize_llm_items
    SELECT row_number() OVER (ORDER BY e.n, r.m), e.n, r.m,
           CASE WHEN jsonb_typeof(e.v -> 'customer_id') = 'number' AND (e.v ->> 'customer_id') ~ '^-?[0-9]{1,18}$'
                THEN (e.v ->> 'customer_id')::bigint END,
           left((e.v -> 'customer_id')::text, 40),
           CASE WHEN jsonb_typeof(r.v -> 'product_id') = 'number' AND (r.v ->> 'product_id') ~ '^-?[0-9]{1,18}$'
                THEN (r.v ->> 'product_id')::bigint END,
           left((r.v -> 'product_id')::text, 40),
           CASE WHEN jsonb_typeof(r.v -> 'reason') = 'string'
                THEN nullif(btrim(left(regexp_replace(r.v ->> 'reason', '[[:cntrl:]]+', ' ', 'g'), 300)), '') END,
           NULL
    FROM jsonb_array_elements(answer -> 'customers') WITH ORDINALITY AS e(v, n)
    LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e.v -> 'recommendations') = 'array'
                                                THEN e.v -> 'recommendations' ELSE '[]' END)
              WITH ORDINALITY AS r(v, m) ON true
    WHERE jsonb_typeof(e.v) = 'object';

    -- a customer asked about but deleted since (forget_customer): nothing is kept of them
    UPDATE pg_temp.personalize_llm_items t SET verdict = 'gone'
     WHERE t.customer_id = ANY (asked)
       AND NOT EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = t.customer_id);
    -- the first entry of an asked customer counts; other entries are rejected
    UPDATE pg_temp.personalize_llm_items t SET verdict = CASE
            WHEN t.customer_id IS NULL OR NOT t.customer_id = ANY (asked) THEN 'unexpected_customer'
            ELSE 'duplicate_customer' END
     WHERE t.verdict IS NULL
       AND (t.customer_id IS NULL OR NOT t.customer_id = ANY (asked)
            OR t.entry > (SELECT min(t2.entry) FROM pg_temp.personalize_llm_items t2 WHERE t2.customer_id = t.customer_id));
    UPDATE pg_temp.personalize_llm_items t SET verdict = v.verdict
      FROM (SELECT t1.ord, CASE
                WHEN t1.product_id IS NULL THEN 'invalid_product_id'
                WHEN p.product_id IS NULL THEN 'unknown_product'
                WHEN NOT p.active THEN 'inactive_product'
                WHEN row_number() OVER (PARTITION BY t1.customer_id, t1.product_id ORDER BY t1.ord) > 1 THEN 'duplicate_product'
                END AS verdict
            FROM pg_temp.personalize_llm_items t1
            LEFT JOIN @extschema@.products p ON p.product_id = t1.product_id
            WHERE t1.verdict IS NULL AND t1.item IS NOT NULL) v
     WHERE t.ord = v.ord AND v.verdict IS NOT NULL;
    UPDATE pg_temp.personalize_llm_items t SET verdict = 'too_many'
      FROM (SELECT t1.ord, row_number() OVER (PARTITION BY t1.customer_id ORDER BY t1.ord) AS rnk
            FROM pg_temp.personalize_llm_items t1
            WHERE t1.verdict IS NULL AND t1.product_id IS NOT NULL) v
     WHERE t.ord = v.ord AND v.rnk > k;
    UPDATE pg_temp.personalize_llm_items t SET verdict = 'ok'
     WHERE t.verdict IS NULL AND t.product_id IS NOT NULL;

    -- a customer deleted meanwhile (forget_customer) is skipped, the others are kept
    -- from being deleted until this transaction commits
    PERFORM FROM @extschema@.customers c
     WHERE c.customer_id IN (SELECT t.customer_id FROM pg_temp.personalize_llm_items t WHERE t.verdict = 'ok')
     ORDER BY c.customer_id FOR KEY SHARE;
    DELETE FROM @extschema@.llm_recommendations r
     WHERE r.customer_id IN (SELECT t.customer_id FROM pg_temp.personalize_llm_items t WHERE t.verdict = 'ok');
    WITH ins AS (
        INSERT INTO @extschema@.llm_recommendations (customer_id, rank, product_id, reason, run_id, model)
        SELECT t.customer_id, row_number() OVER (PARTITION BY t.customer_id ORDER BY t.ord), t.product_id, t.reason, run, model
          FROM pg_temp.personalize_llm_items t
          JOIN @extschema@.customers c ON c.customer_id = t.customer_id
         WHERE t.verdict = 'ok'
        RETURNING customer_id)
    SELECT count(DISTINCT ins.customer_id) INTO stored FROM ins;

    WITH ins AS (
        INSERT INTO @extschema@.llm_rejections (run_id, customer_id, product_id, reason, detail)
        -- an id that is not a customer's is not recorded: it may be one forgotten since the
        -- request was sent (forget_customer removes it from llm_batch_requests)
        SELECT run, CASE WHEN t.verdict <> 'unexpected_customer' OR known.customer_id IS NOT NULL THEN t.customer_id END,
               CASE WHEN t.verdict NOT IN ('unexpected_customer', 'duplicate_customer') THEN t.product_id END,
               t.verdict, CASE t.verdict
                   WHEN 'unexpected_customer' THEN CASE
                       WHEN t.customer_id IS NOT NULL AND known.customer_id IS NULL
                       THEN 'the answer has a customer id that was not asked about and is no customer''s'
                       ELSE format('the answer has customer %s, who was not asked about', coalesce(t.customer_text, 'null')) END
                   WHEN 'duplicate_customer' THEN 'a second entry for the same customer'
                   WHEN 'invalid_product_id' THEN format('product_id %s is not an integer', coalesce(t.product_text, 'null'))
                   WHEN 'unknown_product' THEN format('product %s is not in the catalog', t.product_id)
                   WHEN 'inactive_product' THEN format('product %s is not active', t.product_id)
                   WHEN 'duplicate_product' THEN format('product %s is recommended twice', t.product_id)
                   WHEN 'too_many' THEN format('more than k = %s recommendations', k)
               END
          FROM pg_temp.personalize_llm_items t
          LEFT JOIN @extschema@.customers known ON known.customer_id = t.customer_id
         WHERE t.verdict NOT IN ('ok', 'gone') AND (t.verdict IN ('unexpected_customer', 'duplicate_customer') IS NOT TRUE
                                      OR t.ord = (SELECT min(t2.ord) FROM pg_temp.personalize_llm_items t2
                                                  WHERE t2.entry = t.entry))
        UNION ALL
        SELECT run, a, NULL, 'missing_customer',
               CASE WHEN EXISTS (SELECT FROM pg_temp.personalize_llm_items t WHERE t.customer_id = a)
                    THEN 'the answer has no valid product for this customer'
                    ELSE 'the answer has no entry for this customer' END
          FROM unnest(asked) a
         WHERE NOT EXISTS (SELECT FROM pg_temp.personalize_llm_items t WHERE t.customer_id = a AND t.verdict = 'ok')
           AND EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = a)
        RETURNING 1)
    SELECT count(*) INTO rejected FROM ins;
    IF stored = 0 THEN
        outcome := 'failed';
    END IF;
END $$;

-- Ingest the lines of a batch output or error file; returns the custom_ids it saw. Each
-- line stands alone: one that cannot be parsed (\u0000, nesting deeper than the stack
-- allows, a number outside numeric, a character the database encoding lacks) is
-- rejected as malformed_response for the customers of its custom_id (read from the
-- line's head, where OpenAI writes it), or as a batch_error when none can be read, and
-- the next line goes on. The parse writes nothing (no subtransaction id per line).
CREATE OR REPLACE FUNCTION @extschema@._llm_batch_ingest(run bigint, batch text, lines text,
        OUT seen text[], OUT stored integer, OUT rejected integer, OUT failures integer,
        OUT prompt_tokens bigint, OUT completion_tokens bigint)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    raw text;
    l jsonb;
    cid text;
    failed text;
    asked bigint[];
    res record;
BEGIN
    seen := '{}'; stored := 0; rejected := 0; failures := 0; prompt_tokens := 0; completion_tokens := 0;
    FOR raw IN SELECT x FROM regexp_split_to_table(coalesce(lines, ''), E'\n') x WHERE btrim(x) <> '' LOOP
        l := NULL; cid := NULL; failed := NULL;
        BEGIN
            l := raw::jsonb;
            cid := l ->> 'custom_id';
        EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
            GET STACKED DIAGNOSTICS failed = RETURNED_SQLSTATE;
            failed := failed || ': ' || SQLERRM;
            l := NULL;
            cid := substring(raw FROM '^\s*\{\s*(?:"id"\s*:\s*"[^"\\]*"\s*,\s*)?"custom_id"\s*:\s*"([^"\\]{1,200})"');
        END;
        asked := NULL;
        IF cid IS NOT NULL THEN
            SELECT q.customer_ids INTO asked FROM @extschema@.llm_batch_requests q
             WHERE q.batch_id = batch AND q.custom_id = cid;
        END IF;
        IF asked IS NULL THEN
            INSERT INTO @extschema@.llm_rejections (run_id, reason, detail)
            VALUES (run, 'batch_error', format('batch %s: a line that matches no request%s: %s', batch,
                                               coalesce(' (' || failed || ')', ''), left(raw, 200)));
            rejected := rejected + 1;
            CONTINUE;
        END IF;
        seen := seen || cid;
        IF l IS NULL THEN
            rejected := rejected + @extschema@._llm_reject_all(run, asked, 'malformed_response',
                format('batch %s, %s: the output line cannot be read (%s): %s', batch, cid, failed, left(raw, 200)));
            failures := failures + 1;
            CONTINUE;
        END IF;
        IF jsonb_typeof(l -> 'response') = 'object' AND (l #>> '{response,status_code}') ~ '^2[0-9][0-9]$' THEN
            res := @extschema@._llm_ingest(run, asked, l #>> '{response,body}');
            stored := stored + res.stored;
            prompt_tokens := prompt_tokens + res.prompt_tokens;
            completion_tokens := completion_tokens + res.completion_tokens;
            IF res.outcome = 'split' THEN
                -- a batch line cannot be asked again in halves: the next llm_refresh() does
                rejected := rejected + @extschema@._llm_reject_all(run, asked, 'truncated',
                    format('batch %s, %s: finish_reason = length; the next llm_refresh() asks again in smaller requests', batch, cid));
                failures := failures + 1;
            ELSE
                rejected := rejected + res.rejected;
                failures := failures + (res.outcome = 'failed')::integer;
            END IF;
        ELSE
            rejected := rejected + @extschema@._llm_reject_all(run, asked, 'batch_error',
                format('batch %s, %s: %s', batch, cid,
                       coalesce(l #>> '{error,code}', l #>> '{response,body,error,code}', 'status ' || (l #>> '{response,status_code}')) || ': ' ||
                       coalesce(l #>> '{error,message}', l #>> '{response,body,error,message}', '')));
            failures := failures + 1;
        END IF;
    END LOOP;
END $$;

-- Embeddings of the active products that have none (or whose text or model changed),
-- 2048 inputs per request; then their content neighbour lists.

------------------------------------------------------------------------------
-- Operations (issue 11, parts 1 and 2): failures that cannot hide, personalize.health.
-- variants rows are validated on INSERT and UPDATE (a trigger); rows already invalid
-- are kept: the refresh skips them with a WARNING and records them, health names them.
------------------------------------------------------------------------------
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
-- A variant row's problem ("SQLSTATE: message"), or NULL when it is valid. SECURITY
-- DEFINER: personalize.health calls it for its reader, who may not execute the validator.
CREATE FUNCTION @extschema@._variant_problem(name text, algorithm text, params jsonb)
    RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e_state text;
    e_message text;
BEGIN
    PERFORM @extschema@._validate_variant(name, algorithm, params);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT;
    RETURN e_state || ': ' || e_message;
END $$;
COMMENT ON FUNCTION @extschema@._variant_problem(text, text, jsonb) IS
    'Why a variant''s algorithm and parameters are invalid (SQLSTATE: message), or NULL when they are valid.';

-- The invalid rows of variants (written before the trigger below existed, or with it
-- disabled), as a jsonb array of {variant, error}; a WARNING for each when warn is set.
-- The refresh skips them and records them; personalize.health names them.
CREATE FUNCTION @extschema@._variant_problems(warn boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    found jsonb := '[]';
BEGIN
    FOR r IN SELECT v.name, p.problem
             FROM @extschema@.variants v,
                  LATERAL (SELECT @extschema@._variant_problem(v.name, v.algorithm, v.params) AS problem) p
             WHERE p.problem IS NOT NULL ORDER BY v.name LOOP
        IF warn THEN
            RAISE WARNING 'variant "%" is skipped: its row in personalize.variants is invalid', r.name
                USING DETAIL = r.problem,
                      HINT = 'Correct it (UPDATE personalize.variants SET params = ... is validated) or drop it with personalize.drop_variant(); recommend() refuses this variant until then.';
        END IF;
        found := found || jsonb_build_array(jsonb_build_object('variant', r.name, 'error', r.problem));
    END LOOP;
    RETURN found;
END $$;

-- Every INSERT and UPDATE of a variants row is validated like create_variant() (22023 and
-- the parameter at fault). SECURITY DEFINER: a role granted UPDATE on variants may not
-- execute the validator itself.
CREATE FUNCTION @extschema@._variants_validate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._validate_variant(NEW.name, NEW.algorithm, NEW.params);
    RETURN NEW;
END $$;
CREATE TRIGGER variants_validate BEFORE INSERT OR UPDATE ON @extschema@.variants
    FOR EACH ROW EXECUTE FUNCTION @extschema@._variants_validate();

CREATE OR REPLACE FUNCTION @extschema@._refresh_neighbors(max_products integer, all_products boolean, log_run boolean)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    measures text[];
    batch bigint[];
    done bigint := 0;
    started timestamptz := clock_timestamp();
    last_notice timestamptz := clock_timestamp();
    skipped jsonb;
BEGIN
    IF max_products IS NOT NULL AND max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_products),
                  HINT = 'Pass NULL to refresh every dirty product.';
    END IF;
    -- the pending count changes first: they mark their products dirty, and the lists are
    -- computed from the folded counts. A fold running in another session (a second refresh
    -- sharing the work) is not waited for: the products it marks dirty are refreshed by it.
    PERFORM @extschema@.fold_deltas(wait => false);
    IF all_products THEN
        INSERT INTO @extschema@.dirty_products (product_id)
        SELECT product_id FROM @extschema@.item_counts_base ORDER BY product_id
        ON CONFLICT (product_id) DO NOTHING;
        -- the 'content' lists (embed_products) do not depend on co-occurrence, and the 'ease'
        -- lists are replaced only by refresh_ease(): kept
        DELETE FROM @extschema@.neighbors n
        WHERE n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease'])
          AND NOT EXISTS (SELECT FROM @extschema@.item_counts_base i WHERE i.product_id = n.product_id);
    END IF;
    -- an invalid variant row is skipped (refresh() and a logged run say so), never the others
    IF log_run THEN
        skipped := @extschema@._variant_problems(true);
    END IF;
    -- a variant of measure ease needs the 'llr' lists (its fallback); refresh_ease() builds its own
    SELECT array_agg(DISTINCT CASE WHEN m = 'ease' THEN 'llr' ELSE m END ORDER BY CASE WHEN m = 'ease' THEN 'llr' ELSE m END)
      INTO measures
    FROM (SELECT CASE WHEN @extschema@._variant_problem(v.name, v.algorithm, v.params) IS NULL
                      THEN @extschema@._validate_variant(v.name, v.algorithm, v.params) END AS m
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
        WHERE n.product_id = ANY (batch) AND n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease']);
        IF measures IS NOT NULL THEN
            INSERT INTO @extschema@.neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT c.measure, c.product_id, c.neighbor_ids, c.scores, c.counts
            FROM @extschema@._neighbor_lists('@extschema@.pair_counts_base', '@extschema@.item_counts_base',
                (SELECT coalesce(sum(t.customers), 0)::bigint FROM @extschema@.customer_totals t), measures, batch) c;
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
                                  'k', (@extschema@._engine_settings() ->> 'neighbors_k')::integer)
                || CASE WHEN jsonb_array_length(skipped) > 0 THEN jsonb_build_object('skipped_variants', skipped)
                        ELSE '{}' END);
    END IF;
    RETURN done;
END $$;

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
    skipped jsonb;
BEGIN
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        BEGIN
            IF skipped IS NULL THEN
                skipped := @extschema@._variant_problems(true);
            END IF;
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
    VALUES ('refresh', started, done, pg_catalog.jsonb_build_object('neighbor_lists', done, 'popular', popular)
                OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.jsonb_array_length(skipped) OPERATOR(pg_catalog.>) 0
                                             THEN pg_catalog.jsonb_build_object('skipped_variants', skipped) ELSE '{}' END,
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The lists refreshed before the error are kept; the next run continues with the rest.');
    END IF;
END $$;

COMMENT ON TABLE @extschema@.maintenance_runs IS 'One row per finished rebuild(), refresh_neighbors(), refresh_popular() and refresh() run; a refresh() that failed has status failed and its error (SQLSTATE: message); invalid variants a run skipped are in details.skipped_variants.';

SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- the last run (and the last failed one) of each job, newest first
CREATE INDEX maintenance_runs_job_idx ON @extschema@.maintenance_runs (job, run_id);
CREATE INDEX maintenance_runs_failed_idx ON @extschema@.maintenance_runs (run_id)
    WHERE status OPERATOR(pg_catalog.<>) 'succeeded';
CREATE INDEX llm_runs_kind_idx ON @extschema@.llm_runs (kind, run_id);
CREATE INDEX llm_runs_failed_idx ON @extschema@.llm_runs (run_id)
    WHERE status OPERATOR(pg_catalog.<>) ALL (ARRAY['running', 'completed']);

-- the thresholds (personalize.health_*), validated by the library
CREATE FUNCTION @extschema@._health_settings() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_health_settings';
COMMENT ON FUNCTION @extschema@._health_settings() IS
    'The thresholds of personalize.health (seconds, products; 0 = off) and the pg_cron jobs it expects.';

-- this database's personalize-* pg_cron jobs and their last runs, read as the view's owner
CREATE FUNCTION @extschema@._health_cron_jobs() RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_health_cron_jobs';
COMMENT ON FUNCTION @extschema@._health_cron_jobs() IS
    'This database''s personalize-* pg_cron jobs and the last finished run of each, read as the owner of personalize.health (pg_cron shows a role its own jobs only); only for roles that may read personalize.health.';

CREATE VIEW @extschema@.health AS
WITH s AS MATERIALIZED (
    SELECT (h ->> 'refresh_warn')::numeric AS r_warn, (h ->> 'refresh_critical')::numeric AS r_crit,
           (h ->> 'backlog_warn')::numeric AS b_warn, (h ->> 'backlog_critical')::numeric AS b_crit,
           (h ->> 'llm_warn')::numeric AS l_warn, (h ->> 'llm_critical')::numeric AS l_crit,
           ARRAY(SELECT DISTINCT pg_catalog.lower(pg_catalog.btrim(x))
                 FROM pg_catalog.unnest(pg_catalog.string_to_array(h ->> 'expected_jobs', ',')) x
                 WHERE pg_catalog.btrim(x) OPERATOR(pg_catalog.<>) '') AS expected,
           EXISTS (SELECT FROM @extschema@.item_counts_base LIMIT 1)
               OR EXISTS (SELECT FROM @extschema@.model_deltas LIMIT 1) AS has_model
    FROM (SELECT @extschema@._health_settings() AS h) z
), refresh AS (
    -- the last successful refresh() or rebuild()
    SELECT max(x.finished_at) AS t FROM (
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'refresh' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)
        UNION ALL
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'rebuild' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)) x
), failure AS (
    -- the newest failed run of any job, and whether a later run of that job went well
    SELECT f.*, f.run_id = (SELECT m.run_id FROM @extschema@.maintenance_runs m WHERE m.job = f.job
                            ORDER BY m.run_id DESC LIMIT 1) AS is_current
    FROM (SELECT 'maintenance_runs' AS tbl, m.run_id, m.job, m.job AS kind, m.finished_at, m.error
          FROM @extschema@.maintenance_runs m WHERE m.status <> 'succeeded' ORDER BY m.run_id DESC LIMIT 1) f
    UNION ALL
    SELECT f.*, f.run_id = (SELECT r.run_id FROM @extschema@.llm_runs r WHERE r.kind = f.kind
                            ORDER BY r.run_id DESC LIMIT 1)
    FROM (SELECT 'llm_runs' AS tbl, r.run_id, 'llm_' || r.kind AS job, r.kind, coalesce(r.finished_at, r.started_at) AS finished_at,
                 r.status || ': ' || coalesce(r.error, 'no error recorded') AS error
          FROM @extschema@.llm_runs r WHERE r.status <> ALL (ARRAY['running', 'completed'])
          ORDER BY r.run_id DESC LIMIT 1) f
), backlog AS (
    SELECT (SELECT count(*) FROM (SELECT FROM @extschema@.dirty_products LIMIT 100001) d) AS n_dirty,
           -- changes not folded yet: their products are not in dirty_products until the refresh
           -- folds them (a heap scan of model_deltas, no array read)
           (SELECT coalesce(sum(m.entries), 0) FROM @extschema@.model_deltas m) AS n_pending,
           -- a pending change (not folded yet) is backlog too
           (SELECT least(min(d.since), (SELECT min(m.at) FROM @extschema@.model_deltas m))
            FROM @extschema@.dirty_products d) AS oldest
), llm AS (
    SELECT k.kind, r.*
    FROM unnest(ARRAY['refresh', 'batch_submit', 'batch_poll', 'embed']) AS k(kind),
         LATERAL (SELECT x.run_id, x.status, x.started_at, x.finished_at, x.error FROM @extschema@.llm_runs x
                  WHERE x.kind = k.kind ORDER BY x.run_id DESC LIMIT 1) r
), cron AS (
    SELECT @extschema@._health_cron_jobs() AS c
), jobs AS (
    -- each expected job and each personalize job of this database that exists
    SELECT w.what, w.what = ANY (s.expected) AS expected, j.job
    FROM s, cron,
         LATERAL (SELECT e AS what FROM unnest(s.expected) e
                  UNION
                  SELECT substring(x ->> 'job' FROM '^personalize-(.*)@[^@]*$')
                  FROM jsonb_array_elements(cron.c -> 'jobs') x) w
         LEFT JOIN LATERAL (SELECT x AS job FROM jsonb_array_elements(cron.c -> 'jobs') x
                            WHERE x ->> 'job' = 'personalize-' || w.what || '@' || current_database()) j ON true
    WHERE cron.c ->> 'state' = 'ok' AND w.what IS NOT NULL
), srm AS (
    -- experiment_results' sample-ratio check for the running experiment, from its
    -- exposures only (each customer in the arm of their first exposure, as there)
    SELECT e.name, p.p
    FROM @extschema@.experiments e,
         LATERAL (
             SELECT @extschema@._chisq_sf(least(sum((a.n - a.n_total * a.weight::numeric / a.w_total) ^ 2
                        / nullif(a.n_total * a.weight::numeric / a.w_total, 0)), 1e300)::float8, count(*) - 1) AS p
             FROM (SELECT ea.arm, ea.weight, coalesce(c.n, 0) AS n,
                          sum(coalesce(c.n, 0)) OVER () AS n_total, sum(ea.weight::numeric) OVER () AS w_total
                   FROM @extschema@.experiment_arms ea
                   LEFT JOIN (SELECT pc.arm, count(*) AS n
                              FROM (SELECT min(x.arm) AS arm FROM @extschema@.exposures x
                                    WHERE x.experiment_id = e.experiment_id AND x.arm IS NOT NULL
                                    GROUP BY x.customer_id) pc
                              GROUP BY pc.arm) c ON c.arm = ea.arm
                   WHERE ea.experiment_id = e.experiment_id) a
             HAVING min(a.n_total) > 0) p
    WHERE e.status = 'running'
)
SELECT c."check", c.status, c.value, c.detail FROM (
    SELECT 1 AS ord, 'refresh_age' AS "check",
           CASE WHEN r.t IS NULL THEN CASE WHEN s.has_model THEN 'critical' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END AS status,
           a.v AS value,
           CASE WHEN r.t IS NULL AND s.has_model THEN 'no successful refresh() recorded: the neighbour lists are not refreshed'
                WHEN r.t IS NULL THEN 'no successful refresh() recorded yet (no events either)'
                ELSE format('the last successful refresh() or rebuild() finished at %s', r.t) END AS detail
    FROM s, refresh r, LATERAL (SELECT round(extract(epoch FROM now() - r.t), 1) AS v) a
    UNION ALL
    SELECT 2, 'last_job_error',
           CASE WHEN f.run_id IS NULL OR NOT f.is_current THEN 'ok' ELSE 'warn' END,
           round(extract(epoch FROM now() - f.finished_at), 1),
           CASE WHEN f.run_id IS NULL THEN 'no failed run recorded'
                ELSE format('%s run %s (%s) at %s: %s%s', f.job, f.run_id, f.tbl, f.finished_at, f.error,
                            CASE WHEN f.is_current THEN '' ELSE '; a later run of that job succeeded' END) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT * FROM failure ORDER BY finished_at DESC LIMIT 1) f ON true
    UNION ALL
    SELECT 3, 'neighbor_backlog',
           CASE WHEN s.b_crit > 0 AND b.n >= s.b_crit THEN 'critical'
                WHEN s.b_warn > 0 AND b.n >= s.b_warn THEN 'warn' ELSE 'ok' END,
           b.n,
           format('%s%s products wait for their neighbour lists to be refreshed, and %s count changes to be folded',
                  CASE WHEN b.n_dirty > 100000 THEN 'more than ' ELSE '' END, least(b.n_dirty, 100000), b.n_pending)
    FROM s, (SELECT x.*, x.n_dirty + x.n_pending AS n FROM backlog x) b
    UNION ALL
    SELECT 4, 'neighbor_backlog_age',
           CASE WHEN b.oldest IS NULL THEN 'ok'
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           coalesce(a.v, 0),
           CASE WHEN b.oldest IS NULL THEN 'no product waits'
                ELSE format('the oldest dirty product waits since %s', b.oldest) END
    FROM s, backlog b, LATERAL (SELECT round(extract(epoch FROM now() - b.oldest), 1) AS v) a
    UNION ALL
    SELECT 5, 'popular_age',
           CASE WHEN p.t IS NULL THEN CASE WHEN s.has_model THEN 'warn' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           CASE WHEN p.t IS NULL THEN 'no popularity list computed yet (recommend() serves the all-time bestsellers live)'
                ELSE format('the popularity list was computed at %s', p.t) END
    FROM s,
         LATERAL (SELECT max(m.finished_at) AS t FROM (SELECT m.finished_at FROM @extschema@.maintenance_runs m
                  WHERE m.job = 'refresh_popular' ORDER BY m.run_id DESC LIMIT 1) m) p,
         LATERAL (SELECT round(extract(epoch FROM now() - p.t), 1) AS v) a
    UNION ALL
    SELECT 6, 'llm_' || l.kind,
           CASE WHEN l.status = 'running' THEN 'ok'
                WHEN l.status <> 'completed' THEN 'warn'
                WHEN l.kind = 'batch_poll' THEN 'ok'
                WHEN s.l_crit > 0 AND a.v >= s.l_crit THEN 'critical'
                WHEN s.l_warn > 0 AND a.v >= s.l_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           format('the last %s run (%s) %s at %s%s', l.kind, l.run_id,
                  CASE l.status WHEN 'running' THEN 'started' ELSE l.status END,
                  coalesce(l.finished_at, l.started_at), ': ' || l.error)
    FROM s, llm l, LATERAL (SELECT round(extract(epoch FROM now() - coalesce(l.finished_at, l.started_at)), 1) AS v) a
    UNION ALL
    SELECT 7, 'cron',
           CASE WHEN cron.c ->> 'state' = 'error' THEN 'critical'
                WHEN cardinality(s.expected) = 0 THEN 'ok' ELSE 'critical' END,
           NULL,
           CASE cron.c ->> 'state'
               WHEN 'not_loaded' THEN 'pg_cron is not loaded (cron.database_name is not set)'
               WHEN 'not_installed' THEN format('pg_cron is not installed in database %s', cron.c ->> 'cron_database')
               ELSE format('cannot read the pg_cron jobs in database %s: %s', cron.c ->> 'cron_database', cron.c ->> 'error') END
               || CASE WHEN cardinality(s.expected) > 0
                       THEN format('; expected jobs: %s (personalize.health_expected_jobs)', array_to_string(s.expected, ', '))
                       ELSE '' END
    FROM s, cron WHERE cron.c ->> 'state' <> 'ok'
    UNION ALL
    SELECT 8, 'cron_job:' || j.what,
           CASE WHEN j.job IS NULL OR NOT (j.job ->> 'active')::boolean
                THEN CASE WHEN j.expected THEN 'critical' ELSE 'warn' END
                WHEN j.job ->> 'status' = 'failed' THEN 'warn' ELSE 'ok' END,
           round(extract(epoch FROM now() - (j.job ->> 'end_time')::timestamptz), 1),
           format('job personalize-%s@%s ', j.what, current_database())
           || CASE WHEN j.job IS NULL THEN 'does not exist (expected by personalize.health_expected_jobs)'
                   ELSE format('(%s, scheduled by %s) is %s; its last run %s', j.job ->> 'schedule', j.job ->> 'username',
                               CASE WHEN (j.job ->> 'active')::boolean THEN 'active' ELSE 'NOT active' END,
                               CASE WHEN j.job ->> 'status' IS NULL THEN 'has not finished yet (none recorded)'
                                    ELSE format('%s at %s%s', j.job ->> 'status', j.job ->> 'end_time',
                                                CASE WHEN j.job ->> 'status' = 'failed'
                                                     THEN ': ' || (j.job ->> 'message') ELSE '' END) END) END
    FROM jobs j
    UNION ALL
    SELECT 9, 'variants',
           CASE WHEN v.n > 0 THEN 'critical' ELSE 'ok' END,
           v.n,
           CASE WHEN v.n = 0 THEN 'every variant is valid'
                ELSE format('invalid variants (skipped by the refresh, refused by recommend()): %s', v.names) END
    FROM (SELECT count(*) AS n, string_agg(format('%s (%s)', x.name, x.problem), '; ' ORDER BY x.name) AS names
          FROM (SELECT v.name, @extschema@._variant_problem(v.name, v.algorithm, v.params) AS problem
                FROM @extschema@.variants v) x
          WHERE x.problem IS NOT NULL) v
    UNION ALL
    SELECT 10, 'experiment_srm',
           CASE WHEN x.p < 0.001 THEN 'warn' ELSE 'ok' END,
           round(x.p::numeric, 6),
           CASE WHEN x.name IS NULL THEN 'no experiment is running'
                WHEN x.p IS NULL THEN format('experiment %s: no exposure yet', x.name)
                WHEN x.p < 0.001 THEN format('experiment %s: sample ratio mismatch (p = %s < 0.001): the arms do not get the traffic their weights say; see experiment_results', x.name, round(x.p::numeric, 6))
                ELSE format('experiment %s: the arms'' traffic matches their weights (p = %s)', x.name, round(x.p::numeric, 6)) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT e.name, m.p FROM @extschema@.experiments e LEFT JOIN srm m ON m.name = e.name
               WHERE e.status = 'running') x ON true
    UNION ALL
    SELECT 11, 'pair_store', 'ok',
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::numeric END,
           CASE WHEN c.reltuples >= 0 THEN format('%s pairs in pair_counts (estimate from pg_class.reltuples)', c.reltuples::bigint)
                ELSE 'pair_counts is not analyzed yet (no estimate)' END
           || format(', %s on disk with its indexes', pg_size_pretty(pg_total_relation_size(c.oid)))
    FROM pg_class c WHERE c.oid = '@extschema@.pair_counts_base'::regclass
) c
ORDER BY c.ord, c."check";
COMMENT ON VIEW @extschema@.health IS
    'One row per health check (refresh age, last job error, neighbour-list backlog and its age, popularity list age, OpenAI runs, pg_cron jobs, invalid variants, sample-ratio mismatch, pair store size): status ok, warn or critical. Granted to nobody by default; see docs/reference.md, "Health".';
COMMENT ON COLUMN @extschema@.health."check" IS 'What is checked (refresh_age, last_job_error, neighbor_backlog, neighbor_backlog_age, popular_age, llm_<kind>, cron, cron_job:<job>, variants, experiment_srm, pair_store).';
COMMENT ON COLUMN @extschema@.health.status IS 'ok, warn or critical, against the personalize.health_* settings.';
COMMENT ON COLUMN @extschema@.health.value IS 'The measured number: seconds for ages, products for the backlog, a count, a p-value or pairs; NULL when there is none.';
COMMENT ON COLUMN @extschema@.health.detail IS 'The finding in words, naming what is at fault.';
SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);

-- personalize.health is granted to nobody by default (GRANT SELECT ON personalize.health TO
-- a monitoring role). What the view calls is checked against its reader: executable by
-- PUBLIC, and harmless alone: the thresholds, one variant row's validation, and
-- _health_cron_jobs(), which answers only roles that may read personalize.health.
REVOKE ALL ON @extschema@.health FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._variant_problem(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._variant_problems(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._variants_validate() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._health_settings() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._health_cron_jobs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._health_settings() TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._health_cron_jobs() TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._variant_problem(text, text, jsonb) TO PUBLIC;

-- Operations (issue 11): an OpenAI run is committed as 'running' before its setup (picking
-- the customers or products, the catalog), so that a failure there is recorded too
CREATE OR REPLACE PROCEDURE @extschema@.llm_refresh(max_customers integer DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    cfg jsonb;
    run bigint;
    todo bigint[];
    pos integer := 1;
    per_req integer;
    conc integer;
    catalog jsonb;
    queue jsonb := '[]';
    batches jsonb;
    bodies text[];
    asked bigint[];
    r record;
    res record;
    n_customers integer := 0;
    n_requests integer := 0;
    n_retries integer := 0;
    n_failures integer := 0;
    n_rejections integer := 0;
    n_prompt bigint := 0;
    n_completion bigint := 0;
    quota_error text;
    last_error text;
    stop_state text;
    stop_msg text;
    stop_detail text;
    stop_hint text;
    last_notice timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF max_customers IS NOT NULL AND max_customers < 1 THEN
        RAISE EXCEPTION 'max_customers must be positive or null'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_customers),
                  HINT = 'NULL means every customer who needs an answer.';
    END IF;
    cfg := @extschema@._llm_settings();
    per_req := (cfg ->> 'llm_customers_per_request')::integer;
    conc := (cfg ->> 'openai_concurrency')::integer;
    run := @extschema@._llm_run_start('refresh');
    -- the run is recorded before anything can fail; a failure from here on marks it
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    BEGIN
        todo := @extschema@._llm_pick(coalesce(max_customers, 2147483647));
        catalog := @extschema@._llm_catalog();
        UPDATE @extschema@.llm_runs
           SET details = jsonb_build_object('to_do', cardinality(todo), 'customers_per_request', per_req,
                                            'concurrency', conc, 'catalog', jsonb_array_length(catalog))
         WHERE run_id = run;
        RAISE NOTICE 'llm_refresh run %: % customers to ask about, % per request, % requests at a time',
            run, cardinality(todo), per_req, conc;
    EXCEPTION
        WHEN query_canceled THEN
            stop_state := '57014';
            GET STACKED DIAGNOSTICS stop_msg = MESSAGE_TEXT;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS stop_state = RETURNED_SQLSTATE, stop_msg = MESSAGE_TEXT,
                                    stop_detail = PG_EXCEPTION_DETAIL, stop_hint = PG_EXCEPTION_HINT;
    END;
    IF stop_state IS NOT NULL THEN
        PERFORM @extschema@._llm_run_stop(run, stop_state, concat_ws(': ', stop_msg, nullif(stop_detail, '')));
        COMMIT;
        RAISE EXCEPTION USING ERRCODE = stop_state, MESSAGE = stop_msg,
            DETAIL = concat_ws(' ', nullif(stop_detail, ''), format('%s run %s stopped before it sent anything.', 'llm_refresh', run)),
            HINT = coalesce(nullif(stop_hint, ''), 'The run is recorded in personalize.llm_runs; the next run starts over.');
    END IF;
    COMMIT;

    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        -- the round: halves of truncated requests first, then the next customers
        batches := '[]';
        WHILE jsonb_array_length(batches) < conc LOOP
            IF jsonb_array_length(queue) > 0 THEN
                batches := batches || jsonb_build_array(queue -> 0);
                queue := queue - 0;
            ELSIF pos <= cardinality(todo) THEN
                batches := batches || jsonb_build_array(to_jsonb(todo[pos:pos + per_req - 1]));
                pos := pos + per_req;
            ELSE
                EXIT;
            END IF;
        END LOOP;
        EXIT WHEN jsonb_array_length(batches) = 0;

        BEGIN
            SELECT array_agg(@extschema@._llm_chat_body(
                       ARRAY(SELECT jsonb_array_elements_text(b.v)::bigint), catalog)::text ORDER BY b.n)
              INTO bodies
              FROM jsonb_array_elements(batches) WITH ORDINALITY AS b(v, n);
            FOR r IN SELECT * FROM @extschema@._openai_post('/chat/completions', bodies) ORDER BY idx LOOP
                asked := ARRAY(SELECT jsonb_array_elements_text(batches -> (r.idx - 1))::bigint);
                IF r.error_code IS NOT DISTINCT FROM 'not_sent' THEN
                    CONTINUE;          -- never sent (the quota ran out): left for the next run
                END IF;
                n_requests := n_requests + 1;
                n_retries := n_retries + greatest(r.attempts - 1, 0);
                IF r.http_status BETWEEN 200 AND 299 THEN
                    res := @extschema@._llm_ingest(run, asked, r.body);
                    n_customers := n_customers + res.stored;
                    n_rejections := n_rejections + res.rejected;
                    n_prompt := n_prompt + res.prompt_tokens;
                    n_completion := n_completion + res.completion_tokens;
                    IF res.outcome = 'split' THEN
                        queue := queue || jsonb_build_array(to_jsonb(asked[1:cardinality(asked) / 2]),
                                                            to_jsonb(asked[cardinality(asked) / 2 + 1:]));
                    ELSIF res.outcome = 'failed' THEN
                        n_failures := n_failures + 1;
                    END IF;
                ELSE
                    n_failures := n_failures + 1;
                    last_error := r.error;
                    n_rejections := n_rejections + @extschema@._llm_reject_all(run, asked, 'request_failed',
                        format('%s (after %s attempts)', r.error, r.attempts));
                    IF r.error_code = 'insufficient_quota' THEN
                        quota_error := r.error;
                    END IF;
                END IF;
            END LOOP;
            UPDATE @extschema@.llm_runs
               SET customers = n_customers, requests = n_requests, retries = n_retries, failures = n_failures,
                   rejections = n_rejections, prompt_tokens = n_prompt, completion_tokens = n_completion,
                   details = details || jsonb_build_object('done', least(pos - 1, cardinality(todo)))
             WHERE run_id = run;
        EXCEPTION
            WHEN query_canceled THEN
                stop_state := '57014';
                GET STACKED DIAGNOSTICS stop_msg = MESSAGE_TEXT;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS stop_state = RETURNED_SQLSTATE, stop_msg = MESSAGE_TEXT,
                                        stop_detail = PG_EXCEPTION_DETAIL, stop_hint = PG_EXCEPTION_HINT;
        END;
        IF stop_state IS NOT NULL THEN
            PERFORM @extschema@._llm_run_stop(run, stop_state, stop_msg);
            COMMIT;
            RAISE EXCEPTION USING ERRCODE = stop_state, MESSAGE = stop_msg,
                DETAIL = concat_ws(' ', nullif(stop_detail, ''),
                    format('llm_refresh run %s stopped; the %s customers answered before are kept.', run, n_customers)),
                HINT = coalesce(nullif(stop_hint, ''), 'CALL personalize.llm_refresh() again continues with the customers left.');
        END IF;
        COMMIT;
        IF clock_timestamp() - last_notice >= interval '10 seconds' THEN
            RAISE NOTICE 'llm_refresh run %: % of % customers asked, % answered, % requests, % failed',
                run, least(pos - 1, cardinality(todo)), cardinality(todo), n_customers, n_requests, n_failures;
            last_notice := clock_timestamp();
        END IF;
        EXIT WHEN quota_error IS NOT NULL;
    END LOOP;

    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    UPDATE @extschema@.llm_runs
       SET status = CASE WHEN quota_error IS NOT NULL THEN 'quota_exceeded'
                         WHEN n_requests > 0 AND n_failures = n_requests THEN 'failed'
                         ELSE 'completed' END,
           error = coalesce(quota_error, CASE WHEN n_requests > 0 AND n_failures = n_requests THEN last_error END),
           finished_at = clock_timestamp()
     WHERE run_id = run;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF quota_error IS NOT NULL THEN
        RAISE EXCEPTION 'the OpenAI quota is exhausted'
            USING ERRCODE = 'insufficient_resources',
                  DETAIL = format('Run %s stored answers for %s customers, then the API said: %s', run, n_customers, quota_error),
                  HINT = 'Check the plan and billing of the OpenAI account; the next run continues with the customers left.';
    ELSIF n_requests > 0 AND n_failures = n_requests THEN
        RAISE EXCEPTION 'every OpenAI request of llm_refresh run % failed', run
            USING ERRCODE = 'connection_exception',
                  DETAIL = format('%s requests; the last error: %s', n_requests, coalesce(last_error, 'no usable answer (see personalize.llm_rejections)')),
                  HINT = 'Check personalize.openai_base_url, the API key and personalize.llm_rejections for this run.';
    END IF;
    RAISE NOTICE 'llm_refresh run %: done, % customers answered, % requests (% retries, % failed), % rejections, % prompt and % completion tokens',
        run, n_customers, n_requests, n_retries, n_failures, n_rejections, n_prompt, n_completion;
END $$;

CREATE OR REPLACE PROCEDURE @extschema@.llm_batch_submit(max_customers integer DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    cfg jsonb;
    run bigint;
    todo bigint[];
    per_req integer;
    catalog jsonb;
    content text := '';
    line text;
    requests jsonb := '{}';
    n integer := 0;
    pos integer := 1;
    up record;
    cr record;
    file jsonb;
    batch jsonb;
    stop_state text;
    stop_msg text;
    stop_detail text;
    stop_hint text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF max_customers IS NOT NULL AND max_customers < 1 THEN
        RAISE EXCEPTION 'max_customers must be positive or null'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_customers),
                  HINT = 'NULL means every customer who needs an answer.';
    END IF;
    cfg := @extschema@._llm_settings();
    per_req := (cfg ->> 'llm_customers_per_request')::integer;
    run := @extschema@._llm_run_start('batch_submit');
    -- the run is recorded before anything can fail; a failure from here on marks it
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    BEGIN
        todo := @extschema@._llm_pick(least(coalesce(max_customers, 2147483647), 50000 * per_req));
        catalog := @extschema@._llm_catalog();
        WHILE pos <= cardinality(todo) AND length(content) < 190000000 LOOP
            n := n + 1;
            line := jsonb_build_object('custom_id', format('run%s-%s', run, n), 'method', 'POST',
                                       'url', '/v1/chat/completions',
                                       'body', @extschema@._llm_chat_body(todo[pos:pos + per_req - 1], catalog))::text;
            content := content || line || E'\n';
            requests := requests || jsonb_build_object(format('run%s-%s', run, n), to_jsonb(todo[pos:pos + per_req - 1]));
            pos := pos + per_req;
        END LOOP;
        IF n = 0 THEN
            UPDATE @extschema@.llm_runs SET status = 'completed', finished_at = clock_timestamp(),
                   details = jsonb_build_object('batch_id', NULL) WHERE run_id = run;
            RAISE NOTICE 'llm_batch_submit run %: no customer needs an answer', run;
        ELSE
            SELECT * INTO up FROM @extschema@._openai_upload('batch', format('personalize-run-%s.jsonl', run), content);
            file := @extschema@._openai_json('POST /files (the batch input)', up.http_status, up.body, up.error);
            SELECT * INTO cr FROM @extschema@._openai_post('/batches', ARRAY[jsonb_build_object(
                'input_file_id', file ->> 'id', 'endpoint', '/v1/chat/completions', 'completion_window', '24h',
                'metadata', jsonb_build_object('personalize_run', run::text))::text]);
            batch := @extschema@._openai_json(format('POST /batches (input file %s)', file ->> 'id'), cr.http_status, cr.body, cr.error);
            IF batch ->> 'id' IS NULL THEN
                RAISE EXCEPTION 'OpenAI created a batch without an id' USING ERRCODE = 'invalid_text_representation';
            END IF;
            INSERT INTO @extschema@.llm_batches (batch_id, run_id, input_file_id, status, requests, customers)
            VALUES (batch ->> 'id', run, file ->> 'id', coalesce(batch ->> 'status', 'validating'), n, pos - 1 - greatest(pos - 1 - cardinality(todo), 0));
            INSERT INTO @extschema@.llm_batch_requests (batch_id, custom_id, customer_ids)
            SELECT batch ->> 'id', e.key, ARRAY(SELECT jsonb_array_elements_text(e.value)::bigint)
              FROM jsonb_each(requests) e;
            UPDATE @extschema@.llm_runs
               SET status = 'completed', finished_at = clock_timestamp(), requests = 2,
                   retries = greatest(up.attempts - 1, 0) + greatest(cr.attempts - 1, 0),
                   customers = least(pos - 1, cardinality(todo)),
                   details = jsonb_build_object('batch_id', batch ->> 'id', 'input_file_id', file ->> 'id',
                                                'lines', n, 'bytes', length(content))
             WHERE run_id = run;
            RAISE NOTICE 'llm_batch_submit run %: batch % with % requests for % customers', run, batch ->> 'id', n,
                least(pos - 1, cardinality(todo));
        END IF;
    EXCEPTION
        WHEN query_canceled THEN
            stop_state := '57014';
            GET STACKED DIAGNOSTICS stop_msg = MESSAGE_TEXT;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS stop_state = RETURNED_SQLSTATE, stop_msg = MESSAGE_TEXT,
                                    stop_detail = PG_EXCEPTION_DETAIL, stop_hint = PG_EXCEPTION_HINT;
    END;
    IF stop_state IS NOT NULL THEN
        PERFORM @extschema@._llm_run_stop(run, stop_state, concat_ws(': ', stop_msg, nullif(stop_detail, '')));
        COMMIT;
        RAISE EXCEPTION USING ERRCODE = stop_state, MESSAGE = stop_msg,
            DETAIL = concat_ws(' ', nullif(stop_detail, ''), format('llm_batch_submit run %s submitted nothing.', run)),
            HINT = coalesce(nullif(stop_hint, ''), 'CALL personalize.llm_batch_submit() again; the customers are still waiting.');
    END IF;
    COMMIT;
END $$;

CREATE OR REPLACE PROCEDURE @extschema@.embed_products(max_products integer DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    cfg jsonb;
    run bigint;
    emb_model text;
    emb_dims integer;
    conc integer;
    per_req integer := 2048;
    todo bigint[];
    texts text[];
    pos integer := 1;
    bodies text[];
    batches jsonb;
    ids bigint[];
    r record;
    resp jsonb;
    ok boolean;
    failed text;
    tokens bigint;
    n_products integer := 0;
    n_requests integer := 0;
    n_retries integer := 0;
    n_failures integer := 0;
    n_prompt bigint := 0;
    n_rejections integer := 0;
    quota_error text;
    last_error text;
    changed bigint[] := '{}';
    lists bigint := 0;
    stop_state text;
    stop_msg text;
    stop_detail text;
    stop_hint text;
    last_notice timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF max_products IS NOT NULL AND max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be positive or null'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_products),
                  HINT = 'NULL means every product without a current embedding.';
    END IF;
    cfg := @extschema@._llm_settings();
    emb_model := cfg ->> 'openai_embedding_model';
    emb_dims := (cfg ->> 'openai_embedding_dimensions')::integer;
    conc := (cfg ->> 'openai_concurrency')::integer;
    run := @extschema@._llm_run_start('embed');
    -- the run is recorded before anything can fail; a failure from here on marks it
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    BEGIN
        SELECT coalesce(array_agg(p.product_id ORDER BY p.product_id), '{}') INTO todo
          FROM (SELECT p.product_id FROM @extschema@.products p
                 LEFT JOIN @extschema@.product_embeddings e ON e.product_id = p.product_id
                 WHERE p.active
                   AND (e.product_id IS NULL OR e.text_md5 <> md5(concat_ws('|', emb_model, emb_dims, @extschema@._product_text(p))))
                 ORDER BY p.product_id LIMIT coalesce(max_products, 2147483647)) p;
        UPDATE @extschema@.llm_runs SET details = jsonb_build_object('to_do', cardinality(todo), 'dimensions', emb_dims)
         WHERE run_id = run;
        RAISE NOTICE 'embed_products run %: % products to embed with %', run, cardinality(todo), emb_model;
    EXCEPTION
        WHEN query_canceled THEN
            stop_state := '57014';
            GET STACKED DIAGNOSTICS stop_msg = MESSAGE_TEXT;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS stop_state = RETURNED_SQLSTATE, stop_msg = MESSAGE_TEXT,
                                    stop_detail = PG_EXCEPTION_DETAIL, stop_hint = PG_EXCEPTION_HINT;
    END;
    IF stop_state IS NOT NULL THEN
        PERFORM @extschema@._llm_run_stop(run, stop_state, concat_ws(': ', stop_msg, nullif(stop_detail, '')));
        COMMIT;
        RAISE EXCEPTION USING ERRCODE = stop_state, MESSAGE = stop_msg,
            DETAIL = concat_ws(' ', nullif(stop_detail, ''), format('%s run %s stopped before it sent anything.', 'embed_products', run)),
            HINT = coalesce(nullif(stop_hint, ''), 'The run is recorded in personalize.llm_runs; the next run starts over.');
    END IF;
    COMMIT;
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN pos > cardinality(todo);
        batches := '[]';
        bodies := '{}';
        WHILE jsonb_array_length(batches) < conc AND pos <= cardinality(todo) LOOP
            ids := todo[pos:pos + per_req - 1];
            pos := pos + per_req;
            SELECT array_agg(@extschema@._product_text(p) ORDER BY o.n) INTO texts
              FROM unnest(ids) WITH ORDINALITY o(id, n) JOIN @extschema@.products p ON p.product_id = o.id;
            batches := batches || jsonb_build_array(to_jsonb(ids));
            bodies := bodies || (jsonb_build_object('model', emb_model, 'input', to_jsonb(texts), 'encoding_format', 'float')
                                 || CASE WHEN emb_dims > 0 THEN jsonb_build_object('dimensions', emb_dims) ELSE '{}' END)::text;
        END LOOP;
        BEGIN
            FOR r IN SELECT * FROM @extschema@._openai_post('/embeddings', bodies) ORDER BY idx LOOP
                CONTINUE WHEN r.error_code IS NOT DISTINCT FROM 'not_sent';
                ids := ARRAY(SELECT jsonb_array_elements_text(batches -> (r.idx - 1))::bigint);
                n_requests := n_requests + 1;
                n_retries := n_retries + greatest(r.attempts - 1, 0);
                resp := NULL; ok := false; failed := NULL; tokens := 0;
                -- a poisoned answer (\u0000, nesting deeper than the stack allows, a token
                -- count outside bigint, a character the database encoding lacks) fails this
                -- block, which writes nothing: its products are rejected, the run goes on
                IF r.http_status BETWEEN 200 AND 299 THEN
                    BEGIN
                        resp := r.body::jsonb;
                        -- usable only if every input has exactly one finite vector of one length
                        ok := coalesce(jsonb_typeof(resp -> 'data') = 'array', false);
                        IF ok THEN
                            SELECT count(*) = cardinality(ids)
                                   AND count(DISTINCT d ->> 'index') = cardinality(ids)
                                   AND coalesce(bool_and(jsonb_typeof(d -> 'embedding') = 'array'
                                                         AND CASE WHEN (d ->> 'index') ~ '^[0-9]{1,9}$'
                                                                  THEN (d ->> 'index')::integer < cardinality(ids) END), false)
                              INTO ok FROM jsonb_array_elements(resp -> 'data') d;
                        END IF;
                        IF ok THEN
                            SELECT count(DISTINCT jsonb_array_length(d -> 'embedding')) = 1
                                   AND (emb_dims = 0 OR min(jsonb_array_length(d -> 'embedding')) = emb_dims)
                                   AND coalesce(bool_and(jsonb_typeof(x) = 'number'
                                                         AND CASE WHEN jsonb_typeof(x) = 'number' THEN abs(x::text::numeric) < 1e30 END), false)
                              INTO ok FROM jsonb_array_elements(resp -> 'data') d, jsonb_array_elements(d -> 'embedding') x;
                        END IF;
                        tokens := coalesce(CASE WHEN jsonb_typeof(resp #> '{usage,prompt_tokens}') = 'number'
                                                THEN (resp #>> '{usage,prompt_tokens}')::numeric::bigint END, 0);
                    EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
                        GET STACKED DIAGNOSTICS failed = RETURNED_SQLSTATE;
                        failed := failed || ': ' || SQLERRM;
                        resp := NULL; ok := false; tokens := 0;
                    END;
                END IF;
                IF NOT ok THEN
                    n_failures := n_failures + 1;
                    last_error := coalesce(r.error, 'the embeddings answer does not have one finite vector of one length per input'
                                                    || coalesce(' (' || failed || ')', ''));
                    IF r.error_code = 'insufficient_quota' THEN
                        quota_error := r.error;
                    END IF;
                    INSERT INTO @extschema@.llm_rejections (run_id, product_id, reason, detail)
                    SELECT run, id, CASE WHEN r.http_status BETWEEN 200 AND 299 THEN 'malformed_response' ELSE 'request_failed' END,
                           left(last_error, 500)
                      FROM unnest(ids) id;
                    n_rejections := n_rejections + cardinality(ids);
                    CONTINUE;
                END IF;
                n_prompt := n_prompt + tokens;
                -- a component too small for a normal real (|x| < 1e-37) is stored as 0, where
                -- real input would fail (22003): it weighs nothing in a cosine
                INSERT INTO @extschema@.product_embeddings AS e (product_id, model, embedding, text_md5, embedded_at)
                SELECT p.product_id, coalesce(resp ->> 'model', emb_model),
                       ARRAY(SELECT CASE WHEN abs(x::text::numeric) < 1e-37 THEN 0 ELSE x::text::real END
                               FROM jsonb_array_elements(d -> 'embedding') x),
                       md5(concat_ws('|', emb_model, emb_dims, @extschema@._product_text(p))), clock_timestamp()
                  FROM jsonb_array_elements(resp -> 'data') d
                  JOIN @extschema@.products p ON p.product_id = ids[(d ->> 'index')::integer + 1]
                ON CONFLICT (product_id) DO UPDATE
                   SET model = excluded.model, embedding = excluded.embedding,
                       text_md5 = excluded.text_md5, embedded_at = excluded.embedded_at;
                n_products := n_products + cardinality(ids);
                changed := changed || ids;
            END LOOP;
            UPDATE @extschema@.llm_runs
               SET customers = n_products, requests = n_requests, retries = n_retries, failures = n_failures,
                   rejections = n_rejections, prompt_tokens = n_prompt,
                   details = details || jsonb_build_object('embedded', n_products)
             WHERE run_id = run;
        EXCEPTION
            WHEN query_canceled THEN
                stop_state := '57014';
                GET STACKED DIAGNOSTICS stop_msg = MESSAGE_TEXT;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS stop_state = RETURNED_SQLSTATE, stop_msg = MESSAGE_TEXT,
                                        stop_detail = PG_EXCEPTION_DETAIL, stop_hint = PG_EXCEPTION_HINT;
        END;
        IF stop_state IS NOT NULL THEN
            PERFORM @extschema@._llm_run_stop(run, stop_state, stop_msg);
            COMMIT;
            RAISE EXCEPTION USING ERRCODE = stop_state, MESSAGE = stop_msg,
                DETAIL = concat_ws(' ', nullif(stop_detail, ''), format('embed_products run %s stopped; %s embeddings stored before are kept.', run, n_products)),
                HINT = coalesce(nullif(stop_hint, ''), 'CALL personalize.embed_products() again continues with the products left.');
        END IF;
        COMMIT;
        IF clock_timestamp() - last_notice >= interval '10 seconds' THEN
            RAISE NOTICE 'embed_products run %: % of % products embedded', run, n_products, cardinality(todo);
            last_notice := clock_timestamp();
        END IF;
        EXIT WHEN quota_error IS NOT NULL;
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- the content lists of this run's products, and of any product embedded by an earlier
    -- run that stopped (cancel, crash) before it got to this step
    changed := changed || ARRAY(SELECT e.product_id FROM @extschema@.product_embeddings e
                                 JOIN @extschema@.products p ON p.product_id = e.product_id AND p.active
                                WHERE NOT EXISTS (SELECT FROM @extschema@.neighbors n
                                                   WHERE n.measure = 'content' AND n.product_id = e.product_id));
    IF cardinality(changed) > 0 THEN
        lists := @extschema@._refresh_content_neighbors(ARRAY(SELECT DISTINCT unnest(changed)));
    END IF;
    UPDATE @extschema@.llm_runs
       SET status = CASE WHEN quota_error IS NOT NULL THEN 'quota_exceeded'
                         WHEN n_requests > 0 AND n_failures = n_requests THEN 'failed' ELSE 'completed' END,
           error = coalesce(quota_error, CASE WHEN n_requests > 0 AND n_failures = n_requests THEN last_error END),
           finished_at = clock_timestamp(), details = details || jsonb_build_object('content_lists', lists)
     WHERE run_id = run;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF quota_error IS NOT NULL THEN
        RAISE EXCEPTION 'the OpenAI quota is exhausted'
            USING ERRCODE = 'insufficient_resources',
                  DETAIL = format('embed_products run %s stored %s embeddings, then the API said: %s', run, n_products, quota_error),
                  HINT = 'Check the plan and billing of the OpenAI account; the next run continues with the products left.';
    ELSIF n_requests > 0 AND n_failures = n_requests THEN
        RAISE EXCEPTION 'every OpenAI request of embed_products run % failed', run
            USING ERRCODE = 'connection_exception',
                  DETAIL = format('%s requests; the last error: %s', n_requests, last_error),
                  HINT = 'Check personalize.openai_base_url, the API key and personalize.llm_rejections for this run.';
    END IF;
    RAISE NOTICE 'embed_products run %: done, % products embedded in % requests (% failed), % content neighbour lists written',
        run, n_products, n_requests, n_failures, lists;
END $$;

SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);
-- Hardening (issue 10, defect 11): clients cannot choose interaction ids. In 0.1.0 the
-- column was GENERATED BY DEFAULT, and a role that may insert could place an explicit id just
-- ahead of the sequence, after which every default insert failed with 23505. The column
-- becomes GENERATED ALWAYS (a plain explicit id is refused with 428C9), and the id guard
-- trigger (src/id_guard.c) refuses ids ahead of the sequence that OVERRIDING SYSTEM VALUE or
-- COPY bring from a role without UPDATE on the sequence. A table already wedged that way is
-- repaired: the sequence is advanced past max(interaction_id) (setval; no row is touched).
-- Written as in sql/parts/catalog.sql and sql/parts/model.sql (a fresh install and an
-- updated one are the same).
------------------------------------------------------------------------------
ALTER TABLE @extschema@.interactions ALTER COLUMN interaction_id SET GENERATED ALWAYS;
SELECT pg_catalog.setval('@extschema@.interactions_interaction_id_seq', m.max_id, true)
  FROM (SELECT pg_catalog.max(i.interaction_id) AS max_id FROM @extschema@.interactions i) m,
       @extschema@.interactions_interaction_id_seq s
 WHERE m.max_id OPERATOR(pg_catalog.>) (CASE WHEN s.is_called THEN s.last_value
                                         ELSE s.last_value OPERATOR(pg_catalog.-) 1 END);
CREATE FUNCTION @extschema@._interactions_id_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'personalize_interactions_id_guard';
REVOKE ALL ON FUNCTION @extschema@._interactions_id_guard() FROM PUBLIC;
CREATE TRIGGER interactions_id_guard AFTER INSERT ON @extschema@.interactions
    REFERENCING NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_id_guard();

-- Hardening (issue 10, defect 13): log_exposure() refuses more than 1000 products (recommend()'s
-- k maximum: one exposure row is one page) with 22023. Same signature, ACL and comment; the
-- body is the one of sql/parts/experiments.sql.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.log_exposure(customer_id bigint, product_ids bigint[], variant text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ex_id bigint;
    ex_name text;
    assigned text;
    shown text;
    arm_no smallint;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        PERFORM @extschema@._standby_refusal('log_exposure',
            'Call recommend() on the standby and log_exposure() on the primary, e.g. through the application''s primary connection.');
    END IF;
    IF customer_id IS NULL OR product_ids IS NULL THEN
        RAISE EXCEPTION 'customer_id and product_ids must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass an empty array when nothing was shown.';
    END IF;
    -- one exposure row is one page of recommendations: at most recommend()'s k maximum
    IF pg_catalog.cardinality(product_ids) > 1000 THEN
        RAISE EXCEPTION 'product_ids must hold at most 1000 products'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('Got %s products.', pg_catalog.cardinality(product_ids)),
                  HINT = 'Log the products one page showed; recommend() returns at most 1000.';
    END IF;
    SELECT e.experiment_id, e.name INTO ex_id, ex_name FROM @extschema@.experiments e WHERE e.status = 'running';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    assigned := @extschema@.assigned_variant(ex_name, customer_id);
    IF log_exposure.variant IS NULL AND assigned IS NULL THEN
        RETURN false;
    END IF;
    shown := coalesce(log_exposure.variant, assigned);
    IF shown = assigned THEN
        SELECT a.arm INTO arm_no FROM @extschema@.experiment_arms a WHERE a.experiment_id = ex_id AND a.variant = shown;
    END IF;
    INSERT INTO @extschema@.exposures (experiment_id, customer_id, variant, arm, product_ids)
    VALUES (ex_id, customer_id, shown, arm_no, product_ids);
    RETURN true;
END $$;
SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);

-- >>> Operations (issue 11, part 5): ingestion
------------------------------------------------------------------------------
-- Operations (issue 11, part 5): ingest() with its batches and rejects tables, the
-- optional interactions.event_key (unique when set), merge_customers(); forget_customer()
-- also erases the rows ingest() rejected for the customer. No table is rewritten: the new
-- column is nullable without a default; its check and the unique index read
-- interactions once each.
------------------------------------------------------------------------------
ALTER TABLE @extschema@.interactions ADD COLUMN event_key text,
    ADD CONSTRAINT interactions_event_key_check CHECK (pg_catalog.length(event_key) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(event_key) OPERATOR(pg_catalog.<=) 200);
CREATE UNIQUE INDEX interactions_event_key_idx ON @extschema@.interactions (event_key) WHERE event_key IS NOT NULL;
COMMENT ON COLUMN @extschema@.interactions.event_key IS
    'Optional idempotency key of the event (1 to 200 characters), unique when set: a retried event with the same key is a duplicate (skipped by ingest(), 23505 for a plain INSERT).';

CREATE TABLE @extschema@.ingest_batches (
    batch_id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    source            text NOT NULL,
    loaded_by         name NOT NULL,
    create_customers  boolean NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    seconds           double precision,
    rows_read         bigint,
    kept              bigint,
    rejected          bigint,
    customers_created bigint,
    counts            jsonb
);
COMMENT ON TABLE @extschema@.ingest_batches IS 'One row per ingest() call: the source, who ran it, and how many rows each rule kept or rejected.';
COMMENT ON COLUMN @extschema@.ingest_batches.batch_id IS 'The batch id ingest() returns and ingest_rejects refers to.';
COMMENT ON COLUMN @extschema@.ingest_batches.source IS 'The staging table (or view) read, as its name was then.';
COMMENT ON COLUMN @extschema@.ingest_batches.loaded_by IS 'The role that called ingest() (current_user).';
COMMENT ON COLUMN @extschema@.ingest_batches.create_customers IS 'Whether unknown customers were created (ingest()''s create_customers argument).';
COMMENT ON COLUMN @extschema@.ingest_batches.started_at IS 'Start of the transaction that ran ingest().';
COMMENT ON COLUMN @extschema@.ingest_batches.seconds IS 'How long ingest() took (up to its last step, the rejects).';
COMMENT ON COLUMN @extschema@.ingest_batches.rows_read IS 'Rows of the source: kept + rejected.';
COMMENT ON COLUMN @extschema@.ingest_batches.kept IS 'Rows inserted into interactions.';
COMMENT ON COLUMN @extschema@.ingest_batches.rejected IS 'Rows written to ingest_rejects.';
COMMENT ON COLUMN @extschema@.ingest_batches.customers_created IS 'Customers rows created for unknown ids (0 unless create_customers).';
COMMENT ON COLUMN @extschema@.ingest_batches.counts IS 'Rows per rule, as ingest() returned them: {"kept": n, "unknown_product": n, ...}.';

CREATE TABLE @extschema@.ingest_rejects (
    reject_id   bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    batch_id    bigint NOT NULL REFERENCES @extschema@.ingest_batches (batch_id) ON DELETE CASCADE,
    line        bigint NOT NULL,
    rule        text NOT NULL,
    detail      text,
    customer_id bigint,
    raw         jsonb NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT ingest_rejects_rule_check CHECK (rule OPERATOR(pg_catalog.=) ANY (ARRAY[
        'missing_value', 'unparsable', 'unknown_event_type', 'bad_quantity', 'bad_occurred_at',
        'bad_event_key', 'unknown_product', 'unknown_customer', 'duplicate_event']))
);
COMMENT ON TABLE @extschema@.ingest_rejects IS 'Every source row ingest() did not insert, as it was (raw), with the first rule it failed.';
COMMENT ON COLUMN @extschema@.ingest_rejects.reject_id IS 'Row id.';
COMMENT ON COLUMN @extschema@.ingest_rejects.batch_id IS 'The ingest() call (ingest_batches) that rejected the row.';
COMMENT ON COLUMN @extschema@.ingest_rejects.line IS 'Position of the row in the read of the source, from 1 (for a freshly loaded staging table: its line in the file).';
COMMENT ON COLUMN @extschema@.ingest_rejects.rule IS 'The first rule the row failed: missing_value, unparsable, unknown_event_type, bad_quantity, bad_occurred_at, bad_event_key, unknown_product, unknown_customer or duplicate_event.';
COMMENT ON COLUMN @extschema@.ingest_rejects.detail IS 'Which column (missing_value, unparsable) or which kind of duplicate; NULL otherwise.';
COMMENT ON COLUMN @extschema@.ingest_rejects.customer_id IS 'The row''s customer id when it parses (forget_customer() erases by it); NULL otherwise.';
COMMENT ON COLUMN @extschema@.ingest_rejects.raw IS 'The whole source row, every column, as to_jsonb() gives it.';
COMMENT ON COLUMN @extschema@.ingest_rejects.rejected_at IS 'Start of the transaction that rejected it.';
CREATE INDEX ingest_rejects_batch_idx ON @extschema@.ingest_rejects (batch_id, line);
CREATE INDEX ingest_rejects_customer_idx ON @extschema@.ingest_rejects (customer_id);

-- rejected rows are the shop's data too (nothing lost): pg_dump keeps them and their batches
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_batches', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_batches_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_rejects_reject_id_seq', '');

-- a text that may hold a timestamp: the value, or NULL when it does not parse (one
-- subtransaction per call: a typed timestamptz column in the staging table avoids it)
CREATE FUNCTION @extschema@._ingest_timestamptz(value text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value !~ '^\s*[0-9]' THEN
        RETURN NULL;   -- infinity, epoch, now, today, ...: not an event's time
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END $$;
COMMENT ON FUNCTION @extschema@._ingest_timestamptz(text) IS
    'ingest(): the timestamp a text holds (session TimeZone when it names no offset), NULL when it does not parse.';

-- The SELECT list of the staging table's read: every column ingest() uses, parsed, and
-- per required column whether it is missing. Columns are found by name; a text (or any
-- other) column is parsed from its text form, an integer or timestamp column used as is.
CREATE FUNCTION @extschema@._ingest_columns(source regclass) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    types jsonb;
    c text;
    t text;
    txt text;
    out text[] := '{}';
BEGIN
    SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, NULL)) INTO types
      FROM pg_attribute a WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped;
    IF types IS NULL OR NOT (types ? 'customer_id' AND types ? 'event_type' AND (types ? 'product_id' OR types ? 'sku')) THEN
        RAISE EXCEPTION 'source % lacks a column ingest() needs', source
            USING ERRCODE = 'undefined_column',
                  DETAIL = format('Its columns: %s.', coalesce((SELECT string_agg(k, ', ' ORDER BY k COLLATE "C")
                                                             FROM jsonb_object_keys(types) k), 'none')),
                  HINT = 'A staging table has customer_id, event_type and product_id (or sku); quantity, occurred_at and event_key are optional.';
    END IF;
    FOREACH c IN ARRAY ARRAY['customer_id', 'product_id'] LOOP
        t := types ->> c;
        txt := format('nullif(btrim(_ingest_src.%I::text), %L)', c, '');
        IF t IS NULL THEN
            out := out || format('false AS %I, NULL::bigint AS %I', c || '_missing', c);
        ELSIF t IN ('bigint', 'integer', 'smallint') THEN
            out := out || format('_ingest_src.%1$I IS NULL AS %2$I, _ingest_src.%1$I::bigint AS %1$I', c, c || '_missing');
        ELSE
            -- an integer, also as a float's text ("17850.0", as spreadsheets write ids)
            out := out || format($f$%1$s IS NULL AS %2$I,
                CASE WHEN %1$s ~ '^[+-]?[0-9]{1,19}(\.0*)?$'
                      AND split_part(%1$s, '.', 1)::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
                     THEN split_part(%1$s, '.', 1)::bigint END AS %3$I$f$, txt, c || '_missing', c);
        END IF;
    END LOOP;
    out := out || CASE WHEN types ? 'sku' THEN format('nullif(btrim(_ingest_src.sku::text), %L) AS sku', '')
                       ELSE 'NULL::text AS sku' END;
    out := out || format('nullif(btrim(_ingest_src.event_type::text), %L) IS NULL AS event_type_missing, '
                         '_ingest_src.event_type::text AS event_type', '');
    -- quantity: 1 when absent or empty; NULL when it is no integer (bad_quantity)
    t := types ->> 'quantity';
    out := out || CASE
        WHEN t IS NULL THEN '1::bigint AS quantity'
        WHEN t IN ('bigint', 'integer', 'smallint') THEN 'coalesce(_ingest_src.quantity::bigint, 1) AS quantity'
        ELSE $f$CASE WHEN nullif(btrim(_ingest_src.quantity::text), '') IS NULL THEN 1
                     WHEN btrim(_ingest_src.quantity::text) ~ '^[+-]?[0-9]{1,12}$' THEN btrim(_ingest_src.quantity::text)::bigint
                END AS quantity$f$ END;
    -- occurred_at: now() when absent or empty; NULL when it does not parse (bad_occurred_at)
    t := types ->> 'occurred_at';
    out := out || CASE
        WHEN t IS NULL THEN 'now() AS occurred_at'
        WHEN t = 'timestamp with time zone' THEN 'coalesce(_ingest_src.occurred_at, now()) AS occurred_at'
        WHEN t IN ('timestamp without time zone', 'date') THEN 'coalesce(_ingest_src.occurred_at::timestamptz, now()) AS occurred_at'
        ELSE $f$CASE WHEN nullif(btrim(_ingest_src.occurred_at::text), '') IS NULL THEN now()
                     ELSE @extschema@._ingest_timestamptz(_ingest_src.occurred_at::text) END AS occurred_at$f$ END;
    out := out || CASE WHEN types ? 'event_key' THEN '_ingest_src.event_key::text AS event_key' ELSE 'NULL::text AS event_key' END;
    RETURN array_to_string(out, E',\n           ');
END $$;
COMMENT ON FUNCTION @extschema@._ingest_columns(regclass) IS
    'ingest(): the parsed columns of a staging table, found by name (SQL text for its read).';

CREATE FUNCTION @extschema@.ingest(source regclass, create_customers boolean DEFAULT false)
    RETURNS TABLE (batch_id bigint, rule text, rows bigint)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b bigint;
    started timestamptz := clock_timestamp();
    by_sku boolean;
    has_keys boolean;
    n_keyed bigint;
    n_created bigint := 0;
    by_rule jsonb;
    rules text[] := ARRAY['kept', 'missing_value', 'unparsable', 'unknown_event_type', 'bad_quantity',
                          'bad_occurred_at', 'bad_event_key', 'unknown_product', 'unknown_customer', 'duplicate_event'];
BEGIN
    IF source IS NULL OR create_customers IS NULL THEN
        RAISE EXCEPTION 'source and create_customers must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the staging table, e.g. personalize.ingest(''staging_events'').';
    END IF;
    IF source = '@extschema@.interactions'::regclass THEN
        RAISE EXCEPTION 'source must not be personalize.interactions'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'COPY the events into a staging table and ingest that.';
    END IF;
    by_sku := NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = source AND a.attname = 'product_id'
                                                         AND a.attnum > 0 AND NOT a.attisdropped);
    has_keys := EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = source AND a.attname = 'event_key'
                                                    AND a.attnum > 0 AND NOT a.attisdropped);
    -- 1. classify every row by the first rule it fails (NULL: passes); the raw row is kept
    --    only for the rows that will not be inserted
    EXECUTE format($q$
CREATE TEMP TABLE _personalize_ingest ON COMMIT DROP AS
SELECT w.line, w.customer_id, w.product_id, w.event_type,
       CASE WHEN w.quantity BETWEEN 1 AND 2147483647 THEN w.quantity::integer END AS quantity, w.occurred_at, w.event_key,
       w.known_customer, coalesce(w.rule, w.dup, 'kept') AS rule,
       CASE WHEN w.rule IN ('missing_value', 'unparsable') THEN w.detail
            WHEN w.rule IS NULL AND w.dup IS NOT NULL
            THEN CASE WHEN w.key_taken THEN 'event key already in interactions' ELSE 'event key repeated in this batch' END
       END AS detail,
       CASE WHEN coalesce(w.rule, w.dup) IS NOT NULL THEN to_jsonb(w.src) END AS raw
FROM (
    SELECT v.*,
           %6$s AS dup
    FROM (
        SELECT p.line, p.src, p.customer_id, pr.product_id, p.event_type, p.quantity, p.occurred_at, p.event_key,
               c.customer_id IS NOT NULL AS known_customer,
               CASE WHEN p.customer_id_missing OR p.event_type_missing OR (%2$L::boolean AND p.sku IS NULL)
                         OR (NOT %2$L::boolean AND p.product_id_missing) THEN 'missing_value'
                    WHEN p.customer_id IS NULL OR (NOT %2$L::boolean AND p.product_id IS NULL) THEN 'unparsable'
                    WHEN e.event_type IS NULL THEN 'unknown_event_type'
                    WHEN p.quantity IS NULL OR p.quantity <= 0 OR p.quantity > 2147483647 THEN 'bad_quantity'
                    WHEN p.occurred_at IS NULL OR p.occurred_at < '1990-01-01 00:00:00+00'::timestamptz
                         OR p.occurred_at >= '2200-01-01 00:00:00+00'::timestamptz THEN 'bad_occurred_at'
                    WHEN length(p.event_key) NOT BETWEEN 1 AND 200 THEN 'bad_event_key'
                    WHEN pr.product_id IS NULL THEN 'unknown_product'
                    WHEN c.customer_id IS NULL AND NOT %3$L::boolean THEN 'unknown_customer'
               END AS rule,
               concat_ws(', ', CASE WHEN p.customer_id_missing THEN 'customer_id'
                                    WHEN p.customer_id IS NULL THEN 'customer_id' END,
                               CASE WHEN %2$L::boolean AND p.sku IS NULL THEN 'sku'
                                    WHEN NOT %2$L::boolean AND (p.product_id_missing OR p.product_id IS NULL) THEN 'product_id' END,
                               CASE WHEN p.event_type_missing THEN 'event_type' END) AS detail,
               p.event_key IS NOT NULL
                   AND EXISTS (SELECT FROM @extschema@.interactions i WHERE i.event_key = p.event_key) AS key_taken
        FROM (SELECT row_number() OVER () AS line, _ingest_src AS src,
           %4$s
              FROM %1$s _ingest_src) p
        LEFT JOIN @extschema@.event_types e ON e.event_type = p.event_type
        LEFT JOIN @extschema@.products pr ON %5$s
        LEFT JOIN @extschema@.customers c ON c.customer_id = p.customer_id
    ) v
) w$q$, source, by_sku, ingest.create_customers, @extschema@._ingest_columns(source),
        CASE WHEN by_sku THEN 'pr.sku = p.sku' ELSE 'pr.product_id = p.product_id' END,
        -- without an event_key column, no sort by key
        CASE WHEN has_keys THEN $d$CASE WHEN v.rule IS NULL AND v.event_key IS NOT NULL
                     AND (v.key_taken OR row_number() OVER (PARTITION BY v.rule IS NULL, v.event_key ORDER BY v.line) > 1)
                THEN 'duplicate_event' END$d$ ELSE 'NULL::text' END);

    -- 2. unknown customers of kept rows, when asked to
    IF ingest.create_customers THEN
        INSERT INTO @extschema@.customers (customer_id)
        SELECT DISTINCT t.customer_id FROM pg_temp._personalize_ingest t
        WHERE t.rule = 'kept' AND NOT t.known_customer
        ORDER BY 1
        ON CONFLICT (customer_id) DO NOTHING;
        GET DIAGNOSTICS n_created = ROW_COUNT;
    END IF;

    -- 3. the events: one statement through the triggers, in time order (the ids decide
    --    which products are in-model); an event key inserted meanwhile is skipped
    CREATE TEMP TABLE _personalize_ingest_keys ON COMMIT DROP AS
    WITH ins AS (
        INSERT INTO @extschema@.interactions (customer_id, product_id, event_type, quantity, occurred_at, event_key)
        SELECT t.customer_id, t.product_id, t.event_type, t.quantity, t.occurred_at, t.event_key
        FROM pg_temp._personalize_ingest t WHERE t.rule = 'kept'
        ORDER BY t.occurred_at, t.line
        ON CONFLICT (event_key) WHERE event_key IS NOT NULL DO NOTHING
        RETURNING event_key)
    SELECT ins.event_key FROM ins WHERE ins.event_key IS NOT NULL;
    GET DIAGNOSTICS n_keyed = ROW_COUNT;
    IF n_keyed < (SELECT count(*) FROM pg_temp._personalize_ingest t WHERE t.rule = 'kept' AND t.event_key IS NOT NULL) THEN
        -- another transaction committed the same key between the check and the insert
        UPDATE pg_temp._personalize_ingest t
           SET rule = 'duplicate_event', detail = 'event key inserted concurrently',
               raw = jsonb_build_object('customer_id', t.customer_id, 'product_id', t.product_id, 'event_type', t.event_type,
                                        'quantity', t.quantity, 'occurred_at', t.occurred_at, 'event_key', t.event_key)
         WHERE t.rule = 'kept' AND t.event_key IS NOT NULL
           AND NOT EXISTS (SELECT FROM pg_temp._personalize_ingest_keys k WHERE k.event_key = t.event_key);
    END IF;
    DROP TABLE pg_temp._personalize_ingest_keys;

    -- 4. the batch, and every other row as it was, with its rule
    SELECT jsonb_object_agg(r.rule, coalesce(n.rows, 0)) INTO by_rule
    FROM unnest(rules) AS r(rule)
    LEFT JOIN (SELECT t.rule, count(*) AS rows FROM pg_temp._personalize_ingest t GROUP BY t.rule) n ON n.rule = r.rule;
    INSERT INTO @extschema@.ingest_batches AS x
        (source, loaded_by, create_customers, seconds, rows_read, kept, rejected, customers_created, counts)
    SELECT ingest.source::text, current_user, ingest.create_customers, extract(epoch FROM clock_timestamp() - started),
           sum(j.v::bigint), sum(j.v::bigint) FILTER (WHERE j.k = 'kept'), sum(j.v::bigint) FILTER (WHERE j.k <> 'kept'),
           n_created, by_rule
    FROM jsonb_each_text(by_rule) AS j(k, v)
    RETURNING x.batch_id INTO b;
    INSERT INTO @extschema@.ingest_rejects (batch_id, line, rule, detail, customer_id, raw)
    SELECT b, t.line, t.rule, t.detail, t.customer_id, t.raw
    FROM pg_temp._personalize_ingest t WHERE t.rule <> 'kept' ORDER BY t.line;
    DROP TABLE pg_temp._personalize_ingest;
    RETURN QUERY SELECT b, r.rule, (by_rule ->> r.rule)::bigint
                 FROM unnest(rules) WITH ORDINALITY AS r(rule, ord) ORDER BY r.ord;
END $$;
COMMENT ON FUNCTION @extschema@.ingest(regclass, boolean) IS
    'Load a staging table of events in one INSERT through the model triggers: returns the batch id and the rows per rule (kept, or the first rule failed); every row not inserted goes to ingest_rejects as it was.';

-- Move a customer's rows to another customer (an anonymous visitor who logs in).
CREATE FUNCTION @extschema@.merge_customers(from_id bigint, into_id bigint)
    RETURNS TABLE (interactions bigint, feedback bigint, exposures bigint)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_i bigint;
    n_f bigint;
    n_x bigint;
    cur bigint;
BEGIN
    IF from_id IS NULL OR into_id IS NULL THEN
        RAISE EXCEPTION 'from_id and into_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the visitor''s id and the id of the account they logged into.';
    END IF;
    IF from_id = into_id THEN
        RAISE EXCEPTION 'cannot merge customer % into itself', from_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- a batch recommendations publish in progress finishes first, or waits (issue 12)
    PERFORM pg_advisory_xact_lock_shared(1885696627, 2);
    -- Both customer rows, in id order (two merges never deadlock): the visitor's FOR UPDATE,
    -- which makes writers of its events (their foreign-key check takes KEY SHARE) wait for the
    -- merge instead of deadlocking with its delete of the row (as in forget_customer()); the
    -- account's FOR NO KEY UPDATE, which writers of its events pass.
    FOR i IN 1 .. 2 LOOP
        cur := CASE WHEN (i = 1) = (from_id < into_id) THEN from_id ELSE into_id END;
        IF cur = from_id THEN
            PERFORM FROM @extschema@.customers c WHERE c.customer_id = cur FOR UPDATE;
        ELSE
            PERFORM FROM @extschema@.customers c WHERE c.customer_id = cur FOR NO KEY UPDATE;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown customer %', cur
                USING ERRCODE = 'no_data_found',
                      DETAIL = 'Both customers must be in personalize.customers.',
                      HINT = 'Insert the account''s customer row first.';
        END IF;
    END LOOP;
    -- one UPDATE: the trigger recomputes both customers' affected (customer, product) rows
    UPDATE @extschema@.interactions i SET customer_id = into_id WHERE i.customer_id = from_id;
    GET DIAGNOSTICS n_i = ROW_COUNT;
    -- their archived events too (issue 11): the archive's trigger recomputes likewise
    UPDATE @extschema@.interactions_archive a SET customer_id = into_id WHERE a.customer_id = from_id;
    GET DIAGNOSTICS n_f = ROW_COUNT;
    n_i := n_i + n_f;
    UPDATE @extschema@.customer_feedback f SET customer_id = into_id WHERE f.customer_id = from_id;
    GET DIAGNOSTICS n_f = ROW_COUNT;
    UPDATE @extschema@.exposures x SET customer_id = into_id
      FROM @extschema@.experiments e WHERE x.experiment_id = e.experiment_id AND x.customer_id = from_id;
    GET DIAGNOSTICS n_x = ROW_COUNT;
    -- what the LLM said about the visitor is stale: it goes (as the cascade from the row would)
    DELETE FROM @extschema@.llm_rejections r WHERE r.customer_id = from_id;
    DELETE FROM @extschema@.llm_batch_requests q
     WHERE from_id = ANY (q.customer_ids) AND cardinality(array_remove(q.customer_ids, from_id)) = 0;
    UPDATE @extschema@.llm_batch_requests q SET customer_ids = array_remove(q.customer_ids, from_id)
     WHERE from_id = ANY (q.customer_ids);
    UPDATE @extschema@.ingest_rejects r SET customer_id = into_id WHERE r.customer_id = from_id;
    -- issue 12: the visitor's batch recommendations go (the account's are recomputed by the next
    -- run when events moved: the update marked it stale), their impressions move
    DELETE FROM @extschema@.batch_recommendations b WHERE b.customer_id = from_id;
    DELETE FROM @extschema@._batch_stale s WHERE s.customer_id = from_id;
    UPDATE @extschema@.impressions m SET customer_id = into_id WHERE m.customer_id = from_id;
    -- the account keeps its own country and attributes, and takes the visitor's where it has none
    UPDATE @extschema@.customers c
       SET country = coalesce(c.country, f.country),
           attributes = CASE WHEN c.attributes IS NULL AND f.attributes IS NULL THEN NULL
                             ELSE coalesce(f.attributes, '{}') || coalesce(c.attributes, '{}') END,
           created_at = least(c.created_at, f.created_at)
      FROM @extschema@.customers f
     WHERE c.customer_id = into_id AND f.customer_id = from_id;
    DELETE FROM @extschema@.customers c WHERE c.customer_id = from_id;
    RETURN QUERY SELECT n_i, n_f, n_x;
END $$;
COMMENT ON FUNCTION @extschema@.merge_customers(bigint, bigint) IS
    'Move every row of customer from_id (events, with the model following exactly, feedback, exposures, ingest rejects, impressions) to into_id, drop from_id''s batch recommendations, then delete from_id''s customer row.';

CREATE OR REPLACE FUNCTION @extschema@.forget_customer(customer_id bigint)
    RETURNS TABLE (interactions bigint, feedback bigint, customer boolean)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_i bigint;
    n_a bigint;
    n_f bigint;
    n_c bigint;
BEGIN
    IF customer_id IS NULL THEN
        RAISE EXCEPTION 'customer_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the id of the customer to forget.';
    END IF;
    -- a batch recommendations publish in progress finishes first (it then skips them), or waits
    PERFORM pg_advisory_xact_lock_shared(1885696627, 2);
    -- lock the customer first: writers of their events wait for us instead of deadlocking
    -- with us between their foreign-key check and their model update
    PERFORM FROM @extschema@.customers c WHERE c.customer_id = forget_customer.customer_id FOR UPDATE;
    -- the trigger subtracts their contribution and removes their customer_items and customer_state rows
    DELETE FROM @extschema@.interactions i WHERE i.customer_id = forget_customer.customer_id;
    GET DIAGNOSTICS n_i = ROW_COUNT;
    -- their archived events too (issue 11): they count in the model, which subtracts them
    DELETE FROM @extschema@.interactions_archive a WHERE a.customer_id = forget_customer.customer_id;
    GET DIAGNOSTICS n_a = ROW_COUNT;
    n_i := n_i + n_a;
    DELETE FROM @extschema@.customer_feedback f WHERE f.customer_id = forget_customer.customer_id;
    GET DIAGNOSTICS n_f = ROW_COUNT;
    -- what experiments showed them (experiment_results no longer counts them); through the
    -- experiments, so that the (experiment_id, customer_id) index serves it
    DELETE FROM @extschema@.exposures x USING @extschema@.experiments e
     WHERE x.experiment_id = e.experiment_id AND x.customer_id = forget_customer.customer_id;
    -- what the LLM said about them goes too (llm_recommendations cascade from the customer row),
    -- and their id leaves the requests of unfinished batches (a request left with nobody goes)
    DELETE FROM @extschema@.llm_rejections r WHERE r.customer_id = forget_customer.customer_id;
    -- rows ingest() rejected that name them (issue 11)
    DELETE FROM @extschema@.ingest_rejects r WHERE r.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@.llm_batch_requests q
     WHERE forget_customer.customer_id = ANY (q.customer_ids)
       AND cardinality(array_remove(q.customer_ids, forget_customer.customer_id)) = 0;
    UPDATE @extschema@.llm_batch_requests q SET customer_ids = array_remove(q.customer_ids, forget_customer.customer_id)
     WHERE forget_customer.customer_id = ANY (q.customer_ids);
    -- their batch recommendations, the marks that they changed, their impressions (issue 12);
    -- a running batch run's rows of them go from its work list and staging (a batch that
    -- computes them meanwhile writes rows its publish skips)
    DELETE FROM @extschema@.batch_recommendations b WHERE b.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@._batch_stale s WHERE s.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@._batch_todo t WHERE t.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@._batch_staging g WHERE g.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@.impressions m WHERE m.customer_id = forget_customer.customer_id;
    DELETE FROM @extschema@.customers c WHERE c.customer_id = forget_customer.customer_id;
    GET DIAGNOSTICS n_c = ROW_COUNT;
    RETURN QUERY SELECT n_i, n_f, n_c > 0;
END $$;
COMMENT ON FUNCTION @extschema@.forget_customer(bigint) IS
    'Erase a customer: every row that names them (interactions and archived events, whose model contribution is subtracted exactly, feedback, exposures, LLM answers and rejections, rows ingest() rejected, their id in unfinished batch requests, batch recommendations, impressions) and their customer row.';

REVOKE ALL ON TABLE @extschema@.ingest_batches, @extschema@.ingest_rejects FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._ingest_timestamptz(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._ingest_columns(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest(regclass, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.merge_customers(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._ingest_timestamptz(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._ingest_columns(regclass) TO PUBLIC;

------------------------------------------------------------------------------
-- Grant sets (issue 11, part 6): grant_application(), grant_monitoring(), grant_bi(),
-- revoke_all() and erase_customer(), as in sql/parts/grants.sql; none for PUBLIC.
------------------------------------------------------------------------------

-- The application's door to erasure: forget_customer() runs with its caller's rights (DELETE
-- on every table that names a customer); this wrapper runs it as the owner, so an application
-- granted it erases a customer without any privilege on the tables.
CREATE FUNCTION @extschema@.erase_customer(customer_id bigint)
    RETURNS TABLE (interactions bigint, feedback bigint, customer boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        PERFORM @extschema@._standby_refusal('erase_customer',
            'Erase the customer on the primary, e.g. through the application''s primary connection; the standby follows when it replays the deletion.');
    END IF;
    RETURN QUERY SELECT f.interactions, f.feedback, f.customer FROM @extschema@.forget_customer(erase_customer.customer_id) f;
END $$;
COMMENT ON FUNCTION @extschema@.erase_customer(bigint) IS
    'forget_customer() run with the owner''s rights (SECURITY DEFINER): the erasure an application role gets by grant_application().';

-- The three documented grant sets, one row per object: the single source the grant_*()
-- functions apply (docs/reference.md, "Grant sets").
CREATE FUNCTION @extschema@._grant_set(grant_set text)
    RETURNS TABLE (object_type text, object text, privileges text)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.object_type, s.object, s.privileges FROM (VALUES
        ('application', 'table', '@extschema@.products', 'SELECT'),
        ('application', 'table', '@extschema@.event_types', 'SELECT'),
        ('application', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('application', 'table', '@extschema@.customers', 'SELECT, INSERT, UPDATE'),
        ('application', 'table', '@extschema@.interactions', 'SELECT, INSERT'),
        ('application', 'table', '@extschema@.customer_feedback', 'SELECT, INSERT'),
        ('application', 'function', '@extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb)', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_logged(bigint, integer)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_exposure(bigint, bigint[], text)', 'EXECUTE'),
        ('application', 'function', '@extschema@.assigned_variant(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.flag_enabled(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.erase_customer(bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_impressions(bigint, bigint[], text, text)', 'EXECUTE'),
        ('monitoring', 'table', '@extschema@.health', 'SELECT'),
        ('monitoring', 'table', '@extschema@.model_stats', 'SELECT'),
        ('monitoring', 'table', '@extschema@.maintenance_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.ingest_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.batch_recommendation_runs', 'SELECT'),
        ('bi', 'table', '@extschema@.products', 'SELECT'),
        ('bi', 'table', '@extschema@.event_types', 'SELECT'),
        ('bi', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('bi', 'table', '@extschema@.variants', 'SELECT'),
        ('bi', 'table', '@extschema@.popular', 'SELECT'),
        ('bi', 'table', '@extschema@.neighbor_list', 'SELECT'),
        ('bi', 'table', '@extschema@.cooccurrence', 'SELECT'),
        ('bi', 'table', '@extschema@.model_stats', 'SELECT'),
        ('bi', 'table', '@extschema@.experiment_results', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations_named', 'SELECT'),
        ('bi', 'table', '@extschema@.impressions', 'SELECT'),
        ('bi', 'table', '@extschema@.impression_ctr', 'SELECT')
    ) AS s(grant_set, object_type, object, privileges)
    WHERE s.grant_set = _grant_set.grant_set
$$;

-- Grant one set to a role, as the caller: it must hold every privilege of the set WITH
-- GRANT OPTION (the owner does); checked first, so a refusal grants nothing. Idempotent.
CREATE FUNCTION @extschema@._grant_apply(grant_set text, grantee regrole)
    RETURNS SETOF text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    stmt text;
    can boolean;
    role_name name := @extschema@._grant_check_role(grantee);
BEGIN
    FOR r IN SELECT * FROM @extschema@._grant_set(grant_set) LOOP
        can := CASE r.object_type
            WHEN 'table' THEN (SELECT bool_and(has_table_privilege(current_user, r.object, p || ' WITH GRANT OPTION'))
                                 FROM unnest(string_to_array(r.privileges, ', ')) p)
            ELSE has_function_privilege(current_user, r.object, 'EXECUTE WITH GRANT OPTION') END;
        IF NOT can THEN
            RAISE EXCEPTION 'permission denied to grant % on %', r.privileges, r.object
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s does not hold it WITH GRANT OPTION; nothing was granted.', current_user),
                      HINT = 'Run it as the owner of the extension or a superuser.';
        END IF;
    END LOOP;
    FOR r IN SELECT * FROM @extschema@._grant_set(grant_set) LOOP
        stmt := format('GRANT %s ON %s %s TO %I', r.privileges, upper(r.object_type),
                       CASE r.object_type WHEN 'table' THEN r.object::regclass::text ELSE r.object::regprocedure::text END,
                       role_name);
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END $$;

-- A grantee a set may go to: not NULL, not PUBLIC, not the owner of the extension's objects
-- (nor a member of it; a superuser may, harmlessly). Returns its name.
CREATE FUNCTION @extschema@._grant_check_role(grantee regrole)
    RETURNS name
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF grantee IS NULL THEN
        RAISE EXCEPTION 'role must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the name of an existing role.';
    END IF;
    IF grantee = 0 THEN
        RAISE EXCEPTION 'grant sets are for roles, not PUBLIC'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the name of an existing role.';
    END IF;
    IF grantee = (SELECT c.relowner FROM pg_class c WHERE c.oid = '@extschema@.products'::regclass)
       OR (NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = grantee)
           AND pg_has_role(grantee, (SELECT c.relowner FROM pg_class c WHERE c.oid = '@extschema@.products'::regclass), 'MEMBER')) THEN
        RAISE EXCEPTION 'role % owns personalize''s objects', grantee
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The owner (and its members) hold every privilege already; a grant set would change nothing and revoke_all() would take the owner''s own privileges.',
                  HINT = 'Grant sets are for application, monitoring and BI roles that do not own the extension.';
    END IF;
    RETURN (SELECT r.rolname FROM pg_roles r WHERE r.oid = grantee);
END $$;

CREATE FUNCTION @extschema@.grant_application(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('application', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_application(regrole) IS
    'Grant a role the application set: read the catalog, write customers, events and feedback, recommend(), recommend_logged(), log_exposure(), assigned_variant(), flag_enabled(), erase_customer(), log_impressions(). Returns the GRANT statements run. Idempotent; runs as the caller.';
CREATE FUNCTION @extschema@.grant_monitoring(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('monitoring', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_monitoring(regrole) IS
    'Grant a role the monitoring set: SELECT on health, model_stats and the run tables maintenance_runs, llm_runs, llm_batches, ingest_batches, batch_recommendation_runs (nothing that names a customer). Returns the GRANT statements run. Idempotent; runs as the caller.';
CREATE FUNCTION @extschema@.grant_bi(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('bi', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_bi(regrole) IS
    'Grant a role the BI set: SELECT on the catalog (products, event_types, marketing_campaigns, variants) and the aggregate results (popular, neighbor_list, cooccurrence, model_stats, experiment_results), and by customer id only the batch recommendations (batch_recommendations, batch_recommendations_named) and the impression log (impressions, impression_ctr); no customer''s details or events. Returns the GRANT statements run. Idempotent; runs as the caller.';

-- Take back every privilege the caller granted the role on the schema and its objects
-- (tables, views, sequences, columns, functions, procedures): whatever sets it had. Returns
-- how many privileges the role held on them before minus after.
CREATE FUNCTION @extschema@._grant_count(grantee regrole) RETURNS bigint
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relnamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
             WHERE c.relnamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a
             WHERE p.pronamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.oid = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
$$;
CREATE FUNCTION @extschema@.revoke_all(grantee regrole) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before bigint;
    role_name name := @extschema@._grant_check_role(grantee);
BEGIN
    before := @extschema@._grant_count(grantee);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL PROCEDURES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON SCHEMA @extschema@ FROM %I', role_name);
    RETURN before - @extschema@._grant_count(grantee);
END $$;
COMMENT ON FUNCTION @extschema@.revoke_all(regrole) IS
    'Revoke every privilege the caller granted a role on the schema and its objects (any grant set, and grants made by hand). Returns the number of privileges removed. Runs as the caller.';
REVOKE ALL ON FUNCTION @extschema@.erase_customer(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._grant_set(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._grant_apply(text, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._grant_check_role(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grant_application(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grant_monitoring(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.grant_bi(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._grant_count(regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.revoke_all(regrole) FROM PUBLIC;

------------------------------------------------------------------------------
-- Column comments (issue 11, part 6): every column of every table and view has one, as in
-- sql/parts/comments.sql.
------------------------------------------------------------------------------

-- products
COMMENT ON COLUMN @extschema@.products.product_id IS 'The application''s id of the product.';
COMMENT ON COLUMN @extschema@.products.sku IS 'Stock keeping unit or any external code; unique when set.';
COMMENT ON COLUMN @extschema@.products.name IS 'Name shown to people; recommend() quotes it in reasons.';
COMMENT ON COLUMN @extschema@.products.category IS 'Category; used by the variant parameter category_cap.';
COMMENT ON COLUMN @extschema@.products.price IS 'Price (>= 0). Sent to the LLM in the candidate catalog; counted by experiment_results revenue; not used by the scoring.';
COMMENT ON COLUMN @extschema@.products.active IS 'Only active products are recommended; set to false to withdraw a product at once.';
COMMENT ON COLUMN @extschema@.products.attributes IS 'Free-form attributes (a JSON object); part of the embedded text, not used by the scoring otherwise.';
COMMENT ON COLUMN @extschema@.products.created_at IS 'When the row was created.';
COMMENT ON COLUMN @extschema@.products.updated_at IS 'Set to now() on every UPDATE by the trigger products_touch_updated_at.';
-- customers
COMMENT ON COLUMN @extschema@.customers.customer_id IS 'The application''s id of the customer.';
COMMENT ON COLUMN @extschema@.customers.country IS 'Country. Sent to the LLM in the customer''s profile; not used by the scoring.';
COMMENT ON COLUMN @extschema@.customers.attributes IS 'Free-form attributes (a JSON object). Sent to the LLM in the customer''s profile; not used by the scoring.';
COMMENT ON COLUMN @extschema@.customers.created_at IS 'When the row was created.';
-- event_types
COMMENT ON COLUMN @extschema@.event_types.event_type IS 'Name: a lower-case identifier of 1 to 32 characters (view, click, cart, purchase are shipped).';
COMMENT ON COLUMN @extschema@.event_types.weight IS 'Weight of one event of this type in a customer''s history (0 < weight <= 1000), applied when the event is inserted.';
COMMENT ON COLUMN @extschema@.event_types.description IS 'What the event means.';
-- interactions
COMMENT ON COLUMN @extschema@.interactions.interaction_id IS 'Event id (GENERATED ALWAYS); its order decides which products are in-model (cap rule).';
COMMENT ON COLUMN @extschema@.interactions.customer_id IS 'Who (references customers).';
COMMENT ON COLUMN @extschema@.interactions.product_id IS 'Which product (references products).';
COMMENT ON COLUMN @extschema@.interactions.event_type IS 'What happened (references event_types).';
COMMENT ON COLUMN @extschema@.interactions.quantity IS 'How many (> 0). Not used by the model: one event counts once.';
COMMENT ON COLUMN @extschema@.interactions.occurred_at IS 'When (1990-01-01 to 2200-01-01 UTC). Drives recency decay and the popularity window.';
-- customer_feedback
COMMENT ON COLUMN @extschema@.customer_feedback.feedback_id IS 'Feedback id.';
COMMENT ON COLUMN @extschema@.customer_feedback.customer_id IS 'Who (references customers).';
COMMENT ON COLUMN @extschema@.customer_feedback.product_id IS 'About which product (references products).';
COMMENT ON COLUMN @extschema@.customer_feedback.rating IS 'Rating, 1 to 5.';
COMMENT ON COLUMN @extschema@.customer_feedback.comment IS 'Free text.';
COMMENT ON COLUMN @extschema@.customer_feedback.created_at IS 'When.';
-- marketing_campaigns
COMMENT ON COLUMN @extschema@.marketing_campaigns.campaign_id IS 'Campaign id.';
COMMENT ON COLUMN @extschema@.marketing_campaigns.name IS 'Campaign name, shown in reasons as campaign: <name>.';
COMMENT ON COLUMN @extschema@.marketing_campaigns.product_id IS 'The promoted product (one row per product; several rows may share a name).';
COMMENT ON COLUMN @extschema@.marketing_campaigns.starts_at IS 'Start of the campaign (inclusive).';
COMMENT ON COLUMN @extschema@.marketing_campaigns.ends_at IS 'End of the campaign (exclusive).';
COMMENT ON COLUMN @extschema@.marketing_campaigns.boost IS 'Score multiplier while the campaign runs (> 0; below 1 demotes).';
-- model tables
COMMENT ON COLUMN @extschema@.customer_items.customer_id IS 'The customer.';
COMMENT ON COLUMN @extschema@.customer_items.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.customer_items.events IS 'Number of the customer''s interactions with the product.';
COMMENT ON COLUMN @extschema@.customer_items.purchases IS 'Number of purchase interactions.';
COMMENT ON COLUMN @extschema@.customer_items.weight IS 'Sum of the event-type weights of those interactions.';
COMMENT ON COLUMN @extschema@.customer_items.first_interaction_id IS 'Smallest interaction_id: the cap rule''s ordering key.';
COMMENT ON COLUMN @extschema@.customer_items.last_at IS 'Latest occurred_at: the age used by recency decay.';
COMMENT ON COLUMN @extschema@.customer_items.in_model IS 'Whether the product is one of the customer''s first max_items_per_customer products (takes part in co-occurrence).';
COMMENT ON COLUMN @extschema@.customer_state.customer_id IS 'The customer; the row is the lock that serialises writers of their history.';
COMMENT ON COLUMN @extschema@.customer_state.items IS 'Rows in customer_items.';
COMMENT ON COLUMN @extschema@.customer_state.model_items IS 'In-model rows in customer_items.';
COMMENT ON COLUMN @extschema@.customer_state.max_model_first_id IS 'Largest first_interaction_id among the in-model rows.';
COMMENT ON COLUMN @extschema@.customer_totals.shard IS 'Shard number, 0 to 15.';
COMMENT ON COLUMN @extschema@.customer_totals.customers IS 'Customers with an in-model product, counted in this shard (the sum is N).';
COMMENT ON COLUMN @extschema@.item_counts.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.item_counts.customers IS 'Distinct customers whose in-model history holds the product.';
COMMENT ON COLUMN @extschema@.pair_counts.product_a IS 'The smaller product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts.product_b IS 'The larger product id of the pair.';
COMMENT ON COLUMN @extschema@.pair_counts.customers IS 'Co-occurrence count: customers whose in-model history holds both.';
COMMENT ON COLUMN @extschema@.dirty_products.product_id IS 'A product whose neighbour lists wait for the refresh.';
COMMENT ON COLUMN @extschema@.dirty_products.since IS 'When it was first marked; now() - min(since) is the age of the backlog.';
COMMENT ON COLUMN @extschema@.neighbors.measure IS 'Similarity measure: count, jaccard, cosine, lift, llr or content.';
COMMENT ON COLUMN @extschema@.neighbors.product_id IS 'The product the list is for.';
COMMENT ON COLUMN @extschema@.neighbors.neighbor_ids IS 'Up to personalize.neighbors_k neighbours, best first.';
COMMENT ON COLUMN @extschema@.neighbors.scores IS 'Their similarity scores.';
COMMENT ON COLUMN @extschema@.neighbors.counts IS 'Their co-occurrence counts with the product.';
COMMENT ON COLUMN @extschema@.neighbors.refreshed_at IS 'When the list was computed.';
COMMENT ON COLUMN @extschema@.popular.rank IS 'Rank, 1 = most popular.';
COMMENT ON COLUMN @extschema@.popular.product_id IS 'An active product.';
COMMENT ON COLUMN @extschema@.popular.customers IS 'Distinct customers with an interaction with the product in the window (window rows) or in the model (all_time rows).';
COMMENT ON COLUMN @extschema@.popular.share IS 'customers divided by the first row of the same source.';
COMMENT ON COLUMN @extschema@.popular.source IS 'window or all_time; window rows rank first.';
COMMENT ON COLUMN @extschema@.popular.window_start IS 'Start of the window the list was computed for.';
COMMENT ON COLUMN @extschema@.popular.window_end IS 'End of the window (the as_of of the refresh).';
COMMENT ON COLUMN @extschema@.popular_scores.singleton IS 'Always true: at most one row.';
COMMENT ON COLUMN @extschema@.popular_scores.product_ids IS 'The popularity list''s products in rank order.';
COMMENT ON COLUMN @extschema@.popular_scores.scores IS 'Their popularity scores.';
COMMENT ON COLUMN @extschema@.popular_scores.window_days IS 'The window length in days (for the reason text).';
-- configuration and bookkeeping
COMMENT ON COLUMN @extschema@.model_settings.singleton IS 'Always true: one row.';
COMMENT ON COLUMN @extschema@.model_settings.max_items_per_customer IS 'The cap: in-model products per customer (2 to 10000).';
COMMENT ON COLUMN @extschema@.model_settings.rebuilt_at IS 'When rebuild() last ran (NULL if never).';
COMMENT ON COLUMN @extschema@.variants.name IS 'Variant name, passed to recommend().';
COMMENT ON COLUMN @extschema@.variants.algorithm IS 'popular, cooccurrence, hybrid or llm.';
COMMENT ON COLUMN @extschema@.variants.params IS 'Parameters (a JSON object), validated like create_variant().';
COMMENT ON COLUMN @extschema@.variants.builtin IS 'True for the shipped variants, which cannot be dropped.';
COMMENT ON COLUMN @extschema@.variants.created_at IS 'When it was created.';
COMMENT ON COLUMN @extschema@.maintenance_runs.run_id IS 'Run id.';
COMMENT ON COLUMN @extschema@.maintenance_runs.job IS 'rebuild, refresh, refresh_neighbors or refresh_popular.';
COMMENT ON COLUMN @extschema@.maintenance_runs.started_at IS 'When the run started (clock time).';
COMMENT ON COLUMN @extschema@.maintenance_runs.finished_at IS 'When it finished.';
COMMENT ON COLUMN @extschema@.maintenance_runs.items IS 'rebuild: pairs; refresh and refresh_neighbors: products refreshed; refresh_popular: rows in the list.';
COMMENT ON COLUMN @extschema@.maintenance_runs.details IS 'What the run did, by job (JSON); skipped_variants for invalid variants.';
COMMENT ON COLUMN @extschema@.maintenance_runs.status IS 'succeeded or failed.';
COMMENT ON COLUMN @extschema@.maintenance_runs.error IS 'For a failed run, SQLSTATE: message; NULL otherwise.';
-- A/B testing
COMMENT ON COLUMN @extschema@.experiments.experiment_id IS 'Experiment id.';
COMMENT ON COLUMN @extschema@.experiments.name IS 'Experiment name (lower-case identifier).';
COMMENT ON COLUMN @extschema@.experiments.status IS 'draft, running or stopped.';
COMMENT ON COLUMN @extschema@.experiments.salt IS 'Salt of the assignment hash; changing it reassigns every customer.';
COMMENT ON COLUMN @extschema@.experiments.traffic IS 'Fraction of customers in the experiment, 0 to 1.';
COMMENT ON COLUMN @extschema@.experiments.attribution_window IS 'How long after an exposure a click, cart or purchase counts as a conversion.';
COMMENT ON COLUMN @extschema@.experiments.created_at IS 'When it was created.';
COMMENT ON COLUMN @extschema@.experiments.started_at IS 'Set by start_experiment().';
COMMENT ON COLUMN @extschema@.experiments.stopped_at IS 'Set by stop_experiment().';
COMMENT ON COLUMN @extschema@.experiment_arms.experiment_id IS 'The experiment.';
COMMENT ON COLUMN @extschema@.experiment_arms.arm IS 'Arm number, 0 = the control.';
COMMENT ON COLUMN @extschema@.experiment_arms.variant IS 'The variant the arm serves.';
COMMENT ON COLUMN @extschema@.experiment_arms.weight IS 'Relative share of the experiment''s traffic.';
COMMENT ON COLUMN @extschema@.exposures.exposure_id IS 'Exposure id.';
COMMENT ON COLUMN @extschema@.exposures.experiment_id IS 'The experiment running at the time.';
COMMENT ON COLUMN @extschema@.exposures.customer_id IS 'The customer shown the products (no foreign key: anonymous ids may be logged).';
COMMENT ON COLUMN @extschema@.exposures.variant IS 'The variant served.';
COMMENT ON COLUMN @extschema@.exposures.arm IS 'The customer''s arm; NULL when another variant was served explicitly (not counted by experiment_results).';
COMMENT ON COLUMN @extschema@.exposures.product_ids IS 'The products shown, in order.';
COMMENT ON COLUMN @extschema@.exposures.shown_at IS 'When they were shown.';
COMMENT ON COLUMN @extschema@.flags.name IS 'Flag name (lower-case letters, digits, _ and .).';
COMMENT ON COLUMN @extschema@.flags.rollout IS 'Fraction of customers for whom the flag is on, 0 to 1.';
COMMENT ON COLUMN @extschema@.flags.salt IS 'Salt of the flag''s hash.';
COMMENT ON COLUMN @extschema@.flags.description IS 'Free text.';
COMMENT ON COLUMN @extschema@.flags.updated_at IS 'Kept current by the trigger flags_touch_updated_at.';
-- cold start (OpenAI)
COMMENT ON COLUMN @extschema@.llm_runs.run_id IS 'Run id.';
COMMENT ON COLUMN @extschema@.llm_runs.kind IS 'refresh, batch_submit, batch_poll or embed.';
COMMENT ON COLUMN @extschema@.llm_runs.status IS 'running, completed, failed, cancelled, quota_exceeded or interrupted.';
COMMENT ON COLUMN @extschema@.llm_runs.started_at IS 'Start.';
COMMENT ON COLUMN @extschema@.llm_runs.finished_at IS 'End (NULL while running).';
COMMENT ON COLUMN @extschema@.llm_runs.model IS 'The model setting at the start of the run.';
COMMENT ON COLUMN @extschema@.llm_runs.customers IS 'Customers answered (refresh, batch_poll) or submitted (batch_submit); products embedded (embed).';
COMMENT ON COLUMN @extschema@.llm_runs.requests IS 'HTTP requests sent.';
COMMENT ON COLUMN @extschema@.llm_runs.retries IS 'Extra attempts.';
COMMENT ON COLUMN @extschema@.llm_runs.failures IS 'Requests (batch lines) that gave nothing usable.';
COMMENT ON COLUMN @extschema@.llm_runs.rejections IS 'Rows written to llm_rejections.';
COMMENT ON COLUMN @extschema@.llm_runs.prompt_tokens IS 'Prompt tokens used (the answers'' usage).';
COMMENT ON COLUMN @extschema@.llm_runs.completion_tokens IS 'Completion tokens used.';
COMMENT ON COLUMN @extschema@.llm_runs.error IS 'Why the run stopped (the key is redacted).';
COMMENT ON COLUMN @extschema@.llm_runs.pid IS 'Process id of the backend running it.';
COMMENT ON COLUMN @extschema@.llm_runs.backend_start IS 'Start of that backend (a running row whose backend is gone is marked interrupted).';
COMMENT ON COLUMN @extschema@.llm_runs.details IS 'What the run did, by kind (JSON).';
COMMENT ON COLUMN @extschema@.llm_recommendations.customer_id IS 'The customer.';
COMMENT ON COLUMN @extschema@.llm_recommendations.rank IS '1 = the model''s first choice.';
COMMENT ON COLUMN @extschema@.llm_recommendations.product_id IS 'The recommended product.';
COMMENT ON COLUMN @extschema@.llm_recommendations.reason IS 'The model''s short reason (at most 300 characters), written from the customer''s profile.';
COMMENT ON COLUMN @extschema@.llm_recommendations.run_id IS 'The run that stored it.';
COMMENT ON COLUMN @extschema@.llm_recommendations.generated_at IS 'When it was stored; fresh for personalize.llm_ttl.';
COMMENT ON COLUMN @extschema@.llm_recommendations.model IS 'The model the response named.';
COMMENT ON COLUMN @extschema@.llm_rejections.rejection_id IS 'Id.';
COMMENT ON COLUMN @extschema@.llm_rejections.run_id IS 'The run.';
COMMENT ON COLUMN @extschema@.llm_rejections.customer_id IS 'The customer concerned, else NULL.';
COMMENT ON COLUMN @extschema@.llm_rejections.product_id IS 'The product concerned, else NULL.';
COMMENT ON COLUMN @extschema@.llm_rejections.reason IS 'Why it was rejected (one of the documented reasons).';
COMMENT ON COLUMN @extschema@.llm_rejections.detail IS 'What was wrong, for people: HTTP error, start of a malformed answer (the key is redacted).';
COMMENT ON COLUMN @extschema@.llm_rejections.rejected_at IS 'When.';
COMMENT ON COLUMN @extschema@.llm_batches.batch_id IS 'OpenAI''s batch id.';
COMMENT ON COLUMN @extschema@.llm_batches.run_id IS 'The batch_submit run.';
COMMENT ON COLUMN @extschema@.llm_batches.input_file_id IS 'The uploaded JSONL file.';
COMMENT ON COLUMN @extschema@.llm_batches.output_file_id IS 'The output file, as the last poll saw it.';
COMMENT ON COLUMN @extschema@.llm_batches.error_file_id IS 'The error file, as the last poll saw it.';
COMMENT ON COLUMN @extschema@.llm_batches.status IS 'OpenAI''s status of the batch at the last poll.';
COMMENT ON COLUMN @extschema@.llm_batches.requests IS 'Request lines in the file.';
COMMENT ON COLUMN @extschema@.llm_batches.customers IS 'Customers in them.';
COMMENT ON COLUMN @extschema@.llm_batches.created_at IS 'Submission.';
COMMENT ON COLUMN @extschema@.llm_batches.checked_at IS 'Last poll.';
COMMENT ON COLUMN @extschema@.llm_batches.finished_at IS 'When llm_batch_poll() ingested (or gave up on) the batch; NULL = still open.';
COMMENT ON COLUMN @extschema@.llm_batches.ingest_run_id IS 'The batch_poll run that ingested it.';
COMMENT ON COLUMN @extschema@.llm_batch_requests.batch_id IS 'The batch.';
COMMENT ON COLUMN @extschema@.llm_batch_requests.custom_id IS 'The request line''s custom_id.';
COMMENT ON COLUMN @extschema@.llm_batch_requests.customer_ids IS 'The customers that line asks about.';
COMMENT ON COLUMN @extschema@.product_embeddings.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.product_embeddings.model IS 'The embedding model.';
COMMENT ON COLUMN @extschema@.product_embeddings.embedding IS 'The vector.';
COMMENT ON COLUMN @extschema@.product_embeddings.text_md5 IS 'md5 of the model, dimensions and embedded text; a mismatch makes embed_products() embed the product again.';
COMMENT ON COLUMN @extschema@.product_embeddings.embedded_at IS 'When.';
-- views
COMMENT ON COLUMN @extschema@.cooccurrence.product_a IS 'The smaller product id of the pair.';
COMMENT ON COLUMN @extschema@.cooccurrence.product_b IS 'The larger product id of the pair.';
COMMENT ON COLUMN @extschema@.cooccurrence.customers IS 'Co-occurrence count.';
COMMENT ON COLUMN @extschema@.cooccurrence.customers_a IS 'item_counts.customers of product_a.';
COMMENT ON COLUMN @extschema@.cooccurrence.customers_b IS 'item_counts.customers of product_b.';
COMMENT ON COLUMN @extschema@.model_stats.customers IS 'Customers with at least one in-model product.';
COMMENT ON COLUMN @extschema@.model_stats.products IS 'Products with at least one customer.';
COMMENT ON COLUMN @extschema@.model_stats.pairs IS 'Rows of pair_counts (pairs with a count).';
COMMENT ON COLUMN @extschema@.model_stats.dirty_products IS 'Backlog of the neighbour refresh.';
COMMENT ON COLUMN @extschema@.model_stats.max_items_per_customer IS 'The cap in force.';
COMMENT ON COLUMN @extschema@.model_stats.rebuilt_at IS 'Last rebuild().';
COMMENT ON COLUMN @extschema@.experiment_results.experiment IS 'The experiment''s name.';
COMMENT ON COLUMN @extschema@.experiment_results.variant IS 'The arm''s variant.';
COMMENT ON COLUMN @extschema@.experiment_results.arm IS 'Arm number (0 = control).';
COMMENT ON COLUMN @extschema@.experiment_results.customers IS 'Customers in the arm (the exposed ones).';
COMMENT ON COLUMN @extschema@.experiment_results.exposed_customers IS 'Distinct customers with at least one counted exposure.';
COMMENT ON COLUMN @extschema@.experiment_results.exposures IS 'Counted exposures.';
COMMENT ON COLUMN @extschema@.experiment_results.conversions IS 'Exposed customers who converted within the attribution window.';
COMMENT ON COLUMN @extschema@.experiment_results.conversion_rate IS 'conversions / exposed_customers.';
COMMENT ON COLUMN @extschema@.experiment_results.revenue_per_customer IS 'Revenue of attributed purchases per exposed customer.';
COMMENT ON COLUMN @extschema@.experiment_results.lift IS 'conversion_rate / control''s conversion_rate - 1 (NULL for the control).';
COMMENT ON COLUMN @extschema@.experiment_results.lift_ci_low IS 'Lower bound of the 95% CI of the lift.';
COMMENT ON COLUMN @extschema@.experiment_results.lift_ci_high IS 'Upper bound of the 95% CI of the lift.';
COMMENT ON COLUMN @extschema@.experiment_results.p_value IS 'Two-sided two-proportion z-test against the control.';
COMMENT ON COLUMN @extschema@.experiment_results.revenue_p_value IS 'Two-sided Welch t-test of revenue per exposed customer against the control.';
COMMENT ON COLUMN @extschema@.experiment_results.srm_p_value IS 'Sample-ratio mismatch p-value (chi-square against the weights).';
COMMENT ON COLUMN @extschema@.experiment_results.srm_flag IS 'srm_p_value < 0.001.';
COMMENT ON COLUMN @extschema@.neighbor_list.measure IS 'Similarity measure of the list.';
COMMENT ON COLUMN @extschema@.neighbor_list.product_id IS 'The product the list is for.';
COMMENT ON COLUMN @extschema@.neighbor_list.rank IS '1 = most similar.';
COMMENT ON COLUMN @extschema@.neighbor_list.neighbor_id IS 'The neighbour.';
COMMENT ON COLUMN @extschema@.neighbor_list.score IS 'Its similarity.';
COMMENT ON COLUMN @extschema@.neighbor_list.customers IS 'Its co-occurrence count with the product.';
COMMENT ON COLUMN @extschema@.neighbor_list.refreshed_at IS 'When the list was computed.';
-- Retention and archival (issue 11, part 4): interactions_archive, whose events still
-- count in the model; the retention config; archive_events(), maintenance(),
-- schedule_maintenance(). rebuild(), forget_customer() and merge_customers() above read
-- or erase the archive too.

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
REVOKE ALL ON FUNCTION @extschema@._archive_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.archive_events(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._retention_batch(text, timestamptz, text, integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.schedule_maintenance(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unschedule_maintenance() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.interactions_archive FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.retention FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.retention_settings FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._retention_write() FROM PUBLIC;
-- personalize.retention calls it for its reader: executable by PUBLIC (constants only;
-- revoked first so that its ACL reads as a fresh install's)
REVOKE ALL ON FUNCTION @extschema@._retention_defaults() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._retention_defaults() TO PUBLIC;

------------------------------------------------------------------------------
-- >>> Serving (issue 12): the default variant and the serving settings
------------------------------------------------------------------------------
-- The serving settings a DBA changed (issue 12): empty after CREATE EXTENSION, one row once
-- set_default_variant() or set_impression_log() wrote it; dumped whole, so a restore keeps
-- them and collides with nothing. recommend(c, NULL) outside an experiment serves
-- default_variant ('hybrid' without a row).
CREATE TABLE @extschema@.serving_settings (
    singleton       boolean PRIMARY KEY DEFAULT true,
    default_variant text NOT NULL DEFAULT 'hybrid'
        REFERENCES @extschema@.variants (name) ON UPDATE CASCADE,
    log_impressions boolean NOT NULL DEFAULT false,
    CONSTRAINT serving_settings_singleton CHECK (singleton)
);
COMMENT ON TABLE @extschema@.serving_settings IS 'Serving settings a DBA changed (at most one row; none means the defaults): the variant recommend(c, NULL) serves outside experiments, and whether log_impressions() records anything. Dumped: a restore keeps them.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.serving_settings', '');
COMMENT ON COLUMN @extschema@.serving_settings.singleton IS 'Always true: the table holds at most one row.';
COMMENT ON COLUMN @extschema@.serving_settings.default_variant IS 'The variant recommend(c, NULL) serves outside experiments (set_default_variant()).';
COMMENT ON COLUMN @extschema@.serving_settings.log_impressions IS 'Whether log_impressions() records impressions outside experiments (set_impression_log()).';

-- The variant recommend(c, NULL) serves when no experiment runs or the customer is outside
-- its traffic; NULL sets it back to hybrid. Returns the variant now served.
CREATE FUNCTION @extschema@.set_default_variant(variant text) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF variant IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = set_default_variant.variant) THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(variant)
            USING ERRCODE = 'undefined_object',
                  DETAIL = (SELECT pg_catalog.format('Known variants: %s.', pg_catalog.string_agg(v.name, ', ' ORDER BY v.name COLLATE "C"))
                            FROM @extschema@.variants v),
                  HINT = 'Create it first with personalize.create_variant(), or pass NULL for hybrid.';
    END IF;
    INSERT INTO @extschema@.serving_settings AS s (default_variant) VALUES (coalesce(variant, 'hybrid'))
        ON CONFLICT (singleton) DO UPDATE SET default_variant = excluded.default_variant;
    RETURN coalesce(variant, 'hybrid');
END $$;
COMMENT ON FUNCTION @extschema@.set_default_variant(text) IS
    'Set the variant recommend(customer_id, NULL) serves outside experiments (NULL: hybrid); kept by pg_dump. Returns it.';
REVOKE ALL ON TABLE @extschema@.serving_settings FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.set_default_variant(text) FROM PUBLIC;

------------------------------------------------------------------------------
-- >>> Serving (issue 12): filters, similar_items(), recommend_for_items(), explain(),
-- recommend_served()
------------------------------------------------------------------------------
-- recommend() gains the request-time filters as optional named parameters: a new
-- signature, so the function of 0.1.0 is dropped and created again (its C symbol
-- personalize_recommend keeps its three arguments; the new one is
-- personalize_recommend_filtered). Calls written for 0.1.0 work unchanged. Objects of the
-- user's that depend on the old function (a view over recommend(), a SQL function with a
-- BEGIN ATOMIC body) would be dropped with it: the update refuses instead, naming them,
-- and changes nothing. The EXECUTE grants the old function had (other than PUBLIC's, which
-- 0.2.0 revokes, and its owner's) are given to the new one, and stay the user's own: they
-- are kept out of the extension's initial privileges, so pg_dump dumps them.
DO $$
DECLARE
    deps text;
BEGIN
    SELECT pg_catalog.string_agg(coalesce((SELECT 'view ' OPERATOR(pg_catalog.||) r.ev_class::pg_catalog.regclass::text
                                           FROM pg_catalog.pg_rewrite r
                                           WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                             AND r.oid OPERATOR(pg_catalog.=) d.objid),
                                          pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)), ', ')
      INTO deps
      FROM pg_catalog.pg_depend d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) '@extschema@.recommend(bigint, text, integer)'::pg_catalog.regprocedure
       AND d.deptype OPERATOR(pg_catalog.=) 'n';
    IF deps IS NOT NULL THEN
        RAISE EXCEPTION 'objects depend on personalize.recommend(bigint, text, integer): %', deps
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = '0.2.0 replaces that function by recommend() with filter parameters (a new signature). Nothing was changed.',
                  HINT = 'Drop those objects, run ALTER EXTENSION personalize UPDATE again, then create them again: calls of recommend(customer_id, variant, k) work unchanged.';
    END IF;
    PERFORM pg_catalog.set_config('personalize_update.recommend_acl',
        (SELECT coalesce(p.proacl::text, '') FROM pg_catalog.pg_proc p
          WHERE p.oid OPERATOR(pg_catalog.=) '@extschema@.recommend(bigint, text, integer)'::pg_catalog.regprocedure), true);
END $$;
DROP FUNCTION @extschema@.recommend(bigint, text, integer);
-- The request-time filters (src/filters.c) are optional named parameters, NULL for none:
-- recommend(c), recommend(c, 'hybrid', 5) and recommend(c, k => 5) work as in 0.1.0.
CREATE FUNCTION @extschema@.recommend(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_filtered';
COMMENT ON FUNCTION @extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Top k products for a customer under a variant (NULL: the running experiment''s arm for the customer, else the default variant), best first, with a reason a person can read; optional filters (exclude_products, categories, exclude_categories, min_price, max_price, attributes, exclude_interacted). Read-only.';

-- recommend() and the variant that served the call (an experiment's arm, the default
-- variant, or the one named): the application learns it without a second round trip.
CREATE FUNCTION @extschema@.recommend_served(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text, variant text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_served';
COMMENT ON FUNCTION @extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'recommend() with a fourth column: the variant that served the call. Read-only.';

-- A product page: the products bought with this one (src/items.c).
CREATE FUNCTION @extschema@.similar_items(product_id bigint, k integer DEFAULT 10, variant text DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_similar_items';
COMMENT ON FUNCTION @extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb) IS
    'Top k products for a product page: its co-occurrence (and content) neighbours under a variant (NULL: the default variant), never itself nor an inactive product; campaigns, category cap and filters apply. An unknown product is an error. Read-only.';

-- A cart: products for a set of products, for an anonymous visitor or a customer.
CREATE FUNCTION @extschema@.recommend_for_items(product_ids bigint[], k integer DEFAULT 10, variant text DEFAULT NULL,
        customer_id bigint DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_for_items';
COMMENT ON FUNCTION @extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Top k products for a cart (at most 1000 products): their neighbours together, never an input product nor an inactive one, nor with customer_id the customer''s purchases; an empty cart gets the popular fill; an unknown product is an error. Read-only.';

-- Why a product was (or was not) recommended to a customer (src/explain.c).
CREATE FUNCTION @extschema@.explain(customer_id bigint, product_id bigint, variant text DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (component text, source_product_id bigint, detail text, value double precision)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_explain';
COMMENT ON FUNCTION @extschema@.explain(bigint, bigint, text, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Every contribution to the score recommend() gives the product for the customer under the same variant and filters (the values sum to it), and a rule row: its rank or why it is left out. Read-only.';
REVOKE ALL ON FUNCTION @extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.explain(bigint, bigint, text, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
-- the old function's grants, given to the new one; then the extension's initial privileges
-- of the new one are set back to what a fresh install records (the owner's alone)
DO $$
DECLARE
    fn CONSTANT pg_catalog.regprocedure :=
        '@extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])';
    initial pg_catalog.aclitem[];
    g record;
BEGIN
    SELECT p.proacl INTO initial FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) fn;
    FOR g IN SELECT a.grantee, a.is_grantable
               FROM pg_catalog.aclexplode(NULLIF(pg_catalog.current_setting('personalize_update.recommend_acl', true), '')::pg_catalog.aclitem[]) a
               JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) fn
              WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                AND a.grantee OPERATOR(pg_catalog.<>) 0 AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
                AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) a.grantee) LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn, g.grantee::pg_catalog.regrole,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs i SET initprivs = initial
     WHERE i.objoid OPERATOR(pg_catalog.=) fn AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
END $$;


------------------------------------------------------------------------------
-- >>> Serving (issue 12, parts 3 and 5): batch recommendations, impressions
------------------------------------------------------------------------------
-- Batch recommendations and impressions (issue 12, parts 3 and 5).
-- refresh_batch_recommendations() fills personalize.batch_recommendations (top k per
-- customer, for BI and e-mail) in batches committed into a staging table, and publishes
-- them in one transaction: readers see the old set or the new one, never a mix. An
-- incremental run recomputes the customers whose history changed since the last successful
-- run: new events (event ids above the run's high-water mark), events updated or deleted
-- (marked by the triggers below), and customers never computed. log_impressions() keeps an
-- opt-in log of what was shown outside experiments; impression_ctr charts its click-through.
-- Advisory lock keys: (1885696627 = 'pers', 1) one run at a time (session lock); (…, 2) the
-- publish, which forget_customer() and merge_customers() wait for (shared).
------------------------------------------------------------------------------

-- The variant recommend(customer_id, variant) serves (as src/recommend.c chooses): the one
-- named, else the running experiment's arm for the customer, else the default variant.
CREATE FUNCTION @extschema@._served_variant(customer_id bigint, variant text) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_served_variant';
COMMENT ON FUNCTION @extschema@._served_variant(bigint, text) IS
    'The variant recommend(customer_id, variant) serves: variant, else the running experiment''s arm for the customer, else the default variant (the C code recommend() chooses with).';

CREATE TABLE @extschema@.batch_recommendations (
    customer_id  bigint NOT NULL,
    rank         integer NOT NULL,
    product_id   bigint NOT NULL,
    score        double precision NOT NULL,
    reason       text,
    variant      text NOT NULL,
    generated_at timestamptz NOT NULL,
    CONSTRAINT batch_recommendations_pkey PRIMARY KEY (customer_id, rank)
);
COMMENT ON TABLE @extschema@.batch_recommendations IS 'Top-k recommendations per customer as recommend() gave them at the last successful refresh_batch_recommendations(), for BI and e-mail; replaced in one transaction by each run. Derived data: not dumped (a restore starts empty; the next run is a full one).';
COMMENT ON COLUMN @extschema@.batch_recommendations.customer_id IS 'The customer (forget_customer() erases their rows, merge_customers() drops the visitor''s).';
COMMENT ON COLUMN @extschema@.batch_recommendations.rank IS 'Position in recommend()''s answer, from 1 (best).';
COMMENT ON COLUMN @extschema@.batch_recommendations.product_id IS 'The product recommended.';
COMMENT ON COLUMN @extschema@.batch_recommendations.score IS 'recommend()''s score.';
COMMENT ON COLUMN @extschema@.batch_recommendations.reason IS 'recommend()''s reason.';
COMMENT ON COLUMN @extschema@.batch_recommendations.variant IS 'The variant that served: the run''s variant, else the customer''s experiment arm, else the default variant.';
COMMENT ON COLUMN @extschema@.batch_recommendations.generated_at IS 'When the customer''s rows were computed (start of the batch''s transaction).';

-- The run's work between its batches: the customers to compute, and the rows computed so
-- far. Unlogged (lost in a crash, as is the run): emptied at the start and end of every run.
CREATE UNLOGGED TABLE @extschema@._batch_todo (
    customer_id bigint PRIMARY KEY
);
COMMENT ON TABLE @extschema@._batch_todo IS 'refresh_batch_recommendations(): the customers the running run computes (emptied when it ends).';
COMMENT ON COLUMN @extschema@._batch_todo.customer_id IS 'A customer to compute.';
CREATE UNLOGGED TABLE @extschema@._batch_staging (
    customer_id  bigint NOT NULL,
    rank         integer NOT NULL,
    product_id   bigint NOT NULL,
    score        double precision NOT NULL,
    reason       text,
    variant      text NOT NULL,
    generated_at timestamptz NOT NULL,
    CONSTRAINT _batch_staging_pkey PRIMARY KEY (customer_id, rank)
);
COMMENT ON TABLE @extschema@._batch_staging IS 'refresh_batch_recommendations(): the rows the running run computed, committed batch by batch, published at its end (emptied then).';
COMMENT ON COLUMN @extschema@._batch_staging.customer_id IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.rank IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.product_id IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.score IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.reason IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.variant IS 'As in batch_recommendations.';
COMMENT ON COLUMN @extschema@._batch_staging.generated_at IS 'As in batch_recommendations.';

-- Customers whose events were updated or deleted (new events are found by their id): the
-- next successful run recomputes them and removes the marks it saw.
CREATE TABLE @extschema@._batch_stale (
    mark_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint
);
COMMENT ON TABLE @extschema@._batch_stale IS 'Customers whose events were updated or deleted since the last successful refresh_batch_recommendations() (written by triggers on interactions and interactions_archive); NULL after a TRUNCATE: the next run is a full one.';
COMMENT ON COLUMN @extschema@._batch_stale.mark_id IS 'Order of the marks: a run removes those up to the sequence''s value at its start.';
COMMENT ON COLUMN @extschema@._batch_stale.customer_id IS 'The customer; NULL: every customer (the events were truncated).';
CREATE INDEX _batch_stale_customer_idx ON @extschema@._batch_stale (customer_id);

CREATE TABLE @extschema@.batch_recommendation_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status          text NOT NULL DEFAULT 'running',
    mode            text,
    full_reason     text,
    k               integer NOT NULL,
    variant         text,
    only_changed    boolean NOT NULL,
    batch_size      integer NOT NULL,
    pid             integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at     timestamptz,
    customers_total bigint,
    customers_done  bigint NOT NULL DEFAULT 0,
    rows_published  bigint,
    events_mark     bigint,
    stale_mark      bigint,
    error           text,
    CONSTRAINT batch_recommendation_runs_status_check CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['running', 'succeeded', 'failed'])),
    CONSTRAINT batch_recommendation_runs_mode_check CHECK (mode OPERATOR(pg_catalog.=) ANY (ARRAY['full', 'incremental']))
);
COMMENT ON TABLE @extschema@.batch_recommendation_runs IS 'One row per refresh_batch_recommendations() run, updated after every batch (another session can watch it): running, then succeeded (published) or failed (nothing published). Not dumped.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.run_id IS 'Run id.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.status IS 'running, succeeded (its rows are published) or failed (error; batch_recommendations untouched).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.mode IS 'full (every customer) or incremental (customers whose history changed, and customers never computed); NULL until planned.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.full_reason IS 'Why a run with only_changed was full (no earlier successful run, another k or variant, events truncated, a cached event id sequence); NULL for incremental runs.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.k IS 'Products per customer (recommend()''s k).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.variant IS 'The variant asked for (NULL: what recommend(c, NULL) serves each customer).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.only_changed IS 'Whether an incremental run was asked for.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.batch_size IS 'Customers per committed batch.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.pid IS 'The backend running it (pg_cancel_backend(pid) cancels it; it is then recorded as failed).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.started_at IS 'When the run started.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.updated_at IS 'When the run last committed a batch (or finished).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.finished_at IS 'When it succeeded or failed; NULL while running.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.customers_total IS 'Customers to compute (NULL until planned).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.customers_done IS 'Customers computed so far (committed to staging).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.rows_published IS 'Rows written to batch_recommendations by the publish (succeeded runs).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.events_mark IS 'The event id high-water mark at the run''s start: the next incremental run recomputes customers with events above it.';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.stale_mark IS 'The last _batch_stale mark the run saw (removed by its publish).';
COMMENT ON COLUMN @extschema@.batch_recommendation_runs.error IS 'SQLSTATE: message of a failed run.';

CREATE VIEW @extschema@.batch_recommendations_named AS
SELECT b.customer_id, b.rank, b.product_id, p.name AS product_name, p.category, b.score, b.reason,
       b.variant, b.generated_at
FROM @extschema@.batch_recommendations b
JOIN @extschema@.products p ON p.product_id OPERATOR(pg_catalog.=) b.product_id;
COMMENT ON VIEW @extschema@.batch_recommendations_named IS 'batch_recommendations with the products'' names and categories, for BI and e-mail.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.customer_id IS 'The customer.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.rank IS 'Position, from 1 (best).';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.product_id IS 'The product recommended.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.product_name IS 'products.name.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.category IS 'products.category.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.score IS 'recommend()''s score.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.reason IS 'recommend()''s reason.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.variant IS 'The variant that served.';
COMMENT ON COLUMN @extschema@.batch_recommendations_named.generated_at IS 'When the customer''s rows were computed.';

-- Marks the customers of updated or deleted events stale (new events are found by their
-- id). An event archive_events() moved to interactions_archive is no change (the model keeps
-- it). SECURITY DEFINER: whoever may delete events need not write _batch_stale.
CREATE FUNCTION @extschema@._batch_mark_stale() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO @extschema@._batch_stale (customer_id) VALUES (NULL);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@._batch_stale (customer_id)
        SELECT DISTINCT o.customer_id FROM personalize_old o
        WHERE TG_TABLE_NAME <> 'interactions'
           OR NOT EXISTS (SELECT FROM @extschema@.interactions_archive a
                          WHERE a.interaction_id = o.interaction_id AND a.customer_id = o.customer_id);
    ELSE
        INSERT INTO @extschema@._batch_stale (customer_id)
        SELECT o.customer_id FROM personalize_old o UNION SELECT n.customer_id FROM personalize_new n;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER interactions_batch_stale_delete AFTER DELETE ON @extschema@.interactions
    REFERENCING OLD TABLE AS personalize_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();
CREATE TRIGGER interactions_batch_stale_update AFTER UPDATE ON @extschema@.interactions
    REFERENCING OLD TABLE AS personalize_old NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();
CREATE TRIGGER interactions_batch_stale_truncate AFTER TRUNCATE ON @extschema@.interactions
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();
CREATE TRIGGER interactions_archive_batch_stale_delete AFTER DELETE ON @extschema@.interactions_archive
    REFERENCING OLD TABLE AS personalize_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();
CREATE TRIGGER interactions_archive_batch_stale_update AFTER UPDATE ON @extschema@.interactions_archive
    REFERENCING OLD TABLE AS personalize_old NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();
CREATE TRIGGER interactions_archive_batch_stale_truncate AFTER TRUNCATE ON @extschema@.interactions_archive
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._batch_mark_stale();

-- The arguments of a run (and of its schedule): refused with a clear error, nothing done.
CREATE FUNCTION @extschema@._batch_check_args(k integer, variant text, only_changed boolean, batch_size integer)
    RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF k IS NULL OR only_changed IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'k, only_changed and batch_size must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Got k %s, only_changed %s, batch_size %s.', coalesce(k::text, 'NULL'),
                                  coalesce(only_changed::text, 'NULL'), coalesce(batch_size::text, 'NULL')),
                  HINT = 'Leave them out for the defaults (10, true, 1000).';
    END IF;
    IF k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got k = %s.', k),
                  HINT = 'k is how many products each customer gets, as in recommend().';
    END IF;
    IF batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got batch_size = %s.', batch_size),
                  HINT = 'It is how many customers each committed batch computes (default 1000).';
    END IF;
    IF variant IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = _batch_check_args.variant) THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(variant)
            USING ERRCODE = 'undefined_object',
                  DETAIL = (SELECT format('Known variants: %s.', string_agg(v.name, ', ' ORDER BY v.name COLLATE "C"))
                            FROM @extschema@.variants v),
                  HINT = 'Pass NULL to give each customer what recommend(c, NULL) serves them.';
    END IF;
END $$;

-- First step of a run: check the arguments, take the run lock (refusing a second run), mark
-- runs whose session died as failed, and record this one. Returns its run_id.
CREATE FUNCTION @extschema@._batch_begin(k integer, variant text, only_changed boolean, batch_size integer)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    other record;
    run bigint;
BEGIN
    PERFORM @extschema@._batch_check_args(k, variant, only_changed, batch_size);
    IF NOT pg_try_advisory_lock(1885696627, 1) THEN
        SELECT r.run_id, r.pid, r.started_at, r.customers_done, r.customers_total INTO other
        FROM @extschema@.batch_recommendation_runs r WHERE r.status = 'running' ORDER BY r.run_id DESC LIMIT 1;
        RAISE EXCEPTION 'refresh_batch_recommendations() is already running'
            USING ERRCODE = 'lock_not_available',
                  DETAIL = CASE WHEN other.run_id IS NULL THEN 'Another session holds its lock.'
                                ELSE format('Run %s (process %s) started at %s; %s of %s customers done.', other.run_id, other.pid,
                                            other.started_at, other.customers_done, coalesce(other.customers_total::text, '?')) END,
                  HINT = 'Wait for it to finish (personalize.batch_recommendation_runs shows its progress), or cancel it with pg_cancel_backend(pid).';
    END IF;
    -- we hold the lock: a run still "running" lost its session (killed, crashed)
    UPDATE @extschema@.batch_recommendation_runs r
       SET status = 'failed', finished_at = clock_timestamp(), updated_at = clock_timestamp(),
           error = 'abandoned: its session ended before it finished'
     WHERE r.status = 'running';
    INSERT INTO @extschema@.batch_recommendation_runs (k, variant, only_changed, batch_size)
    VALUES (k, variant, only_changed, batch_size) RETURNING run_id INTO run;
    RETURN run;
END $$;

-- Wait until every transaction running now has ended: events (and stale marks) with ids up
-- to the marks just read are then committed or rolled back, and visible to every batch.
CREATE FUNCTION @extschema@._batch_wait_writers() RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    xids xid8[];
    waiting xid8[];
    last_notice timestamptz := clock_timestamp();
BEGIN
    SELECT array_agg(x) INTO xids FROM pg_snapshot_xip(pg_current_snapshot()) x
    WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned();
    LOOP
        SELECT array_agg(x) INTO waiting FROM unnest(xids) x WHERE pg_xact_status(x) = 'in progress';
        EXIT WHEN waiting IS NULL;
        xids := waiting;
        IF clock_timestamp() - last_notice > interval '5 seconds' THEN
            RAISE NOTICE 'refresh_batch_recommendations: waiting for % transaction(s) that were running at its start', cardinality(waiting)
                USING DETAIL = 'Their events must be visible to every batch. Transaction ids: ' || array_to_string(waiting, ', ') || '.',
                      HINT = 'pg_stat_activity.backend_xid shows their sessions (an idle in transaction one, or a prepared transaction, blocks the run until it ends).';
            last_notice := clock_timestamp();
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;

-- Second step: read the marks, wait for the writers in flight, choose full or incremental
-- and fill _batch_todo with the customers to compute. Returns how many.
CREATE FUNCTION @extschema@._batch_plan(run bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    prev record;
    ev_mark bigint;
    st_mark bigint;
    why text;
    total bigint;
BEGIN
    SELECT * INTO r FROM @extschema@.batch_recommendation_runs x WHERE x.run_id = run;
    -- the marks first, then the transactions to wait for (the sequences are not transactional)
    ev_mark := coalesce(pg_sequence_last_value('@extschema@.interactions_interaction_id_seq'::regclass), 0);
    st_mark := coalesce(pg_sequence_last_value('@extschema@._batch_stale_mark_id_seq'::regclass), 0);
    PERFORM @extschema@._batch_wait_writers();
    SELECT * INTO prev FROM @extschema@.batch_recommendation_runs x
    WHERE x.status = 'succeeded' ORDER BY x.run_id DESC LIMIT 1;
    why := CASE
        WHEN NOT r.only_changed THEN NULL
        WHEN prev.run_id IS NULL THEN 'no earlier successful run'
        WHEN prev.k <> r.k OR prev.variant IS DISTINCT FROM r.variant THEN format('run %s had k %s and variant %s', prev.run_id, prev.k, coalesce(prev.variant, 'NULL'))
        WHEN EXISTS (SELECT FROM @extschema@._batch_stale s WHERE s.customer_id IS NULL AND s.mark_id <= st_mark) THEN 'events were truncated'
        WHEN (SELECT s.seqcache FROM pg_sequence s WHERE s.seqrelid = '@extschema@.interactions_interaction_id_seq'::regclass) > 1
            THEN 'the event id sequence caches values (its ids are not in commit order)'
        END;
    TRUNCATE @extschema@._batch_todo, @extschema@._batch_staging;
    IF NOT r.only_changed OR why IS NOT NULL THEN
        INSERT INTO @extschema@._batch_todo (customer_id) SELECT c.customer_id FROM @extschema@.customers c;
    ELSE
        INSERT INTO @extschema@._batch_todo (customer_id)
        SELECT x.customer_id FROM (
            SELECT i.customer_id FROM @extschema@.interactions i WHERE i.interaction_id > prev.events_mark
            UNION SELECT a.customer_id FROM @extschema@.interactions_archive a WHERE a.interaction_id > prev.events_mark
            UNION SELECT s.customer_id FROM @extschema@._batch_stale s WHERE s.mark_id <= st_mark
            UNION SELECT c.customer_id FROM @extschema@.customers c
                  WHERE NOT EXISTS (SELECT FROM @extschema@.batch_recommendations b WHERE b.customer_id = c.customer_id)
        ) x
        WHERE EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = x.customer_id);
    END IF;
    GET DIAGNOSTICS total = ROW_COUNT;
    ANALYZE @extschema@._batch_todo;
    UPDATE @extschema@.batch_recommendation_runs x
       SET mode = CASE WHEN NOT r.only_changed OR why IS NOT NULL THEN 'full' ELSE 'incremental' END,
           full_reason = why, customers_total = total, events_mark = ev_mark, stale_mark = st_mark,
           updated_at = clock_timestamp()
     WHERE x.run_id = run;
    RETURN total;
END $$;

-- One batch: recommend() for the next batch_size customers of _batch_todo after the customer
-- id after_id (NULL: from the first), into _batch_staging. Returns the last customer and how many.
CREATE FUNCTION @extschema@._batch_step(run bigint, after_id bigint, batch_size integer)
    RETURNS TABLE (last_customer bigint, customers integer)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    ids bigint[];
BEGIN
    SELECT x.k, x.variant INTO r FROM @extschema@.batch_recommendation_runs x WHERE x.run_id = run;
    SELECT array_agg(t.customer_id ORDER BY t.customer_id) INTO ids
    FROM (SELECT d.customer_id FROM @extschema@._batch_todo d
          WHERE after_id IS NULL OR d.customer_id > after_id ORDER BY d.customer_id LIMIT batch_size) t;
    IF ids IS NULL THEN
        RETURN QUERY SELECT after_id, 0;
        RETURN;
    END IF;
    INSERT INTO @extschema@._batch_staging (customer_id, rank, product_id, score, reason, variant, generated_at)
    SELECT c.id, x.ord, x.product_id, x.score, x.reason, x.variant, now()
    FROM unnest(ids) AS c(id)
    CROSS JOIN LATERAL @extschema@.recommend_served(c.id, r.variant, r.k) WITH ORDINALITY AS x(product_id, score, reason, variant, ord);
    UPDATE @extschema@.batch_recommendation_runs x
       SET customers_done = x.customers_done + cardinality(ids), updated_at = clock_timestamp()
     WHERE x.run_id = run;
    RETURN QUERY SELECT ids[cardinality(ids)], cardinality(ids);
END $$;

-- Last step, in one transaction: replace the published rows of the customers computed (all
-- rows on a full run) by the staging rows, remove the stale marks the run saw, record the
-- success. Customers erased meanwhile are not published: the publish lock makes
-- forget_customer() and merge_customers() wait for it, or it for them. Returns the rows published.
CREATE FUNCTION @extschema@._batch_publish(run bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1885696627, 2);
    SELECT * INTO r FROM @extschema@.batch_recommendation_runs x WHERE x.run_id = run;
    IF r.mode = 'full' THEN
        DELETE FROM @extschema@.batch_recommendations;
    ELSE
        DELETE FROM @extschema@.batch_recommendations b USING @extschema@._batch_todo t WHERE b.customer_id = t.customer_id;
        -- customers deleted since (without forget_customer())
        DELETE FROM @extschema@.batch_recommendations b
        WHERE NOT EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = b.customer_id);
    END IF;
    INSERT INTO @extschema@.batch_recommendations (customer_id, rank, product_id, score, reason, variant, generated_at)
    SELECT s.customer_id, s.rank, s.product_id, s.score, s.reason, s.variant, s.generated_at
    FROM @extschema@._batch_staging s
    WHERE EXISTS (SELECT FROM @extschema@.customers c WHERE c.customer_id = s.customer_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM @extschema@._batch_stale s WHERE s.mark_id <= r.stale_mark;
    UPDATE @extschema@.batch_recommendation_runs x
       SET status = 'succeeded', rows_published = n, finished_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE x.run_id = run;
    TRUNCATE @extschema@._batch_todo, @extschema@._batch_staging;
    RETURN n;
END $$;

-- A failed run: recorded with its error, its work thrown away (nothing was published).
CREATE FUNCTION @extschema@._batch_fail(run bigint, error text) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE @extschema@.batch_recommendation_runs x
       SET status = 'failed', error = _batch_fail.error, finished_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE x.run_id = run;
    TRUNCATE @extschema@._batch_todo, @extschema@._batch_staging;
END $$;

-- The run: begin, plan, batches (each committed, NOTICEs every 5 s), publish. A procedure
-- without SET clauses (they would forbid its COMMITs): the steps above carry theirs, and
-- search_path is set for each transaction. A failure (an error, a cancel, a
-- statement_timeout) is recorded as failed, then raised again (pg_cron records it too).
CREATE PROCEDURE @extschema@.refresh_batch_recommendations(k integer DEFAULT 10, variant text DEFAULT NULL,
                                                           only_changed boolean DEFAULT true, batch_size integer DEFAULT 1000)
    LANGUAGE plpgsql AS $$
DECLARE
    run bigint;
    total bigint;
    done bigint := 0;
    n integer := 0;
    after_id bigint;
    published bigint;
    started timestamptz := pg_catalog.clock_timestamp();
    last_notice timestamptz := pg_catalog.clock_timestamp();
    secs numeric;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
BEGIN
    -- inside a transaction block this fails at once, before anything is locked or written
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    run := @extschema@._batch_begin(k, variant, only_changed, batch_size);
    LOOP
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN published IS NOT NULL;
        done := done + n;
        secs := EXTRACT(epoch FROM clock_timestamp() - started);
        IF clock_timestamp() - last_notice > interval '5 seconds' THEN
            RAISE NOTICE 'refresh_batch_recommendations: % of % customers (% %%), % customers/s', done, total,
                round(100.0 * done / greatest(total, 1)), round(done / greatest(secs, 0.001));
            last_notice := clock_timestamp();
        END IF;
        BEGIN
            IF total IS NULL THEN
                total := @extschema@._batch_plan(run);
            ELSE
                SELECT s.last_customer, s.customers INTO after_id, n FROM @extschema@._batch_step(run, after_id, batch_size) s;
                IF n = 0 THEN
                    published := @extschema@._batch_publish(run);
                END IF;
            END IF;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                    e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
        END;
        EXIT WHEN e_state IS NOT NULL;
    END LOOP;
    IF e_state IS NOT NULL THEN
        PERFORM @extschema@._batch_fail(run, e_state || ': ' || e_message);
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;
    -- the run lock (held once, unless an earlier call of this session died before releasing it)
    WHILE EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()
                  AND l.classid = 1885696627 AND l.objid = 1 AND l.objsubid = 2) LOOP
        PERFORM pg_advisory_unlock(1885696627, 1);
    END LOOP;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), format('Run %s is recorded as failed in personalize.batch_recommendation_runs.', run)),
            HINT = coalesce(nullif(e_hint, ''), 'personalize.batch_recommendations was not changed.');
    END IF;
    secs := EXTRACT(epoch FROM clock_timestamp() - started);
    RAISE NOTICE 'refresh_batch_recommendations: run % (%) published % rows for % customers in % s (% customers/s)',
        run, (SELECT r.mode FROM @extschema@.batch_recommendation_runs r WHERE r.run_id = run), published, done,
        round(secs, 1), round(done / greatest(secs, 0.001));
END $$;
COMMENT ON PROCEDURE @extschema@.refresh_batch_recommendations(integer, text, boolean, integer) IS
    'Compute recommend(c, variant, k) for the customers (with only_changed, those whose history changed since the last successful run and those never computed; else all), batch_size customers per committed batch, NOTICEs every 5 s, then replace their rows of batch_recommendations in one transaction. One run at a time; every run is a batch_recommendation_runs row. CALL it outside a transaction block.';

CREATE FUNCTION @extschema@.schedule_batch_recommendations(schedule text DEFAULT '0 5 * * *', k integer DEFAULT 10,
                                                           variant text DEFAULT NULL, only_changed boolean DEFAULT true)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._batch_check_args(k, variant, only_changed, 1000);
    RETURN @extschema@._cron_schedule('personalize-batch-recommendations', schedule,
        format('CALL @extschema@.refresh_batch_recommendations(k => %s, variant => %L, only_changed => %s)', k, variant, only_changed));
END $$;
COMMENT ON FUNCTION @extschema@.schedule_batch_recommendations(text, integer, text, boolean) IS 'Schedule CALL personalize.refresh_batch_recommendations(k, variant, only_changed) with pg_cron (job personalize-batch-recommendations@<database>, run in this database; default 05:00 every day); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_batch_recommendations() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-batch-recommendations');
COMMENT ON FUNCTION @extschema@.unschedule_batch_recommendations() IS 'Remove the personalize-batch-recommendations@<database> pg_cron job; false if there was none.';

-- Impressions outside experiments: what a page showed, opt-in (set_impression_log()).
-- User data: dumped.
CREATE TABLE @extschema@.impressions (
    impression_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id   bigint NOT NULL,
    variant       text NOT NULL,
    product_ids   bigint[] NOT NULL,
    placement     text,
    shown_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT impressions_placement_check CHECK (pg_catalog.length(placement) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(placement) OPERATOR(pg_catalog.<=) 64)
);
COMMENT ON TABLE @extschema@.impressions IS 'What log_impressions() recorded as shown, outside experiments (opt-in: set_impression_log(true)). Dumped; retention target impressions (default 90 days).';
COMMENT ON COLUMN @extschema@.impressions.impression_id IS 'Row id.';
COMMENT ON COLUMN @extschema@.impressions.customer_id IS 'Who was shown the products (forget_customer() erases the row, merge_customers() moves it).';
COMMENT ON COLUMN @extschema@.impressions.variant IS 'The variant that served: as given, else what recommend(c, NULL) serves the customer.';
COMMENT ON COLUMN @extschema@.impressions.product_ids IS 'The products shown, in order (at most 1000).';
COMMENT ON COLUMN @extschema@.impressions.placement IS 'Where they were shown (the application''s name for the widget, 1 to 64 characters), or NULL.';
COMMENT ON COLUMN @extschema@.impressions.shown_at IS 'When (start of the transaction that logged it).';
CREATE INDEX impressions_customer_idx ON @extschema@.impressions (customer_id);
CREATE INDEX impressions_shown_at_idx ON @extschema@.impressions (shown_at);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.impressions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.impressions_impression_id_seq', '');

CREATE FUNCTION @extschema@.log_impressions(customer_id bigint, product_ids bigint[], variant text DEFAULT NULL,
                                            placement text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        PERFORM @extschema@._standby_refusal('log_impressions',
            'Call recommend() on the standby and log_impressions() on the primary, e.g. through the application''s primary connection.');
    END IF;
    IF customer_id IS NULL OR product_ids IS NULL THEN
        RAISE EXCEPTION 'customer_id and product_ids must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass an empty array when nothing was shown.';
    END IF;
    IF cardinality(product_ids) > 1000 THEN
        RAISE EXCEPTION 'product_ids must hold at most 1000 products'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Got %s products.', cardinality(product_ids)),
                  HINT = 'Log the products one page showed; recommend() returns at most 1000.';
    END IF;
    IF array_position(product_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'product_ids must not contain nulls'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Position %s is NULL.', array_position(product_ids, NULL)),
                  HINT = 'Pass the ids of the products shown.';
    END IF;
    IF length(placement) NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'placement must be 1 to 64 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s characters.', length(placement)),
                  HINT = 'Name the widget, for example ''home'' or ''email''; or pass NULL.';
    END IF;
    IF log_impressions.variant IS NOT NULL
       AND NOT EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = log_impressions.variant) THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(log_impressions.variant)
            USING ERRCODE = 'undefined_object', HINT = 'Pass the variant recommend() was called with, or NULL.';
    END IF;
    IF NOT coalesce((SELECT s.log_impressions FROM @extschema@.serving_settings s), false) THEN
        RETURN false;
    END IF;
    INSERT INTO @extschema@.impressions (customer_id, variant, product_ids, placement)
    VALUES (log_impressions.customer_id, @extschema@._served_variant(log_impressions.customer_id, log_impressions.variant),
            log_impressions.product_ids, log_impressions.placement);
    RETURN true;
END $$;
COMMENT ON FUNCTION @extschema@.log_impressions(bigint, bigint[], text, text) IS
    'Log the products a page showed a customer outside experiments (variant NULL: the one recommend(c, NULL) serves them), with an optional placement; returns false and logs nothing unless set_impression_log(true).';

CREATE FUNCTION @extschema@.set_impression_log(enabled boolean) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'true starts logging impressions, false stops it.';
    END IF;
    INSERT INTO @extschema@.serving_settings AS s (log_impressions) VALUES (enabled)
        ON CONFLICT (singleton) DO UPDATE SET log_impressions = excluded.log_impressions;
    RETURN enabled;
END $$;
COMMENT ON FUNCTION @extschema@.set_impression_log(boolean) IS
    'Turn the impression log on or off (log_impressions() records only while it is on); kept by pg_dump. Returns the setting.';

-- Click-through: a shown product counts as clicked when the same customer has a click, cart
-- or purchase event on it at most 24 hours after the impression (shown_at <= occurred_at
-- <= shown_at + 24 h), in interactions.
CREATE VIEW @extschema@.impression_ctr AS
SELECT s.day, s.variant, s.placement, pg_catalog.count(*) AS impressions,
       pg_catalog.sum(s.shown)::bigint AS products_shown, pg_catalog.sum(s.clicked)::bigint AS products_clicked,
       pg_catalog.sum(s.clicked)::double precision OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(s.shown), 0)::double precision AS ctr
FROM (
    SELECT i.shown_at::date AS day, i.variant, i.placement,
           (SELECT pg_catalog.count(DISTINCT p.p) FROM pg_catalog.unnest(i.product_ids) AS p(p)) AS shown,
           (SELECT pg_catalog.count(DISTINCT p.p) FROM pg_catalog.unnest(i.product_ids) AS p(p)
             WHERE EXISTS (SELECT FROM @extschema@.interactions x
                           WHERE x.customer_id OPERATOR(pg_catalog.=) i.customer_id AND x.product_id OPERATOR(pg_catalog.=) p.p
                             AND x.event_type OPERATOR(pg_catalog.=) ANY (ARRAY['click', 'cart', 'purchase'])
                             AND x.occurred_at OPERATOR(pg_catalog.>=) i.shown_at
                             AND x.occurred_at OPERATOR(pg_catalog.<=) (i.shown_at OPERATOR(pg_catalog.+) '24 hours'::interval))) AS clicked
    FROM @extschema@.impressions i
) s
GROUP BY s.day, s.variant, s.placement;
COMMENT ON VIEW @extschema@.impression_ctr IS 'Click-through of the impression log per day, variant and placement: a shown product is clicked when the same customer clicked, carted or bought it within 24 hours after the impression.';
COMMENT ON COLUMN @extschema@.impression_ctr.day IS 'The day of shown_at, in the session''s TimeZone.';
COMMENT ON COLUMN @extschema@.impression_ctr.variant IS 'The variant that served.';
COMMENT ON COLUMN @extschema@.impression_ctr.placement IS 'Where (NULL: not given).';
COMMENT ON COLUMN @extschema@.impression_ctr.impressions IS 'Impression rows.';
COMMENT ON COLUMN @extschema@.impression_ctr.products_shown IS 'Distinct products per impression, summed.';
COMMENT ON COLUMN @extschema@.impression_ctr.products_clicked IS 'Of those, the ones the customer clicked, carted or bought within 24 hours after the impression.';
COMMENT ON COLUMN @extschema@.impression_ctr.ctr IS 'products_clicked / products_shown (NULL when nothing was shown).';
-- privileges as a fresh install has them (sql/parts/privileges.sql revokes everything from PUBLIC)
REVOKE ALL ON TABLE @extschema@.batch_recommendations FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@._batch_todo FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@._batch_staging FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@._batch_stale FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.batch_recommendation_runs FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.batch_recommendations_named FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.impressions FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.impression_ctr FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._served_variant(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_mark_stale() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_check_args(integer, text, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_begin(integer, text, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_wait_writers() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_plan(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_step(bigint, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_publish(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._batch_fail(bigint, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.refresh_batch_recommendations(integer, text, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.schedule_batch_recommendations(text, integer, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unschedule_batch_recommendations() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.log_impressions(bigint, bigint[], text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.set_impression_log(boolean) FROM PUBLIC;

------------------------------------------------------------------------------
-- Quality (issue 13, items 1 and 2): the EASE model. _ease_lists() (src/ease.c, serial
-- OpenBLAS), refresh_ease() and its schedule, the built-in variant ease (measure ease,
-- served by recommend() with the llr lists as the fallback); rebuild() and the neighbour
-- refresh keep the 'ease' lists, which only refresh_ease() replaces, and refresh the llr
-- lists an ease variant falls back to; create_variant() says how an ease variant is served.
------------------------------------------------------------------------------

-- The top-k positive EASE weights of each of the max_products most frequent active products
-- of item_counts (columns product_id, customers), from the pair counts among them in
-- pair_counts (product_a < product_b, customers): B = -P / diag(P), P = (G + lambda I)^-1
-- (src/ease.c). Takes the count tables as arguments so that a model as of a past cut, in
-- temporary tables of the same columns, can be scored too. Runs as its caller.
CREATE FUNCTION @extschema@._ease_lists(item_counts regclass, pair_counts regclass, max_products integer,
                                        lambda double precision, k integer)
    RETURNS TABLE (product_id bigint, neighbor_ids bigint[], scores double precision[], counts bigint[])
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_ease_lists';
COMMENT ON FUNCTION @extschema@._ease_lists(regclass, regclass, integer, double precision, integer) IS
    'The top-k positive EASE weights B_ij = -P_ij / P_jj, P = (G + lambda I)^-1, of the max_products most frequent active products of an item-count relation, G from it and a pair-count relation; best first, with the pairs'' co-occurrence counts.';

-- _ease_lists() with the scores divided by the median over products of their best weight
-- (each row carries that scale): an 'ease' list then weighs as much as the 'llr' list
-- (scaled by its best) a product outside the model falls back to. What refresh_ease()
-- stores and evaluate() scores.
CREATE FUNCTION @extschema@._ease_scaled_lists(item_counts regclass, pair_counts regclass, max_products integer,
                                               lambda double precision, k integer)
    RETURNS TABLE (product_id bigint, neighbor_ids bigint[], scores double precision[], counts bigint[],
                   scale double precision)
    LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH l AS MATERIALIZED (SELECT * FROM @extschema@._ease_lists(item_counts, pair_counts, max_products, lambda, k)),
         m AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l.scores[1]) AS scale FROM l)
    SELECT l.product_id, l.neighbor_ids,
           (SELECT array_agg(u.x / m.scale ORDER BY u.o) FROM unnest(l.scores) WITH ORDINALITY AS u(x, o)),
           l.counts, m.scale
    FROM l, m
$$;

-- Compute the 'ease' lists into a temporary table (a long statement that locks nothing the
-- serving path or the refresh needs), commit, then replace every 'ease' row in one short
-- transaction: the old lists are served until that commits, and an error or a cancel before
-- it leaves them in place. Scores are stored scaled by _ease_scaled_lists() (the scale is
-- recorded as details.scale). Every run is logged in
-- maintenance_runs like refresh(), a failed one with its error, raised again afterwards.
CREATE PROCEDURE @extschema@.refresh_ease()
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
    s jsonb;
    n_lists bigint := 0;
    scale double precision;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
BEGIN
    -- the model from the folded counts; committed at once, so that the minute's refresh
    -- never waits for the solve (its own fold would wait for this one's lock)
    PERFORM @extschema@.fold_deltas();
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    BEGIN
        s := @extschema@._engine_settings();
        IF to_regclass('pg_temp.personalize_ease_lists') IS NOT NULL THEN
            DROP TABLE pg_temp.personalize_ease_lists;
        END IF;
        CREATE TEMPORARY TABLE personalize_ease_lists AS
            SELECT l.product_id, l.neighbor_ids, l.scores, l.counts, l.scale
            FROM @extschema@._ease_scaled_lists('@extschema@.item_counts_base', '@extschema@.pair_counts_base',
                                         (s ->> 'ease_products')::integer, (s ->> 'ease_lambda')::double precision,
                                         (s ->> 'ease_k')::integer) l;
        GET DIAGNOSTICS n_lists = ROW_COUNT;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
    END;
    IF e_state IS NULL THEN
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        PERFORM pg_catalog.set_config('application_name', 'personalize.refresh_ease: publish', true);
        BEGIN
            SELECT l.scale INTO scale FROM pg_temp.personalize_ease_lists l LIMIT 1;
            DELETE FROM @extschema@.neighbors n WHERE n.measure = 'ease';
            INSERT INTO @extschema@.neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT 'ease', l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM pg_temp.personalize_ease_lists l ORDER BY l.product_id;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                    e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
        END;
    END IF;
    IF pg_catalog.to_regclass('pg_temp.personalize_ease_lists') IS NOT NULL THEN
        DROP TABLE pg_temp.personalize_ease_lists;
    END IF;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details, status, error)
    VALUES ('refresh_ease', started, CASE WHEN e_state IS NULL THEN n_lists ELSE 0 END,
            pg_catalog.jsonb_build_object('products', (s ->> 'ease_products')::integer,
                                          'lambda', (s ->> 'ease_lambda')::double precision,
                                          'k', (s ->> 'ease_k')::integer, 'scale', scale),
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The previous ''ease'' lists are still served; the next run builds them anew.');
    END IF;
    RAISE NOTICE 'refresh_ease: % lists stored in % s', n_lists,
        round(extract(epoch FROM pg_catalog.clock_timestamp() - started)::numeric, 1);
END $$;
COMMENT ON PROCEDURE @extschema@.refresh_ease() IS 'Rebuild the EASE model (personalize.ease_products, ease_lambda, ease_k) and replace the ''ease'' neighbour lists at once; what the nightly job runs. Logs every run in maintenance_runs (job refresh_ease), a failed one with its error. CALL it outside a transaction block.';

CREATE FUNCTION @extschema@.schedule_ease(schedule text DEFAULT '15 3 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-refresh-ease', schedule, 'CALL personalize.refresh_ease()');
COMMENT ON FUNCTION @extschema@.schedule_ease(text) IS 'Schedule CALL personalize.refresh_ease() with pg_cron (job personalize-refresh-ease@<database>, run in this database, nightly by default); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_ease() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-refresh-ease');
COMMENT ON FUNCTION @extschema@.unschedule_ease() IS 'Remove the pg_cron job of schedule_ease().';


-- the built-in variant ease; a variant of that name created under 0.1.0 is kept as it is
DO $$
BEGIN
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = 'ease') THEN
        RAISE WARNING 'the built-in variant "ease" is not installed: a variant of that name exists and is kept'
            USING HINT = 'Rename or drop yours, then: INSERT INTO personalize.variants (name, algorithm, params, builtin) VALUES (''ease'', ''cooccurrence'', ''{"measure": "ease"}'', true).';
    ELSE
        INSERT INTO @extschema@.variants (name, algorithm, params, builtin) VALUES ('ease', 'cooccurrence', '{"measure": "ease"}', true);
    END IF;
END $$;
COMMENT ON COLUMN @extschema@.neighbors.measure IS 'Similarity measure: count, jaccard, cosine, lift, llr, ease (refresh_ease()) or content.';
COMMENT ON COLUMN @extschema@.neighbors.scores IS 'Their similarity scores (ease: the EASE weights divided by the median best weight, details.scale of the refresh_ease run).';
COMMENT ON COLUMN @extschema@.maintenance_runs.job IS 'rebuild, refresh, refresh_neighbors, refresh_popular or refresh_ease.';
COMMENT ON COLUMN @extschema@.maintenance_runs.items IS 'rebuild: pairs; refresh and refresh_neighbors: products refreshed; refresh_popular: rows in the list; refresh_ease: products with an ''ease'' list.';
COMMENT ON TABLE @extschema@.maintenance_runs IS 'One row per finished rebuild(), refresh_neighbors(), refresh_popular(), refresh(), refresh_ease(), evaluate() and tune() run; a refresh() or refresh_ease() that failed has status failed and its error (SQLSTATE: message); invalid variants a run skipped are in details.skipped_variants.';
-- privileges as a fresh install has them (sql/parts/privileges.sql revokes everything from PUBLIC)
REVOKE ALL ON FUNCTION @extschema@._ease_lists(regclass, regclass, integer, double precision, integer) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.refresh_ease() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._ease_scaled_lists(regclass, regclass, integer, double precision, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.schedule_ease(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unschedule_ease() FROM PUBLIC;

-- ==== issue 13: evaluate() and tune() (sql/parts/evaluate.sql) ====
------------------------------------------------------------------------------
-- Offline evaluation on the shop's own events (issue 13): evaluate() scores
-- variants as recommend() would have served them at a past cut; tune() sweeps a
-- variant's parameters with it. The model as of the cut is built in the session's
-- temporary schema (pg_temp.personalize_eval_*); the live model is never written.
------------------------------------------------------------------------------

-- recommend(customer_id, variant, k) reading the temporary model as of the cut
-- (src/evaluate.c); only evaluate() and tune() call it, with the tables built.
CREATE FUNCTION @extschema@._recommend_at_cut(customer_id bigint, variant text, k integer)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_recommend_at_cut';

-- Drop the temporary tables of an evaluation (they are dropped at the end of one; a
-- failed one leaves none either, its transaction rolls them back).
CREATE FUNCTION @extschema@._evaluation_drop() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_items', 'item_counts', 'pair_counts', 'neighbors', 'dirty_products',
                             'popular_scores', 'llm_recommendations', 'variants', 'heldout', 'test', 'recs'] LOOP
        IF to_regclass('pg_temp.personalize_eval_' || t) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', 'personalize_eval_' || t);
        END IF;
    END LOOP;
END $$;

-- Check evaluate()'s and tune()'s common arguments (22004, 22023).
CREATE FUNCTION @extschema@._evaluation_check(cut timestamptz, k integer) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cut IS NULL THEN
        RAISE EXCEPTION 'cut must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'The cut splits the events: the model learns from those before it and is scored on the purchases after it.';
    END IF;
    IF NOT isfinite(cut) THEN
        RAISE EXCEPTION 'cut must be a finite time'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', cut),
                  HINT = 'For example now() - interval ''30 days''.';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(k::text, 'NULL')),
                  HINT = 'k is the length of the scored lists, as in recommend().';
    END IF;
END $$;

-- The neighbour lists of the model as of the cut under the given measures: the
-- co-occurrence measures from its counts, 'ease' by _ease_lists() from them with the
-- given lambda, 'content' copied from the live lists (they come from embeddings).
CREATE FUNCTION @extschema@._evaluation_lists(measures text[], ease_lambda double precision) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_total bigint;
    ids bigint[];
    m text;
    n bigint;
BEGIN
    SELECT count(DISTINCT ci.customer_id) INTO n_total FROM pg_temp.personalize_eval_customer_items ci WHERE ci.in_model;
    SELECT array_agg(ic.product_id ORDER BY ic.product_id) INTO ids FROM pg_temp.personalize_eval_item_counts ic;
    FOREACH m IN ARRAY coalesce(measures, '{}') LOOP
        DELETE FROM pg_temp.personalize_eval_neighbors e WHERE e.measure = m;
        IF m = 'content' THEN
            INSERT INTO pg_temp.personalize_eval_neighbors SELECT * FROM @extschema@.neighbors x WHERE x.measure = 'content';
        ELSIF m = 'ease' THEN
            INSERT INTO pg_temp.personalize_eval_neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT 'ease', l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM @extschema@._ease_scaled_lists('pg_temp.personalize_eval_item_counts', 'pg_temp.personalize_eval_pair_counts',
                                         current_setting('personalize.ease_products')::integer,
                                         coalesce(ease_lambda, current_setting('personalize.ease_lambda')::double precision),
                                         current_setting('personalize.ease_k')::integer) l;
        ELSIF ids IS NOT NULL THEN
            INSERT INTO pg_temp.personalize_eval_neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT l.measure, l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM @extschema@._neighbor_lists('pg_temp.personalize_eval_pair_counts', 'pg_temp.personalize_eval_item_counts',
                                             n_total, ARRAY[m], ids) l;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        RAISE NOTICE 'evaluate: % lists under "%"', n, m;
    END LOOP;
    ANALYZE pg_temp.personalize_eval_neighbors;
    RETURN n_total;
END $$;

-- Build the model as of the cut in temporary tables: the customers' histories, product
-- and pair counts (the same rules as rebuild(), with the model's max_items_per_customer),
-- the neighbour lists of the measures, the popularity list with the window of the live
-- one ending at the cut, no dirty products, no LLM answers; the variants copied. And the
-- test set: each customer with history before the cut and the products they first
-- bought at or after it (bought before: not scored, recommend() excludes them); 22023 when
-- it is empty.
CREATE FUNCTION @extschema@._evaluation_model(cut timestamptz, measures text[]) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cap integer := (SELECT s.max_items_per_customer FROM @extschema@.model_settings s);
    window_length interval := coalesce((SELECT make_interval(secs => ps.window_days * 86400) FROM @extschema@.popular_scores ps),
                                       interval '7 days');
BEGIN
    PERFORM @extschema@._evaluation_drop();
    PERFORM set_config('application_name', 'personalize.evaluate: model as of the cut', true);
    CREATE TEMP TABLE personalize_eval_customer_items (LIKE @extschema@.customer_items INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_customer_items SELECT * FROM @extschema@._customer_items_as_of(cut, cap);
    ANALYZE pg_temp.personalize_eval_customer_items;
    CREATE TEMP TABLE personalize_eval_item_counts AS
        SELECT ci.product_id, count(*)::bigint AS customers
        FROM pg_temp.personalize_eval_customer_items ci WHERE ci.in_model GROUP BY ci.product_id;
    ALTER TABLE pg_temp.personalize_eval_item_counts ADD PRIMARY KEY (product_id);
    CREATE TEMP TABLE personalize_eval_pair_counts AS
        SELECT a.product_id AS product_a, b.product_id AS product_b, count(*)::bigint AS customers
        FROM pg_temp.personalize_eval_customer_items a
        JOIN pg_temp.personalize_eval_customer_items b ON b.customer_id = a.customer_id AND b.product_id > a.product_id
        WHERE a.in_model AND b.in_model
        GROUP BY a.product_id, b.product_id;
    ALTER TABLE pg_temp.personalize_eval_pair_counts ADD PRIMARY KEY (product_a, product_b);
    CREATE INDEX ON pg_temp.personalize_eval_pair_counts (product_b);
    ANALYZE pg_temp.personalize_eval_item_counts;
    ANALYZE pg_temp.personalize_eval_pair_counts;
    RAISE NOTICE 'evaluate: model as of %: % customer products, % products, % pairs', cut,
        (SELECT count(*) FROM pg_temp.personalize_eval_customer_items),
        (SELECT count(*) FROM pg_temp.personalize_eval_item_counts),
        (SELECT count(*) FROM pg_temp.personalize_eval_pair_counts);

    CREATE TEMP TABLE personalize_eval_neighbors (LIKE @extschema@.neighbors INCLUDING DEFAULTS INCLUDING INDEXES);
    PERFORM set_config('application_name', 'personalize.evaluate: neighbour lists as of the cut', true);
    PERFORM @extschema@._evaluation_lists(measures, NULL);
    CREATE TEMP TABLE personalize_eval_dirty_products (LIKE @extschema@.dirty_products INCLUDING DEFAULTS INCLUDING INDEXES);
    CREATE TEMP TABLE personalize_eval_llm_recommendations
        (LIKE @extschema@.llm_recommendations INCLUDING DEFAULTS INCLUDING INDEXES);
    CREATE TEMP TABLE personalize_eval_variants (LIKE @extschema@.variants INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_variants SELECT * FROM @extschema@.variants;
    CREATE TEMP TABLE personalize_eval_popular_scores (LIKE @extschema@.popular_scores INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_popular_scores (product_ids, scores, window_days)
    SELECT coalesce(array_agg(l.product_id ORDER BY l.rank), '{}'), coalesce(array_agg(l.score ORDER BY l.rank), '{}'),
           extract(epoch FROM window_length)::double precision / 86400
    FROM @extschema@._popular_list(cut, window_length, 'pg_temp.personalize_eval_item_counts', false) l;

    CREATE TEMP TABLE personalize_eval_heldout AS
        SELECT DISTINCT e.customer_id, e.product_id
        FROM (SELECT x.customer_id, x.product_id FROM @extschema@.interactions x
              WHERE x.event_type = 'purchase' AND x.occurred_at >= cut
              UNION ALL
              SELECT a.customer_id, a.product_id FROM @extschema@.interactions_archive a
              WHERE a.event_type = 'purchase' AND a.occurred_at >= cut) e
        WHERE EXISTS (SELECT FROM pg_temp.personalize_eval_customer_items h WHERE h.customer_id = e.customer_id)
          AND NOT EXISTS (SELECT FROM pg_temp.personalize_eval_customer_items h
                          WHERE h.customer_id = e.customer_id AND h.product_id = e.product_id AND h.purchases > 0);
    ALTER TABLE pg_temp.personalize_eval_heldout ADD PRIMARY KEY (customer_id, product_id);
    CREATE TEMP TABLE personalize_eval_test AS
        SELECT h.customer_id, count(*) AS n_heldout FROM pg_temp.personalize_eval_heldout h GROUP BY h.customer_id;
    ALTER TABLE pg_temp.personalize_eval_test ADD PRIMARY KEY (customer_id);
    CREATE TEMP TABLE personalize_eval_recs (customer_id bigint, rank bigint, product_id bigint);
    ANALYZE pg_temp.personalize_eval_heldout;
    ANALYZE pg_temp.personalize_eval_test;
    IF NOT EXISTS (SELECT FROM pg_temp.personalize_eval_test) THEN
        -- the error rolls the temporary tables back with the (sub)transaction
        RAISE EXCEPTION 'no customer to score at cut %', cut
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'No customer has events before the cut and a purchase of a new product at or after it.',
                  HINT = 'Choose a cut with purchases on both sides, for example 30 days before the last one.';
    END IF;
    RAISE NOTICE 'evaluate: % test customers, % held-out purchases',
        (SELECT count(*) FROM pg_temp.personalize_eval_test), (SELECT count(*) FROM pg_temp.personalize_eval_heldout);
END $$;

-- Score one variant of pg_temp.personalize_eval_variants on the test set: its top k for
-- every test customer as of the cut, then the metrics (binary relevance).
CREATE FUNCTION @extschema@._evaluation_score(variant text, k integer)
    RETURNS TABLE (customers bigint, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    batch bigint[];
    done bigint := 0;
    total bigint := (SELECT count(*) FROM pg_temp.personalize_eval_test);
    last_notice timestamptz := clock_timestamp();
BEGIN
    TRUNCATE pg_temp.personalize_eval_recs;
    FOR batch IN SELECT array_agg(t.customer_id ORDER BY t.customer_id)
                 FROM (SELECT t.customer_id, (row_number() OVER (ORDER BY t.customer_id) - 1) / 500 AS chunk
                       FROM pg_temp.personalize_eval_test t) t
                 GROUP BY t.chunk ORDER BY t.chunk LOOP
        INSERT INTO pg_temp.personalize_eval_recs (customer_id, rank, product_id)
        SELECT c.id, r.ord, r.product_id
        FROM unnest(batch) AS c(id),
             LATERAL @extschema@._recommend_at_cut(c.id, variant, k) WITH ORDINALITY AS r(product_id, score, reason, ord);
        done := done + cardinality(batch);
        PERFORM set_config('application_name', format('personalize.evaluate: %s, %s of %s customers', variant, done, total), true);
        IF clock_timestamp() - last_notice > interval '5 seconds' THEN
            RAISE NOTICE 'evaluate: variant "%": % of % customers scored', variant, done, total;
            last_notice := clock_timestamp();
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT count(*), avg((s.hits > 0)::integer)::double precision, avg(s.hits::double precision / k),
           avg(s.hits::double precision / s.n_heldout), avg(s.dcg / s.idcg),
           (SELECT count(DISTINCT r.product_id) FROM pg_temp.personalize_eval_recs r)::double precision
               / nullif((SELECT count(*) FROM @extschema@.products p WHERE p.active), 0)
    FROM (SELECT t.customer_id, t.n_heldout, count(h.product_id) AS hits,
                 coalesce(sum(1 / log(2, r.rank + 1)) FILTER (WHERE h.product_id IS NOT NULL), 0)::double precision AS dcg,
                 (SELECT sum(1 / log(2, i + 1)) FROM generate_series(1, least(k, t.n_heldout)::integer) i)::double precision AS idcg
          FROM pg_temp.personalize_eval_test t
          LEFT JOIN pg_temp.personalize_eval_recs r ON r.customer_id = t.customer_id
          LEFT JOIN pg_temp.personalize_eval_heldout h ON h.customer_id = r.customer_id AND h.product_id = r.product_id
          GROUP BY t.customer_id, t.n_heldout) s;
END $$;

-- The variants an evaluation scores, checked: all but the llm ones when NULL.
CREATE FUNCTION @extschema@._evaluation_variants(variants text[]) RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v text;
    alg text;
BEGIN
    IF variants IS NULL THEN
        RETURN (SELECT array_agg(x.name ORDER BY x.name) FROM @extschema@.variants x WHERE x.algorithm <> 'llm');
    END IF;
    IF cardinality(variants) = 0 OR cardinality(variants) > 100 OR array_position(variants, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'variants must name 1 to 100 variants, or be NULL for all'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN array_position(variants, NULL) IS NOT NULL THEN 'A name is NULL.'
                                ELSE format('Got %s names.', cardinality(variants)) END,
                  HINT = 'Pass NULL to score every variant.';
    END IF;
    FOREACH v IN ARRAY variants LOOP
        SELECT x.algorithm INTO alg FROM @extschema@.variants x WHERE x.name = v;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'variant "%" does not exist', @extschema@._echo(v)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'SELECT name FROM personalize.variants lists them.';
        ELSIF alg = 'llm' THEN
            RAISE EXCEPTION 'variant "%" cannot be evaluated at a past cut', @extschema@._echo(v)
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Its answers were generated from each customer''s history when the LLM was asked, which may be after the cut.',
                      HINT = 'Compare it online with an experiment (personalize.create_experiment()).';
        END IF;
    END LOOP;
    RETURN (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(variants) x);
END $$;

-- The measures the lists of these variants need (as the refresh computes them; 'ease'
-- lists fall back on 'llr' ones), and always 'content': those lists come from embeddings,
-- are copied as they are, and every cooccurrence or hybrid variant reads them unless its
-- content_weight is 0 (0.5 by default).
CREATE FUNCTION @extschema@._evaluation_measures(variants text[]) RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(DISTINCT m.measure ORDER BY m.measure), '{}')
    FROM (SELECT x.measure FROM @extschema@.variants v,
                 LATERAL (SELECT @extschema@._validate_variant(v.name, v.algorithm, v.params) AS measure) y,
                 LATERAL unnest(CASE WHEN y.measure = 'ease' THEN ARRAY['ease', 'llr'] ELSE ARRAY[y.measure] END) AS x(measure)
          WHERE v.name = ANY (variants)
          UNION ALL
          SELECT 'content') m
    WHERE m.measure IS NOT NULL
$$;

CREATE FUNCTION @extschema@.evaluate(cut timestamptz, variants text[] DEFAULT NULL, k integer DEFAULT 10)
    RETURNS TABLE (variant text, customers bigint, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names text[];
    v text;
    started timestamptz := clock_timestamp();
    old_as_of text := current_setting('personalize.as_of', true);
    old_app text := current_setting('application_name');
    results jsonb := '[]';
BEGIN
    PERFORM @extschema@._evaluation_check(cut, k);
    names := @extschema@._evaluation_variants(variants);
    PERFORM @extschema@._evaluation_model(cut, @extschema@._evaluation_measures(names));
    PERFORM set_config('personalize.as_of', cut::text, true);
    FOREACH v IN ARRAY names LOOP
        SELECT v, s.* INTO variant, customers, hit_rate, "precision", recall, ndcg, coverage
        FROM @extschema@._evaluation_score(v, k) s;
        results := results || jsonb_build_object('variant', v, 'customers', customers, 'hit_rate', hit_rate,
                                                 'precision', "precision", 'recall', recall, 'ndcg', ndcg, 'coverage', coverage);
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('personalize.as_of', coalesce(old_as_of, ''), true);
    PERFORM set_config('application_name', old_app, true);
    PERFORM @extschema@._evaluation_drop();
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('evaluate', started, cardinality(names), jsonb_build_object('cut', cut, 'k', k, 'results', results));
    RAISE NOTICE 'evaluate: % variants scored in % s', cardinality(names),
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
END $$;
COMMENT ON FUNCTION @extschema@.evaluate(timestamptz, text[], integer) IS
    'Offline quality of variants on this database''s events: a model is built from the events before cut only (in temporary tables; the live model is not touched), and each customer with history before cut is scored on the products first bought at or after it. One row per variant (NULL: every variant but llm ones): hit rate, precision, recall and NDCG at k, catalog coverage.';

-- The grid tune() sweeps for a variant: each parameter's values, tried one at a time
-- from the variant's own parameters (docs/reference.md, "tune"). ease_lambda is not a
-- variant parameter but the setting personalize.ease_lambda: swept for variants that
-- serve EASE lists.
CREATE FUNCTION @extschema@._tune_grid(algorithm text, ease boolean)
    RETURNS TABLE (key text, value jsonb)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.key, g.value::jsonb FROM (VALUES
        ('half_life_days', 'null'), ('half_life_days', '30'), ('half_life_days', '90'), ('half_life_days', '365'),
        ('history_items', '20'), ('history_items', '50'), ('history_items', '200'), ('history_items', '1000'),
        ('measure', '"llr"'), ('measure', '"cosine"'), ('measure', '"jaccard"'), ('measure', '"ease"'),
        ('popularity_weight', '0.1'), ('popularity_weight', '0.2'), ('popularity_weight', '0.3'), ('popularity_weight', '0.4'),
        ('ease_lambda', '50'), ('ease_lambda', '200'), ('ease_lambda', '500'), ('ease_lambda', '2000')
    ) AS g(key, value)
    WHERE algorithm IN ('cooccurrence', 'hybrid') AND (g.key <> 'popularity_weight' OR algorithm = 'hybrid')
      AND (g.key <> 'ease_lambda' OR ease)
$$;

-- Score params as a temporary variant of the evaluation (checked like create_variant()),
-- with the EASE lists of the model as of the cut rebuilt first when its ease_lambda (a
-- setting, not a parameter) differs from the lists' lambda.
CREATE FUNCTION @extschema@._tune_try(algorithm text, params jsonb, k integer)
    RETURNS TABLE (hit_rate double precision, "precision" double precision, recall double precision,
                   ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lambda double precision := coalesce((params ->> 'ease_lambda')::double precision,
                                        current_setting('personalize.ease_lambda')::double precision);
BEGIN
    PERFORM @extschema@._validate_variant('tune_candidate', algorithm, params - 'ease_lambda');
    IF params ->> 'measure' = 'ease' AND lambda IS DISTINCT FROM current_setting('personalize_eval.ease_lambda', true)::double precision THEN
        PERFORM @extschema@._evaluation_lists(ARRAY['ease'], lambda);
        PERFORM set_config('personalize_eval.ease_lambda', lambda::text, true);
    END IF;
    DELETE FROM pg_temp.personalize_eval_variants v WHERE v.name = 'tune_candidate';
    INSERT INTO pg_temp.personalize_eval_variants (name, algorithm, params)
    VALUES ('tune_candidate', algorithm, params - 'ease_lambda');
    RETURN QUERY SELECT s.hit_rate, s.precision, s.recall, s.ndcg, s.coverage
                 FROM @extschema@._evaluation_score('tune_candidate', k) s;
END $$;

-- The best value of each parameter that beat the current hit rate, as one jsonb
CREATE FUNCTION @extschema@._tune_best() RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(b.changed, b.value), '{}')
            FROM (SELECT DISTINCT ON (t.changed) t.changed, t.params -> t.changed AS value, t.hit_rate
                  FROM pg_temp.personalize_tune_results t WHERE t.changed IS NOT NULL
                  ORDER BY t.changed, t.hit_rate DESC, t.ndcg DESC) b
            WHERE b.hit_rate > (SELECT c.hit_rate FROM pg_temp.personalize_tune_results c WHERE c.changed IS NULL));
END $$;

-- Every setting of the grid scored into pg_temp.personalize_tune_results: the variant as it
-- is, one parameter at a time, then the best values together when more than one improved.
CREATE FUNCTION @extschema@._tune_sweep(alg text, base jsonb, ease boolean, k integer) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    best jsonb;
    candidate jsonb;
BEGIN
    INSERT INTO pg_temp.personalize_tune_results SELECT base, NULL, s.* FROM @extschema@._tune_try(alg, base, k) s;
    FOR g IN SELECT * FROM @extschema@._tune_grid(alg, ease) LOOP
        candidate := base || jsonb_build_object(g.key, g.value);
        CONTINUE WHEN base -> g.key IS NOT DISTINCT FROM g.value
                   OR EXISTS (SELECT FROM pg_temp.personalize_tune_results t WHERE t.params = candidate);
        RAISE NOTICE 'tune: % = %', g.key, g.value;
        INSERT INTO pg_temp.personalize_tune_results
        SELECT candidate, g.key, s.* FROM @extschema@._tune_try(alg, candidate, k) s;
    END LOOP;
    best := @extschema@._tune_best();
    IF (SELECT count(*) FROM jsonb_object_keys(best)) > 1 THEN
        RAISE NOTICE 'tune: the best value of each parameter together: %', best;
        INSERT INTO pg_temp.personalize_tune_results
        SELECT base || best, 'combined', s.* FROM @extschema@._tune_try(alg, base || best, k) s;
    END IF;
END $$;

CREATE FUNCTION @extschema@.tune(variant text, cut timestamptz, k integer DEFAULT 10)
    RETURNS TABLE (rank integer, params jsonb, changed text, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision, vs_current double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    alg text;
    base jsonb;
    ease boolean;
    r record;
    started timestamptz := clock_timestamp();
    old_as_of text := current_setting('personalize.as_of', true);
    old_app text := current_setting('application_name');
BEGIN
    PERFORM @extschema@._evaluation_check(cut, k);
    PERFORM @extschema@._evaluation_variants(ARRAY[variant]);
    SELECT v.algorithm, v.params INTO alg, base FROM @extschema@.variants v WHERE v.name = tune.variant;
    ease := base ->> 'measure' = 'ease';
    IF NOT EXISTS (SELECT FROM @extschema@._tune_grid(alg, ease)) THEN
        RAISE EXCEPTION 'variant "%" has no parameters to tune', @extschema@._echo(variant)
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Its algorithm is %s.', alg),
                  HINT = 'tune() sweeps cooccurrence and hybrid variants; compare others with evaluate().';
    END IF;
    PERFORM @extschema@._evaluation_model(cut,
        ARRAY(SELECT DISTINCT m FROM (SELECT g.value ->> 0 FROM @extschema@._tune_grid(alg, ease) g WHERE g.key = 'measure'
                                      UNION ALL SELECT x FROM unnest(@extschema@._evaluation_measures(ARRAY[variant])) x) s(m)));
    PERFORM set_config('personalize_eval.ease_lambda', current_setting('personalize.ease_lambda'), true);
    PERFORM set_config('personalize.as_of', cut::text, true);
    CREATE TEMP TABLE personalize_tune_results (params jsonb, changed text, hit_rate double precision,
        "precision" double precision, recall double precision, ndcg double precision, coverage double precision)
        ON COMMIT DROP;
    PERFORM @extschema@._tune_sweep(alg, base, ease, k);
    PERFORM set_config('personalize.as_of', coalesce(old_as_of, ''), true);
    PERFORM set_config('application_name', old_app, true);
    PERFORM @extschema@._evaluation_drop();

    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY t.hit_rate DESC, t.ndcg DESC, t.changed NULLS FIRST, t.params::text))::integer,
           t.params, coalesce(t.changed, '(current)'), t.hit_rate, t.precision, t.recall, t.ndcg, t.coverage,
           t.hit_rate / nullif((SELECT c.hit_rate FROM pg_temp.personalize_tune_results c WHERE c.changed IS NULL), 0)
    FROM pg_temp.personalize_tune_results t ORDER BY 1;
    SELECT t.params, t.hit_rate INTO r FROM pg_temp.personalize_tune_results t
    ORDER BY t.hit_rate DESC, t.ndcg DESC, t.changed NULLS FIRST, t.params::text LIMIT 1;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('tune', started, (SELECT count(*) FROM pg_temp.personalize_tune_results),
            jsonb_build_object('variant', variant, 'cut', cut, 'k', k, 'current', base, 'best', r.params, 'best_hit_rate', r.hit_rate));
    IF r.params IS DISTINCT FROM base THEN
        RAISE NOTICE 'tune: the best parameters of variant "%" at this cut are %', variant, r.params
            USING HINT = format('Apply them with: UPDATE personalize.variants SET params = %L WHERE name = %L;%s  Or try them as a new variant in an experiment.',
                                r.params - 'ease_lambda', variant,
                                CASE WHEN r.params ? 'ease_lambda'
                                     THEN format(' ALTER SYSTEM SET personalize.ease_lambda = %s; then CALL personalize.refresh_ease().', r.params ->> 'ease_lambda')
                                     ELSE '' END);
    ELSE
        RAISE NOTICE 'tune: variant "%" already has the best parameters of the grid at this cut', variant;
    END IF;
    DROP TABLE pg_temp.personalize_tune_results;
END $$;
COMMENT ON FUNCTION @extschema@.tune(text, timestamptz, integer) IS
    'Sweep a cooccurrence or hybrid variant''s parameters (decay, history size, measure, popularity weight, and personalize.ease_lambda for EASE: one at a time, then the best values together) with evaluate()''s protocol at the cut; returns every setting tried, best first. It recommends; apply the winner with UPDATE personalize.variants.';

-- privileges as a fresh install has them
REVOKE ALL ON FUNCTION @extschema@._recommend_at_cut(bigint, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_check(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_lists(text[], double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_model(timestamptz, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_score(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_variants(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._evaluation_measures(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.evaluate(timestamptz, text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._tune_grid(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._tune_try(text, jsonb, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._tune_best() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._tune_sweep(text, jsonb, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.tune(text, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._neighbor_lists(regclass, regclass, bigint, text[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._popular_all_time_of(regclass, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._popular_list(timestamptz, interval, regclass, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._customer_items_as_of(timestamptz, integer) FROM PUBLIC;
-- ==== end of issue 13: evaluate() and tune() ====

-- issue 13: the built-in hybrid blends popularity with weight 0.4 (was 0.2): better on all
-- four data sets of tune()'s sweep (docs/quality.md). A row the DBA changed is kept.
UPDATE @extschema@.variants SET params = '{"measure": "llr", "popularity_weight": 0.4}'
WHERE name = 'hybrid' AND builtin AND params = '{"measure": "llr", "popularity_weight": 0.2}';

-- ==== issue 14, part 5: hot standbys (sql/parts/experiments.sql, batch.sql, grants.sql) ====
------------------------------------------------------------------------------
-- The write-side serving calls refuse to run on a hot standby with 25006, a message naming
-- the call, a DETAIL saying the server is a standby and a HINT (recommend() on the standby,
-- logging on the primary). log_exposure(), log_impressions() and erase_customer() are
-- redefined above with the check (erase_customer() is PL/pgSQL now, same signature, ACL and
-- comment); recommend_logged() here, with the helper that raises.
------------------------------------------------------------------------------
CREATE FUNCTION @extschema@._standby_refusal(caller text, hint text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '%() cannot run on a hot standby', caller
        USING ERRCODE = 'read_only_sql_transaction',
              DETAIL = format('This server is a hot standby (pg_is_in_recovery() is true): it is read-only, and %s() writes.', caller),
              HINT = hint;
END $$;
COMMENT ON FUNCTION @extschema@._standby_refusal(text, text) IS
    'Raise 25006 for a write-side call made on a hot standby: the message names the call, the hint says where to make it.';
REVOKE ALL ON FUNCTION @extschema@._standby_refusal(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.recommend_logged(customer_id bigint, k integer DEFAULT 10)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10 AS $$
DECLARE
    r record;
    shown bigint[] := '{}';
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        PERFORM @extschema@._standby_refusal('recommend_logged',
            'Call recommend() on the standby and log_exposure() with the products shown on the primary, e.g. through the application''s primary connection.');
    END IF;
    FOR r IN SELECT x.product_id AS p, x.score AS s, x.reason AS why
             FROM @extschema@.recommend(recommend_logged.customer_id, NULL, recommend_logged.k) x LOOP
        shown := shown || r.p;
        product_id := r.p;
        score := r.s;
        reason := r.why;
        RETURN NEXT;
    END LOOP;
    PERFORM @extschema@.log_exposure(recommend_logged.customer_id, shown);
END $$;
-- ==== end of issue 14, part 5: hot standbys ====

-- ==== issue 14, part 4: rebuild()'s pair phase in C (src/rebuild.c) ====
-- rebuild() above calls it in its phase 3 instead of the SQL self-join of customer_items.
-- rebuild()'s pair phase (src/rebuild.c): the pair counts of customer_items' in-model rows,
-- counted in memory within budget_kb (NULL: maintenance_work_mem), in several passes over
-- product ranges when they do not fit, written into target sorted by (product_a, product_b).
-- Takes the target as an argument: the table rebuild() empties first. Runs as its caller.
CREATE FUNCTION @extschema@._rebuild_pairs(target regclass, budget_kb integer DEFAULT NULL)
    RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_rebuild_pairs';
COMMENT ON FUNCTION @extschema@._rebuild_pairs(regclass, integer) IS
    'Write into target (product_a < product_b, customers) the number of customers whose in-model history holds each pair, counted in memory within budget_kb (NULL: maintenance_work_mem); the pairs written.';

REVOKE ALL ON FUNCTION @extschema@._rebuild_pairs(regclass, integer) FROM PUBLIC;
-- ==== end of issue 14, part 4 ====

-- ==== issue 15: scale-out (sql/parts/scaleout.sql; refresh.sql, model.sql, ease.sql, evaluate.sql, health.sql, grants.sql) ====
-- The sharded layout: node roles, the model server's global round over postgres_fdw, the
-- shards' side of it, events through a router, moving buckets (docs/scaling.md).
-- The one home of the hash: 8 fixed virtual buckets (a power of two, as PL/Proxy's
-- partitions; the router's RUN ON hashint8(customer_id) picks the same one).
CREATE FUNCTION @extschema@.bucket_of(customer_id bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.hashint8(customer_id) OPERATOR(pg_catalog.&) 7;
COMMENT ON FUNCTION @extschema@.bucket_of(bigint) IS
    'The virtual bucket (0 to 7) of a customer in a sharded layout: hashint8(customer_id) & 7, the partition the PL/Proxy router runs the customer''s calls on.';

-- This database's place in a layout; no row: a single server. Dumped whole.
CREATE TABLE @extschema@.node_settings (
    singleton  boolean PRIMARY KEY DEFAULT true,
    role       text NOT NULL,
    node_name  text,
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT node_settings_singleton CHECK (singleton),
    CONSTRAINT node_settings_role_check CHECK (role OPERATOR(pg_catalog.=) ANY (ARRAY['single', 'shard', 'model'])),
    CONSTRAINT node_settings_name_check CHECK (node_name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,30}$')
);
COMMENT ON TABLE @extschema@.node_settings IS 'This database''s role in a sharded layout (at most one row; none: a single server): single, shard or model, set by set_node_role(). Dumped.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.node_settings', '');
COMMENT ON COLUMN @extschema@.node_settings.singleton IS 'Always true: the table holds at most one row.';
COMMENT ON COLUMN @extschema@.node_settings.role IS 'single (the default), shard (the customers of some buckets) or model (the model server: catalog, summed counts, lists).';
COMMENT ON COLUMN @extschema@.node_settings.node_name IS 'This node''s name in the layout (a shard''s name as the model server knows it), or NULL.';
COMMENT ON COLUMN @extschema@.node_settings.changed_at IS 'When set_node_role() last set it.';

CREATE FUNCTION @extschema@._node_role() RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
    RETURN coalesce((SELECT n.role FROM @extschema@.node_settings n), 'single');

-- The model server's shards: the postgres_fdw server of each and the schema its
-- tables are imported into (add_shard()). Dumped.
CREATE TABLE @extschema@.shards (
    name        text PRIMARY KEY,
    server      name NOT NULL UNIQUE,
    schema_name name NOT NULL UNIQUE,
    added_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT shards_name_check CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,30}$')
);
COMMENT ON TABLE @extschema@.shards IS 'On the model server: one row per shard, its postgres_fdw server and the schema (personalize_shard_<name>) its tables are imported into by add_shard().';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.shards', '');
COMMENT ON COLUMN @extschema@.shards.name IS 'The shard''s name (its node_name there).';
COMMENT ON COLUMN @extschema@.shards.server IS 'The postgres_fdw server that reaches it (with a user mapping for the role running the global round).';
COMMENT ON COLUMN @extschema@.shards.schema_name IS 'The schema its tables are imported into (personalize_shard_<name>).';
COMMENT ON COLUMN @extschema@.shards.added_at IS 'When add_shard() registered it.';

-- The heartbeat of the global model: written by every global_refresh() round on the
-- model server, replicated to the shards, where health shows its age (check global_model).
CREATE TABLE @extschema@.global_model_state (
    singleton    boolean PRIMARY KEY DEFAULT true,
    refreshed_at timestamptz NOT NULL,
    shards       integer NOT NULL,
    products     bigint NOT NULL,
    lists        bigint NOT NULL,
    popular_as_of timestamptz,
    CONSTRAINT global_model_state_singleton CHECK (singleton)
);
COMMENT ON TABLE @extschema@.global_model_state IS 'The last round of global_refresh() on the model server (when it finished, over how many shards, how many dirty products it summed and lists it stored), replicated to every shard: its age is the lag of the shards'' lists (health check global_model).';
COMMENT ON COLUMN @extschema@.global_model_state.singleton IS 'Always true: the table holds at most one row.';
COMMENT ON COLUMN @extschema@.global_model_state.refreshed_at IS 'When the model server''s last global round finished.';
COMMENT ON COLUMN @extschema@.global_model_state.shards IS 'How many shards it summed.';
COMMENT ON COLUMN @extschema@.global_model_state.products IS 'How many dirty products it summed over the shards.';
COMMENT ON COLUMN @extschema@.global_model_state.lists IS 'How many products'' neighbour lists it recomputed.';
COMMENT ON COLUMN @extschema@.global_model_state.popular_as_of IS 'The end of the window of the popularity list it computed.';

-- The model server's window counts for its popularity list: distinct customers per
-- product in the window, summed over the shards by the round that computes the list.
CREATE TABLE @extschema@.global_window_counts (
    window_end    timestamptz NOT NULL,
    window_length interval NOT NULL,
    product_id    bigint NOT NULL,
    customers     bigint NOT NULL,
    PRIMARY KEY (window_end, window_length, product_id)
);
COMMENT ON TABLE @extschema@.global_window_counts IS 'On the model server: distinct customers per product in the popularity window, summed over the shards by global_refresh() for the list it computes.';
COMMENT ON COLUMN @extschema@.global_window_counts.window_end IS 'The end of the window (included).';
COMMENT ON COLUMN @extschema@.global_window_counts.window_length IS 'The length of the window.';
COMMENT ON COLUMN @extschema@.global_window_counts.product_id IS 'The product.';
COMMENT ON COLUMN @extschema@.global_window_counts.customers IS 'Distinct customers with an event of the product in the window, summed over the shards.';

-- Distinct customers per product in the popularity window ending at t_end (an event at
-- t_end only with end_included): from interactions, or on the model server from the
-- shards' sums that global_refresh() stored for this window.
CREATE FUNCTION @extschema@._window_customers(t_end timestamptz, window_length interval, end_included boolean)
    RETURNS TABLE (product_id bigint, customers bigint)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF @extschema@._node_role() = 'model' THEN
        RETURN QUERY SELECT g.product_id, g.customers FROM @extschema@.global_window_counts g
                     WHERE g.window_end = t_end AND g.window_length = _window_customers.window_length;
    ELSE
        RETURN QUERY SELECT i.product_id, count(DISTINCT i.customer_id)
                     FROM @extschema@.interactions i
                     WHERE i.occurred_at > t_end - _window_customers.window_length
                       AND (i.occurred_at < t_end OR (end_included AND i.occurred_at = t_end))
                     GROUP BY i.product_id;
    END IF;
END $$;

-- The tables the model server publishes to the shards (publication personalize_global).
CREATE FUNCTION @extschema@.global_tables() RETURNS SETOF regclass
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t::regclass FROM unnest(ARRAY[
        '@extschema@.products', '@extschema@.event_types', '@extschema@.variants', '@extschema@.serving_settings',
        '@extschema@.experiments', '@extschema@.experiment_arms', '@extschema@.flags', '@extschema@.marketing_campaigns',
        '@extschema@.neighbors', '@extschema@.popular', '@extschema@.popular_scores', '@extschema@.global_model_state']) t
$$;
COMMENT ON FUNCTION @extschema@.global_tables() IS
    'The tables the model server publishes to every shard (CREATE PUBLICATION personalize_global FOR TABLE ...): the catalog, variants, experiments, flags, campaigns, the lists, the popularity list and the heartbeat.';

-- Refuse a call that has no meaning in this database's role.
CREATE FUNCTION @extschema@._role_refusal(caller text, roles text[], hint text) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r text := @extschema@._node_role();
    what text := CASE r WHEN 'model' THEN 'the model server' WHEN 'shard' THEN 'a shard' ELSE 'a single server' END;
BEGIN
    IF r = ANY (roles) THEN
        RAISE EXCEPTION '% cannot run on %', caller, what
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This database is %s%s (personalize.node_settings).', what,
                                  coalesce(' named ' || (SELECT n.node_name FROM @extschema@.node_settings n), '')),
                  HINT = hint;
    END IF;
END $$;

-- Set this database's role. A shard starts empty: no catalog, customers or events of its
-- own (the subscription fills the published tables; the shipped event types and built-in
-- variants are replaced by the model server's). The model server holds no events.
CREATE FUNCTION @extschema@.set_node_role(role text, node_name text DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur text := @extschema@._node_role();
    held text;
BEGIN
    IF role IS NULL OR role <> ALL (ARRAY['single', 'shard', 'model']) THEN
        RAISE EXCEPTION 'role must be single, shard or model'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(@extschema@._echo(role), 'NULL')),
                  HINT = 'See docs/scaling.md.';
    END IF;
    IF node_name IS NOT NULL AND node_name !~ '^[a-z][a-z0-9_]{0,30}$' THEN
        RAISE EXCEPTION 'node_name must be 1 to 31 lower-case letters, digits or underscores, starting with a letter'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', @extschema@._echo(node_name));
    END IF;
    LOCK TABLE @extschema@.node_settings IN EXCLUSIVE MODE;
    IF role <> cur THEN
        IF role = 'shard' THEN
            SELECT string_agg(x.what, ', ') INTO held FROM (
                SELECT 'customers' AS what WHERE EXISTS (SELECT FROM @extschema@.customers)
                UNION ALL SELECT 'interactions' WHERE EXISTS (SELECT FROM @extschema@.interactions)
                UNION ALL SELECT 'interactions_archive' WHERE EXISTS (SELECT FROM @extschema@.interactions_archive)
                UNION ALL SELECT 'products' WHERE EXISTS (SELECT FROM @extschema@.products)
                UNION ALL SELECT 'variants (not built-in)' WHERE EXISTS (SELECT FROM @extschema@.variants v WHERE NOT v.builtin)
                UNION ALL SELECT 'experiments' WHERE EXISTS (SELECT FROM @extschema@.experiments)
                UNION ALL SELECT 'flags' WHERE EXISTS (SELECT FROM @extschema@.flags)
                UNION ALL SELECT 'marketing_campaigns' WHERE EXISTS (SELECT FROM @extschema@.marketing_campaigns)) x;
        ELSIF role = 'model' THEN
            SELECT string_agg(x.what, ', ') INTO held FROM (
                SELECT 'interactions' AS what WHERE EXISTS (SELECT FROM @extschema@.interactions)
                UNION ALL SELECT 'interactions_archive' WHERE EXISTS (SELECT FROM @extschema@.interactions_archive)) x;
        ELSIF EXISTS (SELECT FROM @extschema@.shards)
              OR EXISTS (SELECT FROM pg_subscription s WHERE s.subdbid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                                                         AND s.subname LIKE 'personalize\_global%') THEN
            held := 'shards or the personalize_global subscription';
        END IF;
        IF held IS NOT NULL THEN
            RAISE EXCEPTION 'this database cannot become a % server: it holds %', role, held
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('It is a %s server now. Nothing was changed.', cur),
                      HINT = CASE role WHEN 'shard' THEN 'A shard starts from a fresh CREATE EXTENSION personalize: it gets the catalog, variants and experiments from the model server and its customers through the router or pull_bucket().'
                                       WHEN 'model' THEN 'The model server holds no events: send them to the shards (docs/scaling.md).'
                                       ELSE 'Drop the personalize_global subscription or remove the shards first.' END;
        END IF;
        IF role = 'shard' THEN
            -- the shipped rows the model server's copy replaces (the rest is empty, checked above)
            DELETE FROM @extschema@.popular_scores;
            DELETE FROM @extschema@.popular;
            DELETE FROM @extschema@.neighbors;
            DELETE FROM @extschema@.serving_settings;
            DELETE FROM @extschema@.variants;
            DELETE FROM @extschema@.event_types;
            DELETE FROM @extschema@.global_model_state;
        END IF;
    END IF;
    INSERT INTO @extschema@.node_settings (singleton, role, node_name) VALUES (true, set_node_role.role, set_node_role.node_name)
    ON CONFLICT (singleton) DO UPDATE SET role = EXCLUDED.role, node_name = EXCLUDED.node_name, changed_at = now();
    RETURN role;
END $$;
COMMENT ON FUNCTION @extschema@.set_node_role(text, text) IS
    'Make this database a single server, a shard or the model server of a sharded layout (docs/scaling.md). A shard must start empty (its shipped event types and built-in variants are replaced by the model server''s); the model server holds no events.';

-- On a shard: its dirty marks, taken (deleted and returned) once a running fold has
-- committed the counts behind them: the model server reads this view over postgres_fdw
-- and pulls those products' counts in a later transaction.
CREATE FUNCTION @extschema@._take_dirty_products() RETURNS TABLE (product_id bigint, since timestamptz)
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF @extschema@._node_role() <> 'shard' THEN
        RAISE EXCEPTION 'only the model server takes a shard''s dirty products'
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = 'This database is not a shard.';
    END IF;
    LOCK TABLE @extschema@.model_deltas IN SHARE UPDATE EXCLUSIVE MODE;
    RETURN QUERY DELETE FROM @extschema@.dirty_products d RETURNING d.product_id, d.since;
END $$;
CREATE VIEW @extschema@._shard_dirty_taken AS SELECT t.product_id, t.since FROM @extschema@._take_dirty_products() t;
COMMENT ON VIEW @extschema@._shard_dirty_taken IS 'On a shard: reading it takes (deletes and returns) the dirty marks, after any running fold. Read by the model server only.';
COMMENT ON COLUMN @extschema@._shard_dirty_taken.product_id IS 'A product whose counts changed on this shard since the model server last took its marks.';
COMMENT ON COLUMN @extschema@._shard_dirty_taken.since IS 'When it was first marked.';

-- On the model server: register a shard reached through a postgres_fdw server.
CREATE FUNCTION @extschema@.add_shard(name text, server name) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sch text := 'personalize_shard_' || add_shard.name;
    r text;
BEGIN
    IF @extschema@._node_role() <> 'model' THEN
        RAISE EXCEPTION 'shards are added on the model server'
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = format('This database is a %s server.', @extschema@._node_role()),
                  HINT = 'SELECT personalize.set_node_role(''model'') first.';
    END IF;
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,30}$' THEN
        RAISE EXCEPTION 'a shard''s name must be 1 to 31 lower-case letters, digits or underscores, starting with a letter'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(@extschema@._echo(name), 'NULL'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
                   WHERE s.srvname = add_shard.server AND w.fdwname = 'postgres_fdw') THEN
        RAISE EXCEPTION 'there is no postgres_fdw server %', coalesce(@extschema@._echo(server), 'NULL')
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE SERVER ... FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host ..., port ..., dbname ..., extensions ''personalize'') and a user mapping first.';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.shards s WHERE s.name = add_shard.name OR s.server = add_shard.server) THEN
        RAISE EXCEPTION 'shard % or server % is registered already', name, server
            USING ERRCODE = 'duplicate_object';
    END IF;
    EXECUTE format('CREATE SCHEMA %I', sch);
    EXECUTE format('IMPORT FOREIGN SCHEMA @extschema@ LIMIT TO (node_settings, item_counts_base, pair_counts_base, customer_totals, interactions, _shard_dirty_taken) FROM SERVER %I INTO %I',
                   server, sch);
    -- a round reads a dirty product's pairs in one go: 10,000 rows per fetch, not 100
    EXECUTE format('ALTER FOREIGN TABLE %I.pair_counts_base OPTIONS (ADD fetch_size %L)', sch, '10000');
    EXECUTE format('ALTER FOREIGN TABLE %I.item_counts_base OPTIONS (ADD fetch_size %L)', sch, '10000');
    -- the server answers and is a shard
    EXECUTE format('SELECT n.role FROM %I.node_settings n', sch) INTO r;
    IF r IS DISTINCT FROM 'shard' THEN
        RAISE EXCEPTION 'server % is not a personalize shard', server
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Its node role is %s.', coalesce(r, 'single (no node_settings row)')),
                  HINT = 'On the shard: SELECT personalize.set_node_role(''shard'', ''<name>'').';
    END IF;
    INSERT INTO @extschema@.shards (name, server, schema_name) VALUES (add_shard.name, add_shard.server, sch);
    RETURN sch;
END $$;
COMMENT ON FUNCTION @extschema@.add_shard(text, name) IS
    'On the model server: register a shard reached through the given postgres_fdw server (its tables are imported into schema personalize_shard_<name>); the next global_refresh() includes it.';

-- Global round, step 1: one shard's dirty marks into the model server's dirty_products.
CREATE FUNCTION @extschema@._global_take(shard text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('INSERT INTO @extschema@.dirty_products (product_id, since) SELECT t.product_id, t.since FROM %I._shard_dirty_taken t '
                   'ON CONFLICT (product_id) DO UPDATE SET since = least(@extschema@.dirty_products.since, EXCLUDED.since)',
                   (SELECT s.schema_name FROM @extschema@.shards s WHERE s.name = shard));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Global round, step 2: the counts of every dirty product summed over the shards (their
-- folded counts), replacing the model server's rows of those products, and the customer
-- totals. A pair changes only with both its products marked dirty (the fold marks both), so
-- the pairs written are those of two dirty products: read from each shard by their smaller
-- product, 1,000 dirty products per query, each pair once; the others are kept.
CREATE FUNCTION @extschema@._global_pull() RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    chunk bigint[];
    n bigint;
BEGIN
    CREATE TEMP TABLE _g_dirty ON COMMIT DROP AS SELECT d.product_id FROM @extschema@.dirty_products d;
    ALTER TABLE _g_dirty ADD PRIMARY KEY (product_id);
    ANALYZE _g_dirty;
    CREATE TEMP TABLE _g_pairs (a bigint, b bigint, customers bigint) ON COMMIT DROP;
    CREATE TEMP TABLE _g_items (product_id bigint, customers bigint) ON COMMIT DROP;
    CREATE TEMP TABLE _g_totals (shard smallint, customers bigint) ON COMMIT DROP;
    SELECT count(*) INTO n FROM _g_dirty;
    FOR s IN SELECT * FROM @extschema@.shards ORDER BY name LOOP
        FOR chunk IN SELECT array_agg(x.product_id) FROM (SELECT g.product_id, (row_number() OVER (ORDER BY g.product_id) - 1) / 1000 AS c
                                                          FROM _g_dirty g) x GROUP BY x.c LOOP
            EXECUTE format('INSERT INTO _g_pairs SELECT p.product_a, p.product_b, p.customers FROM %I.pair_counts_base p '
                           'WHERE p.product_a = ANY ($1)', s.schema_name)
                USING chunk;
            EXECUTE format('INSERT INTO _g_items SELECT i.product_id, i.customers FROM %I.item_counts_base i '
                           'WHERE i.product_id = ANY ($1)', s.schema_name)
                USING chunk;
        END LOOP;
        EXECUTE format('INSERT INTO _g_totals SELECT t.shard, t.customers FROM %I.customer_totals t', s.schema_name);
    END LOOP;
    -- the sums of the pairs of two dirty products (the others came along with their first
    -- product and are kept), then only what changed is written, as the fold does: a pair
    -- no shard has any more goes, a changed count is updated in place (HOT: fillfactor 70),
    -- a new pair is inserted in key order
    CREATE TEMP TABLE _g_sum ON COMMIT DROP AS
        SELECT x.a, x.b, sum(x.customers)::bigint AS customers FROM _g_pairs x
        WHERE EXISTS (SELECT FROM _g_dirty g WHERE g.product_id = x.b)
        GROUP BY x.a, x.b HAVING sum(x.customers) <> 0;
    ANALYZE _g_sum;
    DELETE FROM @extschema@.pair_counts_base p USING _g_dirty ga, _g_dirty gb
     WHERE p.product_a = ga.product_id AND p.product_b = gb.product_id
       AND NOT EXISTS (SELECT FROM _g_sum x WHERE x.a = p.product_a AND x.b = p.product_b);
    UPDATE @extschema@.pair_counts_base p SET customers = x.customers FROM _g_sum x
     WHERE p.product_a = x.a AND p.product_b = x.b AND p.customers <> x.customers;
    INSERT INTO @extschema@.pair_counts_base (product_a, product_b, customers)
    SELECT x.a, x.b, x.customers FROM _g_sum x
    WHERE NOT EXISTS (SELECT FROM @extschema@.pair_counts_base p WHERE p.product_a = x.a AND p.product_b = x.b)
    ORDER BY 1, 2;
    DELETE FROM @extschema@.item_counts_base i USING _g_dirty g WHERE i.product_id = g.product_id;
    INSERT INTO @extschema@.item_counts_base (product_id, customers)
    SELECT x.product_id, sum(x.customers) FROM _g_items x GROUP BY x.product_id HAVING sum(x.customers) <> 0 ORDER BY 1;
    UPDATE @extschema@.customer_totals t
       SET customers = coalesce((SELECT sum(x.customers) FROM _g_totals x WHERE x.shard = t.shard), 0);
    RETURN n;
END $$;

-- Global round, last step: the popularity list from the shards' window counts, and the heartbeat.
CREATE FUNCTION @extschema@._global_popular(shards integer, products bigint, lists bigint) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t_end timestamptz := coalesce((@extschema@._engine_settings() ->> 'as_of')::timestamptz, now());
    wl interval := interval '7 days';
    s record;
    n bigint;
BEGIN
    CREATE TEMP TABLE _g_window (product_id bigint, customers bigint) ON COMMIT DROP;
    FOR s IN SELECT * FROM @extschema@.shards ORDER BY name LOOP
        -- grouped on the shard (postgres_fdw pushes the aggregate down)
        EXECUTE format('INSERT INTO _g_window SELECT i.product_id, count(DISTINCT i.customer_id) FROM %I.interactions i '
                       'WHERE i.occurred_at > $1 AND i.occurred_at <= $2 GROUP BY i.product_id', s.schema_name)
            USING t_end - wl, t_end;
    END LOOP;
    DELETE FROM @extschema@.global_window_counts;
    INSERT INTO @extschema@.global_window_counts (window_end, window_length, product_id, customers)
    SELECT t_end, wl, w.product_id, sum(w.customers) FROM _g_window w GROUP BY w.product_id;
    PERFORM pg_catalog.set_config('personalize_scaleout.global_round', 'on', true);
    n := @extschema@.refresh_popular(wl, t_end);
    PERFORM pg_catalog.set_config('personalize_scaleout.global_round', 'off', true);
    INSERT INTO @extschema@.global_model_state (singleton, refreshed_at, shards, products, lists, popular_as_of)
    VALUES (true, clock_timestamp(), _global_popular.shards, _global_popular.products, _global_popular.lists, t_end)
    ON CONFLICT (singleton) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at, shards = EXCLUDED.shards,
        products = EXCLUDED.products, lists = EXCLUDED.lists, popular_as_of = EXCLUDED.popular_as_of;
    RETURN n;
END $$;

-- One global round on the model server: take every shard's dirty marks (one transaction
-- per shard), sum those products' counts over the shards (one transaction), compute
-- their lists exactly as refresh() does (committing every 100 products), then the
-- popularity list and the heartbeat. A shard that cannot be reached fails the round
-- (no partial sums): the lists stay as they were, the marks taken stay in dirty_products
-- for the next round, and the failed run is logged with the error naming the server.
-- One step per transaction, each under the same error handler (a procedure that commits
-- cannot commit inside one); one round at a time (a session lock, released at the end).
CREATE PROCEDURE @extschema@.global_refresh(all_products boolean DEFAULT false)
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    names text[];
    step text := 'start';
    i integer := 1;
    taken bigint := 0;
    pulled bigint;
    n bigint;
    done bigint := 0;
    popular bigint;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF @extschema@._node_role() OPERATOR(pg_catalog.<>) 'model' THEN
        RAISE EXCEPTION 'global_refresh() runs on the model server of a sharded layout'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('This database is a %s server.', @extschema@._node_role()),
                  HINT = 'CALL personalize.refresh() on a single server or a shard.';
    END IF;
    SELECT pg_catalog.array_agg(s.name ORDER BY s.name) INTO names FROM @extschema@.shards s;
    IF names IS NULL THEN
        RAISE EXCEPTION 'the model server has no shards'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Add them with personalize.add_shard().';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_lock(1885696627, 15) THEN
        RAISE NOTICE 'global_refresh: another round is running';
        RETURN;
    END IF;
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        BEGIN
            CASE step
            WHEN 'start' THEN
                IF all_products THEN
                    INSERT INTO @extschema@.dirty_products (product_id)
                    SELECT p.product_id FROM @extschema@.products p UNION SELECT c.product_id FROM @extschema@.item_counts_base c
                    ON CONFLICT (product_id) DO NOTHING;
                END IF;
                step := 'take';
            WHEN 'take' THEN
                taken := taken + @extschema@._global_take(names[i]);
                i := i + 1;
                IF i > pg_catalog.cardinality(names) THEN
                    step := 'pull';
                END IF;
            WHEN 'pull' THEN
                pulled := @extschema@._global_pull();
                step := 'lists';
            ELSE
                n := @extschema@._refresh_neighbors(100, false, false);
                done := done + n;
                IF n < 100 THEN
                    popular := @extschema@._global_popular(pg_catalog.cardinality(names), pulled, done);
                    step := 'done';
                END IF;
            END CASE;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                    e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
            IF step = 'take' THEN
                e_message := pg_catalog.format('shard %s: %s', names[i], e_message);
            END IF;
        END;
        EXIT WHEN e_state IS NOT NULL;
        COMMIT;
        EXIT WHEN step = 'done';
    END LOOP;
    PERFORM pg_catalog.pg_advisory_unlock(1885696627, 15);
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details, status, error)
    VALUES ('refresh', started, done,
            pg_catalog.jsonb_build_object('global', true, 'shards', pg_catalog.cardinality(names), 'dirty_taken', taken,
                                          'products_summed', pulled, 'neighbor_lists', done, 'popular', popular),
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The shards keep serving the last lists; the dirty products taken wait in dirty_products for the next round.');
    END IF;
END $$;
COMMENT ON PROCEDURE @extschema@.global_refresh(boolean) IS
    'On the model server: one round of the global model (what refresh() runs there): take the shards'' dirty products, sum their counts over the shards, compute their lists and the popularity list as a single server does, and write the heartbeat; all products with all_products => true. Logs the run in maintenance_runs (job refresh). CALL it outside a transaction block.';

-- Sending events through the router (or directly): one event, its customer created if new.
CREATE FUNCTION @extschema@.log_event(customer_id bigint, product_id bigint, event_type text DEFAULT 'view',
                                      occurred_at timestamptz DEFAULT NULL, quantity integer DEFAULT 1,
                                      event_key text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM @extschema@._role_refusal('log_event()', ARRAY['model'], 'Send events to the shards, through the router (docs/scaling.md).');
    IF customer_id IS NULL THEN
        RAISE EXCEPTION 'customer_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the id of the customer the event belongs to.';
    END IF;
    INSERT INTO @extschema@.customers (customer_id) VALUES (log_event.customer_id) ON CONFLICT DO NOTHING;
    INSERT INTO @extschema@.interactions (customer_id, product_id, event_type, occurred_at, quantity, event_key)
    VALUES (log_event.customer_id, log_event.product_id, log_event.event_type, coalesce(log_event.occurred_at, now()),
            log_event.quantity, log_event.event_key)
    RETURNING interaction_id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION @extschema@.log_event(bigint, bigint, text, timestamptz, integer, text) IS
    'Record one event (its customer row created if missing) and return its interaction id: the call a PL/Proxy router sends to the customer''s shard. Runs as its caller (INSERT on customers and interactions).';

CREATE FUNCTION @extschema@.delete_events(customer_id bigint, product_id bigint, event_type text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@._role_refusal('delete_events()', ARRAY['model'], 'The events live on the shards: call it through the router.');
    IF customer_id IS NULL OR product_id IS NULL THEN
        RAISE EXCEPTION 'customer_id and product_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the customer and the product whose events go.';
    END IF;
    DELETE FROM @extschema@.interactions i
     WHERE i.customer_id = delete_events.customer_id AND i.product_id = delete_events.product_id
       AND (delete_events.event_type IS NULL OR i.event_type = delete_events.event_type);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
COMMENT ON FUNCTION @extschema@.delete_events(bigint, bigint, text) IS
    'Delete a customer''s events of a product (of one event type, or all): the model subtracts them exactly. Returns how many. Runs as its caller (DELETE on interactions).';

-- Moving a bucket to this shard: copy its customers, their events (in id order, through
-- the model trigger: the counts follow), feedback and exposures from the source shard's
-- postgres_fdw server, in one transaction. The router then maps the bucket here and
-- drop_bucket() erases them on the source (contrib/sharding/personalize-layout move-bucket).
CREATE FUNCTION @extschema@.pull_bucket(bucket integer, source name)
    RETURNS TABLE (customers bigint, interactions bigint)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sch text := '_personalize_pull_' || bucket;
    n_c bigint;
    n_i bigint;
    n_a bigint;
BEGIN
    PERFORM @extschema@._role_refusal('pull_bucket()', ARRAY['model', 'single'], 'Buckets move between shards.');
    IF bucket IS NULL OR bucket < 0 OR bucket > 7 THEN
        RAISE EXCEPTION 'bucket must be between 0 and 7'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(bucket::text, 'NULL'));
    END IF;
    IF EXISTS (SELECT FROM @extschema@.customers c WHERE @extschema@.bucket_of(c.customer_id) = bucket) THEN
        RAISE EXCEPTION 'bucket % has customers on this shard already', bucket
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = 'Nothing was copied.',
                  HINT = 'Pull a bucket into a shard that does not serve it.';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', sch);
    EXECUTE format('CREATE SCHEMA %I', sch);
    EXECUTE format('IMPORT FOREIGN SCHEMA @extschema@ LIMIT TO (customers, interactions, interactions_archive, customer_feedback, exposures) '
                   'FROM SERVER %I INTO %I', source, sch);
    EXECUTE format('SELECT count(*) FROM %I.interactions_archive a WHERE @extschema@.bucket_of(a.customer_id) = $1', sch)
        INTO n_a USING bucket;
    IF n_a > 0 THEN
        RAISE EXCEPTION 'bucket % has % archived events on the source', bucket, n_a
            USING ERRCODE = 'feature_not_supported', DETAIL = 'pull_bucket() copies interactions, not interactions_archive. Nothing was copied.',
                  HINT = 'Move the bucket before archiving its events, or restore them into interactions first.';
    END IF;
    EXECUTE format('INSERT INTO @extschema@.customers SELECT c.* FROM %I.customers c WHERE @extschema@.bucket_of(c.customer_id) = $1', sch)
        USING bucket;
    GET DIAGNOSTICS n_c = ROW_COUNT;
    -- in the source's id order: each customer's first interactions stay first (the cap rule)
    EXECUTE format('INSERT INTO @extschema@.interactions (customer_id, product_id, event_type, quantity, occurred_at, event_key) '
                   'SELECT i.customer_id, i.product_id, i.event_type, i.quantity, i.occurred_at, i.event_key FROM %I.interactions i '
                   'WHERE @extschema@.bucket_of(i.customer_id) = $1 ORDER BY i.interaction_id', sch)
        USING bucket;
    GET DIAGNOSTICS n_i = ROW_COUNT;
    EXECUTE format('INSERT INTO @extschema@.customer_feedback (customer_id, product_id, rating, comment, created_at) '
                   'SELECT f.customer_id, f.product_id, f.rating, f.comment, f.created_at FROM %I.customer_feedback f '
                   'WHERE @extschema@.bucket_of(f.customer_id) = $1 ORDER BY f.feedback_id', sch)
        USING bucket;
    EXECUTE format('INSERT INTO @extschema@.exposures (experiment_id, customer_id, variant, arm, product_ids, shown_at) '
                   'SELECT x.experiment_id, x.customer_id, x.variant, x.arm, x.product_ids, x.shown_at FROM %I.exposures x '
                   'WHERE @extschema@.bucket_of(x.customer_id) = $1 ORDER BY x.exposure_id', sch)
        USING bucket;
    EXECUTE format('DROP SCHEMA %I CASCADE', sch);
    RETURN QUERY SELECT n_c, n_i;
END $$;
COMMENT ON FUNCTION @extschema@.pull_bucket(integer, name) IS
    'On a shard: copy a bucket''s customers, events (in their order, through the model trigger), feedback and exposures from the source shard''s postgres_fdw server, in one transaction; returns the customers and events copied. Step 2 of moving a bucket (docs/scaling.md).';

CREATE FUNCTION @extschema@.drop_bucket(bucket integer, confirm text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c bigint;
    n bigint := 0;
BEGIN
    PERFORM @extschema@._role_refusal('drop_bucket()', ARRAY['model', 'single'], 'Buckets move between shards.');
    IF bucket IS NULL OR bucket < 0 OR bucket > 7 THEN
        RAISE EXCEPTION 'bucket must be between 0 and 7'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(bucket::text, 'NULL'));
    END IF;
    IF confirm IS DISTINCT FROM 'moved' THEN
        RAISE EXCEPTION 'drop_bucket() erases every customer of bucket % on this shard', bucket
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'Nothing was erased.',
                  HINT = 'Once pull_bucket() copied them to their new shard and the router sends the bucket there, call drop_bucket(bucket, confirm => ''moved'').';
    END IF;
    FOR c IN SELECT x.customer_id FROM @extschema@.customers x WHERE @extschema@.bucket_of(x.customer_id) = bucket ORDER BY 1 LOOP
        PERFORM @extschema@.forget_customer(c);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION @extschema@.drop_bucket(integer, text) IS
    'On a shard: erase every customer of the bucket (forget_customer(): their counts are subtracted exactly) once it has moved; confirm must be ''moved''. Returns how many customers. Step 4 of moving a bucket (docs/scaling.md).';


-- On a shard the published tables are the model server's: a local change would diverge
-- from it (and a later replicated row could collide with it, stopping the subscription).
-- A statement trigger refuses writes there; logical replication's apply does not fire it
-- (it runs with session_replication_role = replica), and elsewhere it only reads the role.
CREATE FUNCTION @extschema@._shard_write_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF @extschema@._node_role() = 'shard' THEN
        RAISE EXCEPTION '%.% is written on the model server in a sharded layout', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This database is shard %s: the table comes from the model server by logical replication (publication personalize_global).',
                                  coalesce((SELECT n.node_name FROM @extschema@.node_settings n), '(unnamed)')),
                  HINT = 'Make the change on the model server (docs/scaling.md).';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER products_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.products
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER event_types_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER variants_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.variants
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER serving_settings_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.serving_settings
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER experiments_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.experiments
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER experiment_arms_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.experiment_arms
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER flags_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.flags
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER marketing_campaigns_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.marketing_campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER neighbors_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.neighbors
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER popular_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.popular
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER popular_scores_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.popular_scores
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER global_model_state_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.global_model_state
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();

-- refresh.sql: the popularity window through _window_customers(); a shard only folds; the model server runs the global round
CREATE OR REPLACE FUNCTION @extschema@._popular_list(t_end timestamptz, window_length interval, item_counts regclass,
                                          end_included boolean)
    RETURNS TABLE (rank bigint, product_id bigint, customers bigint, share double precision, source text,
                   score double precision)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT z.rank, z.product_id, z.n, z.share, z.source,
           CASE z.source WHEN 'window' THEN 0.5 + 0.5 * z.share ELSE 0.5 * z.share END
    FROM (
        SELECT row_number() OVER (ORDER BY y.src, y.n DESC, y.product_id) AS rank, y.product_id, y.n,
               y.n::double precision / max(y.n) OVER (PARTITION BY y.src) AS share,
               CASE y.src WHEN 1 THEN 'window' ELSE 'all_time' END AS source
        FROM (
            SELECT DISTINCT ON (x.product_id) x.src, x.product_id, x.n
            FROM (
                SELECT 1 AS src, w.product_id, w.n FROM (
                    SELECT wc.product_id, wc.customers AS n
                    FROM @extschema@._window_customers(t_end, window_length, end_included) wc
                    JOIN @extschema@.products p ON p.product_id = wc.product_id AND p.active
                    ORDER BY n DESC, wc.product_id LIMIT 1000) w
                UNION ALL
                SELECT 2, a.product_id, a.customers FROM @extschema@._popular_all_time_of(item_counts, 1000) a
            ) x
            ORDER BY x.product_id, x.src
        ) y
        ORDER BY 1 LIMIT 1000
    ) z
$$;
CREATE OR REPLACE FUNCTION @extschema@._refresh_neighbors(max_products integer, all_products boolean, log_run boolean)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    measures text[];
    batch bigint[];
    done bigint := 0;
    started timestamptz := clock_timestamp();
    last_notice timestamptz := clock_timestamp();
    skipped jsonb;
BEGIN
    IF max_products IS NOT NULL AND max_products < 1 THEN
        RAISE EXCEPTION 'max_products must be at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_products),
                  HINT = 'Pass NULL to refresh every dirty product.';
    END IF;
    -- the pending count changes first: they mark their products dirty, and the lists are
    -- computed from the folded counts. A fold running in another session (a second refresh
    -- sharing the work) is not waited for: the products it marks dirty are refreshed by it.
    PERFORM @extschema@.fold_deltas(wait => false);
    -- on a shard the lists come from the model server, which takes the dirty marks (after a
    -- rebuild(), every product: the products whose count fell to 0 here included)
    IF @extschema@._node_role() = 'shard' THEN
        IF all_products THEN
            INSERT INTO @extschema@.dirty_products (product_id)
            SELECT p.product_id FROM @extschema@.products p ORDER BY p.product_id
            ON CONFLICT (product_id) DO NOTHING;
        END IF;
        RETURN 0;
    END IF;
    IF all_products THEN
        INSERT INTO @extschema@.dirty_products (product_id)
        SELECT product_id FROM @extschema@.item_counts_base ORDER BY product_id
        ON CONFLICT (product_id) DO NOTHING;
        -- the 'content' lists (embed_products) do not depend on co-occurrence, and the 'ease'
        -- lists are replaced only by refresh_ease(): kept
        DELETE FROM @extschema@.neighbors n
        WHERE n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease'])
          AND NOT EXISTS (SELECT FROM @extschema@.item_counts_base i WHERE i.product_id = n.product_id);
    END IF;
    -- an invalid variant row is skipped (refresh() and a logged run say so), never the others
    IF log_run THEN
        skipped := @extschema@._variant_problems(true);
    END IF;
    -- a variant of measure ease needs the 'llr' lists (its fallback); refresh_ease() builds its own
    SELECT array_agg(DISTINCT CASE WHEN m = 'ease' THEN 'llr' ELSE m END ORDER BY CASE WHEN m = 'ease' THEN 'llr' ELSE m END)
      INTO measures
    FROM (SELECT CASE WHEN @extschema@._variant_problem(v.name, v.algorithm, v.params) IS NULL
                      THEN @extschema@._validate_variant(v.name, v.algorithm, v.params) END AS m
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
        WHERE n.product_id = ANY (batch) AND n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease']);
        IF measures IS NOT NULL THEN
            INSERT INTO @extschema@.neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT c.measure, c.product_id, c.neighbor_ids, c.scores, c.counts
            FROM @extschema@._neighbor_lists('@extschema@.pair_counts_base', '@extschema@.item_counts_base',
                (SELECT coalesce(sum(t.customers), 0)::bigint FROM @extschema@.customer_totals t), measures, batch) c;
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
                                  'k', (@extschema@._engine_settings() ->> 'neighbors_k')::integer)
                || CASE WHEN jsonb_array_length(skipped) > 0 THEN jsonb_build_object('skipped_variants', skipped)
                        ELSE '{}' END);
    END IF;
    RETURN done;
END $$;
CREATE OR REPLACE FUNCTION @extschema@.refresh_popular(window_length interval DEFAULT '7 days', as_of timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t_end timestamptz := coalesce(as_of, (@extschema@._engine_settings() ->> 'as_of')::timestamptz, now());
    started timestamptz := clock_timestamp();
    n bigint;
BEGIN
    IF window_length IS NULL OR window_length <= interval '0' THEN
        RAISE EXCEPTION 'window_length must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(window_length::text, 'NULL')),
                  HINT = 'For example interval ''7 days''.';
    END IF;
    -- in a sharded layout the model server computes it, inside its global round
    PERFORM @extschema@._role_refusal('refresh_popular()', ARRAY['shard'],
        'The popularity list comes from the model server (its refresh()).');
    IF @extschema@._node_role() = 'model' AND current_setting('personalize_scaleout.global_round', true) IS DISTINCT FROM 'on' THEN
        PERFORM @extschema@._role_refusal('refresh_popular() outside global_refresh()', ARRAY['model'],
            'CALL personalize.refresh() (the global round) on the model server.');
    END IF;
    -- one refresh at a time (readers keep reading the old list until we commit)
    PERFORM @extschema@.fold_deltas();
    LOCK TABLE @extschema@.popular IN EXCLUSIVE MODE;
    DELETE FROM @extschema@.popular;
    DELETE FROM @extschema@.popular_scores;
    WITH l AS MATERIALIZED (SELECT * FROM @extschema@._popular_list(t_end, window_length, '@extschema@.item_counts_base', true)),
         stored AS (
            INSERT INTO @extschema@.popular (rank, product_id, customers, share, source, window_start, window_end)
            SELECT l.rank, l.product_id, l.customers, l.share, l.source, t_end - window_length, t_end FROM l
            RETURNING 1)
    INSERT INTO @extschema@.popular_scores (product_ids, scores, window_days)
    SELECT coalesce(array_agg(l.product_id ORDER BY l.rank), '{}'), coalesce(array_agg(l.score ORDER BY l.rank), '{}'),
           extract(epoch FROM window_length)::double precision / 86400
    FROM l;
    SELECT count(*) INTO n FROM @extschema@.popular;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('refresh_popular', started, n, jsonb_build_object('window', window_length, 'as_of', t_end));
    RETURN n;
END $$;
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
    skipped jsonb;
    role text := @extschema@._node_role();
BEGIN
    -- the model server of a sharded layout runs the global round
    IF role OPERATOR(pg_catalog.=) 'model' THEN
        CALL @extschema@.global_refresh();
        RETURN;
    END IF;
    LOOP
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        BEGIN
            IF skipped IS NULL THEN
                skipped := @extschema@._variant_problems(true);
            END IF;
            n := @extschema@._refresh_neighbors(100, false, false);
            -- a shard only folds (its lists and popularity come from the model server)
            IF n < 100 AND role OPERATOR(pg_catalog.<>) 'shard' THEN
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
    VALUES ('refresh', started, done, pg_catalog.jsonb_build_object('neighbor_lists', done, 'popular', popular)
                OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.jsonb_array_length(skipped) OPERATOR(pg_catalog.>) 0
                                             THEN pg_catalog.jsonb_build_object('skipped_variants', skipped) ELSE '{}' END,
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The lists refreshed before the error are kept; the next run continues with the rest.');
    END IF;
END $$;
COMMENT ON PROCEDURE @extschema@.refresh() IS 'Refresh dirty neighbour lists (committing every 100 products) and the popularity list; what the scheduled job runs. On a shard it only folds the pending count changes; on the model server it runs global_refresh(). Logs every run, a failed one with its error, in maintenance_runs. CALL it outside a transaction block.';

-- model.sql: rebuild() refuses on the model server and keeps a shard's lists
CREATE OR REPLACE FUNCTION @extschema@.rebuild(max_items_per_customer integer DEFAULT NULL)
    RETURNS TABLE (customers bigint, products bigint, pairs bigint, seconds double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cap integer;
    started timestamptz := clock_timestamp();
    phase_at timestamptz;
    n_customers bigint;
    n_products bigint;
    n_pairs bigint;
    n_lists bigint;
BEGIN
    IF max_items_per_customer IS NOT NULL AND (max_items_per_customer < 2 OR max_items_per_customer > 10000) THEN
        RAISE EXCEPTION 'max_items_per_customer must be between 2 and 10000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', max_items_per_customer),
                  HINT = 'Pass NULL to keep the current value.';
    END IF;
    -- the model server's counts are the shards' sums, not its own events
    PERFORM @extschema@._role_refusal('rebuild()', ARRAY['model'],
        'Rebuild on the shards, then CALL personalize.global_refresh(all_products => true) here.');
    -- every lock it needs, up front and each for a bounded time (55P03 after
    -- personalize.model_lock_wait): SHARE on interactions (writers of events wait until
    -- the rebuild commits), ACCESS EXCLUSIVE on the tables it empties (recommend() waits
    -- too from here), EXCLUSIVE on the ones it updates in place and on popular
    -- (refresh_popular), so that no statement below waits on a lock
    PERFORM @extschema@._lock_bounded('rebuild()',
        ARRAY['@extschema@.interactions', '@extschema@.interactions_archive', '@extschema@.customer_items', '@extschema@.customer_state',
              '@extschema@.item_counts_base', '@extschema@.pair_counts_base', '@extschema@.model_deltas',
              '@extschema@.dirty_products', '@extschema@.customer_totals', '@extschema@.model_settings',
              '@extschema@.popular']::regclass[],
        ARRAY['SHARE', 'SHARE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE',
              'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'EXCLUSIVE', 'EXCLUSIVE', 'EXCLUSIVE']);
    UPDATE @extschema@.model_settings s
       SET max_items_per_customer = coalesce(rebuild.max_items_per_customer, s.max_items_per_customer),
           rebuilt_at = now()
    RETURNING s.max_items_per_customer INTO cap;

    PERFORM set_config('application_name', 'personalize.rebuild: 1/5 customer items', true);
    phase_at := clock_timestamp();
    TRUNCATE @extschema@.customer_items, @extschema@.customer_state, @extschema@.item_counts_base,
             @extschema@.pair_counts_base, @extschema@.model_deltas, @extschema@.dirty_products;
    -- the 'content' lists come from embeddings (embed_products), not from the events, and the
    -- 'ease' lists are replaced only by refresh_ease() (served until then)
    -- (on a shard the lists are the model server's: kept, every product is marked dirty below)
    IF @extschema@._node_role() OPERATOR(pg_catalog.<>) 'shard' THEN
        DELETE FROM @extschema@.neighbors n WHERE n.measure OPERATOR(pg_catalog.<>) ALL (ARRAY['content', 'ease']);
    END IF;
    INSERT INTO @extschema@.customer_items
        (customer_id, product_id, events, purchases, weight, first_interaction_id, last_at, in_model)
    SELECT * FROM @extschema@._customer_items_as_of(NULL, cap);
    GET DIAGNOSTICS n_customers = ROW_COUNT;
    RAISE NOTICE 'rebuild: 1/5 customer items: % rows (% s)', n_customers,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 2/5 customers and products', true);
    phase_at := clock_timestamp();
    INSERT INTO @extschema@.customer_state (customer_id, items, model_items, max_model_first_id)
    SELECT ci.customer_id, count(*), count(*) FILTER (WHERE ci.in_model),
           max(ci.first_interaction_id) FILTER (WHERE ci.in_model)
    FROM @extschema@.customer_items ci GROUP BY ci.customer_id;
    GET DIAGNOSTICS n_customers = ROW_COUNT;
    INSERT INTO @extschema@.item_counts_base (product_id, customers)
    SELECT ci.product_id, count(*) FROM @extschema@.customer_items ci WHERE ci.in_model GROUP BY ci.product_id;
    GET DIAGNOSTICS n_products = ROW_COUNT;
    UPDATE @extschema@.customer_totals t SET customers = coalesce(
        (SELECT count(*) FROM @extschema@.customer_state s
         WHERE s.model_items > 0 AND ((s.customer_id % 16) + 16) % 16 = t.shard), 0);
    RAISE NOTICE 'rebuild: 2/5 % customers, % products (% s)', n_customers, n_products,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 3/5 pairs', true);
    phase_at := clock_timestamp();
    -- in memory within maintenance_work_mem, written in key order (src/rebuild.c)
    n_pairs := @extschema@._rebuild_pairs('@extschema@.pair_counts_base');
    RAISE NOTICE 'rebuild: 3/5 % pairs (% s)', n_pairs, round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 4/5 neighbour lists', true);
    phase_at := clock_timestamp();
    n_lists := @extschema@.refresh_neighbors(NULL, true);
    RAISE NOTICE 'rebuild: 4/5 neighbour lists for % products (% s)', n_lists,
        round(extract(epoch FROM clock_timestamp() - phase_at)::numeric, 1);

    PERFORM set_config('application_name', 'personalize.rebuild: 5/5 popularity', true);
    IF @extschema@._node_role() OPERATOR(pg_catalog.<>) 'shard' THEN
        PERFORM @extschema@.refresh_popular();
    END IF;
    RAISE NOTICE 'rebuild: 5/5 done in % s', round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('rebuild', started, n_pairs, jsonb_build_object('customers', n_customers, 'products', n_products,
            'pairs', n_pairs, 'max_items_per_customer', cap));
    RETURN QUERY SELECT n_customers, n_products, n_pairs, extract(epoch FROM clock_timestamp() - started)::double precision;
END $$;

-- ease.sql: refresh_ease() refuses on a shard
CREATE OR REPLACE PROCEDURE @extschema@.refresh_ease()
    LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
    s jsonb;
    n_lists bigint := 0;
    scale double precision;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
BEGIN
    -- a shard's counts are its customers' only: the model server solves EASE on the sums
    PERFORM @extschema@._role_refusal('refresh_ease()', ARRAY['shard'],
        'CALL personalize.refresh_ease() on the model server: its ''ease'' lists reach the shards with the others.');
    -- the model from the folded counts; committed at once, so that the minute's refresh
    -- never waits for the solve (its own fold would wait for this one's lock)
    PERFORM @extschema@.fold_deltas();
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    BEGIN
        s := @extschema@._engine_settings();
        IF to_regclass('pg_temp.personalize_ease_lists') IS NOT NULL THEN
            DROP TABLE pg_temp.personalize_ease_lists;
        END IF;
        CREATE TEMPORARY TABLE personalize_ease_lists AS
            SELECT l.product_id, l.neighbor_ids, l.scores, l.counts, l.scale
            FROM @extschema@._ease_scaled_lists('@extschema@.item_counts_base', '@extschema@.pair_counts_base',
                                         (s ->> 'ease_products')::integer, (s ->> 'ease_lambda')::double precision,
                                         (s ->> 'ease_k')::integer) l;
        GET DIAGNOSTICS n_lists = ROW_COUNT;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
    END;
    IF e_state IS NULL THEN
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        PERFORM pg_catalog.set_config('application_name', 'personalize.refresh_ease: publish', true);
        BEGIN
            SELECT l.scale INTO scale FROM pg_temp.personalize_ease_lists l LIMIT 1;
            DELETE FROM @extschema@.neighbors n WHERE n.measure = 'ease';
            INSERT INTO @extschema@.neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT 'ease', l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM pg_temp.personalize_ease_lists l ORDER BY l.product_id;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                    e_detail = PG_EXCEPTION_DETAIL, e_hint = PG_EXCEPTION_HINT;
        END;
    END IF;
    IF pg_catalog.to_regclass('pg_temp.personalize_ease_lists') IS NOT NULL THEN
        DROP TABLE pg_temp.personalize_ease_lists;
    END IF;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details, status, error)
    VALUES ('refresh_ease', started, CASE WHEN e_state IS NULL THEN n_lists ELSE 0 END,
            pg_catalog.jsonb_build_object('products', (s ->> 'ease_products')::integer,
                                          'lambda', (s ->> 'ease_lambda')::double precision,
                                          'k', (s ->> 'ease_k')::integer, 'scale', scale),
            CASE WHEN e_state IS NULL THEN 'succeeded' ELSE 'failed' END,
            CASE WHEN e_state IS NOT NULL THEN e_state || ': ' || e_message END);
    COMMIT;
    IF e_state IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = e_state, MESSAGE = e_message,
            DETAIL = coalesce(nullif(e_detail, ''), 'Recorded in personalize.maintenance_runs.'),
            HINT = coalesce(nullif(e_hint, ''), 'The previous ''ease'' lists are still served; the next run builds them anew.');
    END IF;
    RAISE NOTICE 'refresh_ease: % lists stored in % s', n_lists,
        round(extract(epoch FROM pg_catalog.clock_timestamp() - started)::numeric, 1);
END $$;

-- evaluate.sql: evaluate() and tune() refuse on a shard and on the model server
CREATE OR REPLACE FUNCTION @extschema@._evaluation_check(cut timestamptz, k integer) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- it needs every event in one database: a shard holds some customers', the model server none
    PERFORM @extschema@._role_refusal('evaluate() and tune()', ARRAY['shard', 'model'],
        'Evaluate on a single server holding every event, e.g. a restored copy of the shards'' events (docs/scaling.md).');
    IF cut IS NULL THEN
        RAISE EXCEPTION 'cut must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'The cut splits the events: the model learns from those before it and is scored on the purchases after it.';
    END IF;
    IF NOT isfinite(cut) THEN
        RAISE EXCEPTION 'cut must be a finite time'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', cut),
                  HINT = 'For example now() - interval ''30 days''.';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(k::text, 'NULL')),
                  HINT = 'k is the length of the scored lists, as in recommend().';
    END IF;
END $$;

-- health.sql: check global_model; no popular_age on a shard
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
CREATE OR REPLACE VIEW @extschema@.health AS
WITH s AS MATERIALIZED (
    SELECT (h ->> 'refresh_warn')::numeric AS r_warn, (h ->> 'refresh_critical')::numeric AS r_crit,
           (h ->> 'backlog_warn')::numeric AS b_warn, (h ->> 'backlog_critical')::numeric AS b_crit,
           (h ->> 'llm_warn')::numeric AS l_warn, (h ->> 'llm_critical')::numeric AS l_crit,
           ARRAY(SELECT DISTINCT pg_catalog.lower(pg_catalog.btrim(x))
                 FROM pg_catalog.unnest(pg_catalog.string_to_array(h ->> 'expected_jobs', ',')) x
                 WHERE pg_catalog.btrim(x) OPERATOR(pg_catalog.<>) '') AS expected,
           EXISTS (SELECT FROM @extschema@.item_counts_base LIMIT 1)
               OR EXISTS (SELECT FROM @extschema@.model_deltas LIMIT 1) AS has_model
    FROM (SELECT @extschema@._health_settings() AS h) z
), refresh AS (
    -- the last successful refresh() or rebuild()
    SELECT max(x.finished_at) AS t FROM (
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'refresh' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)
        UNION ALL
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'rebuild' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)) x
), failure AS (
    -- the newest failed run of any job, and whether a later run of that job went well
    SELECT f.*, f.run_id = (SELECT m.run_id FROM @extschema@.maintenance_runs m WHERE m.job = f.job
                            ORDER BY m.run_id DESC LIMIT 1) AS is_current
    FROM (SELECT 'maintenance_runs' AS tbl, m.run_id, m.job, m.job AS kind, m.finished_at, m.error
          FROM @extschema@.maintenance_runs m WHERE m.status <> 'succeeded' ORDER BY m.run_id DESC LIMIT 1) f
    UNION ALL
    SELECT f.*, f.run_id = (SELECT r.run_id FROM @extschema@.llm_runs r WHERE r.kind = f.kind
                            ORDER BY r.run_id DESC LIMIT 1)
    FROM (SELECT 'llm_runs' AS tbl, r.run_id, 'llm_' || r.kind AS job, r.kind, coalesce(r.finished_at, r.started_at) AS finished_at,
                 r.status || ': ' || coalesce(r.error, 'no error recorded') AS error
          FROM @extschema@.llm_runs r WHERE r.status <> ALL (ARRAY['running', 'completed'])
          ORDER BY r.run_id DESC LIMIT 1) f
), backlog AS (
    SELECT (SELECT count(*) FROM (SELECT FROM @extschema@.dirty_products LIMIT 100001) d) AS n_dirty,
           -- changes not folded yet: their products are not in dirty_products until the refresh
           -- folds them (a heap scan of model_deltas, no array read)
           (SELECT coalesce(sum(m.entries), 0) FROM @extschema@.model_deltas m) AS n_pending,
           -- a pending change (not folded yet) is backlog too
           (SELECT least(min(d.since), (SELECT min(m.at) FROM @extschema@.model_deltas m))
            FROM @extschema@.dirty_products d) AS oldest
), llm AS (
    SELECT k.kind, r.*
    FROM unnest(ARRAY['refresh', 'batch_submit', 'batch_poll', 'embed']) AS k(kind),
         LATERAL (SELECT x.run_id, x.status, x.started_at, x.finished_at, x.error FROM @extschema@.llm_runs x
                  WHERE x.kind = k.kind ORDER BY x.run_id DESC LIMIT 1) r
), cron AS (
    SELECT @extschema@._health_cron_jobs() AS c
), jobs AS (
    -- each expected job and each personalize job of this database that exists
    SELECT w.what, w.what = ANY (s.expected) AS expected, j.job
    FROM s, cron,
         LATERAL (SELECT e AS what FROM unnest(s.expected) e
                  UNION
                  SELECT substring(x ->> 'job' FROM '^personalize-(.*)@[^@]*$')
                  FROM jsonb_array_elements(cron.c -> 'jobs') x) w
         LEFT JOIN LATERAL (SELECT x AS job FROM jsonb_array_elements(cron.c -> 'jobs') x
                            WHERE x ->> 'job' = 'personalize-' || w.what || '@' || current_database()) j ON true
    WHERE cron.c ->> 'state' = 'ok' AND w.what IS NOT NULL
), srm AS (
    -- experiment_results' sample-ratio check for the running experiment, from its
    -- exposures only (each customer in the arm of their first exposure, as there)
    SELECT e.name, p.p
    FROM @extschema@.experiments e,
         LATERAL (
             SELECT @extschema@._chisq_sf(least(sum((a.n - a.n_total * a.weight::numeric / a.w_total) ^ 2
                        / nullif(a.n_total * a.weight::numeric / a.w_total, 0)), 1e300)::float8, count(*) - 1) AS p
             FROM (SELECT ea.arm, ea.weight, coalesce(c.n, 0) AS n,
                          sum(coalesce(c.n, 0)) OVER () AS n_total, sum(ea.weight::numeric) OVER () AS w_total
                   FROM @extschema@.experiment_arms ea
                   LEFT JOIN (SELECT pc.arm, count(*) AS n
                              FROM (SELECT min(x.arm) AS arm FROM @extschema@.exposures x
                                    WHERE x.experiment_id = e.experiment_id AND x.arm IS NOT NULL
                                    GROUP BY x.customer_id) pc
                              GROUP BY pc.arm) c ON c.arm = ea.arm
                   WHERE ea.experiment_id = e.experiment_id) a
             HAVING min(a.n_total) > 0) p
    WHERE e.status = 'running'
)
SELECT c."check", c.status, c.value, c.detail FROM (
    SELECT 1 AS ord, 'refresh_age' AS "check",
           CASE WHEN r.t IS NULL THEN CASE WHEN s.has_model THEN 'critical' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END AS status,
           a.v AS value,
           CASE WHEN r.t IS NULL AND s.has_model THEN 'no successful refresh() recorded: the neighbour lists are not refreshed'
                WHEN r.t IS NULL THEN 'no successful refresh() recorded yet (no events either)'
                ELSE format('the last successful refresh() or rebuild() finished at %s', r.t) END AS detail
    FROM s, refresh r, LATERAL (SELECT round(extract(epoch FROM now() - r.t), 1) AS v) a
    UNION ALL
    SELECT 2, 'last_job_error',
           CASE WHEN f.run_id IS NULL OR NOT f.is_current THEN 'ok' ELSE 'warn' END,
           round(extract(epoch FROM now() - f.finished_at), 1),
           CASE WHEN f.run_id IS NULL THEN 'no failed run recorded'
                ELSE format('%s run %s (%s) at %s: %s%s', f.job, f.run_id, f.tbl, f.finished_at, f.error,
                            CASE WHEN f.is_current THEN '' ELSE '; a later run of that job succeeded' END) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT * FROM failure ORDER BY finished_at DESC LIMIT 1) f ON true
    UNION ALL
    SELECT 3, 'neighbor_backlog',
           CASE WHEN s.b_crit > 0 AND b.n >= s.b_crit THEN 'critical'
                WHEN s.b_warn > 0 AND b.n >= s.b_warn THEN 'warn' ELSE 'ok' END,
           b.n,
           format('%s%s products wait for their neighbour lists to be refreshed, and %s count changes to be folded',
                  CASE WHEN b.n_dirty > 100000 THEN 'more than ' ELSE '' END, least(b.n_dirty, 100000), b.n_pending)
    FROM s, (SELECT x.*, x.n_dirty + x.n_pending AS n FROM backlog x) b
    UNION ALL
    SELECT 4, 'neighbor_backlog_age',
           CASE WHEN b.oldest IS NULL THEN 'ok'
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           coalesce(a.v, 0),
           CASE WHEN b.oldest IS NULL THEN 'no product waits'
                ELSE format('the oldest dirty product waits since %s', b.oldest) END
    FROM s, backlog b, LATERAL (SELECT round(extract(epoch FROM now() - b.oldest), 1) AS v) a
    UNION ALL
    SELECT 5, 'popular_age',
           CASE WHEN p.t IS NULL THEN CASE WHEN s.has_model THEN 'warn' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           CASE WHEN p.t IS NULL THEN 'no popularity list computed yet (recommend() serves the all-time bestsellers live)'
                ELSE format('the popularity list was computed at %s', p.t) END
    FROM s,
         LATERAL (SELECT max(m.finished_at) AS t FROM (SELECT m.finished_at FROM @extschema@.maintenance_runs m
                  WHERE m.job = 'refresh_popular' ORDER BY m.run_id DESC LIMIT 1) m) p,
         LATERAL (SELECT round(extract(epoch FROM now() - p.t), 1) AS v) a
    -- a shard's popularity list is the model server's (check global_model)
    WHERE NOT EXISTS (SELECT FROM @extschema@.node_settings n WHERE n.role = 'shard')
    UNION ALL
    SELECT 6, 'llm_' || l.kind,
           CASE WHEN l.status = 'running' THEN 'ok'
                WHEN l.status <> 'completed' THEN 'warn'
                WHEN l.kind = 'batch_poll' THEN 'ok'
                WHEN s.l_crit > 0 AND a.v >= s.l_crit THEN 'critical'
                WHEN s.l_warn > 0 AND a.v >= s.l_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           format('the last %s run (%s) %s at %s%s', l.kind, l.run_id,
                  CASE l.status WHEN 'running' THEN 'started' ELSE l.status END,
                  coalesce(l.finished_at, l.started_at), ': ' || l.error)
    FROM s, llm l, LATERAL (SELECT round(extract(epoch FROM now() - coalesce(l.finished_at, l.started_at)), 1) AS v) a
    UNION ALL
    SELECT 7, 'cron',
           CASE WHEN cron.c ->> 'state' = 'error' THEN 'critical'
                WHEN cardinality(s.expected) = 0 THEN 'ok' ELSE 'critical' END,
           NULL,
           CASE cron.c ->> 'state'
               WHEN 'not_loaded' THEN 'pg_cron is not loaded (cron.database_name is not set)'
               WHEN 'not_installed' THEN format('pg_cron is not installed in database %s', cron.c ->> 'cron_database')
               ELSE format('cannot read the pg_cron jobs in database %s: %s', cron.c ->> 'cron_database', cron.c ->> 'error') END
               || CASE WHEN cardinality(s.expected) > 0
                       THEN format('; expected jobs: %s (personalize.health_expected_jobs)', array_to_string(s.expected, ', '))
                       ELSE '' END
    FROM s, cron WHERE cron.c ->> 'state' <> 'ok'
    UNION ALL
    SELECT 8, 'cron_job:' || j.what,
           CASE WHEN j.job IS NULL OR NOT (j.job ->> 'active')::boolean
                THEN CASE WHEN j.expected THEN 'critical' ELSE 'warn' END
                WHEN j.job ->> 'status' = 'failed' THEN 'warn' ELSE 'ok' END,
           round(extract(epoch FROM now() - (j.job ->> 'end_time')::timestamptz), 1),
           format('job personalize-%s@%s ', j.what, current_database())
           || CASE WHEN j.job IS NULL THEN 'does not exist (expected by personalize.health_expected_jobs)'
                   ELSE format('(%s, scheduled by %s) is %s; its last run %s', j.job ->> 'schedule', j.job ->> 'username',
                               CASE WHEN (j.job ->> 'active')::boolean THEN 'active' ELSE 'NOT active' END,
                               CASE WHEN j.job ->> 'status' IS NULL THEN 'has not finished yet (none recorded)'
                                    ELSE format('%s at %s%s', j.job ->> 'status', j.job ->> 'end_time',
                                                CASE WHEN j.job ->> 'status' = 'failed'
                                                     THEN ': ' || (j.job ->> 'message') ELSE '' END) END) END
    FROM jobs j
    UNION ALL
    SELECT 9, 'variants',
           CASE WHEN v.n > 0 THEN 'critical' ELSE 'ok' END,
           v.n,
           CASE WHEN v.n = 0 THEN 'every variant is valid'
                ELSE format('invalid variants (skipped by the refresh, refused by recommend()): %s', v.names) END
    FROM (SELECT count(*) AS n, string_agg(format('%s (%s)', x.name, x.problem), '; ' ORDER BY x.name) AS names
          FROM (SELECT v.name, @extschema@._variant_problem(v.name, v.algorithm, v.params) AS problem
                FROM @extschema@.variants v) x
          WHERE x.problem IS NOT NULL) v
    UNION ALL
    SELECT 10, 'experiment_srm',
           CASE WHEN x.p < 0.001 THEN 'warn' ELSE 'ok' END,
           round(x.p::numeric, 6),
           CASE WHEN x.name IS NULL THEN 'no experiment is running'
                WHEN x.p IS NULL THEN format('experiment %s: no exposure yet', x.name)
                WHEN x.p < 0.001 THEN format('experiment %s: sample ratio mismatch (p = %s < 0.001): the arms do not get the traffic their weights say; see experiment_results', x.name, round(x.p::numeric, 6))
                ELSE format('experiment %s: the arms'' traffic matches their weights (p = %s)', x.name, round(x.p::numeric, 6)) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT e.name, m.p FROM @extschema@.experiments e LEFT JOIN srm m ON m.name = e.name
               WHERE e.status = 'running') x ON true
    UNION ALL
    SELECT 11, 'pair_store', 'ok',
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::numeric END,
           CASE WHEN c.reltuples >= 0 THEN format('%s pairs in pair_counts (estimate from pg_class.reltuples)', c.reltuples::bigint)
                ELSE 'pair_counts is not analyzed yet (no estimate)' END
           || format(', %s on disk with its indexes', pg_size_pretty(pg_total_relation_size(c.oid)))
    FROM pg_class c WHERE c.oid = '@extschema@.pair_counts_base'::regclass
    UNION ALL
    -- a sharded layout (issue 15): the age of the model server's last global round as this
    -- shard (or the model server) has it, and on a shard the subscription that brings it
    SELECT 12, 'global_model',
           CASE WHEN g.refreshed_at IS NULL THEN 'critical'
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn'
                WHEN n.role = 'shard' AND (sub.n = 0 OR sub.running < sub.n) THEN 'warn' ELSE 'ok' END,
           a.v,
           CASE WHEN g.refreshed_at IS NULL THEN format('no global round of the model server has reached this %s yet',
                                                        CASE n.role WHEN 'shard' THEN 'shard' ELSE 'model server' END)
                ELSE format('the model server''s last global round finished at %s (%s shards, %s dirty products summed, %s lists)',
                            g.refreshed_at, g.shards, g.products, g.lists) END
           || CASE WHEN n.role <> 'shard' THEN ''
                   WHEN sub.n = 0 THEN '; this shard has no personalize_global subscription'
                   WHEN sub.running < sub.n THEN '; the personalize_global subscription''s worker is not running (the model server is unreachable?)'
                   ELSE '; the personalize_global subscription''s worker is running' END
    FROM s, @extschema@.node_settings n
         LEFT JOIN @extschema@.global_model_state g ON true,
         LATERAL (SELECT round(extract(epoch FROM now() - g.refreshed_at), 1) AS v) a,
         LATERAL (SELECT count(*) AS n, count(st.pid) AS running
                  FROM pg_subscription sb
                  LEFT JOIN pg_stat_subscription st ON st.subid = sb.oid AND st.relid IS NULL
                  WHERE sb.subdbid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                    AND sb.subname LIKE 'personalize\_global%') sub
    WHERE n.role <> 'single'
) c
ORDER BY c.ord, c."check";
COMMENT ON VIEW @extschema@.health IS
    'One row per health check (refresh age, last job error, neighbour-list backlog and its age, popularity list age, OpenAI runs, pg_cron jobs, invalid variants, sample-ratio mismatch, pair store size, and in a sharded layout the global model''s age): status ok, warn or critical. Granted to nobody by default; see docs/reference.md, "Health".';
COMMENT ON COLUMN @extschema@.health."check" IS 'What is checked (refresh_age, last_job_error, neighbor_backlog, neighbor_backlog_age, popular_age, llm_<kind>, cron, cron_job:<job>, variants, experiment_srm, pair_store, global_model).';
SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);

-- grants.sql: log_event() in the application's grant set
CREATE OR REPLACE FUNCTION @extschema@._grant_set(grant_set text)
    RETURNS TABLE (object_type text, object text, privileges text)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.object_type, s.object, s.privileges FROM (VALUES
        ('application', 'table', '@extschema@.products', 'SELECT'),
        ('application', 'table', '@extschema@.event_types', 'SELECT'),
        ('application', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('application', 'table', '@extschema@.customers', 'SELECT, INSERT, UPDATE'),
        ('application', 'table', '@extschema@.interactions', 'SELECT, INSERT'),
        ('application', 'table', '@extschema@.customer_feedback', 'SELECT, INSERT'),
        ('application', 'function', '@extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb)', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_logged(bigint, integer)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_exposure(bigint, bigint[], text)', 'EXECUTE'),
        ('application', 'function', '@extschema@.assigned_variant(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.flag_enabled(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.erase_customer(bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_impressions(bigint, bigint[], text, text)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_event(bigint, bigint, text, timestamptz, integer, text)', 'EXECUTE'),
        ('monitoring', 'table', '@extschema@.health', 'SELECT'),
        ('monitoring', 'table', '@extschema@.model_stats', 'SELECT'),
        ('monitoring', 'table', '@extschema@.maintenance_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.ingest_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.batch_recommendation_runs', 'SELECT'),
        ('bi', 'table', '@extschema@.products', 'SELECT'),
        ('bi', 'table', '@extschema@.event_types', 'SELECT'),
        ('bi', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('bi', 'table', '@extschema@.variants', 'SELECT'),
        ('bi', 'table', '@extschema@.popular', 'SELECT'),
        ('bi', 'table', '@extschema@.neighbor_list', 'SELECT'),
        ('bi', 'table', '@extschema@.cooccurrence', 'SELECT'),
        ('bi', 'table', '@extschema@.model_stats', 'SELECT'),
        ('bi', 'table', '@extschema@.experiment_results', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations_named', 'SELECT'),
        ('bi', 'table', '@extschema@.impressions', 'SELECT'),
        ('bi', 'table', '@extschema@.impression_ctr', 'SELECT')
    ) AS s(grant_set, object_type, object, privileges)
    WHERE s.grant_set = _grant_set.grant_set
$$;

REVOKE ALL ON FUNCTION @extschema@.bucket_of(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._node_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._window_customers(timestamptz, interval, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.global_tables() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._role_refusal(text, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.set_node_role(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._take_dirty_products() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.add_shard(text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._global_take(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._global_pull() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._global_popular(integer, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.global_refresh(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.log_event(bigint, bigint, text, timestamptz, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.delete_events(bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.pull_bucket(integer, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.drop_bucket(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._shard_write_guard() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.node_settings, @extschema@.shards, @extschema@.global_model_state,
    @extschema@.global_window_counts, @extschema@._shard_dirty_taken FROM PUBLIC;
-- ==== end of issue 15 ====
