/*
 * lifecycle.c: the library and the installed SQL, and uninstalling.
 *
 * A new library can meet old SQL: the package was upgraded, ALTER EXTENSION
 * personalize UPDATE not yet run. Entry points whose SQL contract changed call
 * personalize_require_sql_version() and refuse with a hint instead of failing
 * somewhere inside (old entry points keep their SQL signature; new ones get new
 * symbols, so old SQL never calls a function it does not know).
 *
 * personalize_guard_drop() is a ddl_command_start event trigger: DROP EXTENSION
 * personalize (and DROP SCHEMA personalize, DROP OWNED BY its owner) is
 * refused while products,
 * customers or interactions hold rows, unless personalize.allow_drop_with_data
 * is on; a drop that goes ahead first removes this database's pg_cron jobs.
 */
#include "personalize.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "cron.h"
#include "guc.h"
#include "lifecycle.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_guard_drop);

/* The installed SQL version of personalize in this database (NULL if none) and its owner. */
static char *
installed_version(Oid *owner)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("personalize"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
		if (owner != NULL)
			*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/* Compare two versions "a.b.c" part by part as numbers (a missing part is 0). */
static int
version_cmp(const char *a, const char *b)
{
	while (*a || *b)
	{
		long		x = strtol(a, (char **) &a, 10);
		long		y = strtol(b, (char **) &b, 10);

		if (x != y)
			return x < y ? -1 : 1;
		if (*a == '.')
			a++;
		else if (*a)
			break;
		if (*b == '.')
			b++;
		else if (*b)
			break;
	}
	return 0;
}

/*
 * Refuse to run when the SQL installed in this database is older than needed:
 * an entry point whose SQL changed calls this first, with its own function
 * OID. Once a function passed, it passes for the rest of the backend without
 * a catalog probe (recommend() is a hot path): its OID lives as long as its
 * SQL definition, and ALTER EXTENSION UPDATE only raises the version while it
 * keeps the OIDs; a drop and a new CREATE EXTENSION give new OIDs.
 */
void
personalize_require_sql_version(const char *needed, Oid fn_oid)
{
	static Oid	passed_fn = InvalidOid;
	char	   *installed;

	if (OidIsValid(fn_oid) && fn_oid == passed_fn)
		return;
	installed = installed_version(NULL);
	if (installed != NULL && version_cmp(installed, needed) >= 0)
	{
		passed_fn = fn_oid;
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("personalize's SQL in this database is version %s; this library (%s) needs %s or later",
					installed ? installed : "(none)", PERSONALIZE_LIBRARY_VERSION, needed),
			 errdetail("The library was upgraded; the extension's tables and functions in this database were not."),
			 errhint("Run ALTER EXTENSION personalize UPDATE in this database (see CHANGELOG.md for what it does).")));
}

/* Does DROP OWNED name the role that owns the extension? */
static bool
drops_owner(DropOwnedStmt *stmt)
{
	Oid			owner = InvalidOid;
	ListCell   *lc;

	if (installed_version(&owner) == NULL)
		return false;
	foreach(lc, stmt->roles)
		if (get_rolespec_oid(lfirst(lc), true) == owner)
			return true;
	return false;
}

/*
 * Does the statement drop the extension: DROP EXTENSION, DROP SCHEMA of its
 * schema, or DROP OWNED of its owner?
 */
static bool
drops_personalize(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;

	if (parsetree != NULL && IsA(parsetree, DropOwnedStmt))
		return drops_owner((DropOwnedStmt *) parsetree);
	if (parsetree == NULL || !IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION && stmt->removeType != OBJECT_SCHEMA)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), "personalize") == 0)
			return true;
	}
	return false;
}

/*
 * May the current role drop personalize? Only then does the guard speak: for
 * anyone else the drop fails with PostgreSQL's own "must be owner" error, and
 * the row counts in our message are not revealed.
 */
static bool
may_drop(void)
{
	Oid			ext = get_extension_oid("personalize", true);
	Oid			nsp = get_namespace_oid("personalize", true);

	return (OidIsValid(ext) && pg_extension_ownercheck(ext, GetUserId())) ||
		(OidIsValid(nsp) && pg_namespace_ownercheck(nsp, GetUserId()));
}

/*
 * The rows that a drop would delete, counted up to a million each: none of
 * them is the shop's data when all three are 0.
 */
static void
count_user_rows(int64 *interactions, int64 *products, int64 *customers)
{
	if (SPI_execute("SELECT (SELECT count(*) FROM (SELECT FROM personalize.interactions LIMIT 1000001) s),"
					" (SELECT count(*) FROM (SELECT FROM personalize.products LIMIT 1000001) s),"
					" (SELECT count(*) FROM (SELECT FROM personalize.customers LIMIT 1000001) s)",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: could not count the rows a drop would delete");
	*interactions = spi_int8(0, 1, 0);
	*products = spi_int8(0, 2, 0);
	*customers = spi_int8(0, 3, 0);
}

/* "396337 rows", or "more than 1000000 rows" at the cap */
static const char *
rows_text(int64 n)
{
	return n > 1000000 ? "more than 1000000 rows" : psprintf(INT64_FORMAT " rows", n);
}

/* personalize._guard_drop(): ddl_command_start event trigger on DROP EXTENSION / DROP SCHEMA */
Datum
personalize_guard_drop(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	int64		interactions,
				products,
				customers;
	const char *cron_db;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("personalize._guard_drop() is an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!drops_personalize(trigdata->parsetree) || !may_drop())
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	count_user_rows(&interactions, &products, &customers);
	if ((interactions > 0 || products > 0 || customers > 0) && !personalize_allow_drop_with_data)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("dropping personalize would delete the shop's data"),
				 errdetail("personalize.interactions holds %s, personalize.products %s, personalize.customers %s; "
						   "their feedback, campaigns, experiments and LLM answers would go too.",
						   rows_text(interactions), rows_text(products), rows_text(customers)),
				 errhint("Back up first (pg_dump --data-only -n personalize saves these rows), then SET personalize.allow_drop_with_data = on "
						 "and drop again; see \"Uninstalling\" in docs/reference.md.")));
	/*
	 * Going ahead: this database's jobs would fail forever once the procedures
	 * are gone. With pg_cron in this database they go in this transaction;
	 * in another one, when it commits (cron.c).
	 */
	cron_db = GetConfigOption("cron.database_name", true, false);
	if (cron_db != NULL && strcmp(cron_db, get_database_name(MyDatabaseId)) == 0)
	{
		if (SPI_execute("SELECT personalize._cron_unschedule_all()", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "personalize: could not remove the pg_cron jobs");
	}
	else if (cron_db != NULL && cron_db[0] != '\0')
		cron_unschedule_all_at_commit();
	SPI_finish();
	PG_RETURN_VOID();
}
