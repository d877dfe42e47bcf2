-- Synthetic data for the personalize benchmarks: deterministic (seeded), in SQL only.
--
--   psql -v size=S|M|L [-v seed=42] [-v load=on|off] -f test/bench/generate.sql
--
-- size  customers  products    events
--   S      10,000     1,000    100,000
--   M     100,000    10,000  2,000,000
--   L   1,000,000   100,000 20,000,000
--
-- The model of the data:
--   * customer activity is a power law: event i picks its customer by Zipf rank with
--     exponent 0.7 (the most active customer of M has ~1% of all events, the median
--     one ~10 events), ranks scattered over the ids by a fixed permutation;
--   * product popularity is Zipf with exponent 1.0: half of the events pick a product by
--     its global rank, the other half by rank inside the customer's home category
--     (products / 100 categories, at least 10), so that co-occurrence has structure;
--   * event types: 75% view, 13% click, 7% cart, 5% purchase;
--   * timestamps rise with i over 120 days from 2024-01-01 (UTC), so interaction ids
--     follow time as they do when events stream in.
-- Every draw is hashint8extended(i, seed * 16 + stream): the same size and seed give the
-- same rows on every machine and in every run, whatever the plan or parallelism.
-- Zipf draws use the continuous inverse CDF (ranks 1..n), which is close to the discrete
-- law for these n.
--
-- load=on (the default) fills personalize.products, customers and interactions (which must
-- be empty) with the model triggers disabled, then runs personalize.rebuild().
-- load=off only (re)creates the bench.* functions: bench.gen_events(first, count, ...)
-- returns events first .. first+count-1 of the same stream (the ingest benchmark uses
-- events past the loaded ones).
\set ON_ERROR_STOP on
\if :{?size}
\else
\set size S
\endif
\if :{?seed}
\else
\set seed 42
\endif
\if :{?load}
\else
\set load on
\endif

SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench;

-- uniform [0, 1) from (i, stream)
CREATE OR REPLACE FUNCTION bench.u(i bigint, stream integer, seed integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (hashint8extended(i, seed::bigint * 16 + stream) & 4503599627370495)::double precision / 4503599627370496.0;

-- Zipf rank in 1..n with exponent s (continuous inverse CDF)
CREATE OR REPLACE FUNCTION bench.zipf(u double precision, n bigint, s double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN least(n, greatest(1, floor(CASE WHEN s = 1 THEN power(n::double precision, u)
                                       ELSE power(1 + u * (power(n::double precision, 1 - s) - 1), 1 / (1 - s)) END)::bigint));

-- a fixed permutation of 1..n (7919 is prime, n is 2^a 5^b here, so it is coprime)
CREATE OR REPLACE FUNCTION bench.perm(r bigint, n bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ((r - 1) * 7919) % n + 1;

CREATE OR REPLACE FUNCTION bench.size_of(size text, OUT customers bigint, OUT products bigint, OUT events bigint)
LANGUAGE sql IMMUTABLE
RETURN CASE upper(size) WHEN 'S' THEN ROW(10000::bigint, 1000::bigint, 100000::bigint)
                        WHEN 'M' THEN ROW(100000::bigint, 10000::bigint, 2000000::bigint)
                        WHEN 'L' THEN ROW(1000000::bigint, 100000::bigint, 20000000::bigint) END;

CREATE OR REPLACE FUNCTION bench.categories(products bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN greatest(10, products / 100);

-- events first .. first + count - 1 of the stream of a data set (total = its event count,
-- which fixes the time scale; events past total keep going forward in time)
CREATE OR REPLACE FUNCTION bench.gen_events(first bigint, count bigint, customers bigint, products bigint,
                                            total bigint, seed integer DEFAULT 42)
RETURNS TABLE (customer_id bigint, product_id bigint, event_type text, quantity integer, occurred_at timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT c.cust,
           CASE WHEN bench.u(g.i, 2, seed) < 0.5
                THEN (hashint8extended(c.cust, seed) & 1048575) % c.ncat + 1
                     + c.ncat * (bench.zipf(bench.u(g.i, 3, seed), products / c.ncat, 1.0) - 1)
                ELSE bench.perm(bench.zipf(bench.u(g.i, 3, seed), products, 1.0), products) END,
           CASE WHEN bench.u(g.i, 4, seed) < 0.75 THEN 'view'
                WHEN bench.u(g.i, 4, seed) < 0.88 THEN 'click'
                WHEN bench.u(g.i, 4, seed) < 0.95 THEN 'cart'
                ELSE 'purchase' END,
           1 + (bench.u(g.i, 5, seed) < 0.2)::integer * floor(bench.u(g.i, 6, seed) * 5)::integer,
           timestamptz '2024-01-01 00:00:00+00' + interval '120 days' * ((g.i - 1)::double precision / total)
    FROM generate_series(first, first + count - 1) AS g(i)
    CROSS JOIN LATERAL (SELECT bench.perm(bench.zipf(bench.u(g.i, 1, seed), customers, 0.7), customers) AS cust,
                               bench.categories(products) AS ncat) c
$$;

\if :load
SELECT customers AS nc, products AS np, events AS ne FROM bench.size_of(:'size') \gset
\echo generate: size :size (:nc customers, :np products, :ne events), seed :seed
DO $$
BEGIN
    IF EXISTS (SELECT FROM personalize.interactions) OR EXISTS (SELECT FROM personalize.products) THEN
        RAISE EXCEPTION 'personalize already holds data: generate into an empty database';
    END IF;
END $$;

INSERT INTO personalize.products (product_id, sku, name, category, price, created_at)
SELECT p, 'P' || lpad(p::text, 6, '0'), 'product ' || p, 'category ' || ((p - 1) % bench.categories(:np) + 1),
       round((1 + 99 * bench.u(p, 7, :seed))::numeric, 2), timestamptz '2023-12-01 00:00:00+00'
FROM generate_series(1, :np) AS p;

INSERT INTO personalize.customers (customer_id, country, created_at)
SELECT c, (ARRAY['GB', 'DE', 'FR', 'NL', 'ES', 'IT'])[1 + floor(bench.u(c, 8, :seed) * 6)::integer],
       timestamptz '2023-12-01 00:00:00+00'
FROM generate_series(1, :nc) AS c;

ALTER TABLE personalize.interactions DISABLE TRIGGER interactions_model_insert;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
SELECT * FROM bench.gen_events(1, :ne, :nc, :np, :ne, :seed);
ALTER TABLE personalize.interactions ENABLE TRIGGER interactions_model_insert;
VACUUM ANALYZE personalize.products, personalize.customers, personalize.interactions;
\echo generate: events loaded, rebuilding the model
RESET client_min_messages;
SELECT customers, products, pairs, round(seconds::numeric, 1) AS seconds FROM personalize.rebuild();
VACUUM ANALYZE personalize.customer_items, personalize.customer_state, personalize.item_counts_base,
               personalize.pair_counts_base, personalize.neighbors;
\endif
