/*
 * items.c: recommendations for products rather than a customer.
 *
 *   similar_items(product_id, k, variant, filters...)        a product page
 *   recommend_for_items(product_ids, k, variant, customer_id, filters...)
 *                                                            a cart or basket
 *
 * The input products play the part of a customer's history (recommend.c):
 * each with weight 1, their co-occurrence lists under the variant's measure
 * (computed live where none is stored yet), their content lists with the
 * variant's content_weight, then popularity and campaigns as the variant
 * says, the category cap, and the filters. The answer never holds an input
 * product nor an inactive one; with customer_id, nor the customer's
 * purchases, and a NULL variant is the customer's experiment arm, else the
 * default variant. The llm algorithm serves the neighbour lists here (its
 * answers are written per customer).
 *
 * Unknown input products are refused (22023, naming them): a product page or
 * a cart holds products of the catalog. An inactive input product is a valid
 * input (its neighbours are still good). An empty cart, or products nobody
 * bought with anything yet, get the variant's popular fill.
 */
#include "personalize.h"

#include "echo.h"
#include "lifecycle.h"
#include "recommend.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_similar_items);
PG_FUNCTION_INFO_V1(personalize_recommend_for_items);

#define MAX_INPUT_PRODUCTS 1000

static SPIPlanPtr plan_unknown_products;

/* The input products, each once, as the history of the call. */
static void
set_inputs(RecommendState *rs, const int64 *ids, int n)
{
	rs->hist = palloc0(sizeof(HistoryItem) * Max(n, 1));
	rs->nhist = 0;
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;

		for (int j = 0; j < rs->nhist && !seen; j++)
			seen = rs->hist[j].product_id == ids[i];
		if (seen)
			continue;
		rs->hist[rs->nhist].product_id = ids[i];
		rs->hist[rs->nhist].weight = 1.0;
		rs->hist[rs->nhist].event_weight = 1.0;
		rs->nhist++;
	}
	rs->history_total = rs->nhist;
	rs->items_mode = true;
}

/* Every input product is in the catalog (SPI connected), else 22023 naming the unknown ones. */
static void
check_known(const RecommendState *rs)
{
	Oid			t[1] = {INT8ARRAYOID};
	Datum		v[1];
	int64	   *ids = palloc(sizeof(int64) * Max(rs->nhist, 1));
	char	   *unknown;

	for (int i = 0; i < rs->nhist; i++)
		ids[i] = rs->hist[i].product_id;
	spi_prepare_kept(&plan_unknown_products,
					 "SELECT string_agg(x::text, ', ' ORDER BY x), count(*) FROM unnest($1) x "
					 "WHERE NOT EXISTS (SELECT FROM personalize.products p WHERE p.product_id = x)",
					 1, t);
	v[0] = int8_array_datum(ids, rs->nhist);
	if (SPI_execute_plan(spi_kept(&plan_unknown_products), v, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: could not read products");
	unknown = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (unknown != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown product: %s", echo_name(unknown)),
				 errdetail("%s of the input products %s not in personalize.products.",
						   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
						   spi_int8(0, 2, 0) == 1 ? "is" : "are"),
				 errhint("Pass product ids of the catalog.")));
}

/* Rank and walk for the input products set in rs (arguments already read). */
static Datum
serve_items(FunctionCallInfo fcinfo, RecommendState *rs, char *variant_name)
{
	Ranking    *ranking;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	check_known(rs);
	recommend_begin(rs, variant_name);
	ranking = recommend_rank(rs);
	recommend_walk(rs, ranking, (ReturnSetInfo *) fcinfo->resultinfo, false);
	SPI_finish();
	return (Datum) 0;
}

/* personalize.similar_items(product_id bigint, k integer, variant text, filters...) */
Datum
personalize_similar_items(PG_FUNCTION_ARGS)
{
	RecommendState rs = {0};
	int64		id;

	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("product_id must not be null"),
				 errhint("Pass the product of the page.")));
	id = PG_GETARG_INT64(0);
	rs.k = recommend_check_k(fcinfo, 1);
	filters_from_args(fcinfo, 3, false, &rs.filters);
	set_inputs(&rs, &id, 1);
	return serve_items(fcinfo, &rs, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
}

/* The input product ids: an array without NULLs, at most MAX_INPUT_PRODUCTS. */
static int64 *
input_products(FunctionCallInfo fcinfo, int *n)
{
	ArrayType  *a;
	Datum	   *elems;
	int64	   *ids;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("product_ids must not be null"),
				 errhint("Pass the products of the cart; an empty array gets popular products.")));
	a = PG_GETARG_ARRAYTYPE_P(0);
	if (array_contains_nulls(a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("product_ids must not contain NULL"),
				 errhint("Pass the products of the cart.")));
	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, NULL, n);
	if (*n > MAX_INPUT_PRODUCTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("product_ids must hold at most %d products", MAX_INPUT_PRODUCTS),
				 errdetail("Got %d.", *n),
				 errhint("Pass the products of one cart.")));
	ids = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		ids[i] = DatumGetInt64(elems[i]);
	return ids;
}

/* personalize.recommend_for_items(product_ids bigint[], k, variant, customer_id, filters...) */
Datum
personalize_recommend_for_items(PG_FUNCTION_ARGS)
{
	RecommendState rs = {0};
	int64	   *ids;
	int			n;

	personalize_require_sql_version("0.2.0", fcinfo->flinfo->fn_oid);
	ids = input_products(fcinfo, &n);
	rs.k = recommend_check_k(fcinfo, 1);
	if (!PG_ARGISNULL(3))
	{
		rs.customer_id = PG_GETARG_INT64(3);
		rs.has_customer = true;
	}
	filters_from_args(fcinfo, 4, true, &rs.filters);
	set_inputs(&rs, ids, n);
	return serve_items(fcinfo, &rs, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
}
