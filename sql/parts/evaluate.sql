------------------------------------------------------------------------------
-- Offline evaluation on the shop's own events (issue 13): evaluate() scores
-- variants as recommend() would have served them at a past cut; tune() sweeps a
-- variant's parameters with it. The model as of the cut is built in the session's
-- temporary schema (pg_temp.personalize_eval_*); the live model is never written.
------------------------------------------------------------------------------

-- recommend(customer_id, variant, k) reading the temporary model as of the cut
-- (src/evaluate.c); only evaluate() and tune() call it, with the tables built.
CREATE FUNCTION @extschema@._recommend_at_cut(customer_id bigint, variant text, k integer)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_recommend_at_cut';

-- Drop the temporary tables of an evaluation (they are dropped at the end of one; a
-- failed one leaves none either, its transaction rolls them back).
CREATE FUNCTION @extschema@._evaluation_drop() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customer_items', 'item_counts', 'pair_counts', 'neighbors', 'dirty_products',
                             'popular_scores', 'llm_recommendations', 'variants', 'heldout', 'test', 'recs'] LOOP
        IF to_regclass('pg_temp.personalize_eval_' || t) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', 'personalize_eval_' || t);
        END IF;
    END LOOP;
END $$;

-- Check evaluate()'s and tune()'s common arguments (22004, 22023).
CREATE FUNCTION @extschema@._evaluation_check(cut timestamptz, k integer) RETURNS void
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- it needs every event in one database: a shard holds some customers', the model server none
    PERFORM @extschema@._role_refusal('evaluate() and tune()', ARRAY['shard', 'model'],
        'Evaluate on a single server holding every event, e.g. a restored copy of the shards'' events (docs/scaling.md).');
    IF cut IS NULL THEN
        RAISE EXCEPTION 'cut must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'The cut splits the events: the model learns from those before it and is scored on the purchases after it.';
    END IF;
    IF NOT isfinite(cut) THEN
        RAISE EXCEPTION 'cut must be a finite time'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', cut),
                  HINT = 'For example now() - interval ''30 days''.';
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', coalesce(k::text, 'NULL')),
                  HINT = 'k is the length of the scored lists, as in recommend().';
    END IF;
END $$;

-- The neighbour lists of the model as of the cut under the given measures: the
-- co-occurrence measures from its counts, 'ease' by _ease_lists() from them with the
-- given lambda, 'content' copied from the live lists (they come from embeddings).
CREATE FUNCTION @extschema@._evaluation_lists(measures text[], ease_lambda double precision) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n_total bigint;
    ids bigint[];
    m text;
    n bigint;
BEGIN
    SELECT count(DISTINCT ci.customer_id) INTO n_total FROM pg_temp.personalize_eval_customer_items ci WHERE ci.in_model;
    SELECT array_agg(ic.product_id ORDER BY ic.product_id) INTO ids FROM pg_temp.personalize_eval_item_counts ic;
    FOREACH m IN ARRAY coalesce(measures, '{}') LOOP
        DELETE FROM pg_temp.personalize_eval_neighbors e WHERE e.measure = m;
        IF m = 'content' THEN
            INSERT INTO pg_temp.personalize_eval_neighbors SELECT * FROM @extschema@.neighbors x WHERE x.measure = 'content';
        ELSIF m = 'ease' THEN
            INSERT INTO pg_temp.personalize_eval_neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT 'ease', l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM @extschema@._ease_scaled_lists('pg_temp.personalize_eval_item_counts', 'pg_temp.personalize_eval_pair_counts',
                                         current_setting('personalize.ease_products')::integer,
                                         coalesce(ease_lambda, current_setting('personalize.ease_lambda')::double precision),
                                         current_setting('personalize.ease_k')::integer) l;
        ELSIF ids IS NOT NULL THEN
            INSERT INTO pg_temp.personalize_eval_neighbors (measure, product_id, neighbor_ids, scores, counts)
            SELECT l.measure, l.product_id, l.neighbor_ids, l.scores, l.counts
            FROM @extschema@._neighbor_lists('pg_temp.personalize_eval_pair_counts', 'pg_temp.personalize_eval_item_counts',
                                             n_total, ARRAY[m], ids) l;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        RAISE NOTICE 'evaluate: % lists under "%"', n, m;
    END LOOP;
    ANALYZE pg_temp.personalize_eval_neighbors;
    RETURN n_total;
