/*
 * health.c: the part of personalize.health that its reader could not see on
 * its own. pg_cron's row-level security shows each role only the jobs it
 * scheduled, and from another database only a background worker reaches
 * pg_cron at all (cron.c). personalize._health_cron_jobs() reads this
 * database's personalize-* jobs as the owner of the view, for any role that
 * may read personalize.health, and for nobody else.
 */
#include "personalize.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cron.h"
#include "health.h"
#include "lifecycle.h"

PG_FUNCTION_INFO_V1(personalize_health_cron_jobs);

/*
 * The view health beside this function (in the extension's schema); refused
 * unless the calling role may read it. Returns the view's owner.
 */
static Oid
health_view_owner(Oid fn_oid)
{
	Oid			view = get_relname_relid("health", get_func_namespace(fn_oid));
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(view))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("view personalize.health does not exist"),
				 errhint("ALTER EXTENSION personalize UPDATE creates it.")));
	if (pg_class_aclcheck(view, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for view health"),
				 errdetail("personalize._health_cron_jobs() reads pg_cron's jobs for the roles that may read personalize.health."),
				 errhint("GRANT SELECT ON personalize.health TO the monitoring role.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(view));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "personalize: cache lookup failed for relation %u", view);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * personalize._health_cron_jobs() returns jsonb: {"cron_database": ..., "state":
 * "ok" | "not_loaded" | "not_installed" | "error", "jobs": [...], "error": ...}.
 * Each job: job, schedule, active, username and its last finished run (status,
 * message, start_time, end_time). Read as the view's owner: pg_cron shows a
 * role only its own jobs unless it is a superuser.
 */
Datum
personalize_health_cron_jobs(PG_FUNCTION_ARGS)
{
	static const char *const states[] = {"ok", "not_loaded", "not_installed", "error"};
	Oid			owner;
	char	   *cron_db;
	char	   *result;
	CronJobsStatus st;
	StringInfoData s;

	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	owner = health_view_owner(fcinfo->flinfo->fn_oid);
	st = cron_read_jobs(owner, &cron_db, &result);
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"cron_database\": ");
	if (cron_db)
		escape_json(&s, cron_db);
	else
		appendStringInfoString(&s, "null");
	appendStringInfo(&s, ", \"state\": \"%s\", \"jobs\": %s, \"error\": ", states[st],
					 st == CRON_JOBS_OK ? result : "[]");
	if (st == CRON_JOBS_ERROR)
		escape_json(&s, result);
	else
		appendStringInfoString(&s, "null");
	appendStringInfoChar(&s, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}
