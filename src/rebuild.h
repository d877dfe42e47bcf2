/*
 * rebuild.h: rebuild()'s pair phase in C (see rebuild.c). The SQL function
 * _rebuild_pairs(target regclass, budget_kb integer) is its only entry point.
 */
#ifndef PERSONALIZE_REBUILD_H
#define PERSONALIZE_REBUILD_H

/* rows per INSERT statement of the write */
#define REBUILD_WRITE_BATCH 10000
/* rows per table_multi_insert() of the direct write into an empty target */
#define REBUILD_HEAP_BATCH 1000
/* customer_items rows per cursor fetch */
#define REBUILD_READ_BATCH 10000
/* share of the hash table's slots filled before a pass narrows its product range */
#define REBUILD_FILL 0.85
/* seconds between progress NOTICEs */
#define REBUILD_NOTICE_EVERY_S 10

extern Datum personalize_rebuild_pairs(PG_FUNCTION_ARGS);

#endif							/* PERSONALIZE_REBUILD_H */
