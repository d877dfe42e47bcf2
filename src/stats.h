/*
 * stats.h: distribution functions for experiment_results (see stats.c).
 */
#ifndef PERSONALIZE_STATS_H
#define PERSONALIZE_STATS_H

extern double stats_normal_cdf(double x);
extern double stats_chisq_sf(double x, double df);
extern double stats_t_cdf(double t, double df);

#endif							/* PERSONALIZE_STATS_H */
