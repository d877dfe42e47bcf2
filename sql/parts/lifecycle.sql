------------------------------------------------------------------------------
-- Lifecycle: DROP EXTENSION personalize (DROP SCHEMA personalize, DROP OWNED BY
-- its owner) never deletes the shop's data without a confirmation (src/lifecycle.c): while
-- products, customers or interactions hold rows it is refused unless
-- personalize.allow_drop_with_data is on; a drop that goes ahead first removes
-- this database's personalize-* pg_cron jobs. See "Uninstalling" in
-- docs/reference.md.
------------------------------------------------------------------------------

-- not SECURITY DEFINER: it asks whether the current role may drop the extension at all
CREATE FUNCTION @extschema@._guard_drop() RETURNS event_trigger
    LANGUAGE c SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'personalize_guard_drop';
COMMENT ON FUNCTION @extschema@._guard_drop() IS
    'Event trigger: refuses DROP EXTENSION/SCHEMA personalize (and DROP OWNED BY its owner) while the shop''s data is there, unless personalize.allow_drop_with_data is on.';
CREATE EVENT TRIGGER personalize_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION @extschema@._guard_drop();
-- also under session_replication_role = replica (a restore or a replica's apply worker)
ALTER EVENT TRIGGER personalize_guard_drop ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER personalize_guard_drop IS
    'personalize: DROP EXTENSION personalize keeps the shop''s data unless personalize.allow_drop_with_data is on.';
