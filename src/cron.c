/*
 * cron.c: scheduling from the shop's own database when pg_cron lives in
 * another one (cron.database_name). pg_cron's functions exist only in its own
 * database, so personalize._cron_remote() starts a dynamic background worker
 * that connects there as the calling role (its CONNECT privilege and pg_cron's
 * own permission checks apply; no password, no network) and runs one fixed,
 * parameterised statement: cron.schedule_in_database() for this database, or
 * cron.unschedule() of this database's personalize jobs. The request and the
 * answer (a number, or the error with its SQLSTATE, detail and hint) travel in
 * a dynamic shared memory segment. The worker commits on its own: a job
 * scheduled this way stays scheduled if the caller's transaction rolls back.
 */
#include "personalize.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "cron.h"
#include "lifecycle.h"

PG_FUNCTION_INFO_V1(personalize_cron_remote);

typedef enum CronOp
{
	CRON_SCHEDULE,				/* cron.schedule_in_database(job, schedule, command, db) */
	CRON_UNSCHEDULE,			/* cron.unschedule() of the job of this name in db */
	CRON_UNSCHEDULE_ALL,		/* cron.unschedule() of every personalize-* job in db */
	CRON_JOBS					/* read db's personalize-* jobs and their last runs */
} CronOp;

#define CRON_TEXT 1024
#define CRON_PAYLOAD 32768

/*
 * This database's personalize-* jobs (at most 50) and the last finished run of
 * each, as one jsonb array: what personalize.health reports. Names are
 * qualified and operators spelled out: it also runs in the caller's session.
 */
static const char *const jobs_sql =
"SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
"  'job', j.jobname, 'schedule', j.schedule, 'active', j.active, 'username', j.username,"
"  'status', d.status, 'message', pg_catalog.left(d.return_message, 300),"
"  'start_time', d.start_time, 'end_time', d.end_time) ORDER BY j.jobname), '[]')::text "
"FROM (SELECT * FROM cron.job c WHERE c.jobname OPERATOR(pg_catalog.~~) 'personalize-%' "
"      AND c.database OPERATOR(pg_catalog.=) $1 ORDER BY c.jobname LIMIT 50) j "
"LEFT JOIN LATERAL (SELECT r.status, r.return_message, r.start_time, r.end_time "
"      FROM cron.job_run_details r WHERE r.jobid OPERATOR(pg_catalog.=) j.jobid "
"      AND r.status OPERATOR(pg_catalog.=) ANY ('{succeeded,failed}'::text[]) "
"      ORDER BY r.runid DESC LIMIT 1) d ON true";

/* One request and its answer, in a DSM segment shared with the worker. */
typedef struct CronRequest
{
	CronOp		op;
	char		cron_db[NAMEDATALEN];	/* where pg_cron is installed */
	char		target_db[NAMEDATALEN]; /* where the job runs: the caller's */
	char		role[NAMEDATALEN];	/* the calling role */
	char		job[CRON_TEXT];
	char		schedule[CRON_TEXT];
	char		command[CRON_TEXT];
	bool		done;			/* the worker got to the end */
	bool		failed;
	int64		result;
	int			sqlerrcode;
	char		message[CRON_TEXT];
	char		detail[CRON_TEXT];
	char		hint[CRON_TEXT];
	char		payload[CRON_PAYLOAD];	/* CRON_JOBS: the jsonb text */
} CronRequest;

/*
 * Worker: is pg_cron installed where cron.database_name points? Scheduling
 * without it is an error; there is nothing to unschedule.
 */
static bool
worker_has_pg_cron(CronRequest *req)
{
	if (SPI_execute("SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read pg_extension");
	if (SPI_processed == 0 && req->op == CRON_SCHEDULE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_cron is not installed in database \"%s\"", req->cron_db),
				 errdetail("cron.database_name is \"%s\"; pg_cron's functions live there.", req->cron_db),
				 errhint("Run CREATE EXTENSION pg_cron in database \"%s\".", req->cron_db)));
	return SPI_processed > 0;
}

