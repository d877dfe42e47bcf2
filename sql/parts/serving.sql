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
