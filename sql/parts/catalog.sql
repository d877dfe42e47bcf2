------------------------------------------------------------------------------
-- Catalog, customers, events
------------------------------------------------------------------------------

CREATE TABLE @extschema@.products (
    product_id  bigint PRIMARY KEY,
    sku         text UNIQUE,
    name        text NOT NULL,
    category    text,
    price       numeric(12,2),
    active      boolean NOT NULL DEFAULT true,
    attributes  jsonb,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT products_price_check CHECK (price OPERATOR(pg_catalog.>=) 0
        AND price OPERATOR(pg_catalog.<>) 'NaN'::pg_catalog.numeric),
    CONSTRAINT products_name_check CHECK (pg_catalog.length(name) OPERATOR(pg_catalog.>) 0),
    CONSTRAINT products_attributes_check
        CHECK (attributes IS NULL OR pg_catalog.jsonb_typeof(attributes) OPERATOR(pg_catalog.=) 'object')
);
COMMENT ON TABLE @extschema@.products IS 'The product catalog: what can be recommended (only active products are).';
CREATE INDEX products_category_idx ON @extschema@.products (category) WHERE active;

CREATE TABLE @extschema@.customers (
    customer_id bigint PRIMARY KEY,
    country     text,
    attributes  jsonb,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT customers_attributes_check
        CHECK (attributes IS NULL OR pg_catalog.jsonb_typeof(attributes) OPERATOR(pg_catalog.=) 'object')
);
COMMENT ON TABLE @extschema@.customers IS 'Known customers. recommend() also answers for ids not in this table (anonymous visitors get popular products).';

CREATE TABLE @extschema@.event_types (
    event_type  text PRIMARY KEY,
    weight      double precision NOT NULL,
    description text,
    CONSTRAINT event_types_weight_check CHECK (weight OPERATOR(pg_catalog.>) 0 AND weight OPERATOR(pg_catalog.<=) 1000),
    CONSTRAINT event_types_name_check CHECK (event_type OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,31}$')
);
COMMENT ON TABLE @extschema@.event_types IS 'Interaction event types and the weight each carries in a customer''s history.';
INSERT INTO @extschema@.event_types (event_type, weight, description) VALUES
    ('view',     1.0, 'The customer viewed the product page.'),
    ('click',    2.0, 'The customer clicked the product in a list or a recommendation.'),
    ('cart',     4.0, 'The customer put the product in the cart.'),
    ('purchase', 8.0, 'The customer bought the product.');

CREATE TABLE @extschema@.interactions (
    -- ALWAYS: a client cannot choose ids (one ahead of the sequence would make later default
    -- inserts fail); the id guard trigger (model.sql) covers OVERRIDING SYSTEM VALUE and COPY
    interaction_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    bigint NOT NULL REFERENCES @extschema@.customers (customer_id),
    product_id     bigint NOT NULL REFERENCES @extschema@.products (product_id),
    event_type     text NOT NULL REFERENCES @extschema@.event_types (event_type),
    quantity       integer NOT NULL DEFAULT 1,
    occurred_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT interactions_quantity_check CHECK (quantity OPERATOR(pg_catalog.>) 0),
    -- a fixed (immutable) range: no +-infinity, no "zero time" 0001-01-01 or 1970-01-01 a
    -- client sends for "unknown"; written the same way in the update script (fresh = updated)
    CONSTRAINT interactions_occurred_at_range CHECK (
        occurred_at OPERATOR(pg_catalog.>=) '1990-01-01 00:00:00+00'::pg_catalog.timestamptz
        AND occurred_at OPERATOR(pg_catalog.<) '2200-01-01 00:00:00+00'::pg_catalog.timestamptz),
    -- issue 11: an optional idempotency key (last, as the update script adds it: fresh = updated)
    event_key      text,
    CONSTRAINT interactions_event_key_check CHECK (pg_catalog.length(event_key) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(event_key) OPERATOR(pg_catalog.<=) 200)
);
COMMENT ON TABLE @extschema@.interactions IS 'The high-volume event log: one row per view, click, cart or purchase.';
-- a customer's history (forget_customer, rebuild, the FK from customers) and a product's events
CREATE INDEX interactions_customer_product_idx ON @extschema@.interactions (customer_id, product_id);
CREATE INDEX interactions_product_idx ON @extschema@.interactions (product_id);
-- a retried event is a no-op in ingest() (ON CONFLICT DO NOTHING), a 23505 for a plain INSERT
CREATE UNIQUE INDEX interactions_event_key_idx ON @extschema@.interactions (event_key) WHERE event_key IS NOT NULL;
COMMENT ON COLUMN @extschema@.interactions.event_key IS
    'Optional idempotency key of the event (1 to 200 characters), unique when set: a retried event with the same key is a duplicate (skipped by ingest(), 23505 for a plain INSERT).';
