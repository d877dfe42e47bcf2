------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC that reveals a customer: the schema's name, the
-- model-level and arithmetic functions, assignment and flags. recommend() reveals a
-- customer's purchases (its reasons, and what it leaves out): granted per role, like
-- the tables. Applications get the grants in docs/reference.md.
------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.cooccurrence_count(bigint, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.similarity(text, bigint, bigint, bigint, bigint) TO PUBLIC;
-- A/B testing: assigned_variant() and flag_enabled() are granted per role like recommend():
-- through them any caller could list experiment and flag names by probing, read a draft
-- experiment's arms and every flag's rollout. The statistics are pure math and
-- experiment_results calls them (a view's function calls are checked against its reader).
-- log_exposure() and recommend_logged() write the exposure log: granted per role too.
-- _echo() shortens the names error messages repeat; the callers' own functions run it.
GRANT EXECUTE ON FUNCTION @extschema@._echo(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._normal_cdf(double precision) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._chisq_sf(double precision, double precision) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._t_cdf(double precision, double precision) TO PUBLIC;
-- personalize.health is granted to nobody by default (GRANT SELECT ON personalize.health TO
-- a monitoring role). What the view calls is checked against its reader: executable by
-- PUBLIC, and harmless alone: the thresholds, one variant row's validation, and
-- _health_cron_jobs(), which answers only roles that may read personalize.health.
GRANT EXECUTE ON FUNCTION @extschema@._health_settings() TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._health_cron_jobs() TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._variant_problem(text, text, jsonb) TO PUBLIC;
-- ingest(): its helpers parse text and list a table's columns (pg_attribute is readable anyway)
GRANT EXECUTE ON FUNCTION @extschema@._ingest_timestamptz(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._ingest_columns(regclass) TO PUBLIC;
-- retention: personalize.retention calls it for its reader (the default settings, constants)
GRANT EXECUTE ON FUNCTION @extschema@._retention_defaults() TO PUBLIC;
