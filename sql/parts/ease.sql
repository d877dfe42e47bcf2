------------------------------------------------------------------------------
-- EASE (issue 13): item-item weights in closed form from the exact counts, stored as the
-- neighbour lists of measure 'ease' by refresh_ease() (nightly with schedule_ease())
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
COMMENT ON PROCEDURE @extschema@.refresh_ease() IS 'Rebuild the EASE model (personalize.ease_products, ease_lambda, ease_k) and replace the ''ease'' neighbour lists at once; what the nightly job runs. Logs every run in maintenance_runs (job refresh_ease), a failed one with its error. CALL it outside a transaction block.';

CREATE FUNCTION @extschema@.schedule_ease(schedule text DEFAULT '15 3 * * *') RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_schedule('personalize-refresh-ease', schedule, 'CALL personalize.refresh_ease()');
COMMENT ON FUNCTION @extschema@.schedule_ease(text) IS 'Schedule CALL personalize.refresh_ease() with pg_cron (job personalize-refresh-ease@<database>, run in this database, nightly by default); returns the job id.';

CREATE FUNCTION @extschema@.unschedule_ease() RETURNS boolean
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._cron_unschedule('personalize-refresh-ease');
COMMENT ON FUNCTION @extschema@.unschedule_ease() IS 'Remove the pg_cron job of schedule_ease().';
