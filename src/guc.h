/*
 * guc.h: the personalize.* settings (guc.c), defined by _PG_init(), and the
 * time recommend() scores against.
 */
#ifndef PERSONALIZE_GUC_H
#define PERSONALIZE_GUC_H

extern int	personalize_neighbors_k;
extern int	personalize_neighbors_min_count;
extern char *personalize_as_of;
extern int	personalize_model_lock_wait;
extern bool personalize_allow_drop_with_data;
extern int	personalize_ease_products;
extern double personalize_ease_lambda;
extern int	personalize_ease_k;
extern int	personalize_health_refresh_warn;
extern int	personalize_health_refresh_critical;
extern int	personalize_health_backlog_warn;
extern int	personalize_health_backlog_critical;
extern int	personalize_health_llm_warn;
extern int	personalize_health_llm_critical;
extern char *personalize_health_expected_jobs;
extern void personalize_define_gucs(void);
extern TimestampTz personalize_now(void);

/* the OpenAI client's (http.c, openai.c) and the LLM cold start's settings */
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
extern int	personalize_openai_response_budget;
extern int	personalize_llm_customers_per_request;
extern int	personalize_llm_max_interactions;
extern int	personalize_llm_ttl;
extern int	personalize_llm_k;
extern int	personalize_llm_candidates;

#endif							/* PERSONALIZE_GUC_H */
