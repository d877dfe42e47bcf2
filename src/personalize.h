/*
 * personalize.h: the one prelude every source file includes first. PostgreSQL
 * headers and version shims live here so no .c file carries them. What a
 * module exports to the others is declared in its own header (guc.h,
 * similarity.h, spiutil.h, experiment.h, stats.h, model_delta.h, id_guard.h, variant.h,
 * http.h, lifecycle.h, cron.h), which the files that use it include after this one.
 */
#ifndef PERSONALIZE_H
#define PERSONALIZE_H

#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#if PG_VERSION_NUM < 150000
#error "personalize needs PostgreSQL 15 or later"
#endif

#endif							/* PERSONALIZE_H */
