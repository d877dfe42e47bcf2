/*
 * experiment.c: deterministic assignment of customers to experiment arms and
 * feature-flag buckets (personalize.assigned_variant, personalize._bucket).
 *
 * A customer's bucket is hash_bytes_extended(salt bytes || customer id as a
 * little-endian int64, seed 0), its top 53 bits scaled to [0, 1). Nothing is
 * stored: the same (salt, id) gives the same bucket in every session, after a
 * restart and after an upgrade of the extension (the byte layout is fixed here).
 */
#include "personalize.h"

#include <math.h>

#include "common/hashfn.h"
#include "utils/lsyscache.h"

#include "echo.h"
#include "experiment.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_assigned_variant);
PG_FUNCTION_INFO_V1(personalize_bucket);

static SPIPlanPtr plan_by_name, plan_running;

#define EXPERIMENT_QUERY \
	"SELECT e.salt, e.traffic, array_agg(a.variant ORDER BY a.arm), array_agg(a.weight ORDER BY a.arm) " \
	"FROM personalize.experiments e JOIN personalize.experiment_arms a ON a.experiment_id = e.experiment_id "

/* The bucket in [0, 1) of a customer under a salt. */
double
experiment_bucket(const char *salt, int salt_len, int64 customer_id)
{
	unsigned char *buf = palloc(salt_len + 8);
	uint64		id = (uint64) customer_id;
	uint64		h;

	memcpy(buf, salt, salt_len);
	for (int i = 0; i < 8; i++)
		buf[salt_len + i] = (unsigned char) (id >> (8 * i));
	h = hash_bytes_extended(buf, salt_len + 8, 0);
	pfree(buf);
	return (double) (h >> 11) * (1.0 / 9007199254740992.0);	/* 2^-53 */
}

/*
 * The variant of SPI result row 0 (salt, traffic, variants[], weights[]) for
 * a customer, allocated with SPI_palloc so that it outlives SPI_finish; NULL
 * when the customer falls outside the traffic fraction.
 */
static char *
assign_from_row(int64 customer_id)
{
	HeapTuple	row = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	text	   *salt = DatumGetTextPP(SPI_getbinval(row, desc, 1, &isnull));
	double		traffic = DatumGetFloat8(SPI_getbinval(row, desc, 2, &isnull));
	ArrayType  *va = DatumGetArrayTypeP(SPI_getbinval(row, desc, 3, &isnull));
	ArrayType  *wa = DatumGetArrayTypeP(SPI_getbinval(row, desc, 4, &isnull));
	Datum	   *variants;
	Datum	   *weights;
	int			nv;
	int			nw;
	double		u;
	double		total = 0.0;
	double		scale = 1.0;
	double		target;
	double		cum = 0.0;
	int			pick;
	char	   *name;
	char	   *result;

	u = experiment_bucket(VARDATA_ANY(salt), VARSIZE_ANY_EXHDR(salt), customer_id);
	if (!(u < traffic))
		return NULL;
	deconstruct_array(va, TEXTOID, -1, false, TYPALIGN_INT, &variants, NULL, &nv);
	deconstruct_array(wa, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &weights, NULL, &nw);
	if (nv == 0 || nv != nw)
		elog(ERROR, "personalize: experiment arms are inconsistent");
	for (int i = 0; i < nw; i++)
		total += DatumGetFloat8(weights[i]);
	/*
	 * Weights whose sum overflows (a row written past create_experiment(), which
	 * refuses them): walk them relative to the largest instead, which keeps the
	 * shares. Finite sums are walked as they are, so assignments never change.
	 */
	if (!isfinite(total))
	{
		double		wmax = 0.0;

		for (int i = 0; i < nw; i++)
			wmax = Max(wmax, DatumGetFloat8(weights[i]));
		scale = 1.0 / wmax;
		total = 0.0;
		for (int i = 0; i < nw; i++)
			total += DatumGetFloat8(weights[i]) * scale;
	}
	/* re-scale the bucket inside the traffic fraction to [0, 1), then walk the cumulative weights */
	target = (u / traffic) * total;
	pick = nv - 1;
	for (int i = 0; i < nw; i++)
	{
		cum += DatumGetFloat8(weights[i]) * scale;
		if (target < cum)
		{
			pick = i;
			break;
		}
	}
	name = TextDatumGetCString(variants[pick]);
	result = SPI_palloc(strlen(name) + 1);
	strcpy(result, name);
	return result;
}

/*
 * The variant the running experiment assigns to the customer, or NULL when no
 * experiment runs or the customer is outside its traffic. Call inside SPI.
 */
char *
experiment_running_variant(int64 customer_id)
{
	spi_prepare_kept(&plan_running, EXPERIMENT_QUERY
					 "WHERE e.status = 'running' GROUP BY e.experiment_id", 0, NULL);
	if (SPI_execute_plan(spi_kept(&plan_running), NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the running experiment");
	if (SPI_processed == 0)
		return NULL;
	return assign_from_row(customer_id);
}

/* personalize.assigned_variant(experiment text, customer_id bigint) */
Datum
personalize_assigned_variant(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	int64		customer_id = PG_GETARG_INT64(1);
	Oid			t[1] = {TEXTOID};
	Datum		v[1] = {PointerGetDatum(name)};
	char	   *variant;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	spi_prepare_kept(&plan_by_name, EXPERIMENT_QUERY
					 "WHERE e.name = $1 GROUP BY e.experiment_id", 1, t);
	if (SPI_execute_plan(spi_kept(&plan_by_name), v, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read experiments");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown experiment \"%s\"", echo_name(text_to_cstring(name))),
				 errhint("List the experiments with SELECT name, status FROM personalize.experiments.")));
	variant = assign_from_row(customer_id);
	SPI_finish();
	if (variant == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(variant));
}

/* personalize._bucket(salt text, customer_id bigint): the customer's bucket in [0, 1) */
Datum
personalize_bucket(PG_FUNCTION_ARGS)
{
	text	   *salt = PG_GETARG_TEXT_PP(0);

	PG_RETURN_FLOAT8(experiment_bucket(VARDATA_ANY(salt), VARSIZE_ANY_EXHDR(salt), PG_GETARG_INT64(1)));
}
