/*
 * id_guard.h: the statement trigger that keeps chosen interaction ids behind
 * the identity sequence (see id_guard.c).
 */
#ifndef PERSONALIZE_ID_GUARD_H
#define PERSONALIZE_ID_GUARD_H

extern Datum personalize_interactions_id_guard(PG_FUNCTION_ARGS);

#endif							/* PERSONALIZE_ID_GUARD_H */
