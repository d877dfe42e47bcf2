------------------------------------------------------------------------------
-- Serving: recommend() in C (src/recommend.c); read-only
------------------------------------------------------------------------------

-- The request-time filters (src/filters.c) are optional named parameters, NULL for none:
-- recommend(c), recommend(c, 'hybrid', 5) and recommend(c, k => 5) work as in 0.1.0.
CREATE FUNCTION @extschema@.recommend(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_filtered';
COMMENT ON FUNCTION @extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Top k products for a customer under a variant (NULL: the running experiment''s arm for the customer, else the default variant), best first, with a reason a person can read; optional filters (exclude_products, categories, exclude_categories, min_price, max_price, attributes, exclude_interacted). Read-only.';

-- recommend() and the variant that served the call (an experiment's arm, the default
-- variant, or the one named): the application learns it without a second round trip.
CREATE FUNCTION @extschema@.recommend_served(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text, variant text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_served';
COMMENT ON FUNCTION @extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'recommend() with a fourth column: the variant that served the call. Read-only.';

-- A product page: the products bought with this one (src/items.c).
CREATE FUNCTION @extschema@.similar_items(product_id bigint, k integer DEFAULT 10, variant text DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_similar_items';
COMMENT ON FUNCTION @extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb) IS
    'Top k products for a product page: its co-occurrence (and content) neighbours under a variant (NULL: the default variant), never itself nor an inactive product; campaigns, category cap and filters apply. An unknown product is an error. Read-only.';

-- A cart: products for a set of products, for an anonymous visitor or a customer.
CREATE FUNCTION @extschema@.recommend_for_items(product_ids bigint[], k integer DEFAULT 10, variant text DEFAULT NULL,
        customer_id bigint DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend_for_items';
COMMENT ON FUNCTION @extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Top k products for a cart (at most 1000 products): their neighbours together, never an input product nor an inactive one, nor with customer_id the customer''s purchases; an empty cart gets the popular fill; an unknown product is an error. Read-only.';

-- Why a product was (or was not) recommended to a customer (src/explain.c).
CREATE FUNCTION @extschema@.explain(customer_id bigint, product_id bigint, variant text DEFAULT NULL,
        exclude_products bigint[] DEFAULT NULL, categories text[] DEFAULT NULL,
        exclude_categories text[] DEFAULT NULL, min_price numeric DEFAULT NULL,
        max_price numeric DEFAULT NULL, attributes jsonb DEFAULT NULL,
        exclude_interacted text[] DEFAULT NULL)
    RETURNS TABLE (component text, source_product_id bigint, detail text, value double precision)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_explain';
COMMENT ON FUNCTION @extschema@.explain(bigint, bigint, text, bigint[], text[], text[], numeric, numeric, jsonb, text[]) IS
    'Every contribution to the score recommend() gives the product for the customer under the same variant and filters (the values sum to it), and a rule row: its rank or why it is left out. Read-only.';

-- The serving settings a DBA changed (issue 12): empty after CREATE EXTENSION, one row once
-- set_default_variant() or set_impression_log() wrote it; dumped whole, so a restore keeps
-- them and collides with nothing. recommend(c, NULL) outside an experiment serves
-- default_variant ('hybrid' without a row).
CREATE TABLE @extschema@.serving_settings (
    singleton       boolean PRIMARY KEY DEFAULT true,
    default_variant text NOT NULL DEFAULT 'hybrid'
        REFERENCES @extschema@.variants (name) ON UPDATE CASCADE,
    log_impressions boolean NOT NULL DEFAULT false,
    CONSTRAINT serving_settings_singleton CHECK (singleton)
);
COMMENT ON TABLE @extschema@.serving_settings IS 'Serving settings a DBA changed (at most one row; none means the defaults): the variant recommend(c, NULL) serves outside experiments, and whether log_impressions() records anything. Dumped: a restore keeps them.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.serving_settings', '');
COMMENT ON COLUMN @extschema@.serving_settings.singleton IS 'Always true: the table holds at most one row.';
COMMENT ON COLUMN @extschema@.serving_settings.default_variant IS 'The variant recommend(c, NULL) serves outside experiments (set_default_variant()).';
COMMENT ON COLUMN @extschema@.serving_settings.log_impressions IS 'Whether log_impressions() records impressions outside experiments (set_impression_log()).';

-- The variant recommend(c, NULL) serves when no experiment runs or the customer is outside
-- its traffic; NULL sets it back to hybrid. Returns the variant now served.
CREATE FUNCTION @extschema@.set_default_variant(variant text) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF variant IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = set_default_variant.variant) THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(variant)
            USING ERRCODE = 'undefined_object',
                  DETAIL = (SELECT pg_catalog.format('Known variants: %s.', pg_catalog.string_agg(v.name, ', ' ORDER BY v.name COLLATE "C"))
                            FROM @extschema@.variants v),
                  HINT = 'Create it first with personalize.create_variant(), or pass NULL for hybrid.';
    END IF;
    INSERT INTO @extschema@.serving_settings AS s (default_variant) VALUES (coalesce(variant, 'hybrid'))
        ON CONFLICT (singleton) DO UPDATE SET default_variant = excluded.default_variant;
    RETURN coalesce(variant, 'hybrid');
END $$;
COMMENT ON FUNCTION @extschema@.set_default_variant(text) IS
    'Set the variant recommend(customer_id, NULL) serves outside experiments (NULL: hybrid); kept by pg_dump. Returns it.';
