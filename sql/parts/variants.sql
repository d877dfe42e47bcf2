------------------------------------------------------------------------------
-- Variants: named algorithm configurations (A/B arms) recommend() can serve
------------------------------------------------------------------------------

CREATE TABLE @extschema@.variants (
    name       text PRIMARY KEY,
    algorithm  text NOT NULL,
    params     jsonb NOT NULL DEFAULT '{}',
    builtin    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT variants_name_check CHECK (name OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT variants_algorithm_check CHECK (algorithm OPERATOR(pg_catalog.=) ANY (ARRAY['popular', 'cooccurrence', 'hybrid', 'llm']))
);
COMMENT ON TABLE @extschema@.variants IS 'Named algorithm configurations recommend() can serve (A/B arms).';
INSERT INTO @extschema@.variants (name, algorithm, params, builtin) VALUES
    ('popular', 'popular', '{}', true),
    ('cooccurrence', 'cooccurrence', '{"measure": "llr"}', true),
    ('hybrid', 'hybrid', '{"measure": "llr", "popularity_weight": 0.4}', true),
    ('ease', 'cooccurrence', '{"measure": "ease"}', true);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.variants', 'WHERE NOT builtin');

-- What an error message repeats of a caller's name: at most 64 characters (a longer one is
-- cut to 60 and "..."), the same rule as the C side's echo_name()
CREATE FUNCTION @extschema@._echo(s text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_echo';
COMMENT ON FUNCTION @extschema@._echo(text) IS
    'A caller-supplied name as error messages echo it: whole up to 64 characters, else its first 60 and "...".';

CREATE FUNCTION @extschema@._validate_variant(name text, algorithm text, params jsonb)
    RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_validate_variant';

-- A variant row's problem ("SQLSTATE: message"), or NULL when it is valid. SECURITY
-- DEFINER: personalize.health calls it for its reader, who may not execute the validator.
CREATE FUNCTION @extschema@._variant_problem(name text, algorithm text, params jsonb)
    RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e_state text;
    e_message text;
BEGIN
    PERFORM @extschema@._validate_variant(name, algorithm, params);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT;
    RETURN e_state || ': ' || e_message;
END $$;
COMMENT ON FUNCTION @extschema@._variant_problem(text, text, jsonb) IS
    'Why a variant''s algorithm and parameters are invalid (SQLSTATE: message), or NULL when they are valid.';

-- The invalid rows of variants (written before the trigger below existed, or with it
-- disabled), as a jsonb array of {variant, error}; a WARNING for each when warn is set.
-- The refresh skips them and records them; personalize.health names them.
CREATE FUNCTION @extschema@._variant_problems(warn boolean) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    found jsonb := '[]';
BEGIN
    FOR r IN SELECT v.name, p.problem
             FROM @extschema@.variants v,
                  LATERAL (SELECT @extschema@._variant_problem(v.name, v.algorithm, v.params) AS problem) p
             WHERE p.problem IS NOT NULL ORDER BY v.name LOOP
        IF warn THEN
            RAISE WARNING 'variant "%" is skipped: its row in personalize.variants is invalid', r.name
                USING DETAIL = r.problem,
                      HINT = 'Correct it (UPDATE personalize.variants SET params = ... is validated) or drop it with personalize.drop_variant(); recommend() refuses this variant until then.';
        END IF;
        found := found || jsonb_build_array(jsonb_build_object('variant', r.name, 'error', r.problem));
    END LOOP;
    RETURN found;
END $$;

-- Every INSERT and UPDATE of a variants row is validated like create_variant() (22023 and
-- the parameter at fault). SECURITY DEFINER: a role granted UPDATE on variants may not
-- execute the validator itself.
CREATE FUNCTION @extschema@._variants_validate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._validate_variant(NEW.name, NEW.algorithm, NEW.params);
    RETURN NEW;
END $$;
CREATE TRIGGER variants_validate BEFORE INSERT OR UPDATE ON @extschema@.variants
    FOR EACH ROW EXECUTE FUNCTION @extschema@._variants_validate();

-- Variants
CREATE FUNCTION @extschema@.create_variant(name text, algorithm text, params jsonb DEFAULT '{}')
    RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    needs_measure text;
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid variant name %', coalesce(quote_literal(@extschema@._echo(name)), 'NULL')
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A variant name is 1 to 63 lower-case letters, digits and underscores, starting with a letter.',
                  HINT = 'For example ''cooc_jaccard''.';
    END IF;
    needs_measure := @extschema@._validate_variant(name, algorithm, coalesce(params, '{}'));
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = create_variant.name) THEN
        RAISE EXCEPTION 'variant "%" already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Drop it first with personalize.drop_variant(), or pick another name.';
    END IF;
    IF needs_measure = 'ease' THEN
        IF NOT EXISTS (SELECT FROM @extschema@.neighbors n WHERE n.measure = 'ease' LIMIT 1) THEN
            RAISE NOTICE 'variant "%" is served from the "llr" lists until personalize.refresh_ease() stores the "ease" lists', name
                USING DETAIL = 'A history product without an "ease" list (none yet, or not among personalize.ease_products) takes its "llr" list.',
                      HINT = 'Run CALL personalize.refresh_ease(), or schedule it with personalize.schedule_ease().';
        END IF;
        needs_measure := 'llr';  -- the fallback lists, which the refresh stores
    END IF;
    IF needs_measure IS NOT NULL AND NOT EXISTS (SELECT FROM @extschema@.neighbors n WHERE n.measure = needs_measure LIMIT 1)
       AND EXISTS (SELECT FROM @extschema@.item_counts LIMIT 1) THEN
        INSERT INTO @extschema@.dirty_products (product_id)
        SELECT ic.product_id FROM @extschema@.item_counts ic ORDER BY ic.product_id ON CONFLICT (product_id) DO NOTHING;
        RAISE NOTICE 'variant "%" is served from live counts until the next refresh stores its "%" lists', name, needs_measure
            USING DETAIL = 'Every product was marked for refresh; until then recommend() computes the lists it needs on the spot (reason "... (live)").',
                  HINT = 'Run CALL personalize.refresh(), or wait for the scheduled refresh.';
    END IF;
    INSERT INTO @extschema@.variants (name, algorithm, params) VALUES (name, algorithm, coalesce(params, '{}'));
    RETURN name;
END $$;
COMMENT ON FUNCTION @extschema@.create_variant(text, text, jsonb) IS
    'Create a named variant (popular, cooccurrence, hybrid or llm with parameters), validated; see docs/reference.md for the parameters.';

CREATE FUNCTION @extschema@.drop_variant(name text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT FROM @extschema@.variants v WHERE v.name = drop_variant.name AND v.builtin) THEN
        RAISE EXCEPTION 'variant "%" is built in and cannot be dropped', name
            USING ERRCODE = 'object_in_use', HINT = 'Built-in variants are popular, cooccurrence, hybrid, ease and llm.';
    END IF;
    IF EXISTS (SELECT FROM @extschema@.serving_settings s WHERE s.default_variant = drop_variant.name) THEN
        RAISE EXCEPTION 'variant "%" is the default variant and cannot be dropped', @extschema@._echo(name)
            USING ERRCODE = 'object_in_use', HINT = 'Choose another default first with personalize.set_default_variant().';
    END IF;
    DELETE FROM @extschema@.variants v WHERE v.name = drop_variant.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown variant "%"', @extschema@._echo(name) USING ERRCODE = 'undefined_object';
    END IF;
END $$;
COMMENT ON FUNCTION @extschema@.drop_variant(text) IS 'Drop a user-created variant.';
