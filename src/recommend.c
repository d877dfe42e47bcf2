/*
 * recommend.c: personalize.recommend(customer_id, variant, k, filters...) and
 * recommend_served(), read-only.
 * A NULL variant means the running experiment's arm for the customer
 * (experiment.c), or the default variant (serving_settings, hybrid without a
 * row) when none runs or the customer is out of traffic.
 *
 * Candidates come from the neighbour lists of the customer's most relevant
 * history products (weight w_h by event type, decayed by the age of the latest
 * event), from the popularity list, from the customer's stored LLM
 * recommendations, and from active campaigns.
 *
 * History. Each co-occurrence list (the variant's measure) is scaled by its
 * best score: contribution w_h * sim / sim_best. EASE lists (measure 'ease',
 * refresh_ease()) are not: their weights add up as the model says,
 * contribution w_h * B_ij, with B stored divided by the median over products of
 * their best weight; a history product without an EASE list (outside the
 * model's products, or before the first refresh_ease()) takes its 'llr' list
 * instead, scaled by its best score as above, so its best neighbour counts
 * as much as a typical product's best EASE neighbour. Content lists (measure
 * 'content', cosine of product embeddings, written by content.c) count with
 * the variant's content_weight c and their raw cosine, w_h * c * cos, from:
 *   - the whole content list of a history product that has no co-occurrence
 *     list (a product too new, or too rarely bought, to have one);
 *   - the content neighbours of every history product that have too little
 *     co-occurrence themselves (their stored count, the neighbour's
 *     customers at refresh time, below personalize.neighbors_min_count), so
 *     a product added today reaches the customers of products like it.
 * Raw cosine rather than scaled: a weak content match stays weak next to a
 * co-occurrence list. cooc is the sum of all contributions divided by the
 * largest among the candidates (0..1).
 *
 * LLM. For the llm algorithm, and for cooccurrence/hybrid when the customer
 * has fewer than llm_history history products (customer_items rows, n_h),
 * the customer's llm_recommendations (n rows, best first, at position i)
 * give llm = (n - i + 1) / n (1 for the first, 1/n for the last). How much
 * the customer's own history is trusted grows with it: t = n_h / llm_history
 * (0 for the llm algorithm), and pers = t * cooc + (1 - t) * llm.
 *
 * pop is 0.5 + 0.5 * share for the recent window's products and 0.5 * share
 * for the all-time ones (share = customers / the top product's customers).
 * Scores (w = popularity_weight):
 *   with LLM rows in play, pers > 0     1 + (1 - w) * pers + w * pop (above the fill)
 *   w > 0 (hybrid)                      (1 - w) * cooc + w * pop
 *   otherwise, co-occurrence candidates 1 + cooc (ranked above the fill)
 *   popularity candidates               pop
 *   campaign-only candidates            max(pop, 0.01)
 * each multiplied by the best active campaign boost of the product. Without
 * LLM rows or content lists for the customer these are exactly the scores of
 * co-occurrence and popularity alone. recommend() only reads tables: the LLM
 * answers and the embeddings are fetched by other functions.
 *
 * No empty first hour. A history product that is dirty and has no stored
 * list under the measure (before the first refresh, after a restore, right
 * after create_variant() with a new measure, bought for the first time since
 * the refresh) gets its list computed now by _compute_neighbors(), the SQL
 * function the refresh stores from; with no stored popularity list the
 * all-time bestsellers come from _popular_all_time(). The answers equal the
 * refreshed ones; the reason ends in " (live)". Nothing is written: recommend()
 * stays read-only (hot standbys).
 *
 * The ranking is shared (recommend.h): recommend_begin() picks the variant,
 * recommend_rank() gathers and scores the candidates (popularity looked up in
 * the list popular.c keeps, not copied into the candidates), ranking.c ranks
 * them as far as the walk asks, recommend_walk() walks them in chunks, dropping inactive products, purchases, what the request's
 * filters leave out (filters.c, checked in the chunk's product query) and
 * what the category cap does not take. items.c calls them with the input
 * products as the history (similar_items, recommend_for_items), explain.c
 * with one product traced through every contribution.
 */
#include "personalize.h"

#include <math.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "echo.h"
#include "experiment.h"
#include "filters.h"
#include "fold.h"
#include "guc.h"
#include "similarity.h"
#include "spiutil.h"
#include "lifecycle.h"
#include "popular.h"
#include "ranking.h"
#include "recommend.h"
#include "variant.h"

PG_FUNCTION_INFO_V1(personalize_recommend);
PG_FUNCTION_INFO_V1(personalize_recommend_filtered);
PG_FUNCTION_INFO_V1(personalize_recommend_served);
PG_FUNCTION_INFO_V1(personalize_served_variant);

static SPIPlanPtr plan_variant, plan_variant_names, plan_history, plan_neighbors,
			plan_campaigns, plan_products, plan_products_events, plan_llm, plan_live_neighbors,
			plan_unfolded;

static Candidate *
candidate(HTAB *h, int64 product_id)
{
	bool		found;
	Candidate  *c = hash_search(h, &product_id, HASH_ENTER, &found);

	if (!found)
	{
		memset(((char *) c) + sizeof(int64), 0, sizeof(Candidate) - sizeof(int64));
		c->boost = 1.0;
	}
	return c;
}

/*
 * The variant's row (name NULL: the default variant, serving_settings'
 * default_variant, hybrid without a row), or an error that lists the known
 * ones. Returns its name.
 */
