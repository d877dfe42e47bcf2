------------------------------------------------------------------------------
-- The co-occurrence model. Derived from interactions (never dumped: a restore
-- streams interactions through the trigger, or run personalize.rebuild()).
------------------------------------------------------------------------------

CREATE TABLE @extschema@.model_settings (
    singleton              boolean PRIMARY KEY DEFAULT true,
    max_items_per_customer integer NOT NULL DEFAULT 100,
    rebuilt_at             timestamptz,
    CONSTRAINT model_settings_singleton CHECK (singleton),
    CONSTRAINT model_settings_cap_check CHECK (max_items_per_customer OPERATOR(pg_catalog.>=) 2
                                               AND max_items_per_customer OPERATOR(pg_catalog.<=) 10000)
);
COMMENT ON TABLE @extschema@.model_settings IS 'Model parameters the trigger and rebuild() share; change them only through rebuild().';
INSERT INTO @extschema@.model_settings DEFAULT VALUES;

CREATE TABLE @extschema@.customer_items (
    customer_id          bigint NOT NULL,
    product_id           bigint NOT NULL,
    events               integer NOT NULL,
    purchases            integer NOT NULL,
    weight               double precision NOT NULL,
    first_interaction_id bigint NOT NULL,
    last_at              timestamptz NOT NULL,
    in_model             boolean NOT NULL,
    PRIMARY KEY (customer_id, product_id),
    CONSTRAINT customer_items_events_check CHECK (events OPERATOR(pg_catalog.>) 0 AND purchases OPERATOR(pg_catalog.>=) 0)
);
COMMENT ON TABLE @extschema@.customer_items IS 'One row per (customer, product) with at least one interaction: the customer''s history as recommend() reads it. in_model marks the first max_items_per_customer products (by first interaction id) that take part in co-occurrence.';

CREATE TABLE @extschema@.customer_state (
    customer_id        bigint PRIMARY KEY,
    items              integer NOT NULL DEFAULT 0,
    model_items        integer NOT NULL DEFAULT 0,
    max_model_first_id bigint,
    CONSTRAINT customer_state_items_check CHECK (model_items OPERATOR(pg_catalog.>=) 0 AND items OPERATOR(pg_catalog.>=) model_items)
) WITH (fillfactor = 70);
COMMENT ON TABLE @extschema@.customer_state IS 'Per-customer model bookkeeping; its row is the lock that serialises concurrent writers of one customer''s history.';

-- The counts as of the last fold (fold_deltas()). The trigger never updates them: it
-- appends each statement's changes to model_deltas, and the views item_counts and
-- pair_counts add the pending changes to these (issue 14: no hot rows, fewer index writes).
CREATE TABLE @extschema@.item_counts_base (
    product_id bigint NOT NULL,
    customers  bigint NOT NULL,
    CONSTRAINT item_counts_pkey PRIMARY KEY (product_id)
) WITH (fillfactor = 70);
-- no CHECK on customers: INSERT ... ON CONFLICT checks constraints on the proposed row, and the
-- fold proposes negative deltas; it checks the result itself and deletes rows that reach 0
COMMENT ON TABLE @extschema@.item_counts_base IS 'Distinct customers whose in-model history holds the product, as of the last fold_deltas(); read item_counts for the exact count.';

CREATE TABLE @extschema@.pair_counts_base (
    product_a bigint NOT NULL,
    product_b bigint NOT NULL,
    customers bigint NOT NULL,
    CONSTRAINT pair_counts_pkey PRIMARY KEY (product_a, product_b),
    CONSTRAINT pair_counts_order CHECK (product_a OPERATOR(pg_catalog.<) product_b)
) WITH (fillfactor = 70);
-- no CHECK on customers, for the same reason as item_counts_base; fillfactor 70 (and on
-- item_counts_base, customer_state): the counts change and their indexed columns never do,
-- so with room on the page every update is HOT
CREATE INDEX pair_counts_b_idx ON @extschema@.pair_counts_base (product_b);
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

CREATE TABLE @extschema@.customer_totals (
    shard     smallint PRIMARY KEY,
    customers bigint NOT NULL,
    CONSTRAINT customer_totals_nonnegative CHECK (customers OPERATOR(pg_catalog.>=) 0)
);
COMMENT ON TABLE @extschema@.customer_totals IS 'Customers with at least one in-model product, in 16 shards (customer_id % 16) so that new customers do not all wait on one row.';
INSERT INTO @extschema@.customer_totals SELECT s, 0 FROM pg_catalog.generate_series(0, 15) AS s;

