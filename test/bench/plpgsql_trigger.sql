-- The model maintenance a user would write without the C triggers: a PL/pgSQL row-level
-- AFTER INSERT trigger on personalize.interactions with upserts, into its own tables
-- (schema bench_plpgsql), for the ingest benchmarks (test/bench/run.sh).
--
-- It keeps the same state as the C trigger for inserts:
--   customer_items  (customer, product): events, purchases, weight, first id, last at, in_model
--   customer_state  items and in-model items per customer (its row serialises one customer)
--   item_counts     distinct in-model customers per product
--   pair_counts     distinct in-model customers per product pair (a < b)
--   customer_totals customers with an in-model product, in the same 16 shards
-- under the same cap rule (personalize.model_settings.max_items_per_customer: a customer's
-- first products by first interaction id take part), which this trigger applies exactly when
-- each customer's events arrive in interaction_id order (a loader, a stream; two sessions
-- racing on one customer may differ at the cap boundary). It does NOT mark dirty products
-- for the neighbour refresh, handle DELETE/UPDATE, or check anything: it is cheaper than
-- the C trigger's work, not dearer.
--
--   psql -f test/bench/plpgsql_trigger.sql           creates it, the trigger disabled
--   SELECT bench_plpgsql.init_from_model();          copies personalize's current model
--   ALTER TABLE personalize.interactions ENABLE TRIGGER bench_plpgsql_model;
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench_plpgsql CASCADE;
CREATE SCHEMA bench_plpgsql;

CREATE TABLE bench_plpgsql.customer_items (
    customer_id          bigint NOT NULL,
    product_id           bigint NOT NULL,
    events               integer NOT NULL,
    purchases            integer NOT NULL,
    weight               double precision NOT NULL,
    first_interaction_id bigint NOT NULL,
    last_at              timestamptz NOT NULL,
    in_model             boolean NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);
CREATE TABLE bench_plpgsql.customer_state (
    customer_id bigint PRIMARY KEY,
    items       integer NOT NULL,
    model_items integer NOT NULL
);
CREATE TABLE bench_plpgsql.item_counts (
    product_id bigint PRIMARY KEY,
    customers  bigint NOT NULL
);
CREATE TABLE bench_plpgsql.pair_counts (
    product_a bigint NOT NULL,
    product_b bigint NOT NULL,
    customers bigint NOT NULL,
    PRIMARY KEY (product_a, product_b)
);
CREATE INDEX ON bench_plpgsql.pair_counts (product_b);
CREATE TABLE bench_plpgsql.customer_totals (
    shard     smallint PRIMARY KEY,
    customers bigint NOT NULL
);

CREATE FUNCTION bench_plpgsql.reset() RETURNS void LANGUAGE sql AS $$
    TRUNCATE bench_plpgsql.customer_items, bench_plpgsql.customer_state, bench_plpgsql.item_counts,
             bench_plpgsql.pair_counts, bench_plpgsql.customer_totals;
    INSERT INTO bench_plpgsql.customer_totals SELECT s, 0 FROM generate_series(0, 15) AS s;
$$;
SELECT bench_plpgsql.reset();

-- start from personalize's model (which must be current: after rebuild() or the C triggers)
CREATE FUNCTION bench_plpgsql.init_from_model() RETURNS void LANGUAGE sql AS $$
    TRUNCATE bench_plpgsql.customer_items, bench_plpgsql.customer_state, bench_plpgsql.item_counts,
             bench_plpgsql.pair_counts, bench_plpgsql.customer_totals;
    INSERT INTO bench_plpgsql.customer_items SELECT * FROM personalize.customer_items;
    INSERT INTO bench_plpgsql.customer_state SELECT customer_id, items, model_items FROM personalize.customer_state;
    INSERT INTO bench_plpgsql.item_counts SELECT * FROM personalize.item_counts;
    INSERT INTO bench_plpgsql.pair_counts SELECT * FROM personalize.pair_counts;
    INSERT INTO bench_plpgsql.customer_totals SELECT * FROM personalize.customer_totals;
