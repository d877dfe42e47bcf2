/*
 * explain.c: personalize.explain(customer_id, product_id, variant, filters...)
 * shows every contribution to the score recommend() gives that product for
 * that customer under the same variant and filters, one row each
 * (component, source_product_id, detail, value), in the order recommend.c
 * computes them:
 *
 *   history     one history product's co-occurrence list: its decayed event
 *               weight x neighbour score / the list's best, scaled as the
 *               score scales the sum (by the largest sum among the candidates
 *               and the blend)
 *   content     one history product's content list: weight x content_weight
 *               x cosine, scaled the same way
 *   above_fill  1 for personal candidates, ranked above the popular fill
 *   llm         the LLM answer's rank, blended by the trust in the history
 *   popularity  the product's popularity share, as the variant blends it
 *   floor       the least score of a campaign product (0.01)
 *   campaign    the campaign boost: (boost - 1) x the sum of the rows above
 *
 * The values sum to the score (to the rounding of a different summation
 * order). Rows of component 'rule' (value 0) say what recommend() does with
 * the product: its rank, or why it leaves it out (bought, exclude_products,
 * inactive, a filter, the category cap, not a candidate at all); for a
 * product left out, the other rows show the score it would have had.
 */
#include "personalize.h"

#include "lifecycle.h"
#include "recommend.h"

PG_FUNCTION_INFO_V1(personalize_explain);

static void
put_row(ReturnSetInfo *rsinfo, const char *component, int64 source, bool has_source, const char *detail,
		double value)
{
	Datum		values[4];
	bool		nulls[4] = {false, !has_source, false, false};

	values[0] = CStringGetTextDatum(component);
	values[1] = Int64GetDatum(source);
	values[2] = CStringGetTextDatum(detail);
	values[3] = Float8GetDatum(value);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The history and content rows: each traced contribution, scaled as the score scales their sum. */
static void
put_contributions(ReturnSetInfo *rsinfo, const RecommendState *rs, const ScoreParts *sp)
{
	ListCell   *lc;

	foreach(lc, rs->trace)
	{
		Contribution *t = lfirst(lc);
		char	   *detail;

		if (t->ease)
			detail = psprintf("EASE list: weight %.6g (event weight %.6g x decay %.6g) x EASE weight %.6g (relative to the median best weight) = %.6g; x %.6g (scaled with the other contributions)",
							  t->weight, t->event_weight, t->event_weight != 0.0 ? t->weight / t->event_weight : 0.0,
							  t->sim, t->value, sp->cooc_factor);
		else if (t->content)
			detail = psprintf("content list: weight %.6g (event weight %.6g x decay %.6g) x content_weight %.6g x cosine %.6g = %.6g; x %.6g (scaled with the other contributions)",
							  t->weight, t->event_weight, t->event_weight != 0.0 ? t->weight / t->event_weight : 0.0,
							  rs->cfg.content_weight, t->sim, t->value, sp->cooc_factor);
		else
			detail = psprintf("co-occurrence list%s%s: weight %.6g (event weight %.6g x decay %.6g) x neighbour score %.6g / the list's best %.6g = %.6g; x %.6g (scaled with the other contributions)",
							  t->fallback ? " (llr, the product has no EASE list)" : "",
							  t->live ? " (computed live)" : "",
							  t->weight, t->event_weight, t->event_weight != 0.0 ? t->weight / t->event_weight : 0.0,
							  t->sim, t->sim_best, t->value, sp->cooc_factor);
		put_row(rsinfo, t->content ? "content" : "history", t->from, true, detail, t->value * sp->cooc_factor);
	}
}

/* The parts of the score that are not history: above_fill, llm, popularity, floor, campaign. */
static void
put_parts(ReturnSetInfo *rsinfo, const RecommendState *rs, const Candidate *c, const ScoreParts *sp)
{
	if (sp->one != 0.0)
		put_row(rsinfo, "above_fill", 0, false, "personal candidates rank above the popular fill", sp->one);
	if (sp->llm != 0.0)
		put_row(rsinfo, "llm", 0, false,
				psprintf("LLM answer at score %.6g of 1, trusted %.6g (history %lld of llm_history %d)%s%s",
						 c->llm, 1.0 - rs->trust, (long long) rs->history_total, rs->cfg.llm_history,
						 c->llm_reason ? ": " : "", c->llm_reason ? c->llm_reason : ""),
				sp->llm);
	if (sp->pop != 0.0)
		put_row(rsinfo, "popularity", 0, false,
				psprintf("%s share %.6g, popularity_weight %.6g",
						 c->pop_source == 1 ? "recent window" : "all-time", c->pop, rs->cfg.popularity_weight),
				sp->pop);
	if (sp->floor != 0.0)
		put_row(rsinfo, "floor", 0, false, "the least score of a campaign product", sp->floor);
	if (c->campaign != NULL && sp->boost != 1.0)
		put_row(rsinfo, "campaign", 0, false,
				psprintf("campaign %s: boost %.6g", c->campaign, sp->boost), c->base * (sp->boost - 1.0));
}

/* The rule row: the product's rank under the variant, or why recommend() leaves it out. */
static void
put_rule(ReturnSetInfo *rsinfo, RecommendState *rs, Candidate *c, bool scored, Ranking *ranking)
{
	const char *why = NULL;

	if (c == NULL)
		why = "not a candidate: no history neighbour, LLM answer, popularity or campaign brings it in";
	else if (!scored && filters_excludes_id(&rs->filters, c->product_id))
		why = "in exclude_products";
	else if (!scored && c->excluded)
		why = "bought by the customer";
	else if (!scored)
		why = "not a candidate: nothing scores it under this variant";
	else
	{
		recommend_walk(rs, ranking, NULL, false);
		why = rs->explain_drop;
		if (why == NULL && rs->explain_rank == 0)
			why = "ranked beyond 1000";
	}
	if (why != NULL)
		put_row(rsinfo, "rule", 0, false, psprintf("left out under variant %s: %s", rs->variant, why), 0.0);
	else
		put_row(rsinfo, "rule", 0, false,
				psprintf("rank %d under variant %s: recommend() returns it for k >= %d",
						 rs->explain_rank, rs->variant, rs->explain_rank), 0.0);
}

/* personalize.explain(customer_id bigint, product_id bigint, variant text, filters...) */
Datum
personalize_explain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RecommendState rs = {0};
	Ranking    *ranking;
	Candidate  *c;
	bool		found;
	bool		scored = false;
	ScoreParts	sp;

	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("customer_id and product_id must not be null"),
				 errhint("Pass the customer and the product to explain.")));
	rs.customer_id = PG_GETARG_INT64(0);
	rs.has_customer = true;
	rs.explaining = true;
	rs.explain_id = PG_GETARG_INT64(1);
	rs.k = 1000;
	filters_from_args(fcinfo, 3, true, &rs.filters);

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	recommend_begin(&rs, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	ranking = recommend_rank(&rs);
	c = hash_search(rs.cands, &rs.explain_id, HASH_FIND, &found);
	if (found)
	{
		scored = recommend_score(c, &rs, &sp);
		put_contributions(rsinfo, &rs, &sp);
		put_parts(rsinfo, &rs, c, &sp);
	}
	put_rule(rsinfo, &rs, found ? c : NULL, scored, ranking);
	SPI_finish();
	return (Datum) 0;
}
