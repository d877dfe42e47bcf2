/*
 * cron.h: pg_cron in another database (cron.c). The SQL entry point
 * personalize._cron_remote() and the background worker it starts, and the
 * removal of this database's jobs when DROP EXTENSION commits, and the
 * reading of its jobs for personalize.health.
 */
#ifndef PERSONALIZE_CRON_H
#define PERSONALIZE_CRON_H

extern PGDLLEXPORT void personalize_cron_worker_main(Datum arg);
extern void cron_unschedule_all_at_commit(void);

/* personalize.health's view of this database's pg_cron jobs (cron_read_jobs()) */
typedef enum CronJobsStatus
{
	CRON_JOBS_OK,				/* the jobs, as jsonb text */
	CRON_JOBS_NOT_LOADED,		/* cron.database_name is not set */
	CRON_JOBS_NOT_INSTALLED,	/* no pg_cron extension in its database */
	CRON_JOBS_ERROR				/* could not read them: the message */
} CronJobsStatus;

extern CronJobsStatus cron_read_jobs(Oid as_role, char **cron_db, char **result);

#endif							/* PERSONALIZE_CRON_H */