CREATE TABLE @extschema@.dirty_products (
    product_id bigint PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.dirty_products IS 'Products whose counts changed since their neighbour lists were last refreshed.';

CREATE TABLE @extschema@.neighbors (
    measure      text NOT NULL,
    product_id   bigint NOT NULL,
    neighbor_ids bigint[] NOT NULL,
    scores       double precision[] NOT NULL,
    counts       bigint[] NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (measure, product_id)
);
COMMENT ON TABLE @extschema@.neighbors IS 'Serving lists: the top neighbours of each product under one similarity measure, best first.';

CREATE TABLE @extschema@.popular (
    rank       integer PRIMARY KEY,
    product_id bigint NOT NULL UNIQUE,
    customers  bigint NOT NULL,
    share      double precision NOT NULL,
    source     text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    CONSTRAINT popular_source_check CHECK (source OPERATOR(pg_catalog.=) ANY (ARRAY['window', 'all_time']))
);
COMMENT ON TABLE @extschema@.popular IS 'Popularity list for fill-up and anonymous visitors: products by distinct customers in the recent window, then all-time.';

CREATE TABLE @extschema@.popular_scores (
    singleton   boolean PRIMARY KEY DEFAULT true,
    product_ids bigint[] NOT NULL,
    scores      double precision[] NOT NULL,
    window_days double precision NOT NULL,
    CONSTRAINT popular_scores_singleton CHECK (singleton)
);
COMMENT ON TABLE @extschema@.popular_scores IS 'The popularity list as recommend() reads it in one row: product ids in rank order and their popularity scores (0.5 + 0.5 * share for the window, 0.5 * share for all-time).';

-- the statement triggers that keep the model exact (src/trigger.c)
CREATE FUNCTION @extschema@._interactions_trigger() RETURNS trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_interactions_trigger';
CREATE TRIGGER interactions_model_insert AFTER INSERT ON @extschema@.interactions
    REFERENCING NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_trigger();
CREATE TRIGGER interactions_model_delete AFTER DELETE ON @extschema@.interactions
    REFERENCING OLD TABLE AS personalize_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_trigger();
CREATE TRIGGER interactions_model_update AFTER UPDATE ON @extschema@.interactions
    REFERENCING OLD TABLE AS personalize_old NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_trigger();
CREATE TRIGGER interactions_model_truncate AFTER TRUNCATE ON @extschema@.interactions
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_trigger();
-- ids ahead of the identity sequence (OVERRIDING SYSTEM VALUE, COPY) only from a role that may
-- setval() it (src/id_guard.c). Not SECURITY DEFINER: it checks the role that inserts; no SET
-- search_path either (it resolves no names). Named to fire before interactions_model_insert.
CREATE FUNCTION @extschema@._interactions_id_guard() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'personalize_interactions_id_guard';
CREATE TRIGGER interactions_id_guard AFTER INSERT ON @extschema@.interactions
    REFERENCING NEW TABLE AS personalize_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._interactions_id_guard();

CREATE FUNCTION @extschema@.similarity(measure text, ab bigint, a bigint, b bigint, n bigint)
    RETURNS double precision
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_similarity';
COMMENT ON FUNCTION @extschema@.similarity(text, bigint, bigint, bigint, bigint) IS
    'Similarity of a product pair from its co-occurrence ab, the product counts a and b and the customer count n: count, jaccard, cosine, lift or llr (Dunning).';

CREATE FUNCTION @extschema@.cooccurrence_count(a bigint, b bigint) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT CASE WHEN a = b
                THEN coalesce((SELECT ic.customers FROM @extschema@.item_counts ic WHERE ic.product_id = a), 0)
                ELSE coalesce((SELECT pc.customers FROM @extschema@.pair_counts pc
                               WHERE pc.product_a = least(a, b) AND pc.product_b = greatest(a, b)), 0)
           END;
END;
COMMENT ON FUNCTION @extschema@.cooccurrence_count(bigint, bigint) IS
    'Distinct customers whose in-model history holds both products (for a = b: customers with the product).';

CREATE VIEW @extschema@.cooccurrence AS
    SELECT pc.product_a, pc.product_b, pc.customers,
           ia.customers AS customers_a, ib.customers AS customers_b
    FROM @extschema@.pair_counts pc
    JOIN @extschema@.item_counts ia ON ia.product_id = pc.product_a
    JOIN @extschema@.item_counts ib ON ib.product_id = pc.product_b;
COMMENT ON VIEW @extschema@.cooccurrence IS 'Every co-occurring product pair once (product_a < product_b) with both products'' counts.';

CREATE VIEW @extschema@.model_stats AS
    SELECT (SELECT sum(t.customers) FROM @extschema@.customer_totals t)::bigint AS customers,
           (SELECT count(*) FROM @extschema@.item_counts) AS products,
           (SELECT count(*) FROM @extschema@.pair_counts) AS pairs,
           (SELECT count(*) FROM @extschema@.dirty_products) AS dirty_products,
           (SELECT s.max_items_per_customer FROM @extschema@.model_settings s) AS max_items_per_customer,
           (SELECT s.rebuilt_at FROM @extschema@.model_settings s) AS rebuilt_at,
           (SELECT coalesce(sum(m.entries), 0) FROM @extschema@.model_deltas m)::bigint AS pending_changes;
COMMENT ON VIEW @extschema@.model_stats IS 'Size and freshness of the co-occurrence model at a glance.';

CREATE VIEW @extschema@.neighbor_list AS
    SELECT n.measure, n.product_id, u.rank, u.neighbor_id, u.score, u.customers, n.refreshed_at
    FROM @extschema@.neighbors n,
         LATERAL unnest(n.neighbor_ids, n.scores, n.counts) WITH ORDINALITY AS u(neighbor_id, score, customers, rank);
COMMENT ON VIEW @extschema@.neighbor_list IS 'The neighbour lists, one row per (measure, product, rank), for BI tools.';

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

-- Recompute the whole model from interactions, set-wise, under the same cap rule as the trigger.
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

CREATE FUNCTION @extschema@.rebuild(max_items_per_customer integer DEFAULT NULL)
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
COMMENT ON FUNCTION @extschema@.rebuild(integer) IS
    'Recompute the whole model from interactions (optionally with a new max_items_per_customer). Blocks event writers and recommend() while it runs; waits at most personalize.model_lock_wait for its locks, in short attempts that never hold the queue up, then fails with 55P03 naming the blocking sessions.';
