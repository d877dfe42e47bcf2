/*
 * personalize.h: the one prelude every source file includes. PostgreSQL
 * headers and version shims live here so no .c file carries them.
 */
#ifndef PERSONALIZE_H
#define PERSONALIZE_H

#include "postgres.h"
#include "fmgr.h"

#if PG_VERSION_NUM < 150000
#error "personalize needs PostgreSQL 15 or later"
#endif

/* guc.c */
extern int	personalize_neighbors_k;
extern void personalize_define_gucs(void);

#endif							/* PERSONALIZE_H */
