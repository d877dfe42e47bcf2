/*
 * evaluate.c: recommend() as it would have answered at a past cut.
 *
 * personalize.evaluate() (sql/parts/evaluate.sql) builds, in the session's
 * temporary schema, the tables of the model that holds only the events before
 * its cut: pg_temp.personalize_eval_customer_items, _neighbors,
 * _dirty_products (empty), _popular_scores, _llm_recommendations (empty:
 * answers stored now were made from later history) and _variants (the
 * variants to score). _recommend_at_cut() then runs the serving code of
 * recommend() unchanged, its statements reading those tables instead of the
 * live ones (spiutil.c), with personalize.as_of set to the cut by the caller.
 * The live model is never read for the ranking and never written.
 */
#include "personalize.h"

#include "recommend.h"
#include "spiutil.h"
#include "evaluate.h"

PG_FUNCTION_INFO_V1(personalize_recommend_at_cut);

/* personalize._recommend_at_cut(customer_id bigint, variant text, k integer) */
Datum
personalize_recommend_at_cut(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an evaluation scores a named variant"),
				 errhint("Pass the variant's name.")));
	spi_read_evaluation_model(true);
	PG_TRY();
	{
		recommend_serve_customer(fcinfo, false);
	}
	PG_FINALLY();
	{
		spi_read_evaluation_model(false);
	}
	PG_END_TRY();
	return (Datum) 0;
}