/* Worker: the jobs of the target database, as jsonb text, into the payload. */
static void
worker_read_jobs(CronRequest *req)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *json;

	values[0] = CStringGetTextDatum(req->target_db);
	if (SPI_execute_with_args(jobs_sql, 1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: the pg_cron job query returned no row");
	json = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strlcpy(req->payload, json, CRON_PAYLOAD) >= CRON_PAYLOAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the personalize pg_cron jobs of database \"%s\" do not fit in %d bytes", req->target_db, CRON_PAYLOAD)));
}

/* Worker: run the request's statement and keep its one number. */
static void
worker_run(CronRequest *req)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	const char *sql;
	int			nargs;
	bool		isnull;

	req->result = 0;
	if (!worker_has_pg_cron(req))
	{
		req->result = -1;
		return;
	}
	if (req->op == CRON_JOBS)
	{
		worker_read_jobs(req);
		return;
	}
	switch (req->op)
	{
		case CRON_SCHEDULE:
			sql = "SELECT cron.schedule_in_database($1, $2, $3, $4)";
			values[0] = CStringGetTextDatum(req->job);
			values[1] = CStringGetTextDatum(req->schedule);
			values[2] = CStringGetTextDatum(req->command);
			values[3] = CStringGetTextDatum(req->target_db);
			nargs = 4;
			break;
		case CRON_UNSCHEDULE:
			sql = "SELECT count(cron.unschedule(j.jobid)) FROM cron.job j WHERE j.jobname = $1 AND j.database = $2";
			values[0] = CStringGetTextDatum(req->job);
			values[1] = CStringGetTextDatum(req->target_db);
			nargs = 2;
			break;
		default:
			sql = "SELECT count(cron.unschedule(j.jobid)) FROM cron.job j "
				"WHERE j.jobname LIKE 'personalize-%' AND j.database = $1";
			values[0] = CStringGetTextDatum(req->target_db);
			nargs = 1;
			break;
	}
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: the pg_cron statement returned no row");
	req->result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Worker: keep an error for the caller (message, detail, hint, SQLSTATE). */
static void
worker_keep_error(CronRequest *req, MemoryContext keep)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(keep);
	edata = CopyErrorData();
	FlushErrorState();
	req->sqlerrcode = edata->sqlerrcode;
	strlcpy(req->message, edata->message ? edata->message : "unknown error", CRON_TEXT);
	strlcpy(req->detail, edata->detail ? edata->detail : "", CRON_TEXT);
	strlcpy(req->hint, edata->hint ? edata->hint : "", CRON_TEXT);
	req->failed = true;
}

/* The background worker: connect to pg_cron's database as the caller, run, answer. */
void
personalize_cron_worker_main(Datum arg)
{
	dsm_segment *seg;
	CronRequest *req;
	MemoryContext keep = AllocSetContextCreate(TopMemoryContext, "personalize cron worker", ALLOCSET_SMALL_SIZES);

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("personalize cron worker: the caller's request is gone")));
	req = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnection(req->cron_db, req->role, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "personalize: pg_cron request");
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "personalize: SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		worker_run(req);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		worker_keep_error(req, keep);
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	req->done = true;
	dsm_detach(seg);
	proc_exit(0);
}

/*
 * Caller: start the worker and wait for it; a cancel stops it too. Returns
 * false when no worker slot is free and soft is set (an error otherwise).
 */
static bool
run_in_worker(CronRequest *req, bool soft)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	dsm_segment *seg = dsm_create(sizeof(CronRequest), 0);
	CronRequest *shared = dsm_segment_address(seg);

	memcpy(shared, req, sizeof(CronRequest));
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* a hot standby reads pg_cron's replicated tables too (health); writes fail there as read-only */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	/* as MODULE_PATHNAME names it: the same file the caller loaded */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "$libdir/personalize");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "personalize_cron_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "personalize pg_cron request for %s", req->target_db);
	snprintf(worker.bgw_type, BGW_MAXLEN, "personalize pg_cron request");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		dsm_detach(seg);
		if (soft)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker to reach pg_cron in database \"%s\"", req->cron_db),
				 errdetail("Every background worker slot is taken."),
				 errhint("Raise max_worker_processes (pg_cron's own workers use slots too), or retry.")));
	}
	PG_TRY();
	{
		status = WaitForBackgroundWorkerShutdown(handle);
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited while personalize waited for its pg_cron request")));
	memcpy(req, shared, sizeof(CronRequest));
	dsm_detach(seg);
	return true;
}