END $$;

-- Build the model as of the cut in temporary tables: the customers' histories, product
-- and pair counts (the same rules as rebuild(), with the model's max_items_per_customer),
-- the neighbour lists of the measures, the popularity list with the window of the live
-- one ending at the cut, no dirty products, no LLM answers; the variants copied. And the
-- test set: each customer with history before the cut and the products they first
-- bought at or after it (bought before: not scored, recommend() excludes them); 22023 when
-- it is empty.
CREATE FUNCTION @extschema@._evaluation_model(cut timestamptz, measures text[]) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cap integer := (SELECT s.max_items_per_customer FROM @extschema@.model_settings s);
    window_length interval := coalesce((SELECT make_interval(secs => ps.window_days * 86400) FROM @extschema@.popular_scores ps),
                                       interval '7 days');
BEGIN
    PERFORM @extschema@._evaluation_drop();
    PERFORM set_config('application_name', 'personalize.evaluate: model as of the cut', true);
    CREATE TEMP TABLE personalize_eval_customer_items (LIKE @extschema@.customer_items INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_customer_items SELECT * FROM @extschema@._customer_items_as_of(cut, cap);
    ANALYZE pg_temp.personalize_eval_customer_items;
    CREATE TEMP TABLE personalize_eval_item_counts AS
        SELECT ci.product_id, count(*)::bigint AS customers
        FROM pg_temp.personalize_eval_customer_items ci WHERE ci.in_model GROUP BY ci.product_id;
    ALTER TABLE pg_temp.personalize_eval_item_counts ADD PRIMARY KEY (product_id);
    CREATE TEMP TABLE personalize_eval_pair_counts AS
        SELECT a.product_id AS product_a, b.product_id AS product_b, count(*)::bigint AS customers
        FROM pg_temp.personalize_eval_customer_items a
        JOIN pg_temp.personalize_eval_customer_items b ON b.customer_id = a.customer_id AND b.product_id > a.product_id
        WHERE a.in_model AND b.in_model
        GROUP BY a.product_id, b.product_id;
    ALTER TABLE pg_temp.personalize_eval_pair_counts ADD PRIMARY KEY (product_a, product_b);
    CREATE INDEX ON pg_temp.personalize_eval_pair_counts (product_b);
    ANALYZE pg_temp.personalize_eval_item_counts;
    ANALYZE pg_temp.personalize_eval_pair_counts;
    RAISE NOTICE 'evaluate: model as of %: % customer products, % products, % pairs', cut,
        (SELECT count(*) FROM pg_temp.personalize_eval_customer_items),
        (SELECT count(*) FROM pg_temp.personalize_eval_item_counts),
        (SELECT count(*) FROM pg_temp.personalize_eval_pair_counts);

    CREATE TEMP TABLE personalize_eval_neighbors (LIKE @extschema@.neighbors INCLUDING DEFAULTS INCLUDING INDEXES);
    PERFORM set_config('application_name', 'personalize.evaluate: neighbour lists as of the cut', true);
    PERFORM @extschema@._evaluation_lists(measures, NULL);
    CREATE TEMP TABLE personalize_eval_dirty_products (LIKE @extschema@.dirty_products INCLUDING DEFAULTS INCLUDING INDEXES);
    CREATE TEMP TABLE personalize_eval_llm_recommendations
        (LIKE @extschema@.llm_recommendations INCLUDING DEFAULTS INCLUDING INDEXES);
    CREATE TEMP TABLE personalize_eval_variants (LIKE @extschema@.variants INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_variants SELECT * FROM @extschema@.variants;
    CREATE TEMP TABLE personalize_eval_popular_scores (LIKE @extschema@.popular_scores INCLUDING DEFAULTS INCLUDING INDEXES);
    INSERT INTO pg_temp.personalize_eval_popular_scores (product_ids, scores, window_days)
    SELECT coalesce(array_agg(l.product_id ORDER BY l.rank), '{}'), coalesce(array_agg(l.score ORDER BY l.rank), '{}'),
           extract(epoch FROM window_length)::double precision / 86400
    FROM @extschema@._popular_list(cut, window_length, 'pg_temp.personalize_eval_item_counts', false) l;

    CREATE TEMP TABLE personalize_eval_heldout AS
        SELECT DISTINCT e.customer_id, e.product_id
        FROM (SELECT x.customer_id, x.product_id FROM @extschema@.interactions x
              WHERE x.event_type = 'purchase' AND x.occurred_at >= cut
              UNION ALL
              SELECT a.customer_id, a.product_id FROM @extschema@.interactions_archive a
              WHERE a.event_type = 'purchase' AND a.occurred_at >= cut) e
        WHERE EXISTS (SELECT FROM pg_temp.personalize_eval_customer_items h WHERE h.customer_id = e.customer_id)
          AND NOT EXISTS (SELECT FROM pg_temp.personalize_eval_customer_items h
                          WHERE h.customer_id = e.customer_id AND h.product_id = e.product_id AND h.purchases > 0);
    ALTER TABLE pg_temp.personalize_eval_heldout ADD PRIMARY KEY (customer_id, product_id);
    CREATE TEMP TABLE personalize_eval_test AS
        SELECT h.customer_id, count(*) AS n_heldout FROM pg_temp.personalize_eval_heldout h GROUP BY h.customer_id;
    ALTER TABLE pg_temp.personalize_eval_test ADD PRIMARY KEY (customer_id);
    CREATE TEMP TABLE personalize_eval_recs (customer_id bigint, rank bigint, product_id bigint);
    ANALYZE pg_temp.personalize_eval_heldout;
    ANALYZE pg_temp.personalize_eval_test;
    IF NOT EXISTS (SELECT FROM pg_temp.personalize_eval_test) THEN
        -- the error rolls the temporary tables back with the (sub)transaction
        RAISE EXCEPTION 'no customer to score at cut %', cut
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'No customer has events before the cut and a purchase of a new product at or after it.',
                  HINT = 'Choose a cut with purchases on both sides, for example 30 days before the last one.';
    END IF;
    RAISE NOTICE 'evaluate: % test customers, % held-out purchases',
        (SELECT count(*) FROM pg_temp.personalize_eval_test), (SELECT count(*) FROM pg_temp.personalize_eval_heldout);
END $$;

-- Score one variant of pg_temp.personalize_eval_variants on the test set: its top k for
-- every test customer as of the cut, then the metrics (binary relevance).
CREATE FUNCTION @extschema@._evaluation_score(variant text, k integer)
    RETURNS TABLE (customers bigint, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    batch bigint[];
    done bigint := 0;
    total bigint := (SELECT count(*) FROM pg_temp.personalize_eval_test);
    last_notice timestamptz := clock_timestamp();
BEGIN
    TRUNCATE pg_temp.personalize_eval_recs;
    FOR batch IN SELECT array_agg(t.customer_id ORDER BY t.customer_id)
                 FROM (SELECT t.customer_id, (row_number() OVER (ORDER BY t.customer_id) - 1) / 500 AS chunk
                       FROM pg_temp.personalize_eval_test t) t
                 GROUP BY t.chunk ORDER BY t.chunk LOOP
        INSERT INTO pg_temp.personalize_eval_recs (customer_id, rank, product_id)
        SELECT c.id, r.ord, r.product_id
        FROM unnest(batch) AS c(id),
             LATERAL @extschema@._recommend_at_cut(c.id, variant, k) WITH ORDINALITY AS r(product_id, score, reason, ord);
        done := done + cardinality(batch);
        PERFORM set_config('application_name', format('personalize.evaluate: %s, %s of %s customers', variant, done, total), true);
        IF clock_timestamp() - last_notice > interval '5 seconds' THEN
            RAISE NOTICE 'evaluate: variant "%": % of % customers scored', variant, done, total;
            last_notice := clock_timestamp();
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT count(*), avg((s.hits > 0)::integer)::double precision, avg(s.hits::double precision / k),
           avg(s.hits::double precision / s.n_heldout), avg(s.dcg / s.idcg),
           (SELECT count(DISTINCT r.product_id) FROM pg_temp.personalize_eval_recs r)::double precision
               / nullif((SELECT count(*) FROM @extschema@.products p WHERE p.active), 0)
    FROM (SELECT t.customer_id, t.n_heldout, count(h.product_id) AS hits,
                 coalesce(sum(1 / log(2, r.rank + 1)) FILTER (WHERE h.product_id IS NOT NULL), 0)::double precision AS dcg,
                 (SELECT sum(1 / log(2, i + 1)) FROM generate_series(1, least(k, t.n_heldout)::integer) i)::double precision AS idcg
          FROM pg_temp.personalize_eval_test t
          LEFT JOIN pg_temp.personalize_eval_recs r ON r.customer_id = t.customer_id
          LEFT JOIN pg_temp.personalize_eval_heldout h ON h.customer_id = r.customer_id AND h.product_id = r.product_id
          GROUP BY t.customer_id, t.n_heldout) s;
END $$;

-- The variants an evaluation scores, checked: all but the llm ones when NULL.
CREATE FUNCTION @extschema@._evaluation_variants(variants text[]) RETURNS text[]
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v text;
    alg text;
BEGIN
    IF variants IS NULL THEN
        RETURN (SELECT array_agg(x.name ORDER BY x.name) FROM @extschema@.variants x WHERE x.algorithm <> 'llm');
    END IF;
    IF cardinality(variants) = 0 OR cardinality(variants) > 100 OR array_position(variants, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'variants must name 1 to 100 variants, or be NULL for all'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = CASE WHEN array_position(variants, NULL) IS NOT NULL THEN 'A name is NULL.'
                                ELSE format('Got %s names.', cardinality(variants)) END,
                  HINT = 'Pass NULL to score every variant.';
    END IF;
    FOREACH v IN ARRAY variants LOOP
        SELECT x.algorithm INTO alg FROM @extschema@.variants x WHERE x.name = v;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'variant "%" does not exist', @extschema@._echo(v)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'SELECT name FROM personalize.variants lists them.';
        ELSIF alg = 'llm' THEN
            RAISE EXCEPTION 'variant "%" cannot be evaluated at a past cut', @extschema@._echo(v)
                USING ERRCODE = 'feature_not_supported',
                      DETAIL = 'Its answers were generated from each customer''s history when the LLM was asked, which may be after the cut.',
                      HINT = 'Compare it online with an experiment (personalize.create_experiment()).';
        END IF;
    END LOOP;
    RETURN (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(variants) x);
END $$;

-- The measures the lists of these variants need (as the refresh computes them; 'ease'
-- lists fall back on 'llr' ones), and always 'content': those lists come from embeddings,
-- are copied as they are, and every cooccurrence or hybrid variant reads them unless its
-- content_weight is 0 (0.5 by default).
CREATE FUNCTION @extschema@._evaluation_measures(variants text[]) RETURNS text[]
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(DISTINCT m.measure ORDER BY m.measure), '{}')
    FROM (SELECT x.measure FROM @extschema@.variants v,
                 LATERAL (SELECT @extschema@._validate_variant(v.name, v.algorithm, v.params) AS measure) y,
                 LATERAL unnest(CASE WHEN y.measure = 'ease' THEN ARRAY['ease', 'llr'] ELSE ARRAY[y.measure] END) AS x(measure)
          WHERE v.name = ANY (variants)
          UNION ALL
          SELECT 'content') m
    WHERE m.measure IS NOT NULL
$$;

CREATE FUNCTION @extschema@.evaluate(cut timestamptz, variants text[] DEFAULT NULL, k integer DEFAULT 10)
    RETURNS TABLE (variant text, customers bigint, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names text[];
    v text;
    started timestamptz := clock_timestamp();
    old_as_of text := current_setting('personalize.as_of', true);
    old_app text := current_setting('application_name');
    results jsonb := '[]';
BEGIN
    PERFORM @extschema@._evaluation_check(cut, k);
    names := @extschema@._evaluation_variants(variants);
    PERFORM @extschema@._evaluation_model(cut, @extschema@._evaluation_measures(names));
    PERFORM set_config('personalize.as_of', cut::text, true);
    FOREACH v IN ARRAY names LOOP
        SELECT v, s.* INTO variant, customers, hit_rate, "precision", recall, ndcg, coverage
        FROM @extschema@._evaluation_score(v, k) s;
        results := results || jsonb_build_object('variant', v, 'customers', customers, 'hit_rate', hit_rate,
                                                 'precision', "precision", 'recall', recall, 'ndcg', ndcg, 'coverage', coverage);
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('personalize.as_of', coalesce(old_as_of, ''), true);
    PERFORM set_config('application_name', old_app, true);
    PERFORM @extschema@._evaluation_drop();
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('evaluate', started, cardinality(names), jsonb_build_object('cut', cut, 'k', k, 'results', results));
    RAISE NOTICE 'evaluate: % variants scored in % s', cardinality(names),
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
END $$;
COMMENT ON FUNCTION @extschema@.evaluate(timestamptz, text[], integer) IS
    'Offline quality of variants on this database''s events: a model is built from the events before cut only (in temporary tables; the live model is not touched), and each customer with history before cut is scored on the products first bought at or after it. One row per variant (NULL: every variant but llm ones): hit rate, precision, recall and NDCG at k, catalog coverage.';

-- The grid tune() sweeps for a variant: each parameter's values, tried one at a time
-- from the variant's own parameters (docs/reference.md, "tune"). ease_lambda is not a
-- variant parameter but the setting personalize.ease_lambda: swept for variants that
-- serve EASE lists.
CREATE FUNCTION @extschema@._tune_grid(algorithm text, ease boolean)
    RETURNS TABLE (key text, value jsonb)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.key, g.value::jsonb FROM (VALUES
        ('half_life_days', 'null'), ('half_life_days', '30'), ('half_life_days', '90'), ('half_life_days', '365'),
        ('history_items', '20'), ('history_items', '50'), ('history_items', '200'), ('history_items', '1000'),
        ('measure', '"llr"'), ('measure', '"cosine"'), ('measure', '"jaccard"'), ('measure', '"ease"'),
        ('popularity_weight', '0.1'), ('popularity_weight', '0.2'), ('popularity_weight', '0.3'), ('popularity_weight', '0.4'),
        ('ease_lambda', '50'), ('ease_lambda', '200'), ('ease_lambda', '500'), ('ease_lambda', '2000')
    ) AS g(key, value)
    WHERE algorithm IN ('cooccurrence', 'hybrid') AND (g.key <> 'popularity_weight' OR algorithm = 'hybrid')
      AND (g.key <> 'ease_lambda' OR ease)
$$;

-- Score params as a temporary variant of the evaluation (checked like create_variant()),
-- with the EASE lists of the model as of the cut rebuilt first when its ease_lambda (a
-- setting, not a parameter) differs from the lists' lambda.
CREATE FUNCTION @extschema@._tune_try(algorithm text, params jsonb, k integer)
    RETURNS TABLE (hit_rate double precision, "precision" double precision, recall double precision,
                   ndcg double precision, coverage double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lambda double precision := coalesce((params ->> 'ease_lambda')::double precision,
                                        current_setting('personalize.ease_lambda')::double precision);
BEGIN
    PERFORM @extschema@._validate_variant('tune_candidate', algorithm, params - 'ease_lambda');
    IF params ->> 'measure' = 'ease' AND lambda IS DISTINCT FROM current_setting('personalize_eval.ease_lambda', true)::double precision THEN
        PERFORM @extschema@._evaluation_lists(ARRAY['ease'], lambda);
        PERFORM set_config('personalize_eval.ease_lambda', lambda::text, true);
    END IF;
    DELETE FROM pg_temp.personalize_eval_variants v WHERE v.name = 'tune_candidate';
    INSERT INTO pg_temp.personalize_eval_variants (name, algorithm, params)
    VALUES ('tune_candidate', algorithm, params - 'ease_lambda');
    RETURN QUERY SELECT s.hit_rate, s.precision, s.recall, s.ndcg, s.coverage
                 FROM @extschema@._evaluation_score('tune_candidate', k) s;
END $$;

-- The best value of each parameter that beat the current hit rate, as one jsonb
CREATE FUNCTION @extschema@._tune_best() RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(b.changed, b.value), '{}')
            FROM (SELECT DISTINCT ON (t.changed) t.changed, t.params -> t.changed AS value, t.hit_rate
                  FROM pg_temp.personalize_tune_results t WHERE t.changed IS NOT NULL
                  ORDER BY t.changed, t.hit_rate DESC, t.ndcg DESC) b
            WHERE b.hit_rate > (SELECT c.hit_rate FROM pg_temp.personalize_tune_results c WHERE c.changed IS NULL));
END $$;

-- Every setting of the grid scored into pg_temp.personalize_tune_results: the variant as it
-- is, one parameter at a time, then the best values together when more than one improved.
CREATE FUNCTION @extschema@._tune_sweep(alg text, base jsonb, ease boolean, k integer) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    best jsonb;
    candidate jsonb;
BEGIN
    INSERT INTO pg_temp.personalize_tune_results SELECT base, NULL, s.* FROM @extschema@._tune_try(alg, base, k) s;
    FOR g IN SELECT * FROM @extschema@._tune_grid(alg, ease) LOOP
        candidate := base || jsonb_build_object(g.key, g.value);
        CONTINUE WHEN base -> g.key IS NOT DISTINCT FROM g.value
                   OR EXISTS (SELECT FROM pg_temp.personalize_tune_results t WHERE t.params = candidate);
        RAISE NOTICE 'tune: % = %', g.key, g.value;
        INSERT INTO pg_temp.personalize_tune_results
        SELECT candidate, g.key, s.* FROM @extschema@._tune_try(alg, candidate, k) s;
    END LOOP;
    best := @extschema@._tune_best();
    IF (SELECT count(*) FROM jsonb_object_keys(best)) > 1 THEN
        RAISE NOTICE 'tune: the best value of each parameter together: %', best;
        INSERT INTO pg_temp.personalize_tune_results
        SELECT base || best, 'combined', s.* FROM @extschema@._tune_try(alg, base || best, k) s;
    END IF;
END $$;

CREATE FUNCTION @extschema@.tune(variant text, cut timestamptz, k integer DEFAULT 10)
    RETURNS TABLE (rank integer, params jsonb, changed text, hit_rate double precision, "precision" double precision,
                   recall double precision, ndcg double precision, coverage double precision, vs_current double precision)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    alg text;
    base jsonb;
    ease boolean;
    r record;
    started timestamptz := clock_timestamp();
    old_as_of text := current_setting('personalize.as_of', true);
    old_app text := current_setting('application_name');
BEGIN
    PERFORM @extschema@._evaluation_check(cut, k);
    PERFORM @extschema@._evaluation_variants(ARRAY[variant]);
    SELECT v.algorithm, v.params INTO alg, base FROM @extschema@.variants v WHERE v.name = tune.variant;
    ease := base ->> 'measure' = 'ease';
    IF NOT EXISTS (SELECT FROM @extschema@._tune_grid(alg, ease)) THEN
        RAISE EXCEPTION 'variant "%" has no parameters to tune', @extschema@._echo(variant)
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Its algorithm is %s.', alg),
                  HINT = 'tune() sweeps cooccurrence and hybrid variants; compare others with evaluate().';
    END IF;
    PERFORM @extschema@._evaluation_model(cut,
        ARRAY(SELECT DISTINCT m FROM (SELECT g.value ->> 0 FROM @extschema@._tune_grid(alg, ease) g WHERE g.key = 'measure'
                                      UNION ALL SELECT x FROM unnest(@extschema@._evaluation_measures(ARRAY[variant])) x) s(m)));
    PERFORM set_config('personalize_eval.ease_lambda', current_setting('personalize.ease_lambda'), true);
    PERFORM set_config('personalize.as_of', cut::text, true);
    CREATE TEMP TABLE personalize_tune_results (params jsonb, changed text, hit_rate double precision,
        "precision" double precision, recall double precision, ndcg double precision, coverage double precision)
        ON COMMIT DROP;
    PERFORM @extschema@._tune_sweep(alg, base, ease, k);
    PERFORM set_config('personalize.as_of', coalesce(old_as_of, ''), true);
    PERFORM set_config('application_name', old_app, true);
    PERFORM @extschema@._evaluation_drop();

    RETURN QUERY
    SELECT (row_number() OVER (ORDER BY t.hit_rate DESC, t.ndcg DESC, t.changed NULLS FIRST, t.params::text))::integer,
           t.params, coalesce(t.changed, '(current)'), t.hit_rate, t.precision, t.recall, t.ndcg, t.coverage,
           t.hit_rate / nullif((SELECT c.hit_rate FROM pg_temp.personalize_tune_results c WHERE c.changed IS NULL), 0)
    FROM pg_temp.personalize_tune_results t ORDER BY 1;
    SELECT t.params, t.hit_rate INTO r FROM pg_temp.personalize_tune_results t
    ORDER BY t.hit_rate DESC, t.ndcg DESC, t.changed NULLS FIRST, t.params::text LIMIT 1;
    INSERT INTO @extschema@.maintenance_runs (job, started_at, items, details)
    VALUES ('tune', started, (SELECT count(*) FROM pg_temp.personalize_tune_results),
            jsonb_build_object('variant', variant, 'cut', cut, 'k', k, 'current', base, 'best', r.params, 'best_hit_rate', r.hit_rate));
    IF r.params IS DISTINCT FROM base THEN
        RAISE NOTICE 'tune: the best parameters of variant "%" at this cut are %', variant, r.params
            USING HINT = format('Apply them with: UPDATE personalize.variants SET params = %L WHERE name = %L;%s  Or try them as a new variant in an experiment.',
                                r.params - 'ease_lambda', variant,
                                CASE WHEN r.params ? 'ease_lambda'
                                     THEN format(' ALTER SYSTEM SET personalize.ease_lambda = %s; then CALL personalize.refresh_ease().', r.params ->> 'ease_lambda')
                                     ELSE '' END);
    ELSE
        RAISE NOTICE 'tune: variant "%" already has the best parameters of the grid at this cut', variant;
    END IF;
    DROP TABLE pg_temp.personalize_tune_results;
END $$;
COMMENT ON FUNCTION @extschema@.tune(text, timestamptz, integer) IS
    'Sweep a cooccurrence or hybrid variant''s parameters (decay, history size, measure, popularity weight, and personalize.ease_lambda for EASE: one at a time, then the best values together) with evaluate()''s protocol at the cut; returns every setting tried, best first. It recommends; apply the winner with UPDATE personalize.variants.';
