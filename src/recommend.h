/*
 * recommend.h: the ranking every serving function shares (recommend.c), for
 * the entry points of items.c (similar_items, recommend_for_items) and
 * explain.c.
 */
#ifndef RECOMMEND_H
#define RECOMMEND_H

#include "funcapi.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

#include "filters.h"
#include "variant.h"

typedef struct Candidate
{
	int64		product_id;		/* hash key */
	double		cooc;			/* summed weighted similarity */
	double		best;			/* largest single contribution */
	bool		has_best;
	int64		best_from;		/* history product that gave it */
	bool		best_from_bought;
	double		pop;			/* 0..1 */
	int			pop_source;		/* 0 none, 1 window, 2 all-time */
	double		boost;			/* 1 without campaign */
	char	   *campaign;
	bool		excluded;
	bool		best_content;	/* that contribution came from a content list */
	bool		best_live;		/* ... from a list computed live (not refreshed yet) */
	double		llm;			/* (n - i + 1) / n from the LLM rank; 0 none */
	bool		has_llm;
	char	   *llm_reason;		/* the LLM's reason (may be NULL) */
	bool		cooc_reason;	/* the reason names a history product */
	bool		show_llm;		/* the reason is the LLM's */
	double		base;			/* the score before the campaign boost */
	double		score;
	bool		from_popular;	/* only popularity brings it in: not in the hash (ranking.c) */
} Candidate;

typedef struct HistoryItem
{
	int64		product_id;
	double		weight;			/* event weight, decayed */
	double		event_weight;	/* before the decay */
	bool		bought;
	bool		has_list;		/* has a co-occurrence list under the measure */
	bool		dirty;			/* its counts changed since its lists were refreshed */
} HistoryItem;

/*
 * Which neighbour lists a pass over the rows of read_lists() takes: the
 * variant's measure, the 'llr' lists of history products without an 'ease'
 * list (variants of measure ease), or the content lists.
 */
typedef enum ListKind
{
	LIST_PRIMARY,
	LIST_FALLBACK,
	LIST_CONTENT
} ListKind;

/* One contribution of a history product to the explained product (explain()). */
typedef struct Contribution
{
	int64		from;			/* the history product */
	bool		content;		/* from its content list (else co-occurrence) */
	bool		ease;			/* from its EASE list: the weight itself, not scaled by the list's best */
	bool		fallback;		/* from its 'llr' list, for want of an EASE list */
	bool		live;			/* from a list computed live */
	double		weight;			/* the history product's decayed weight */
	double		event_weight;	/* its weight before the decay */
	double		sim;			/* neighbour score (cosine for content) */
	double		sim_best;		/* the list's best score (co-occurrence) */
	double		value;			/* the contribution to cooc */
} Contribution;

/* How many products of a category have been returned (category_cap). */
typedef struct CategoryCount
{
	char	   *category;
	int			n;
} CategoryCount;

/* The candidates in rank order, as far as the walk needs them (ranking.h). */
typedef struct Ranking Ranking;

/* The state of one serving call, handed from one phase to the next. */
typedef struct RecommendState
{
	int64		customer_id;
	bool		has_customer;	/* false: recommend_for_items() without one */
	bool		items_mode;		/* the history is the input products (items.c) */
	int			k;
	char	   *variant;		/* the variant served */
	VariantConfig cfg;
	TimestampTz now;
	RecommendFilters filters;
	HTAB	   *cands;
	HistoryItem *hist;
	int			nhist;
	int64		history_total;
	int			nllm;
	double		trust;
	double		window_days;
	double		max_cooc;		/* the largest cooc among the candidates */
	bool		popular_live;	/* the popularity list was computed live */
	const struct PopularList *popular;	/* the popularity list read (popular.h), or NULL */
	CategoryCount *cats;
	int			ncats;
	/* explain(): the product explained, its contributions, where the walk put it */
	bool		explaining;
	int64		explain_id;
	List	   *trace;
	int			explain_rank;	/* 0: not returned */
	const char *explain_drop;	/* why the walk dropped it, or NULL */
} RecommendState;

/* A candidate's score in parts: base = one + cooc_factor * cooc + llm + pop + floor. */
typedef struct ScoreParts
{
	double		one;			/* 1 for personal candidates ranked above the fill */
	double		cooc_factor;	/* times the summed history contributions */
	double		llm;			/* the LLM rank's part */
	double		pop;			/* popularity's part */
	double		floor;			/* a campaign product's minimum */
	double		boost;			/* the campaign boost (1 without) */
} ScoreParts;

extern Datum recommend_serve_customer(FunctionCallInfo fcinfo, bool with_variant);
extern int	recommend_check_k(FunctionCallInfo fcinfo, int argno);
extern void recommend_begin(RecommendState *rs, char *variant_name);
extern Ranking *recommend_rank(RecommendState *rs);
extern void recommend_walk(RecommendState *rs, Ranking *ranking, ReturnSetInfo *rsinfo, bool with_variant);
extern bool recommend_score(Candidate *c, const RecommendState *rs, ScoreParts *sp);

#endif							/* RECOMMEND_H */