/* Caller: the worker's answer, or its error raised here as if it were ours. */
static int64
answer(const CronRequest *req)
{
	if (!req->done)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not reach pg_cron in database \"%s\" as role \"%s\"", req->cron_db, req->role),
				 errdetail("The background worker that connects there stopped before it answered."),
				 errhint("The server log says why: the database must exist and the role must be allowed to log in and to connect to it.")));
	if (req->failed)
		ereport(ERROR,
				(errcode(req->sqlerrcode),
				 errmsg("%s", req->message),
				 req->detail[0] ? errdetail("%s", req->detail) : 0,
				 req->hint[0] ? errhint("%s", req->hint) : 0,
				 errcontext("pg_cron in database \"%s\"", req->cron_db)));
	return req->result;
}

/* Where a request goes (pg_cron's database), for which database and as whom. */
static void
address_request(CronRequest *req, const char *cron_db)
{
	strlcpy(req->cron_db, cron_db, NAMEDATALEN);
	strlcpy(req->target_db, get_database_name(MyDatabaseId), NAMEDATALEN);
	strlcpy(req->role, GetUserNameFromId(GetUserId(), false), NAMEDATALEN);
}

/*
 * DROP EXTENSION personalize removes this database's jobs when pg_cron lives
 * elsewhere at pre-commit, not when the drop starts: the worker commits on
 * its own, and a drop that failed or was rolled back must keep them. Never
 * stops the commit: what goes wrong is a WARNING with the command to run.
 */
static bool unschedule_at_commit = false;

static void
unschedule_all_now(void)
{
	CronRequest req;
	const char *cron_db = GetConfigOption("cron.database_name", true, false);

	if (cron_db == NULL || cron_db[0] == '\0')
		return;
	memset(&req, 0, sizeof(req));
	req.op = CRON_UNSCHEDULE_ALL;
	address_request(&req, cron_db);
	if (run_in_worker(&req, true) && req.done && !req.failed)
		return;
	ereport(WARNING,
			(errmsg("could not remove the personalize pg_cron jobs of database \"%s\"", req.target_db),
			 errdetail("%s", !req.done ? "No background worker answered." : req.message),
			 errhint("In database %s: SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'personalize-%%' AND database = '%s';",
					 req.cron_db, req.target_db)));
}

static void
cron_xact_callback(XactEvent event, void *arg)
{
	if (!unschedule_at_commit)
		return;
	if (event == XACT_EVENT_PRE_COMMIT)
	{
		unschedule_at_commit = false;
		unschedule_all_now();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		unschedule_at_commit = false;
}

/* Remove this database's personalize-* jobs in pg_cron's database when this transaction commits. */
void
cron_unschedule_all_at_commit(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(cron_xact_callback, NULL);
		registered = true;
	}
	unschedule_at_commit = true;
}

/* A text argument copied into a request field, refused when it does not fit. */
static void
copy_arg(FunctionCallInfo fcinfo, int argno, char *dst, const char *what)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
	{
		dst[0] = '\0';
		return;
	}
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strlen(s) >= CRON_TEXT)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long for a pg_cron request", what),
				 errdetail("It has %zu bytes; at most %d fit.", strlen(s), CRON_TEXT - 1)));
	strlcpy(dst, s, CRON_TEXT);
}

/*
 * personalize._cron_remote(operation text, job text, schedule text, command text)
 * operation 'schedule' returns the job id; 'unschedule' and 'unschedule_all'
 * return how many jobs were removed. Jobs run in the calling database.
 */