$$;

-- rows where its pair and item counts differ from personalize's (0 and 0: the same model)
CREATE FUNCTION bench_plpgsql.diff_from_model(OUT pairs bigint, OUT items bigint) LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM bench_plpgsql.pair_counts x
            FULL JOIN personalize.pair_counts y USING (product_a, product_b)
            WHERE x.customers IS DISTINCT FROM y.customers),
           (SELECT count(*) FROM bench_plpgsql.item_counts x
            FULL JOIN personalize.item_counts y USING (product_id)
            WHERE x.customers IS DISTINCT FROM y.customers);
$$;

CREATE FUNCTION bench_plpgsql.on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    cap integer;
    w double precision;
    n_items integer;
    n_model integer;
    in_model boolean;
BEGIN
    SELECT s.max_items_per_customer INTO cap FROM personalize.model_settings s;
    SELECT e.weight INTO w FROM personalize.event_types e WHERE e.event_type = NEW.event_type;

    -- the customer's row: created or locked
    INSERT INTO bench_plpgsql.customer_state AS s (customer_id, items, model_items)
    VALUES (NEW.customer_id, 0, 0)
    ON CONFLICT (customer_id) DO UPDATE SET items = s.items
    RETURNING s.items, s.model_items INTO n_items, n_model;

    -- a product the customer already has: only its history row changes
    UPDATE bench_plpgsql.customer_items ci
       SET events = ci.events + 1,
           purchases = ci.purchases + (NEW.event_type = 'purchase')::integer,
           weight = ci.weight + w,
           first_interaction_id = least(ci.first_interaction_id, NEW.interaction_id),
           last_at = greatest(ci.last_at, NEW.occurred_at)
     WHERE ci.customer_id = NEW.customer_id AND ci.product_id = NEW.product_id;
    IF FOUND THEN
        RETURN NULL;
    END IF;

    -- a new product: in the model while the customer has fewer than cap in it
    in_model := n_model < cap;
    IF in_model THEN
        INSERT INTO bench_plpgsql.pair_counts AS pc (product_a, product_b, customers)
        SELECT least(ci.product_id, NEW.product_id), greatest(ci.product_id, NEW.product_id), 1
        FROM bench_plpgsql.customer_items ci
        WHERE ci.customer_id = NEW.customer_id AND ci.in_model
        ORDER BY 1, 2
        ON CONFLICT (product_a, product_b) DO UPDATE SET customers = pc.customers + 1;

        INSERT INTO bench_plpgsql.item_counts AS ic (product_id, customers) VALUES (NEW.product_id, 1)
        ON CONFLICT (product_id) DO UPDATE SET customers = ic.customers + 1;

        IF n_model = 0 THEN
            UPDATE bench_plpgsql.customer_totals t SET customers = t.customers + 1
            WHERE t.shard = ((NEW.customer_id % 16) + 16) % 16;
        END IF;
    END IF;
    INSERT INTO bench_plpgsql.customer_items
        (customer_id, product_id, events, purchases, weight, first_interaction_id, last_at, in_model)
    VALUES (NEW.customer_id, NEW.product_id, 1, (NEW.event_type = 'purchase')::integer, w,
            NEW.interaction_id, NEW.occurred_at, in_model);
    UPDATE bench_plpgsql.customer_state s
       SET items = n_items + 1, model_items = n_model + in_model::integer
     WHERE s.customer_id = NEW.customer_id;
    RETURN NULL;
END $$;

CREATE TRIGGER bench_plpgsql_model AFTER INSERT ON personalize.interactions
    FOR EACH ROW EXECUTE FUNCTION bench_plpgsql.on_insert();
ALTER TABLE personalize.interactions DISABLE TRIGGER bench_plpgsql_model;
