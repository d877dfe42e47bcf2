------------------------------------------------------------------------------
-- Serving: recommend() in C (src/recommend.c); read-only
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.recommend(customer_id bigint, variant text DEFAULT NULL, k integer DEFAULT 10)
    RETURNS TABLE (product_id bigint, score double precision, reason text)
    LANGUAGE c STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    ROWS 10
    AS 'MODULE_PATHNAME', 'personalize_recommend';
COMMENT ON FUNCTION @extschema@.recommend(bigint, text, integer) IS
    'Top k products for a customer under a variant (NULL: the running experiment''s arm for the customer, else the default), best first, with a reason a person can read. Read-only.';
