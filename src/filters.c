/*
 * filters.c: the request-time filters of recommend(), similar_items(),
 * recommend_for_items() and explain(), as optional named arguments:
 *
 *   exclude_products   bigint[]  never these products (at most 10,000)
 *   categories         text[]    only products of these categories
 *   exclude_categories text[]    never products of these categories
 *   min_price          numeric   only products with a price >= min_price
 *   max_price          numeric   only products with a price <= max_price
 *   attributes         jsonb     only products whose attributes contain it (@>)
 *   exclude_interacted text[]    never products the customer had these event types on
 *
 * A product without a category passes exclude_categories and fails
 * categories; one without a price fails a price bound; one without attributes
 * fails attributes. The filters are checked where the ranking is walked
 * (recommend.c, in the query that reads each chunk of it), so k products come
 * back whenever k products pass. Bad values are refused before anything is
 * read: NULL elements, an empty categories list, a negative or NaN price,
 * min_price above max_price, attributes that are not a JSON object, an
 * unknown event type, exclude_interacted without a customer.
 */
#include "personalize.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "echo.h"
#include "filters.h"
#include "spiutil.h"

#define MAX_EXCLUDED 10000
#define MAX_CATEGORIES 1000

static SPIPlanPtr plan_unknown_events;

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* An array argument: no NULL elements, at most max of them; returns how many. */
static int
checked_array(ArrayType *a, const char *name, int max, const char *hint)
{
	int			n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));

	if (array_contains_nulls(a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not contain NULL", name),
				 errhint("%s", hint)));
	if (n > max)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s must hold at most %d elements", name, max),
				 errdetail("Got %d.", n),
				 errhint("%s", hint)));
	return n;
}

/* exclude_products: sorted for a binary search. */
static void
read_excluded(ArrayType *a, RecommendFilters *f)
{
	Datum	   *elems;
	int			n;

	checked_array(a, "exclude_products", MAX_EXCLUDED,
				  "Pass the product ids not to show, for example the ones already on the page.");
	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, NULL, &n);
	f->exclude_ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
		f->exclude_ids[i] = DatumGetInt64(elems[i]);
	qsort(f->exclude_ids, n, sizeof(int64), cmp_int64);
	f->nexclude = n;
}

/* A price bound: not NaN, not negative. */
static Datum
checked_price(Datum d, const char *name)
{
	Numeric		n = DatumGetNumeric(d);

	if (numeric_is_nan(n) ||
		DatumGetBool(DirectFunctionCall2(numeric_lt, d, NumericGetDatum(int64_to_numeric(0)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a price of 0 or more", name),
				 errdetail("Got %s.", DatumGetCString(DirectFunctionCall1(numeric_out, d))),
				 errhint("Pass NULL for no bound.")));
	return d;
}

/* The price band: each bound valid, min_price <= max_price. */
static void
read_prices(FunctionCallInfo fcinfo, int min_arg, RecommendFilters *f)
{
	if (!PG_ARGISNULL(min_arg))
	{
		f->min_price = checked_price(PG_GETARG_DATUM(min_arg), "min_price");
		f->has_min_price = true;
	}
	if (!PG_ARGISNULL(min_arg + 1))
	{
		f->max_price = checked_price(PG_GETARG_DATUM(min_arg + 1), "max_price");
		f->has_max_price = true;
	}
	if (f->has_min_price && f->has_max_price &&
		DatumGetBool(DirectFunctionCall2(numeric_gt, f->min_price, f->max_price)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_price must not be above max_price"),
				 errdetail("Got min_price %s and max_price %s.",
						   DatumGetCString(DirectFunctionCall1(numeric_out, f->min_price)),
						   DatumGetCString(DirectFunctionCall1(numeric_out, f->max_price))),
				 errhint("Swap them, or pass NULL for an open bound.")));
}

/* The category lists: categories must not be empty (NULL means any category). */
static void
read_categories(FunctionCallInfo fcinfo, int arg, RecommendFilters *f)
{
	if (!PG_ARGISNULL(arg))
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(arg);

		if (checked_array(a, "categories", MAX_CATEGORIES,
						  "Pass the categories to show, or NULL for any category.") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("categories must not be empty"),
					 errdetail("An empty list would leave no product to recommend."),
					 errhint("Pass NULL for any category.")));
		f->categories = PointerGetDatum(a);
		f->has_categories = true;
	}
	if (!PG_ARGISNULL(arg + 1))
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(arg + 1);

		checked_array(a, "exclude_categories", MAX_CATEGORIES,
					  "Pass the categories not to show, or NULL.");
		f->exclude_categories = PointerGetDatum(a);
		f->has_exclude_categories = true;
	}
}

