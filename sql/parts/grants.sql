------------------------------------------------------------------------------
-- Grant sets (issue 11, part 6): least privilege by default. Three documented sets, for an
-- application, a monitoring role and a BI reader, granted by grant_application(),
-- grant_monitoring() and grant_bi() and taken back by revoke_all(). They run as the caller
-- (only a role holding the privileges WITH GRANT OPTION can grant them: the owner) and,
-- like everything here, are not executable by PUBLIC (sql/parts/privileges.sql).
------------------------------------------------------------------------------

-- The application's door to erasure: forget_customer() runs with its caller's rights (DELETE
-- on every table that names a customer); this wrapper runs it as the owner, so an application
-- granted it erases a customer without any privilege on the tables.
CREATE FUNCTION @extschema@.erase_customer(customer_id bigint)
    RETURNS TABLE (interactions bigint, feedback bigint, customer boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        PERFORM @extschema@._standby_refusal('erase_customer',
            'Erase the customer on the primary, e.g. through the application''s primary connection; the standby follows when it replays the deletion.');
    END IF;
    RETURN QUERY SELECT f.interactions, f.feedback, f.customer FROM @extschema@.forget_customer(erase_customer.customer_id) f;
END $$;
COMMENT ON FUNCTION @extschema@.erase_customer(bigint) IS
    'forget_customer() run with the owner''s rights (SECURITY DEFINER): the erasure an application role gets by grant_application().';

-- The three documented grant sets, one row per object: the single source the grant_*()
-- functions apply (docs/reference.md, "Grant sets").
CREATE FUNCTION @extschema@._grant_set(grant_set text)
    RETURNS TABLE (object_type text, object text, privileges text)
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.object_type, s.object, s.privileges FROM (VALUES
        ('application', 'table', '@extschema@.products', 'SELECT'),
        ('application', 'table', '@extschema@.event_types', 'SELECT'),
        ('application', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('application', 'table', '@extschema@.customers', 'SELECT, INSERT, UPDATE'),
        ('application', 'table', '@extschema@.interactions', 'SELECT, INSERT'),
        ('application', 'table', '@extschema@.customer_feedback', 'SELECT, INSERT'),
        ('application', 'function', '@extschema@.recommend(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_served(bigint, text, integer, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.similar_items(bigint, integer, text, bigint[], text[], text[], numeric, numeric, jsonb)', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_for_items(bigint[], integer, text, bigint, bigint[], text[], text[], numeric, numeric, jsonb, text[])', 'EXECUTE'),
        ('application', 'function', '@extschema@.recommend_logged(bigint, integer)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_exposure(bigint, bigint[], text)', 'EXECUTE'),
        ('application', 'function', '@extschema@.assigned_variant(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.flag_enabled(text, bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.erase_customer(bigint)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_impressions(bigint, bigint[], text, text)', 'EXECUTE'),
        ('application', 'function', '@extschema@.log_event(bigint, bigint, text, timestamptz, integer, text)', 'EXECUTE'),
        ('monitoring', 'table', '@extschema@.health', 'SELECT'),
        ('monitoring', 'table', '@extschema@.model_stats', 'SELECT'),
        ('monitoring', 'table', '@extschema@.maintenance_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_runs', 'SELECT'),
        ('monitoring', 'table', '@extschema@.llm_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.ingest_batches', 'SELECT'),
        ('monitoring', 'table', '@extschema@.batch_recommendation_runs', 'SELECT'),
        ('bi', 'table', '@extschema@.products', 'SELECT'),
        ('bi', 'table', '@extschema@.event_types', 'SELECT'),
        ('bi', 'table', '@extschema@.marketing_campaigns', 'SELECT'),
        ('bi', 'table', '@extschema@.variants', 'SELECT'),
        ('bi', 'table', '@extschema@.popular', 'SELECT'),
        ('bi', 'table', '@extschema@.neighbor_list', 'SELECT'),
        ('bi', 'table', '@extschema@.cooccurrence', 'SELECT'),
        ('bi', 'table', '@extschema@.model_stats', 'SELECT'),
        ('bi', 'table', '@extschema@.experiment_results', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations', 'SELECT'),
        ('bi', 'table', '@extschema@.batch_recommendations_named', 'SELECT'),
        ('bi', 'table', '@extschema@.impressions', 'SELECT'),
        ('bi', 'table', '@extschema@.impression_ctr', 'SELECT')
    ) AS s(grant_set, object_type, object, privileges)
    WHERE s.grant_set = _grant_set.grant_set
$$;

-- Grant one set to a role, as the caller: it must hold every privilege of the set WITH
-- GRANT OPTION (the owner does); checked first, so a refusal grants nothing. Idempotent.
CREATE FUNCTION @extschema@._grant_apply(grant_set text, grantee regrole)
    RETURNS SETOF text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    stmt text;
    can boolean;
    role_name name := @extschema@._grant_check_role(grantee);
BEGIN
    FOR r IN SELECT * FROM @extschema@._grant_set(grant_set) LOOP
        can := CASE r.object_type
            WHEN 'table' THEN (SELECT bool_and(has_table_privilege(current_user, r.object, p || ' WITH GRANT OPTION'))
                                 FROM unnest(string_to_array(r.privileges, ', ')) p)
            ELSE has_function_privilege(current_user, r.object, 'EXECUTE WITH GRANT OPTION') END;
        IF NOT can THEN
            RAISE EXCEPTION 'permission denied to grant % on %', r.privileges, r.object
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s does not hold it WITH GRANT OPTION; nothing was granted.', current_user),
                      HINT = 'Run it as the owner of the extension or a superuser.';
        END IF;
    END LOOP;
    FOR r IN SELECT * FROM @extschema@._grant_set(grant_set) LOOP
        stmt := format('GRANT %s ON %s %s TO %I', r.privileges, upper(r.object_type),
                       CASE r.object_type WHEN 'table' THEN r.object::regclass::text ELSE r.object::regprocedure::text END,
                       role_name);
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END $$;

-- A grantee a set may go to: not NULL, not PUBLIC, not the owner of the extension's objects
-- (nor a member of it; a superuser may, harmlessly). Returns its name.
CREATE FUNCTION @extschema@._grant_check_role(grantee regrole)
    RETURNS name
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF grantee IS NULL THEN
        RAISE EXCEPTION 'role must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass the name of an existing role.';
    END IF;
    IF grantee = 0 THEN
        RAISE EXCEPTION 'grant sets are for roles, not PUBLIC'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the name of an existing role.';
    END IF;
    IF grantee = (SELECT c.relowner FROM pg_class c WHERE c.oid = '@extschema@.products'::regclass)
       OR (NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = grantee)
           AND pg_has_role(grantee, (SELECT c.relowner FROM pg_class c WHERE c.oid = '@extschema@.products'::regclass), 'MEMBER')) THEN
        RAISE EXCEPTION 'role % owns personalize''s objects', grantee
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The owner (and its members) hold every privilege already; a grant set would change nothing and revoke_all() would take the owner''s own privileges.',
                  HINT = 'Grant sets are for application, monitoring and BI roles that do not own the extension.';
    END IF;
    RETURN (SELECT r.rolname FROM pg_roles r WHERE r.oid = grantee);
END $$;

CREATE FUNCTION @extschema@.grant_application(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('application', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_application(regrole) IS
    'Grant a role the application set: read the catalog, write customers, events and feedback, recommend(), recommend_logged(), log_exposure(), assigned_variant(), flag_enabled(), erase_customer(), log_impressions(). Returns the GRANT statements run. Idempotent; runs as the caller.';
CREATE FUNCTION @extschema@.grant_monitoring(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('monitoring', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_monitoring(regrole) IS
    'Grant a role the monitoring set: SELECT on health, model_stats and the run tables maintenance_runs, llm_runs, llm_batches, ingest_batches, batch_recommendation_runs (nothing that names a customer). Returns the GRANT statements run. Idempotent; runs as the caller.';
CREATE FUNCTION @extschema@.grant_bi(grantee regrole) RETURNS SETOF text
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT @extschema@._grant_apply('bi', grantee)
$$;
COMMENT ON FUNCTION @extschema@.grant_bi(regrole) IS
    'Grant a role the BI set: SELECT on the catalog (products, event_types, marketing_campaigns, variants) and the aggregate results (popular, neighbor_list, cooccurrence, model_stats, experiment_results), and by customer id only the batch recommendations (batch_recommendations, batch_recommendations_named) and the impression log (impressions, impression_ctr); no customer''s details or events. Returns the GRANT statements run. Idempotent; runs as the caller.';

-- Take back every privilege the caller granted the role on the schema and its objects
-- (tables, views, sequences, columns, functions, procedures): whatever sets it had. Returns
-- how many privileges the role held on them before minus after.
CREATE FUNCTION @extschema@._grant_count(grantee regrole) RETURNS bigint
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relnamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a
             WHERE c.relnamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a
             WHERE p.pronamespace = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
         + (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.oid = '@extschema@'::regnamespace AND a.grantee = _grant_count.grantee)
$$;
CREATE FUNCTION @extschema@.revoke_all(grantee regrole) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before bigint;
    role_name name := @extschema@._grant_check_role(grantee);
BEGIN
    before := @extschema@._grant_count(grantee);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON ALL PROCEDURES IN SCHEMA @extschema@ FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON SCHEMA @extschema@ FROM %I', role_name);
    RETURN before - @extschema@._grant_count(grantee);
END $$;
COMMENT ON FUNCTION @extschema@.revoke_all(regrole) IS
    'Revoke every privilege the caller granted a role on the schema and its objects (any grant set, and grants made by hand). Returns the number of privileges removed. Runs as the caller.';
