/*
 * cron.h: pg_cron in another database (cron.c). The SQL entry point
 * personalize._cron_remote() and the background worker it starts, and the
 * removal of this database's jobs when DROP EXTENSION commits.
 */
#ifndef PERSONALIZE_CRON_H
#define PERSONALIZE_CRON_H

extern PGDLLEXPORT void personalize_cron_worker_main(Datum arg);
extern void cron_unschedule_all_at_commit(void);

#endif							/* PERSONALIZE_CRON_H */