/* attributes: a JSON object products.attributes must contain. */
static void
read_attributes(FunctionCallInfo fcinfo, int arg, RecommendFilters *f)
{
	Jsonb	   *j;

	if (PG_ARGISNULL(arg))
		return;
	j = PG_GETARG_JSONB_P(arg);
	if (!JB_ROOT_IS_OBJECT(j))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attributes must be a JSON object"),
				 errdetail("Products pass when their attributes contain it (@>)."),
				 errhint("For example '{\"in_stock\": true}'.")));
	f->attributes = PointerGetDatum(j);
	f->has_attributes = true;
}

/*
 * The filter arguments from position first on (absent arguments, as in the
 * three-argument recommend(), are no filter): exclude_products, categories,
 * exclude_categories, min_price, max_price, attributes and, with_events,
 * exclude_interacted.
 */
void
filters_from_args(FunctionCallInfo fcinfo, int first, bool with_events, RecommendFilters *f)
{
	memset(f, 0, sizeof(*f));
	if (PG_NARGS() < first + (with_events ? 7 : 6))
		return;
	if (!PG_ARGISNULL(first))
		read_excluded(PG_GETARG_ARRAYTYPE_P(first), f);
	read_categories(fcinfo, first + 1, f);
	read_prices(fcinfo, first + 3, f);
	read_attributes(fcinfo, first + 5, f);
	if (with_events && !PG_ARGISNULL(first + 6))
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(first + 6);

		checked_array(a, "exclude_interacted", MAX_CATEGORIES,
					  "Pass event types, for example '{view,cart}'.");
		f->exclude_events = PointerGetDatum(a);
		f->has_exclude_events = true;
	}
	f->any_walk = f->has_categories || f->has_exclude_categories || f->has_min_price ||
		f->has_max_price || f->has_attributes || f->has_exclude_events;
}

/*
 * exclude_interacted names known event types and has a customer to look at
 * (SPI connected).
 */
void
filters_check_events(const RecommendFilters *f, bool has_customer)
{
	Oid			t[1] = {TEXTARRAYOID};
	Datum		v[1];
	char	   *unknown;
	char	   *known;

	if (!f->has_exclude_events)
		return;
	if (!has_customer)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exclude_interacted needs a customer"),
				 errdetail("It excludes the products the customer had those events on."),
				 errhint("Pass customer_id too, or leave exclude_interacted NULL.")));
	spi_prepare_kept(&plan_unknown_events,
					 "SELECT string_agg(DISTINCT x, ', '), "
					 "  (SELECT string_agg(event_type, ', ' ORDER BY event_type COLLATE \"C\") FROM personalize.event_types) "
					 "FROM unnest($1) x WHERE NOT EXISTS (SELECT FROM personalize.event_types e WHERE e.event_type = x)",
					 1, t);
	v[0] = f->exclude_events;
	if (SPI_execute_plan(spi_kept(&plan_unknown_events), v, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: could not read event_types");
	unknown = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	known = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (unknown != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("exclude_interacted names an unknown event type: %s", echo_name(unknown)),
				 errdetail("Known event types: %s.", known ? known : "none"),
				 errhint("Pass event types of personalize.event_types, for example '{view,cart}'.")));
}

/* Whether exclude_products holds the product. */
bool
filters_excludes_id(const RecommendFilters *f, int64 product_id)
{
	return f->nexclude > 0 &&
		bsearch(&product_id, f->exclude_ids, f->nexclude, sizeof(int64), cmp_int64) != NULL;
}

/*
 * The FILTER_NPARAMS parameters of the product query (recommend.c), NULL
 * where there is no filter: categories, exclude_categories, min_price,
 * max_price, attributes, exclude_interacted.
 */
void
filters_params(const RecommendFilters *f, Datum *values, char *nulls, Oid *types)
{
	const bool	has[FILTER_NPARAMS] = {f->has_categories, f->has_exclude_categories, f->has_min_price,
	f->has_max_price, f->has_attributes, f->has_exclude_events};
	const Datum d[FILTER_NPARAMS] = {f->categories, f->exclude_categories, f->min_price,
	f->max_price, f->attributes, f->exclude_events};
	const Oid	t[FILTER_NPARAMS] = {TEXTARRAYOID, TEXTARRAYOID, NUMERICOID, NUMERICOID, JSONBOID, TEXTARRAYOID};

	for (int i = 0; i < FILTER_NPARAMS; i++)
	{
		values[i] = has[i] ? d[i] : (Datum) 0;
		nulls[i] = has[i] ? ' ' : 'n';
		types[i] = t[i];
	}
}
