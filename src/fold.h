/*
 * fold.h: the pending count changes of the model (see fold.c).
 */
#ifndef PERSONALIZE_FOLD_H
#define PERSONALIZE_FOLD_H

#include "model_delta.h"

extern bool model_deltas_exist(void);
extern void append_model_deltas(const DeltaBuffer *pairs, const DeltaBuffer *singles);
extern void apply_count_deltas(const DeltaBuffer *buf, bool is_pairs, bool to_base, bool insert_only);
extern void mark_products_dirty(const DeltaBuffer *pairs, const DeltaBuffer *singles, TimestampTz since);

#endif							/* PERSONALIZE_FOLD_H */
