-- personalize 0.1.0 -> 0.2.0 (see CHANGELOG.md). Run by ALTER EXTENSION personalize UPDATE.
--
-- Every name is schema-qualified (@extschema@ or pg_catalog). A fresh install of 0.2.0
-- (built from sql/parts/) must equal 0.1.0 plus this script: test/scripts/upgrade.sh
-- proves it on every run.

\echo Use "ALTER EXTENSION personalize UPDATE TO '0.2.0'" to load this file. \quit