Datum
personalize_cron_remote(PG_FUNCTION_ARGS)
{
	CronRequest req;
	const char *cron_db = GetConfigOption("cron.database_name", true, false);
	char	   *op;

	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("operation must not be null")));
	op = text_to_cstring(PG_GETARG_TEXT_PP(0));
	memset(&req, 0, sizeof(req));
	if (strcmp(op, "schedule") == 0)
		req.op = CRON_SCHEDULE;
	else if (strcmp(op, "unschedule") == 0)
		req.op = CRON_UNSCHEDULE;
	else if (strcmp(op, "unschedule_all") == 0)
		req.op = CRON_UNSCHEDULE_ALL;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown pg_cron operation \"%s\"", op),
				 errhint("One of schedule, unschedule, unschedule_all.")));
	if (cron_db == NULL || cron_db[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_cron is not loaded"),
				 errhint("Add pg_cron to shared_preload_libraries and restart the server.")));
	address_request(&req, cron_db);
	copy_arg(fcinfo, 1, req.job, "the job name");
	copy_arg(fcinfo, 2, req.schedule, "the schedule");
	copy_arg(fcinfo, 3, req.command, "the command");
	run_in_worker(&req, false);
	PG_RETURN_INT64(answer(&req));
}

/*
 * The jobs in this session, as the given role (pg_cron shows each role its own
 * jobs only; a superuser sees every one), in a subtransaction: an error is
 * returned as text, never raised.
 */
static CronJobsStatus
read_jobs_here(Oid as_role, char **result)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile CronJobsStatus status = CRON_JOBS_OK;
	Oid			save_userid;
	int			save_sec;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		int			nest;

		SetUserIdAndSecContext(as_role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		nest = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "personalize: SPI_connect failed");
		if (SPI_execute("SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "personalize: could not read pg_extension");
		if (SPI_processed == 0)
			status = CRON_JOBS_NOT_INSTALLED;
		else
		{
			values[0] = CStringGetTextDatum(get_database_name(MyDatabaseId));
			if (SPI_execute_with_args(jobs_sql, 1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "personalize: the pg_cron job query returned no row");
			*result = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		}
		SPI_finish();
		AtEOXact_GUC(true, nest);
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		SetUserIdAndSecContext(save_userid, save_sec);
		*result = edata->message;
		status = CRON_JOBS_ERROR;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	return status;
}

/*
 * This database's personalize-* pg_cron jobs and their last runs (jsonb text in
 * *result), read as as_role: here when pg_cron lives in this database, through
 * the background worker otherwise. Never raises for pg_cron's sake: what went
 * wrong comes back as CRON_JOBS_ERROR and its message.
 */
CronJobsStatus
cron_read_jobs(Oid as_role, char **cron_db_out, char **result)
{
	CronRequest *req;
	const char *cron_db = GetConfigOption("cron.database_name", true, false);

	*result = NULL;
	*cron_db_out = NULL;
	if (cron_db == NULL || cron_db[0] == '\0')
		return CRON_JOBS_NOT_LOADED;
	*cron_db_out = pstrdup(cron_db);
	if (strcmp(cron_db, get_database_name(MyDatabaseId)) == 0)
		return read_jobs_here(as_role, result);
	req = palloc0(sizeof(CronRequest));
	req->op = CRON_JOBS;
	address_request(req, cron_db);
	strlcpy(req->role, GetUserNameFromId(as_role, false), NAMEDATALEN);
	if (!run_in_worker(req, true))
		*result = pstrdup("no background worker slot is free (max_worker_processes)");
	else if (!req->done)
		*result = psprintf("the background worker that reads pg_cron in database \"%s\" as role \"%s\" stopped before it answered (see the server log)",
						   req->cron_db, req->role);
	else if (req->failed)
		*result = pstrdup(req->message);
	else if (req->result < 0)
		return CRON_JOBS_NOT_INSTALLED;
	else
	{
		*result = pstrdup(req->payload);
		return CRON_JOBS_OK;
	}
	return CRON_JOBS_ERROR;
}
