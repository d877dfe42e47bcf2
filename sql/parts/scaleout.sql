------------------------------------------------------------------------------
-- Scale-out (issue 15): customers sharded across servers, one exact global model.
-- A database is a single server (the default), a shard (the customers of some
-- buckets: their events, histories and counts) or the model server (the catalog,
-- variants and experiments, the summed counts, the lists; no customers). The model
-- server pulls the counts of the products the shards marked dirty over postgres_fdw,
-- sums them (each customer lives on one shard: the sum is the single-server count),
-- computes the lists and the popularity list as a single server does and publishes
-- them with the catalog to every shard (logical replication, personalize_global).
-- The router (PL/Proxy, contrib/sharding/) routes each call by bucket_of(customer).
-- docs/scaling.md tells the layout; contrib/sharding/personalize-layout sets it up.
------------------------------------------------------------------------------

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

