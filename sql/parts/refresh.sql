------------------------------------------------------------------------------
-- Refresh: neighbour lists of dirty products, the popularity list, and the
-- periodic job that runs both; every run is logged in maintenance_runs
------------------------------------------------------------------------------

CREATE TABLE @extschema@.maintenance_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    items       bigint NOT NULL,
    details     jsonb,
    status      text NOT NULL DEFAULT 'succeeded',
    error       text,
    CONSTRAINT maintenance_runs_status_check CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed']))
);
COMMENT ON TABLE @extschema@.maintenance_runs IS 'One row per finished rebuild(), refresh_neighbors(), refresh_popular(), refresh(), refresh_ease(), evaluate() and tune() run; a refresh() or refresh_ease() that failed has status failed and its error (SQLSTATE: message); invalid variants a run skipped are in details.skipped_variants.';

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
-- the window ending at t_end (_window_customers(): interactions, on the model server the
-- shards' sums; an event at t_end itself only with end_included: evaluate() counts it after
-- its cut), then the all-time bestsellers of the given
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

-- Recompute the top-K neighbour lists of up to max_products dirty products (all products
-- with all_products), logging the run unless log_run is false (refresh() logs its own).
CREATE FUNCTION @extschema@._refresh_neighbors(max_products integer, all_products boolean, log_run boolean)
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
CREATE FUNCTION @extschema@.refresh_neighbors(max_products integer DEFAULT NULL, all_products boolean DEFAULT false)
    RETURNS bigint
    LANGUAGE sql SET search_path = pg_catalog, pg_temp
    RETURN @extschema@._refresh_neighbors(max_products, all_products, true);
COMMENT ON FUNCTION @extschema@.refresh_neighbors(integer, boolean) IS
    'Recompute the neighbour lists of products whose counts changed (all products with all_products => true); returns how many.';

-- Recompute the popularity list as of a time.
CREATE FUNCTION @extschema@.refresh_popular(window_length interval DEFAULT '7 days', as_of timestamptz DEFAULT NULL)
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
COMMENT ON FUNCTION @extschema@.refresh_popular(interval, timestamptz) IS
    'Recompute the popularity list: products by distinct customers in the window ending at as_of (default personalize.as_of, else now()), then all-time.';

-- Periodic upkeep: neighbour lists of dirty products, then popularity. Commits after
-- every batch of 100 products, so that writers re-marking a product dirty wait at
-- most one batch (a procedure with COMMIT cannot have a SET clause: search_path is
-- set for each transaction instead). Every run leaves a maintenance_runs row: a
-- failed one (an error, a cancel, a statement_timeout) with status failed and its
-- error, then the error is raised again so that pg_cron records it too. The work
-- committed before the failure stays. An invalid variant row is skipped with a WARNING
-- and named in the run's details (skipped_variants); the others are refreshed.
CREATE PROCEDURE @extschema@.refresh()
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
