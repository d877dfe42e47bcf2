--
-- Built by the Makefile from sql/parts/*.sql (one file per concern, joined in the
-- order of SQL_PARTS); edit the parts, never the built script. Every schema change
-- also goes into the update script from the previous version (CHANGELOG.md).
--
-- Every name is schema-qualified (@extschema@ or pg_catalog) so that a hostile
-- search_path cannot redirect this script, and plain CREATE is used throughout.

\echo Use "CREATE EXTENSION personalize" to load this file. \quit

