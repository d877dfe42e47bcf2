/*
 * cron.h: pg_cron in another database (cron.c). The SQL entry point
 * personalize._cron_remote() and the background worker it starts.
 */
#ifndef PERSONALIZE_CRON_H
#define PERSONALIZE_CRON_H

extern PGDLLEXPORT void personalize_cron_worker_main(Datum arg);

#endif							/* PERSONALIZE_CRON_H */
