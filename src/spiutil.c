/*
 * spiutil.c: small SPI and array helpers shared by the trigger and recommend().
 */
#include "personalize.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "spiutil.h"

/*
 * Prepare a statement once per backend and keep it; *cache holds it. The plan
 * is generic: every statement here takes arrays whose size the planner cannot
 * see, and re-planning them per call cost more than the statements themselves.
 */
SPIPlanPtr
spi_prepare_kept(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "personalize: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "personalize: SPI_keepplan failed");
		*cache = plan;
	}
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
