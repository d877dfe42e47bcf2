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
-- A/B testing: assignment and flags are read-only SECURITY DEFINER functions with a fixed
-- search_path (they reveal an arm or a flag, nothing else); the statistics are pure math and
-- experiment_results calls them (a view's function calls are checked against its reader).
-- log_exposure() and recommend_logged() write the exposure log: granted per role, not to PUBLIC.
GRANT EXECUTE ON FUNCTION @extschema@.assigned_variant(text, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.flag_enabled(text, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._normal_cdf(double precision) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._chisq_sf(double precision, double precision) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._t_cdf(double precision, double precision) TO PUBLIC;
