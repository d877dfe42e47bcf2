------------------------------------------------------------------------------
-- personalize scale-out (issue 15): the router database's schema.
--
-- The router is a plain database with PL/Proxy and no personalize extension. It holds one
-- function per application call, with the shard function's name, argument list and result;
-- PL/Proxy runs the call on the shard that holds the customer. The cluster is the plproxy
-- server personalize_shards, created by contrib/sharding/personalize-layout:
--
--   CREATE SERVER personalize_shards FOREIGN DATA WRAPPER plproxy
--       OPTIONS (p0 'host=.. port=.. dbname=..', ..., p7 '...');
--   CREATE USER MAPPING FOR PUBLIC SERVER personalize_shards OPTIONS (user '...');
--
-- Partition i is bucket i: with 8 partitions PL/Proxy maps a hash h to partition h & 7,
-- and RUN ON hashint8(customer_id) gives hashint8(customer_id) & 7 = personalize.bucket_of()
-- on the shards. Several partitions may name the same shard (one connection is shared).
--
-- What PL/Proxy 2.10 does with these functions (checked on throw-away clusters):
-- * it sends every argument of the router function: an argument the caller left out is
--   filled from the router function's DEFAULT here, on the router, and the shard gets it
--   explicitly. The defaults below are therefore the shard functions' defaults (a default
--   evaluated here would be the router's: log_event()'s occurred_at defaults to NULL, which
--   the shard stamps with its own now()).
-- * the call on the shard is SELECT <result columns> FROM personalize.<name>($1::type, ...)
--   by position, so named notation (recommend(42, k => 5)) is resolved here.
-- * the shard runs the call in its own transaction (autocommit): a router transaction that
--   rolls back does not undo a log_event() that returned.
-- * a partition whose server is down fails the call at once (SQLSTATE XX000), the other
--   buckets keep working, and the next call after the server is back succeeds. PL/Proxy's
--   message names the partition's dbname in brackets and libpq's text names host and port:
--     PL/Proxy function personalize.recommend(10): [shard] PQconnectPoll: connection to
--     server at "10.0.0.7", port 5432 failed: Connection refused
--   A bucket being moved (personalize-layout move-bucket) points at a database named
--   personalize_bucket_<B>_is_moving, so its calls fail with
--     ... [personalize_bucket_3_is_moving] PQconnectPoll: connection to server at ... failed:
--     FATAL:  database "personalize_bucket_3_is_moving" does not exist
-- * RUN ON ANY picks a random partition and does not retry: while a shard is down, the
--   calls without a customer that land on its partitions fail too.
-- * an error raised on the shard comes back with its SQLSTATE, as
--   "personalize.<name>(<nargs>): [<dbname>] REMOTE ERROR: <message>", its hint as "Remote hint: ...".
-- * ALTER SERVER personalize_shards takes effect at the next call of every open session.
--
-- Loading: psql -v ON_ERROR_STOP=1 -f router.sql (by the layout script); it can run again.
------------------------------------------------------------------------------

CREATE EXTENSION IF NOT EXISTS plproxy;
CREATE SCHEMA IF NOT EXISTS personalize;

-- The shards' bucket of a customer (the extension's body): for the application or an
-- operator to see which partition (pN of personalize_shards) serves a customer.
CREATE OR REPLACE FUNCTION personalize.bucket_of(customer_id bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$SELECT pg_catalog.hashint8(customer_id) OPERATOR(pg_catalog.&) 7$$;
COMMENT ON FUNCTION personalize.bucket_of(bigint) IS
    'The bucket (0..7) of a customer: the partition pN of personalize_shards that serves the customer''s calls.';

-- recommend_for_items() takes an optional customer: with one, the call must run on the
-- customer's shard (it leaves out the customer's purchases, which only that shard holds);
-- without one, any shard answers (the catalog and the lists are the same on every shard).
CREATE OR REPLACE FUNCTION personalize.items_route(customer_id bigint) RETURNS integer
    LANGUAGE sql VOLATILE PARALLEL SAFE
    AS $$SELECT CASE WHEN customer_id IS NULL
                     THEN pg_catalog.floor(pg_catalog.random() * 8)::integer
                     ELSE pg_catalog.hashint8(customer_id) END$$;
COMMENT ON FUNCTION personalize.items_route(bigint) IS
    'PL/Proxy hash for recommend_for_items(): the customer''s hash when there is one, else a random partition.';

------------------------------------------------------------------------------
-- Calls with a customer: the customer's shard.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION personalize.recommend(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE plproxy ROWS 10 AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

CREATE OR REPLACE FUNCTION personalize.recommend_logged(customer_id bigint, k integer DEFAULT 10)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE plproxy ROWS 10 AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

CREATE OR REPLACE FUNCTION personalize.log_event(customer_id bigint, product_id bigint, event_type text DEFAULT 'view',
        occurred_at timestamptz DEFAULT NULL, quantity integer DEFAULT 1, event_key text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plproxy AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

CREATE OR REPLACE FUNCTION personalize.delete_events(customer_id bigint, product_id bigint, event_type text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plproxy AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

CREATE OR REPLACE FUNCTION personalize.erase_customer(customer_id bigint)
    RETURNS TABLE (interactions bigint, feedback bigint, customer boolean)
    LANGUAGE plproxy AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

-- STRICT as on the shards: a NULL argument gives NULL without a round trip
CREATE OR REPLACE FUNCTION personalize.assigned_variant(experiment text, customer_id bigint) RETURNS text
    LANGUAGE plproxy STRICT AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

CREATE OR REPLACE FUNCTION personalize.log_exposure(customer_id bigint, product_ids bigint[], variant text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plproxy AS $$
    CLUSTER 'personalize_shards';
    RUN ON hashint8(customer_id);
$$;

------------------------------------------------------------------------------
-- Calls without a customer: any shard (every shard holds the model's published catalog,
-- neighbour lists and popularity).
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION personalize.similar_items(product_id bigint, k integer DEFAULT 10, variant text DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE plproxy ROWS 10 AS $$
    CLUSTER 'personalize_shards';
    RUN ON ANY;
$$;

CREATE OR REPLACE FUNCTION personalize.recommend_for_items(product_ids bigint[], k integer DEFAULT 10, variant text DEFAULT NULL,
        customer_id bigint DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE plproxy ROWS 10 AS $$
    CLUSTER 'personalize_shards';
    RUN ON personalize.items_route(customer_id);
$$;

------------------------------------------------------------------------------
-- Privileges: nothing here is executable by PUBLIC. The DBA grants the calls to the
-- application role, and USAGE on the cluster (PL/Proxy looks up the caller's user mapping
-- on it), e.g.:
--   GRANT USAGE ON SCHEMA personalize TO app;
--   GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA personalize TO app;
--   GRANT USAGE ON FOREIGN SERVER personalize_shards TO app;
------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION personalize.bucket_of(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.items_route(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.recommend_logged(bigint, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.log_event(bigint, bigint, text, timestamptz, integer, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.delete_events(bigint, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.erase_customer(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.assigned_variant(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.log_exposure(bigint, bigint[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION personalize.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[]) FROM PUBLIC;
