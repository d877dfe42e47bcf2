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
