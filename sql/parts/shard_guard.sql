------------------------------------------------------------------------------
-- Scale-out (issue 15), after every published table exists: on a shard the tables the
-- model server publishes (global_tables(), sql/parts/scaleout.sql) refuse local writes.
------------------------------------------------------------------------------

-- On a shard the published tables are the model server's: a local change would diverge
-- from it (and a later replicated row could collide with it, stopping the subscription).
-- A statement trigger refuses writes there; logical replication's apply does not fire it
-- (it runs with session_replication_role = replica), and elsewhere it only reads the role.
CREATE FUNCTION @extschema@._shard_write_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF @extschema@._node_role() = 'shard' THEN
        RAISE EXCEPTION '%.% is written on the model server in a sharded layout', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('This database is shard %s: the table comes from the model server by logical replication (publication personalize_global).',
                                  coalesce((SELECT n.node_name FROM @extschema@.node_settings n), '(unnamed)')),
                  HINT = 'Make the change on the model server (docs/scaling.md).';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER products_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.products
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER event_types_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.event_types
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER variants_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.variants
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER serving_settings_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.serving_settings
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER experiments_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.experiments
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER experiment_arms_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.experiment_arms
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER flags_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.flags
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER marketing_campaigns_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.marketing_campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER neighbors_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.neighbors
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER popular_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.popular
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER popular_scores_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.popular_scores
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
CREATE TRIGGER global_model_state_shard_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.global_model_state
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._shard_write_guard();
