/*
 * variant.h: a parsed variant (see variant.c).
 */
#ifndef VARIANT_H
#define VARIANT_H

#include "utils/jsonb.h"

#include "similarity.h"

typedef enum VariantAlgorithm
{
	ALG_POPULAR,
	ALG_COOCCURRENCE,
	ALG_HYBRID,
	ALG_LLM						/* the stored LLM recommendations, then popularity */
} VariantAlgorithm;

typedef struct VariantConfig
{
	char		name[NAMEDATALEN];
	VariantAlgorithm algorithm;
	SimilarityMeasure measure;
	int			history_items;	/* most relevant history products used */
	int			neighbors;		/* neighbours used per history product */
	double		half_life_days; /* 0: no recency decay */
	int			category_cap;	/* 0: no cap */
	bool		allow_repeat;	/* may recommend what was bought */
	bool		popular_fill;	/* fill up to k with popular products */
	double		popularity_weight;	/* blend of popularity into the score */
	bool		campaigns;		/* boost and bring in campaign products */
	int			llm_history;	/* fewer history products than this: LLM recommendations join in; 0 never */
	double		content_weight; /* weight of content-similarity neighbours; 0 never */
} VariantConfig;

extern void variant_parse(const char *name, const char *algorithm, Jsonb *params, VariantConfig *cfg);

#endif							/* VARIANT_H */
