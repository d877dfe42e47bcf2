/*
 * filters.h: request-time filters of the serving functions (see filters.c).
 */
#ifndef FILTERS_H
#define FILTERS_H

#include "fmgr.h"

/* The optional filter arguments of recommend(), similar_items(), recommend_for_items(), explain(). */
typedef struct RecommendFilters
{
	int64	   *exclude_ids;	/* exclude_products, sorted */
	int			nexclude;
	bool		any_walk;		/* some filter is checked in the product query */
	Datum		categories;		/* text[]; valid when has_categories */
	bool		has_categories;
	Datum		exclude_categories; /* text[] */
	bool		has_exclude_categories;
	Datum		min_price;		/* numeric */
	bool		has_min_price;
	Datum		max_price;		/* numeric */
	bool		has_max_price;
	Datum		attributes;		/* jsonb object */
	bool		has_attributes;
	Datum		exclude_events; /* text[] of event types */
	bool		has_exclude_events;
} RecommendFilters;

/* The number of parameters filters_params() fills, in the product query's order. */
#define FILTER_NPARAMS 6

extern void filters_from_args(FunctionCallInfo fcinfo, int first, bool with_events, RecommendFilters *f);
extern void filters_check_events(const RecommendFilters *f, bool has_customer);
extern bool filters_excludes_id(const RecommendFilters *f, int64 product_id);
extern void filters_params(const RecommendFilters *f, Datum *values, char *nulls, Oid *types);

#endif							/* FILTERS_H */
