/*
 * personalize.h: the one prelude every source file includes. PostgreSQL
 * headers and version shims live here so no .c file carries them.
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

/* guc.c */
extern int	personalize_neighbors_k;
extern int	personalize_neighbors_min_count;
extern char *personalize_as_of;
extern void personalize_define_gucs(void);
extern TimestampTz personalize_now(void);

/* similarity.c: the measures a neighbour list can be ranked by */
typedef enum SimilarityMeasure
{
	SIM_COUNT,
	SIM_JACCARD,
	SIM_COSINE,
	SIM_LIFT,
	SIM_LLR
} SimilarityMeasure;

extern bool similarity_measure_from_name(const char *name, SimilarityMeasure *measure);
extern const char *similarity_measure_name(SimilarityMeasure measure);
extern const char *similarity_measure_names(void);
extern double similarity_score(SimilarityMeasure measure, int64 ab, int64 a, int64 b, int64 n);

/* spiutil.c: small SPI helpers shared by the trigger, rebuild and recommend */
extern SPIPlanPtr spi_prepare_kept(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes);
extern int	spi_execute_kept(SPIPlanPtr plan, Datum *values, bool read_only, long tcount);
extern Datum int8_array_datum(const int64 *values, int n);
extern Datum int4_array_datum(const int32 *values, int n);
extern Datum float8_array_datum(const double *values, int n);
extern Datum bool_array_datum(const bool *values, int n);
extern Datum timestamptz_array_datum(const TimestampTz *values, int n);
extern int64 spi_int8(int row, int col, int64 if_null);
extern double spi_float8(int row, int col, double if_null);

/* experiment.c: deterministic bucketing for experiments and feature flags */
extern double experiment_bucket(const char *salt, int salt_len, int64 customer_id);
extern char *experiment_running_variant(int64 customer_id);

/* stats.c: distribution functions for experiment_results */
extern double stats_normal_cdf(double x);
extern double stats_chisq_sf(double x, double df);
extern double stats_t_cdf(double t, double df);

/* guc.c: the OpenAI client's (http.c, openai.c) and the LLM cold start's settings */
extern char *personalize_openai_base_url;
extern char *personalize_openai_api_key;
extern char *personalize_openai_api_key_file;
extern char *personalize_openai_model;
extern char *personalize_openai_embedding_model;
extern int	personalize_openai_embedding_dimensions;
extern int	personalize_openai_concurrency;
extern int	personalize_openai_connect_timeout;
extern int	personalize_openai_timeout;
extern int	personalize_openai_max_retries;
extern int	personalize_openai_retry_base;
extern int	personalize_llm_customers_per_request;
extern int	personalize_llm_max_interactions;
extern int	personalize_llm_ttl;
extern int	personalize_llm_k;
extern int	personalize_llm_candidates;

#endif							/* PERSONALIZE_H */
