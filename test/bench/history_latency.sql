-- recommend() cost by the size of the customer's history, timed inside the server
-- (clock_timestamp() around each call: no client round trip, no pgbench). Up to 300
-- customers per bucket, picked by a hash of their id; each is called once to warm the
-- cache, then timed. Output: bucket, share of customers, calls, p50, p99, max (ms).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench;
CREATE OR REPLACE FUNCTION bench.history_latency(per_bucket integer DEFAULT 300)
RETURNS TABLE (bucket text, share text, calls integer, p50 numeric, p99 numeric, max_ms numeric)
LANGUAGE plpgsql AS $$
DECLARE
    b record;
    c bigint;
    t0 timestamptz;
    ms double precision[];
    total bigint;
BEGIN
    SELECT count(*) INTO total FROM personalize.customer_state s WHERE s.items > 0;
    FOR b IN SELECT * FROM (VALUES (1, 1, 9, '1-9'), (2, 10, 99, '10-99'), (3, 100, 999, '100-999'),
                                   (4, 1000, 1000000000, '1000+')) AS v(o, lo, hi, name) ORDER BY o LOOP
        ms := '{}';
        FOR c IN SELECT s.customer_id FROM personalize.customer_state s
                 WHERE s.items BETWEEN b.lo AND b.hi ORDER BY hashint8(s.customer_id), s.customer_id
                 LIMIT per_bucket LOOP
            PERFORM count(*) FROM personalize.recommend(c);
            t0 := clock_timestamp();
            PERFORM count(*) FROM personalize.recommend(c);
            ms := ms || extract(epoch FROM clock_timestamp() - t0)::double precision * 1000;
        END LOOP;
        CONTINUE WHEN cardinality(ms) = 0;
        bucket := b.name;
        calls := cardinality(ms);
        share := round(100.0 * (SELECT count(*) FROM personalize.customer_state s
                                WHERE s.items BETWEEN b.lo AND b.hi) / greatest(total, 1), 2) || '%';
        SELECT round((percentile_disc(0.5) WITHIN GROUP (ORDER BY x))::numeric, 3),
               round((percentile_disc(0.99) WITHIN GROUP (ORDER BY x))::numeric, 3),
               round(max(x)::numeric, 3)
          INTO p50, p99, max_ms FROM unnest(ms) AS x;
        RETURN NEXT;
    END LOOP;
END $$;
SELECT * FROM bench.history_latency();