-- no index on event_type: the FK to event_types is never cascaded in practice and an
-- index there would slow every insert into the event log

CREATE TABLE @extschema@.customer_feedback (
    feedback_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES @extschema@.customers (customer_id),
    product_id  bigint NOT NULL REFERENCES @extschema@.products (product_id),
    rating      smallint NOT NULL,
    comment     text,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT customer_feedback_rating_check CHECK (rating OPERATOR(pg_catalog.>=) 1 AND rating OPERATOR(pg_catalog.<=) 5)
);
COMMENT ON TABLE @extschema@.customer_feedback IS 'Ratings (1 to 5) and comments customers left on products.';
CREATE INDEX customer_feedback_product_idx ON @extschema@.customer_feedback (product_id);
CREATE INDEX customer_feedback_customer_idx ON @extschema@.customer_feedback (customer_id);

CREATE TABLE @extschema@.marketing_campaigns (
    campaign_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    product_id  bigint NOT NULL REFERENCES @extschema@.products (product_id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    boost       double precision NOT NULL DEFAULT 1.5,
    CONSTRAINT marketing_campaigns_boost_check CHECK (boost OPERATOR(pg_catalog.>) 0
        AND boost OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8),
    CONSTRAINT marketing_campaigns_period_check CHECK (ends_at OPERATOR(pg_catalog.>) starts_at),
    CONSTRAINT marketing_campaigns_name_check CHECK (pg_catalog.length(name) OPERATOR(pg_catalog.>) 0)
);
COMMENT ON TABLE @extschema@.marketing_campaigns IS 'Campaigns: while now() is between starts_at and ends_at, recommend() multiplies the product''s score by boost.';
CREATE INDEX marketing_campaigns_product_idx ON @extschema@.marketing_campaigns (product_id);
CREATE INDEX marketing_campaigns_period_idx ON @extschema@.marketing_campaigns (ends_at, starts_at);

-- keep products.updated_at true
CREATE FUNCTION @extschema@._touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END $$;
CREATE TRIGGER products_touch_updated_at BEFORE UPDATE ON @extschema@.products
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();

-- pg_dump keeps user data (and configuration rows the user added or changed)
SELECT pg_catalog.pg_extension_config_dump('@extschema@.products', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.customers', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.interactions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.interactions_interaction_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.customer_feedback', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.customer_feedback_feedback_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.marketing_campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.marketing_campaigns_campaign_id_seq', '');
-- the four built-in event types come from this script; only the ones a user adds are dumped
-- (as PostGIS does for spatial_ref_sys): a changed built-in weight must be set again after a restore
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_types',
    $$WHERE event_type NOT IN ('view', 'click', 'cart', 'purchase')$$);


-- range scans of the event log by time (popularity window, retention)
CREATE INDEX interactions_occurred_at_brin ON @extschema@.interactions USING brin (occurred_at);

-- Right to erasure: remove every row of the extension that names the customer.
CREATE FUNCTION @extschema@.forget_customer(customer_id bigint)
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
