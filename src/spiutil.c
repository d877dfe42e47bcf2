/*
 * spiutil.c: small SPI and array helpers shared by the trigger and recommend().
 */
#include "personalize.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "lib/stringinfo.h"
#include "utils/lsyscache.h"

#include "spiutil.h"

/*
 * Prepare a statement once per backend and keep it; *cache holds it. The plan
 * is generic: every statement here takes arrays whose size the planner cannot
 * see, and re-planning them per call cost more than the statements themselves.
 */
static SPIPlanPtr
prepare_and_keep(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "personalize: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "personalize: SPI_keepplan failed");
	return plan;
}

/*
 * The model a serving statement reads: the live tables, or while evaluate()
 * scores a past cut (spi_read_evaluation_model), the session's temporary copy
 * of the tables that hold what is known at the cut (evaluate.c). Each live
 * name is replaced by pg_temp.personalize_eval_<table>; the statements keep a
 * second set of plans, keyed by the address of the live plan's cache.
 */
static const char *const evaluation_tables[] = {
	"customer_items", "neighbors", "dirty_products", "popular_scores",
	"llm_recommendations", "variants"
};

#define MAX_EVALUATION_PLANS 64

static bool reading_evaluation_model = false;
static SPIPlanPtr *evaluation_keys[MAX_EVALUATION_PLANS];
static SPIPlanPtr evaluation_plans[MAX_EVALUATION_PLANS];
static int	n_evaluation_plans = 0;

void
spi_read_evaluation_model(bool on)
{
	reading_evaluation_model = on;
}

bool
spi_reading_evaluation_model(void)
{
	return reading_evaluation_model;
}

/* sql with every live model table named by its evaluation copy */
static char *
evaluation_sql(const char *sql)
{
	StringInfoData out;
	const char *p = sql;

	initStringInfo(&out);
	while (*p)
	{
		bool		replaced = false;

		if (strncmp(p, "personalize.", 12) == 0)
			for (size_t i = 0; i < lengthof(evaluation_tables); i++)
			{
				size_t		len = strlen(evaluation_tables[i]);
				char		next = p[12 + len];

				if (strncmp(p + 12, evaluation_tables[i], len) == 0 &&
					!(isalnum((unsigned char) next) || next == '_'))
				{
					appendStringInfo(&out, "pg_temp.personalize_eval_%s", evaluation_tables[i]);
					p += 12 + len;
					replaced = true;
					break;
				}
			}
		if (!replaced)
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/* the evaluation plan of a statement whose live plan is kept in *cache */
static SPIPlanPtr
evaluation_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	int			i;

	for (i = 0; i < n_evaluation_plans; i++)
		if (evaluation_keys[i] == cache)
			return evaluation_plans[i];
	if (n_evaluation_plans == MAX_EVALUATION_PLANS)
		elog(ERROR, "personalize: too many statements for an evaluation");
	evaluation_plans[i] = prepare_and_keep(evaluation_sql(sql), nargs, argtypes);
	evaluation_keys[i] = cache;
	n_evaluation_plans++;
	return evaluation_plans[i];
}

/*
 * The plan spi_prepare_kept() gave for *cache: the live one, or its evaluation
 * twin while an evaluation reads the model as of its cut.
 */
SPIPlanPtr
spi_kept(SPIPlanPtr *cache)
{
	if (reading_evaluation_model)
		for (int i = 0; i < n_evaluation_plans; i++)
			if (evaluation_keys[i] == cache)
				return evaluation_plans[i];
	return *cache;
}

SPIPlanPtr
spi_prepare_kept(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (reading_evaluation_model)
		return evaluation_plan(cache, sql, nargs, argtypes);
	if (*cache == NULL)
		*cache = prepare_and_keep(sql, nargs, argtypes);
	return *cache;
}

/*
 * Execute a kept plan. Every kept statement looks rows up by key, a few or many,
 * and its generic plan is built at its first execution with the statistics of
 * that moment: on a fresh install (empty tables) the planner would pick hash
 * joins over sequential scans and keep them. So plans are built with hash and
 * merge joins off: nested loops over the primary keys whatever the statistics.
 * (Not sequential scans too: a disabled path's cost would pass jit_above_cost
 * and compile every statement. The settings only matter when a plan is built.)
 */
int
spi_execute_kept(SPIPlanPtr plan, Datum *values, bool read_only, long tcount)
{
	int			nestlevel = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(plan, values, NULL, read_only, tcount);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}

static Datum
make_array(Datum *elems, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, elemtype, typlen, typbyval, typalign));
}

/* int8[] from a C array */
Datum
int8_array_datum(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return make_array(d, n, INT8OID);
}

/* int4[] from a C array */
Datum
int4_array_datum(const int32 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(values[i]);
	return make_array(d, n, INT4OID);
}

/* float8[] from a C array */
Datum
float8_array_datum(const double *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(values[i]);
	return make_array(d, n, FLOAT8OID);
}

/* bool[] from a C array */
Datum
bool_array_datum(const bool *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = BoolGetDatum(values[i]);
	return make_array(d, n, BOOLOID);
}

/* timestamptz[] from a C array */
Datum
timestamptz_array_datum(const TimestampTz *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(values[i]);
	return make_array(d, n, TIMESTAMPTZOID);
}

/* Column col (1-based) of SPI result row as int8 */
int64
spi_int8(int row, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* Column col (1-based) of SPI result row as float8 */
double
spi_float8(int row, int col, double if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? if_null : DatumGetFloat8(d);
}
