/*
 * experiment.h: deterministic bucketing for experiments and feature flags
 * (see experiment.c).
 */
#ifndef PERSONALIZE_EXPERIMENT_H
#define PERSONALIZE_EXPERIMENT_H

extern double experiment_bucket(const char *salt, int salt_len, int64 customer_id);
extern char *experiment_running_variant(int64 customer_id);

#endif							/* PERSONALIZE_EXPERIMENT_H */