static char *
load_variant(const char *name, VariantConfig *cfg)
{
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {name ? CStringGetTextDatum(name) : (Datum) 0};
	bool		isnull;
	char	   *algorithm;
	char	   *found;
	Datum		params;

	spi_prepare_kept(&plan_variant,
					 "SELECT name, algorithm, params FROM personalize.variants "
					 "WHERE name = coalesce($1, (SELECT default_variant FROM personalize.serving_settings), 'hybrid')",
					 1, t);
	if (SPI_execute_plan(spi_kept(&plan_variant), v, name ? NULL : "n", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read variants");
	if (SPI_processed == 0)
	{
		char	   *known = "";

		spi_prepare_kept(&plan_variant_names,
						 "SELECT string_agg(name, ', ' ORDER BY name COLLATE \"C\") FROM personalize.variants",
						 0, NULL);
		if (SPI_execute_plan(spi_kept(&plan_variant_names), NULL, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
		{
			char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (s != NULL)
				known = s;
		}
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown variant \"%s\"", name ? echo_name(name) : "(the default variant)"),
				 errdetail("Known variants: %s.", known),
				 errhint("Pass NULL for the default variant, or create one with personalize.create_variant().")));
	}
	found = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	algorithm = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	params = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	variant_parse(found, algorithm, isnull ? NULL : DatumGetJsonbP(params), cfg);
	return found;
}

/*
 * The customer's history_items most relevant products (event weight decayed by
 * the age of the latest event), most relevant first. Purchases beyond these are
 * excluded later, when the ranking is walked (see the product query). *total
 * is the number of all their history products (llm_history compares with it).
 */
static HistoryItem *
load_history(int64 customer_id, const VariantConfig *cfg, TimestampTz now, int *n_out, int64 *total)
{
	Oid			t[4] = {INT8OID, FLOAT8OID, TIMESTAMPTZOID, INT4OID};
	Datum		v[4] = {Int64GetDatum(customer_id), Float8GetDatum(cfg->half_life_days),
	TimestampTzGetDatum(now), Int32GetDatum(cfg->history_items)};
	HistoryItem *h;
	int			n;

	/*
	 * The decay never raises, whatever last_at holds (a database from 0.1.0
	 * may keep events at +-infinity or in year 1): no decay without a half
	 * life or for an event at or after now (+infinity too); x half lives
	 * are computed only from finite timestamps (an infinite age is
	 * 'Infinity'); beyond 1000 half lives, or where weight x 0.5^x would
	 * underflow (ln |weight| - x ln 2 < -700), nothing is left. Within those
	 * bounds power() and the product stay in the normal double range, and
	 * the value is the same expression as before for every other row. The
	 * CASE arms are tried in order, so x is only used where it is finite.
	 */
	spi_prepare_kept(&plan_history,
					 "SELECT product_id, w, bought, count(*) OVER (), weight FROM ("
					 "  SELECT product_id, weight, purchases > 0 AS bought, CASE "
					 "    WHEN NOT $2 > 0 OR last_at >= $3 THEN weight "
					 "    WHEN x > 1000 OR weight = 0 THEN 0 "
					 "    WHEN ln(abs(weight)) < x * 0.6931471805599453 - 700 THEN 0 "
					 "    ELSE weight * power(0.5, x) END AS w "
					 "  FROM (SELECT product_id, purchases, weight, last_at, "
					 "          CASE WHEN isfinite(last_at) AND isfinite($3) "
					 "            THEN greatest(date_part('epoch', $3 - last_at), 0) / 86400 / $2 "
					 "            ELSE 'Infinity' END AS x "
					 "        FROM personalize.customer_items WHERE customer_id = $1) a) h "
					 "ORDER BY w DESC, product_id LIMIT $4",
					 4, t);
	if (SPI_execute_plan(spi_kept(&plan_history), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the customer's history");
	n = (int) SPI_processed;
	h = palloc0(sizeof(HistoryItem) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		h[i].product_id = spi_int8(i, 1, 0);
		h[i].weight = spi_float8(i, 2, 0.0);
		h[i].bought = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		h[i].event_weight = spi_float8(i, 5, 0.0);
	}
	*total = n > 0 ? spi_int8(0, 4, n) : 0;
	*n_out = n;
	return h;
}

/*
 * A neighbour array of a list row (column col), or NULL if it holds a null;
 * *len is its length.
 */
static void *
list_values(SPITupleTable *tt, uint64 row, int col, int *len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[row], tt->tupdesc, col, &isnull);
	ArrayType  *a;

	if (isnull)
		return NULL;
	a = DatumGetArrayTypeP(d);
	if (ARR_HASNULL(a))
		return NULL;
	*len = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	/* no null bitmap (checked above): the values follow the fixed header */
	return (char *) a + ARR_OVERHEAD_NONULLS(ARR_NDIM(a));
}

/* explain(): one contribution to the explained product, kept in rs->trace. */
static void
trace_contribution(RecommendState *rs, double contrib, const HistoryItem *h, ListKind kind, bool live,
				   double sim, double sim_best)
{
	Contribution *t = palloc(sizeof(Contribution));

	t->from = h->product_id;
	t->content = kind == LIST_CONTENT;
	t->ease = kind == LIST_PRIMARY && rs->cfg.measure == SIM_EASE;
	t->fallback = kind == LIST_FALLBACK;
	t->live = live;
	t->weight = h->weight;
	t->event_weight = h->event_weight;
	t->sim = sim;
	t->sim_best = sim_best;
	t->value = contrib;
	rs->trace = lappend(rs->trace, t);
}

/*
 * One neighbour's contribution (score sim, of a list whose best is sim_best),
 * remembering the largest for the reason.
 */
static void
contribute(RecommendState *rs, int64 product_id, double contrib, const HistoryItem *h, ListKind kind, bool live,
		   double sim, double sim_best)
{
	Candidate  *c = candidate(rs->cands, product_id);
	bool		content = kind == LIST_CONTENT;

	if (rs->explaining && product_id == rs->explain_id)
		trace_contribution(rs, contrib, h, kind, live, sim, sim_best);

	c->cooc += contrib;
	if (!c->has_best || contrib > c->best)
	{
		c->has_best = true;
		c->best = contrib;
		c->best_from = h->product_id;
		c->best_from_bought = h->bought;
		c->best_content = content;
		c->best_live = live;
	}
}

/*
 * Add one list row (row r of tt) of history product h: a co-occurrence list
 * scaled by its best score (live: computed just now, not stored), an EASE
 * list as it is, or a content list as the header comment says.
 */
static void
add_list(RecommendState *rs, SPITupleTable *tt, uint64 r, HistoryItem *h, ListKind kind, bool live)
{
	const VariantConfig *cfg = &rs->cfg;
	bool		content = kind == LIST_CONTENT;
	int			nlen = 0,
				slen = 0,
				clen = 0;
	int64	   *nid = list_values(tt, r, 2, &nlen);
	double	   *nsc = list_values(tt, r, 3, &slen);
	int64	   *ncnt = content ? list_values(tt, r, 4, &clen) : NULL;
	int			len = Min(nlen, cfg->neighbors);

	if (nid == NULL || nsc == NULL || slen < len || (content && (ncnt == NULL || clen < len)))
		return;
	if (kind == LIST_PRIMARY && cfg->measure == SIM_EASE)
	{
		h->has_list = true;
		for (int j = 0; j < len; j++)
			contribute(rs, nid[j], h->weight * nsc[j], h, kind, live, nsc[j], 1.0);
		return;
	}
	if (!content)
	{
		h->has_list = true;
		for (int j = 0; j < len; j++)
			/* each list scaled by its best score, so that measures with large raw values (LLR) do not let one list drown the others */
			contribute(rs, nid[j], h->weight * (nsc[0] > 0.0 ? nsc[j] / nsc[0] : 0.0), h, kind, live,
					   nsc[j], nsc[0]);
		return;
	}
	for (int j = 0; j < len; j++)
	{
		/*
		 * A product with a co-occurrence list takes from its content list only
		 * the neighbours co-occurrence cannot know yet (too few customers at
		 * the content refresh); one without takes the whole list.
		 */
		if (h->has_list && ncnt[j] >= personalize_neighbors_min_count)
			continue;
		if (nsc[j] > 0.0)
			contribute(rs, nid[j], h->weight * cfg->content_weight * nsc[j], h, kind, false, nsc[j], 0.0);
	}
}

/*
 * Add the list rows of tt of one kind to the history products they belong to:
 * the variant's measure (fifth column false, sixth true), the fallback lists
 * of products that have none of those (sixth false), or the content lists
 * (fifth true). Rows whose fifth column is null mark dirty products (see
 * read_lists).
 */
static void
add_lists(RecommendState *rs, SPITupleTable *tt, uint64 n, int use, ListKind kind, bool live)
{
	HistoryItem *hist = rs->hist;

	for (uint64 r = 0; r < n; r++)
	{
		bool		marker;
		bool		isnull;
		Datum		d = SPI_getbinval(tt->vals[r], tt->tupdesc, 5, &marker);
		int64		from = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));

		for (int i = 0; i < use; i++)
			if (hist[i].product_id == from)
			{
				/* live lists are all of the kind asked for */
				bool		primary = live ? kind == LIST_PRIMARY
					: DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 6, &isnull));

				if (marker)
					hist[i].dirty = true;
				else if (DatumGetBool(d) ? kind == LIST_CONTENT
						 : (kind == LIST_PRIMARY ? primary : kind == LIST_FALLBACK && !primary && !hist[i].has_list))
					add_list(rs, tt, r, &hist[i], kind, live);
				break;
			}
	}
}

