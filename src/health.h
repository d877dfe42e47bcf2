/*
 * health.h: personalize.health's C side (health.c): the pg_cron jobs of this
 * database, read for the roles that may read the view.
 */
#ifndef PERSONALIZE_HEALTH_H
#define PERSONALIZE_HEALTH_H

extern PGDLLEXPORT Datum personalize_health_cron_jobs(PG_FUNCTION_ARGS);

#endif							/* PERSONALIZE_HEALTH_H */
