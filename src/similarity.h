/*
 * similarity.h: the measures a neighbour list can be ranked by (see
 * similarity.c).
 */
#ifndef PERSONALIZE_SIMILARITY_H
#define PERSONALIZE_SIMILARITY_H

typedef enum SimilarityMeasure
{
	SIM_COUNT,
	SIM_JACCARD,
	SIM_COSINE,
	SIM_LIFT,
	SIM_LLR,
	SIM_EASE					/* not a pair formula: lists from refresh_ease() (ease.c) */
} SimilarityMeasure;

/* what a product without an 'ease' list is served from (recommend.c) */
#define EASE_FALLBACK_MEASURE SIM_LLR

extern bool similarity_measure_from_name(const char *name, SimilarityMeasure *measure);
extern const char *similarity_measure_name(SimilarityMeasure measure);
extern const char *similarity_measure_names(void);
extern const char *variant_measure_names(void);
extern double similarity_score(SimilarityMeasure measure, int64 ab, int64 a, int64 b, int64 n);

#endif							/* PERSONALIZE_SIMILARITY_H */