/*
 * The stored lists of the history products under the measure (and 'content'
 * with with_content, and 'llr' for the measure ease: the fallback), and one
 * row with a null fifth column for each of them that is dirty; the sixth
 * column says which rows are of the variant's measure. Three text
 * parameters, not a text[]: a generic plan built on an empty table then still
 * looks both columns up in the primary key (with an array it scanned every
 * list of the measure). A list not needed is passed as the measure again.
 * Ordered by product: a candidate's contributions are then added up in the
 * same order whatever plan reads the lists, so its score is the same to the
 * last bit in every session (batch rows equal recommend()).
 */
static SPITupleTable *
read_lists(const int64 *ids, int use, const VariantConfig *cfg, bool with_content, uint64 *n)
{
	Oid			t[4] = {TEXTOID, TEXTOID, TEXTOID, INT8ARRAYOID};
	Datum		v[4];

	spi_prepare_kept(&plan_neighbors,
					 "SELECT product_id, neighbor_ids, scores, counts, measure = 'content', measure = $1 "
					 "FROM personalize.neighbors "
					 "WHERE measure IN ($1, $2, $3) AND product_id = ANY($4) "
					 "UNION ALL SELECT product_id, NULL, NULL, NULL, NULL, NULL FROM personalize.dirty_products "
					 "WHERE product_id = ANY($4) ORDER BY 1, 5, 6",
					 4, t);
	v[0] = CStringGetTextDatum(similarity_measure_name(cfg->measure));
	v[1] = with_content ? CStringGetTextDatum("content") : v[0];
	v[2] = cfg->measure == SIM_EASE ? CStringGetTextDatum(similarity_measure_name(EASE_FALLBACK_MEASURE)) : v[0];
	v[3] = int8_array_datum(ids, use);
	if (SPI_execute_plan(spi_kept(&plan_neighbors), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read neighbour lists");
	*n = SPI_processed;
	return SPI_tuptable;
}

/*
 * Products of the history with no stored list that are not dirty yet because
 * their count changes are still pending (model_deltas, fold.c): those without
 * a folded count (item_counts_base), i.e. bought for the first time since the
 * last fold, or before the first one. Appended to ids[0..nids); returns the
 * new count. Not while evaluate() reads its cut (no pending changes there),
 * nor under 0.1.0's SQL (counts written at once, products marked dirty).
 */
static int
add_unfolded_products(const HistoryItem *hist, int use, int64 *ids, int nids)
{
	Oid			t[1] = {INT8ARRAYOID};
	Datum		v[1];
	int64	   *cand = palloc(sizeof(int64) * Max(use, 1));
	int			ncand = 0;

	for (int i = 0; i < use; i++)
		if (!hist[i].dirty && !hist[i].has_list)
			cand[ncand++] = hist[i].product_id;
	if (ncand == 0 || spi_reading_evaluation_model() || !model_deltas_exist())
		return nids;
	spi_prepare_kept(&plan_unfolded,
					 "SELECT x FROM unnest($1) AS x "
					 "WHERE NOT EXISTS (SELECT FROM personalize.item_counts_base i WHERE i.product_id = x)",
					 1, t);
	v[0] = int8_array_datum(cand, ncand);
	if (SPI_execute_plan(spi_kept(&plan_unfolded), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the folded product counts");
	for (uint64 r = 0; r < SPI_processed; r++)
		ids[nids++] = spi_int8(r, 1, 0);
	SPI_freetuptable(SPI_tuptable);
	return nids;
}

/*
 * No empty first hour: the lists of history products that are dirty and have
 * no stored list under the measure (before the first refresh, after a
 * restore, right after create_variant() with a new measure, a product bought
 * for the first time) computed now from the exact counts, as the refresh
 * will store them. NULL when there is none to compute.
 */
static SPITupleTable *
read_live_lists(const HistoryItem *hist, int use, const VariantConfig *cfg, uint64 *n)
{
	Oid			t[2] = {TEXTOID, INT8ARRAYOID};
	Datum		v[2];
	int64	   *ids = palloc(sizeof(int64) * use);
	int			nids = 0;

	for (int i = 0; i < use; i++)
		if (hist[i].dirty && !hist[i].has_list)
			ids[nids++] = hist[i].product_id;
	nids = add_unfolded_products(hist, use, ids, nids);
	if (nids == 0)
		return NULL;
	spi_prepare_kept(&plan_live_neighbors,
					 "SELECT product_id, neighbor_ids, scores, counts, false "
					 "FROM personalize._compute_neighbors(ARRAY[$1], $2) ORDER BY 1",
					 2, t);
	/* EASE is no pair formula: its fallback is what is computed live */
	v[0] = CStringGetTextDatum(similarity_measure_name(cfg->measure == SIM_EASE ? EASE_FALLBACK_MEASURE : cfg->measure));
	v[1] = int8_array_datum(ids, nids);
	if (SPI_execute_plan(spi_kept(&plan_live_neighbors), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not compute neighbour lists");
	*n = SPI_processed;
	return SPI_tuptable;
}

/*
 * Add the neighbour lists of the top history products to the candidates (the
 * stored ones, then live ones where none is stored yet), and with
 * content_weight > 0 their content lists: those last, because a content list
 * is read knowing whether its product has a co-occurrence list.
 */
static void
score_cooccurrence(RecommendState *rs)
{
	const VariantConfig *cfg = &rs->cfg;
	HistoryItem *hist = rs->hist;
	int			use = rs->items_mode ? rs->nhist : Min(rs->nhist, cfg->history_items);
	int64	   *ids = palloc(sizeof(int64) * Max(use, 1));
	bool		with_content = cfg->content_weight > 0.0;
	SPITupleTable *stored,
			   *live;
	uint64		nstored,
				nlive = 0;

	if (use == 0)
		return;
	for (int i = 0; i < use; i++)
		ids[i] = hist[i].product_id;
	stored = read_lists(ids, use, cfg, with_content, &nstored);
	add_lists(rs, stored, nstored, use, LIST_PRIMARY, false);
	if (cfg->measure == SIM_EASE)
		add_lists(rs, stored, nstored, use, LIST_FALLBACK, false);
	live = read_live_lists(hist, use, cfg, &nlive);
	if (live != NULL)
		add_lists(rs, live, nlive, use, cfg->measure == SIM_EASE ? LIST_FALLBACK : LIST_PRIMARY, true);
	if (with_content)
		add_lists(rs, stored, nstored, use, LIST_CONTENT, false);
}

/*
 * The customer's stored LLM recommendations, best first: llm = (n - i + 1) / n
 * at position i. Returns n.
 */
static int
score_llm(HTAB *cands, int64 customer_id)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(customer_id)};
	int			n;

	spi_prepare_kept(&plan_llm,
					 "SELECT product_id, reason FROM personalize.llm_recommendations "
					 "WHERE customer_id = $1 ORDER BY rank",
					 1, t);
	if (SPI_execute_plan(spi_kept(&plan_llm), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the LLM recommendations");
	n = (int) SPI_processed;
	for (int i = 0; i < n; i++)
	{
		Candidate  *c = candidate(cands, spi_int8(i, 1, 0));

		c->has_llm = true;
		c->llm = (double) (n - i) / (double) n;
		c->llm_reason = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	return n;
}

/* Active campaigns: boost (the largest per product) and bring the products in. */
static void
apply_campaigns(HTAB *cands, TimestampTz now)
{
	Oid			t[1] = {TIMESTAMPTZOID};
	Datum		v[1] = {TimestampTzGetDatum(now)};

	spi_prepare_kept(&plan_campaigns,
					 "SELECT product_id, name, boost FROM personalize.marketing_campaigns "
					 "WHERE ends_at > $1 AND starts_at <= $1 ORDER BY product_id, boost DESC, campaign_id",
					 1, t);
	if (SPI_execute_plan(spi_kept(&plan_campaigns), v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read campaigns");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Candidate  *c = candidate(cands, spi_int8(r, 1, 0));
		double		boost = spi_float8(r, 3, 1.0);

		if (c->campaign == NULL)
		{
			c->boost = boost;
			c->campaign = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		}
	}
}

typedef struct NameEntry
{
	int64		product_id;		/* hash key */
	char	   *name;
} NameEntry;

static char *
quoted_name(HTAB *names, int64 id)
{
	bool		found;
	NameEntry  *e = hash_search(names, &id, HASH_FIND, &found);

	return found ? e->name : "another product";
}

/* One product of a chunk of the ranking, as the products table has it. */
typedef struct ProductInfo
{
	int64		id;
	char	   *category;
	bool		active;
	bool		bought;
	bool		passes;			/* it passes the request's filters */
} ProductInfo;

/* k must be given, within 1..1000. */
int
recommend_check_k(FunctionCallInfo fcinfo, int argno)
{
	int			k;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("k must not be null"),
				 errhint("k is how many products to return, from 1 to 1000.")));
	k = PG_GETARG_INT32(argno);
	if (k < 1 || k > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and 1000"),
				 errdetail("Got k = %d.", k),
				 errhint("k is how many products to return.")));
	return k;
}

/* customer_id must be given. */
static int64
check_customer(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("customer_id must not be null"),
				 errhint("For an anonymous visitor pass any id without history, for example 0: they get popular products.")));
	return PG_GETARG_INT64(0);
}

/*
 * Start a serving call (SPI connected): the variant to serve (the one named,
 * else the running experiment's arm for the customer, else the default
 * variant), the clock, and the checks of the filters that read tables.
 */
void
recommend_begin(RecommendState *rs, char *variant_name)
{
	/* an explicit variant always wins, then the experiment's arm, then the default */
	if (variant_name == NULL && rs->has_customer)
		variant_name = experiment_running_variant(rs->customer_id);
	rs->variant = load_variant(variant_name, &rs->cfg);
	rs->now = personalize_now();
	filters_check_events(&rs->filters, rs->has_customer);
}

/*
 * Every candidate of the variant: history neighbours, LLM answers, popularity,
 * campaigns. In items mode (items.c) the history is the input products, set
 * by the caller, and the neighbours count for every algorithm but popular; the
 * LLM answers, written per customer, do not.
 */
static void
gather_candidates(RecommendState *rs)
{
	const VariantConfig *cfg = &rs->cfg;
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(Candidate);
	ctl.hcxt = CurrentMemoryContext;
	rs->cands = hash_create("personalize candidates", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (!rs->items_mode)
		rs->hist = load_history(rs->customer_id, cfg, rs->now, &rs->nhist, &rs->history_total);
	if (cfg->algorithm == ALG_COOCCURRENCE || cfg->algorithm == ALG_HYBRID ||
		(rs->items_mode && cfg->algorithm == ALG_LLM))
		score_cooccurrence(rs);
	/* LLM answers: the llm algorithm always, the others for customers with little history */
	if (rs->items_mode)
		;
	else if (cfg->algorithm == ALG_LLM)
		rs->nllm = score_llm(rs->cands, rs->customer_id);
	else if ((cfg->algorithm == ALG_COOCCURRENCE || cfg->algorithm == ALG_HYBRID) &&
			 rs->history_total < cfg->llm_history)
	{
		rs->nllm = score_llm(rs->cands, rs->customer_id);
		rs->trust = (double) rs->history_total / (double) cfg->llm_history;
	}
	if (cfg->algorithm == ALG_POPULAR || cfg->popular_fill || cfg->popularity_weight > 0.0)
	{
		/* not made candidates here: looked up by recommend_rank(), ranked by ranking.c */
		rs->popular = popular_read();
		rs->window_days = rs->popular->window_days;
		rs->popular_live = rs->popular->live;
	}
	if (cfg->campaigns)
		apply_campaigns(rs->cands, rs->now);
}

/*
 * A product of the popularity list made a candidate of the hash (where
 * recommend_rank() gives it its popularity), so that the ranking skips it in
 * the list: NULL if it is on neither.
 */
static Candidate *
find_candidate(RecommendState *rs, int64 product_id)
{
	bool		found;
	Candidate  *c = hash_search(rs->cands, &product_id, HASH_FIND, &found);
	double		pop;

	if (found)
		return c;
	if (popular_lookup(rs->popular, product_id, &pop))
		return candidate(rs->cands, product_id);
	return NULL;
}

static void
mark_excluded(RecommendState *rs, int64 product_id)
{
	Candidate  *c = find_candidate(rs, product_id);

	if (c != NULL)
		c->excluded = true;
}

/*
 * Exclusions known now: purchases among the history read (the rest when
 * walking), the input products in items mode, exclude_products.
 */
static void
exclude_known(RecommendState *rs)
{
	for (int i = 0; i < rs->nhist; i++)
		if (rs->items_mode || (rs->hist[i].bought && !rs->cfg.allow_repeat))
			mark_excluded(rs, rs->hist[i].product_id);
	for (int i = 0; i < rs->filters.nexclude; i++)
		mark_excluded(rs, rs->filters.exclude_ids[i]);
	/* explain() looks the explained product up in the hash */
	if (rs->explaining)
		(void) find_candidate(rs, rs->explain_id);
}

/*
 * A candidate's score (before and after its campaign boost), its parts
 * (explain() shows them: base = one + cooc_factor * cooc + llm + pop + floor,
 * score = base * boost) and which kind of reason it shows (see the header
 * comment); false when it is excluded or not recommended at all. The score
 * is computed by the same expressions as before the parts existed.
 */
bool
recommend_score(Candidate *c, const RecommendState *rs, ScoreParts *sp)
{
	double		base;
	double		cooc = (c->cooc > 0.0 && rs->max_cooc > 0.0) ? c->cooc / rs->max_cooc : 0.0;
	double		inv = (c->cooc > 0.0 && rs->max_cooc > 0.0) ? 1.0 / rs->max_cooc : 0.0;
	double		w = rs->cfg.popularity_weight;
	double		trust = rs->trust;

	memset(sp, 0, sizeof(*sp));
	sp->boost = c->boost;
	c->cooc_reason = false;
	c->show_llm = false;
	if (rs->nllm > 0 && (c->has_llm || cooc > 0.0))
	{
		/* LLM rows in play: the personal candidates rank above the fill, blended by trust */
		double		pers = trust * cooc + (1.0 - trust) * c->llm;

		base = 1.0 + (1.0 - w) * pers + w * c->pop;
		sp->one = 1.0;
		sp->cooc_factor = (1.0 - w) * trust * inv;
		sp->llm = (1.0 - w) * (1.0 - trust) * c->llm;
		sp->pop = w * c->pop;
		if ((1.0 - w) * pers >= w * c->pop)
		{
			c->show_llm = c->has_llm && (1.0 - trust) * c->llm >= trust * cooc;
			c->cooc_reason = !c->show_llm;
		}
	}
	else if (rs->cfg.algorithm != ALG_POPULAR && w > 0.0 && (cooc > 0.0 || c->pop > 0.0))
	{
		/* blend: a trending product can outrank a weak co-occurrence */
		base = (1.0 - w) * cooc + w * c->pop;
		sp->cooc_factor = (1.0 - w) * inv;
		sp->pop = w * c->pop;
		c->cooc_reason = cooc > 0.0 && (1.0 - w) * cooc >= w * c->pop;
	}
	else if (cooc > 0.0)
	{
		/* co-occurrence first, popularity only fills up below it */
		base = 1.0 + cooc;
		sp->one = 1.0;
		sp->cooc_factor = inv;
		c->cooc_reason = true;
	}
	else if (c->pop > 0.0 && (rs->cfg.algorithm == ALG_POPULAR || rs->cfg.popular_fill))
		base = sp->pop = c->pop;
	else if (c->campaign != NULL)
	{
		base = Max(c->pop, 0.01);
		if (c->pop >= 0.01)
			sp->pop = c->pop;
		else
			sp->floor = 0.01;
	}
	else
		return false;
	c->base = base;
	c->score = base * c->boost;
	return !c->excluded;
}

/*
 * Gather, exclude and score the candidates: those recommended, ranked best
 * first (ties by product id) as far as the walk asks (ranking.c). Popularity
 * is looked up here for the candidates of the hash; the products that only
 * popularity brings in are ranked from the list itself.
 */
Ranking *
recommend_rank(RecommendState *rs)
{
	HASH_SEQ_STATUS seq;
	Candidate  *c;
	Candidate **all;
	int			n = 0;
	Ranking    *ranking;
	ScoreParts	sp;

	gather_candidates(rs);
	exclude_known(rs);
	rs->max_cooc = 0.0;
	all = palloc(sizeof(Candidate *) * Max(hash_get_num_entries(rs->cands), 1));
	hash_seq_init(&seq, rs->cands);
	while ((c = hash_seq_search(&seq)) != NULL)
	{
		double		pop;

		if (popular_lookup(rs->popular, c->product_id, &pop))
		{
			c->pop = pop;
			c->pop_source = pop > 0.5 ? 1 : 2;
		}
		rs->max_cooc = Max(rs->max_cooc, c->cooc);
		all[n++] = c;
	}
	ranking = ranking_create(rs, n, rs->popular);
	for (int i = 0; i < n; i++)
		if (recommend_score(all[i], rs, &sp))
			ranking_add(ranking, all[i]);
	ranking_start(ranking);
	return ranking;
}

/*
 * The product query of the walk, with the filters as parameters $3..$8. The
 * event filter has a query of its own: only a call that asks for it reads
 * (and locks) interactions and interactions_archive.
 */
#define PRODUCT_QUERY_HEAD \
	"SELECT p.product_id, p.name, p.category, p.active, coalesce(ci.purchases, 0) > 0, " \
	"  coalesce(($3 IS NULL OR p.category = ANY($3)) " \
	"    AND ($4 IS NULL OR p.category IS NULL OR p.category <> ALL($4)) " \
	"    AND ($5 IS NULL OR p.price >= $5) AND ($6 IS NULL OR p.price <= $6) " \
	"    AND ($7 IS NULL OR p.attributes @> $7) "
#define PRODUCT_QUERY_TAIL \
	", false) FROM personalize.products p LEFT JOIN personalize.customer_items ci " \
	"ON ci.customer_id = $2 AND ci.product_id = p.product_id " \
	"WHERE p.product_id = ANY($1)"

static SPIPlanPtr
product_plan(bool with_events, Oid *types)
{
	if (!with_events)
		return spi_prepare_kept(&plan_products,
								PRODUCT_QUERY_HEAD "AND $8 IS NULL" PRODUCT_QUERY_TAIL,
								2 + FILTER_NPARAMS, types);
	return spi_prepare_kept(&plan_products_events,
							PRODUCT_QUERY_HEAD
							"AND NOT EXISTS (SELECT FROM personalize.interactions i "
							"  WHERE i.customer_id = $2 AND i.product_id = p.product_id AND i.event_type = ANY($8)) "
							"AND NOT EXISTS (SELECT FROM personalize.interactions_archive a "
							"  WHERE a.customer_id = $2 AND a.product_id = p.product_id AND a.event_type = ANY($8))"
							PRODUCT_QUERY_TAIL,
							2 + FILTER_NPARAMS, types);
}

/*
 * Products, categories, the customer's purchases and whether each passes the
 * filters, for a chunk of the ranking and the history products their reasons
 * name; the names go into names.
 */
static ProductInfo *
load_products(const RecommendState *rs, Candidate **chunk_cands, int chunk, HTAB *names, int *ninfo_out)
{
	int64	   *ids = palloc(sizeof(int64) * chunk * 2);
	int			nids = 0;
	Oid			t[2 + FILTER_NPARAMS] = {INT8ARRAYOID, INT8OID};
	Datum		v[2 + FILTER_NPARAMS];
	char		nulls[2 + FILTER_NPARAMS];
	ProductInfo *info;
	int			ninfo;
	SPIPlanPtr	plan;

	for (int i = 0; i < chunk; i++)
	{
		ids[nids++] = chunk_cands[i]->product_id;
		if (chunk_cands[i]->has_best)
			ids[nids++] = chunk_cands[i]->best_from;
	}
	filters_params(&rs->filters, v + 2, nulls + 2, t + 2);
	plan = product_plan(rs->filters.has_exclude_events, t);
	v[0] = int8_array_datum(ids, nids);
	nulls[0] = ' ';
	v[1] = Int64GetDatum(rs->customer_id);
	nulls[1] = rs->has_customer ? ' ' : 'n';
	if (SPI_execute_plan(plan, v, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read products");
	ninfo = (int) SPI_processed;
	info = palloc(sizeof(ProductInfo) * Max(ninfo, 1));
	for (int r = 0; r < ninfo; r++)
	{
		bool		isnull;
		bool		found;
		NameEntry  *slot;
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	td = SPI_tuptable->tupdesc;

		info[r].id = spi_int8(r, 1, 0);
		info[r].category = SPI_getvalue(tup, td, 3);
		info[r].active = DatumGetBool(SPI_getbinval(tup, td, 4, &isnull));
		info[r].bought = DatumGetBool(SPI_getbinval(tup, td, 5, &isnull));
		info[r].passes = DatumGetBool(SPI_getbinval(tup, td, 6, &isnull));
		slot = hash_search(names, &info[r].id, HASH_ENTER, &found);
		if (!found)
			slot->name = SPI_getvalue(tup, td, 2);
	}
	*ninfo_out = ninfo;
	return info;
}

/* The category cap: false if the category is full, else the product is counted in it. */
static bool
category_take(RecommendState *rs, char *category)
{
	int			j;

	for (j = 0; j < rs->ncats; j++)
		if (strcmp(rs->cats[j].category, category) == 0)
			break;
	if (j < rs->ncats && rs->cats[j].n >= rs->cfg.category_cap)
		return false;
	if (j == rs->ncats)
	{
		rs->cats = rs->ncats == 0 ? palloc(sizeof(CategoryCount) * (rs->k + 1))
			: repalloc(rs->cats, sizeof(CategoryCount) * (rs->ncats + 1));
		rs->cats[rs->ncats].category = category;
		rs->cats[rs->ncats++].n = 0;
	}
	rs->cats[j].n++;
	return true;
}

/* The reason shown with a recommendation, appended to reason. */
static void
build_reason(StringInfo reason, const Candidate *c, HTAB *names, const RecommendState *rs)
{
	double		window_days = rs->window_days;

	if (c->show_llm && c->llm_reason != NULL)
		appendStringInfo(reason, "suggested for you: %s", c->llm_reason);
	else if (c->show_llm)
		appendStringInfoString(reason, "suggested for you");
	else if (c->cooc_reason && c->best_content)
		appendStringInfo(reason, "similar to \"%s\"", quoted_name(names, c->best_from));
	else if (c->cooc_reason)
		appendStringInfo(reason, "%s \"%s\"%s", c->best_from_bought ? "bought with" : "goes with",
						 quoted_name(names, c->best_from), c->best_live ? " (live)" : "");
	else if (c->pop_source == 1 && (window_days > 6.5 && window_days < 7.5))
		appendStringInfoString(reason, "popular this week");
	else if (c->pop_source == 1 && window_days < 1.5)
		appendStringInfoString(reason, "popular today");
	else if (c->pop_source == 1)
		appendStringInfo(reason, "popular in the last %.0f days", window_days);
	else if (c->pop_source == 2)
		appendStringInfoString(reason, rs->popular_live ? "bestseller (live)" : "bestseller");
	if (c->campaign != NULL)
		appendStringInfo(reason, "%scampaign: %s", reason->len > 0 ? "; " : "", c->campaign);
}

/* One result row: product_id, score, reason, and the variant served with with_variant. */
static void
emit_row(ReturnSetInfo *rsinfo, const Candidate *c, const char *reason, const char *variant)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = Int64GetDatum(c->product_id);
	values[1] = Float8GetDatum(c->score);
	values[2] = CStringGetTextDatum(reason);
	if (variant != NULL)
		values[3] = CStringGetTextDatum(variant);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Why the walk drops a product of the ranking (its row p, NULL if it is not
 * in the catalog), or NULL when it keeps it (counted in its category).
 */
static const char *
walk_drops(RecommendState *rs, const ProductInfo *p)
{
	if (p == NULL)
		return "not in the catalog";
	if (!p->active)
		return "inactive";
	if (p->bought && !rs->cfg.allow_repeat)
		return "bought by the customer";
	if (!p->passes)
		return "a filter leaves it out";
	if (rs->cfg.category_cap > 0 && p->category != NULL && !category_take(rs, p->category))
		return "its category is full (category_cap)";
	return NULL;
}

/*
 * Walk the ranking in chunks: drop inactive products, purchases and what the
 * filters leave out, apply the category cap. Rows go to rsinfo; explaining,
 * nothing is emitted and the walk stops at the explained product, noting its
 * rank or why it was dropped.
 */
void
recommend_walk(RecommendState *rs, Ranking *ranking, ReturnSetInfo *rsinfo, bool with_variant)
{
	HASHCTL		ctl;
	HTAB	   *names;
	int			emitted = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(NameEntry);
	ctl.hcxt = CurrentMemoryContext;
	names = hash_create("personalize names", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int start = 0; emitted < rs->k;)
	{
		int			chunk = ranking_fill(ranking, start, Max(2 * (rs->k - emitted), 32));
		Candidate **order = ranking->order;
		ProductInfo *info;
		int			ninfo;

		if (chunk == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		info = load_products(rs, &order[start], chunk, names, &ninfo);

		for (int i = start; i < start + chunk && emitted < rs->k; i++)
		{
			ProductInfo *p = NULL;
			StringInfoData reason;
			Candidate  *c = order[i];
			const char *drop;

			for (int r = 0; r < ninfo; r++)
				if (info[r].id == c->product_id)
				{
					p = &info[r];
					break;
				}
			drop = walk_drops(rs, p);
			if (rs->explaining && c->product_id == rs->explain_id)
			{
				rs->explain_drop = drop;
				rs->explain_rank = drop == NULL ? emitted + 1 : 0;
				return;
			}
			if (drop != NULL || rs->explaining)
			{
				emitted += drop == NULL;
				continue;
			}
			initStringInfo(&reason);
			build_reason(&reason, c, names, rs);
			emit_row(rsinfo, c, reason.data, with_variant ? rs->variant : NULL);
			emitted++;
		}
		start += chunk;
	}
}

/*
 * recommend() for a customer: the three-argument form of 0.1.0, the one with
 * filters, and recommend_served() with the variant.
 */
Datum
recommend_serve_customer(FunctionCallInfo fcinfo, bool with_variant)
{
	RecommendState rs = {0};
	char	   *variant_name;
	Ranking    *ranking;

	/* it reads _compute_neighbors(), _popular_all_time() and serving_settings, new in 0.2.0 */
	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	rs.customer_id = check_customer(fcinfo);
	rs.has_customer = true;
	variant_name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	rs.k = recommend_check_k(fcinfo, 2);
	filters_from_args(fcinfo, 3, true, &rs.filters);

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	recommend_begin(&rs, variant_name);
	ranking = recommend_rank(&rs);
	recommend_walk(&rs, ranking, (ReturnSetInfo *) fcinfo->resultinfo, with_variant);
	SPI_finish();
	return (Datum) 0;
}

/* personalize.recommend(customer_id bigint, variant text, k integer): 0.1.0's signature */
Datum
personalize_recommend(PG_FUNCTION_ARGS)
{
	return recommend_serve_customer(fcinfo, false);
}

/* personalize.recommend(customer_id, variant, k, exclude_products, ..., exclude_interacted) */
Datum
personalize_recommend_filtered(PG_FUNCTION_ARGS)
{
	return recommend_serve_customer(fcinfo, false);
}

/* personalize.recommend_served(): recommend() and the variant that served it */
Datum
personalize_recommend_served(PG_FUNCTION_ARGS)
{
	return recommend_serve_customer(fcinfo, true);
}

/*
 * personalize._served_variant(customer_id bigint, variant text): the variant
 * a serving call with these arguments serves (log_impressions() records it).
 */
Datum
personalize_served_variant(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	RecommendState rs = {0};
	char	   *name;

	if (!PG_ARGISNULL(1))
		PG_RETURN_TEXT_P(PG_GETARG_TEXT_P_COPY(1));
	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	rs.has_customer = !PG_ARGISNULL(0);
	rs.customer_id = rs.has_customer ? PG_GETARG_INT64(0) : 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	recommend_begin(&rs, NULL);
	name = MemoryContextStrdup(caller, rs.variant);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
