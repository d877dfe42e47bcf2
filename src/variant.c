/*
 * variant.c: a variant's algorithm and parameters (personalize.variants),
 * parsed and validated in one place for create_variant() and recommend().
 */
#include "personalize.h"

#include "utils/jsonb.h"

#include "echo.h"
#include "similarity.h"
#include "variant.h"

static const char *const param_names =
"measure, history_items, neighbors, half_life_days, category_cap, allow_repeat, popular_fill, popularity_weight, campaigns, "
"llm_history, content_weight";

static void
bad_param(const char *variant, const char *key, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid parameter \"%s\" for variant \"%s\"", echo_name(key), echo_name(variant)),
			 errdetail("\"%s\" must be %s.", echo_name(key), want),
			 errhint("Known parameters: %s.", param_names)));
}

static double
numeric_value(JsonbValue *v, const char *variant, const char *key, const char *want)
{
	if (v->type != jbvNumeric)
		bad_param(variant, key, want);
	/* out of double's range: +-infinity or 0 (which the callers' bounds refuse), never 22003 */
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(v->val.numeric)));
}

static int
int_value(JsonbValue *v, const char *variant, const char *key, int lo, int hi)
{
	char		want[64];
	double		d;

	snprintf(want, sizeof(want), "an integer from %d to %d", lo, hi);
	d = numeric_value(v, variant, key, want);
	/* the range first: casting an out-of-range double (1e400 is infinity here) is undefined */
	if (!(d >= lo && d <= hi) || d != (double) (int64) d)
		bad_param(variant, key, want);
	return (int) d;
}

static bool
bool_value(JsonbValue *v, const char *variant, const char *key)
{
	if (v->type != jbvBool)
		bad_param(variant, key, "true or false");
	return v->val.boolean;
}

/* Parse algorithm + params into *cfg, raising a clear error on anything wrong. */
void
variant_parse(const char *name, const char *algorithm, Jsonb *params, VariantConfig *cfg)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	memset(cfg, 0, sizeof(*cfg));
	strlcpy(cfg->name, name, sizeof(cfg->name));
	if (strcmp(algorithm, "popular") == 0)
		cfg->algorithm = ALG_POPULAR;
	else if (strcmp(algorithm, "cooccurrence") == 0)
		cfg->algorithm = ALG_COOCCURRENCE;
	else if (strcmp(algorithm, "hybrid") == 0)
		cfg->algorithm = ALG_HYBRID;
	else if (strcmp(algorithm, "llm") == 0)
		cfg->algorithm = ALG_LLM;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown algorithm \"%s\" for variant \"%s\"", echo_name(algorithm), echo_name(name)),
				 errhint("Known algorithms: popular, cooccurrence, hybrid, llm.")));

	cfg->measure = SIM_LLR;
	cfg->history_items = 50;
	cfg->neighbors = 1000;
	cfg->half_life_days = 90.0;
	cfg->category_cap = 0;
	cfg->allow_repeat = false;
	cfg->popular_fill = true;
	cfg->popularity_weight = (cfg->algorithm == ALG_HYBRID) ? 0.2 : 0.0;
	cfg->campaigns = true;
	/*
	 * LLM answers join the default (hybrid) for customers with fewer than 3
	 * history products; cooccurrence stays pure co-occurrence unless asked, so
	 * that an A/B arm of it measures what co-occurrence alone does.
	 */
	cfg->llm_history = (cfg->algorithm == ALG_HYBRID) ? 3 : 0;
	/* half as much as a history product's best co-occurring neighbour (see recommend.c) */
	cfg->content_weight = (cfg->algorithm == ALG_COOCCURRENCE || cfg->algorithm == ALG_HYBRID) ? 0.5 : 0.0;

	if (params == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameters of variant \"%s\" must be a JSON object", echo_name(name)),
				 errhint("Known parameters: %s.", param_names)));

	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE || key == NULL)
			continue;
		if (strcmp(key, "measure") == 0)
		{
			char	   *m;

			if (v.type != jbvString)
				bad_param(name, key, psprintf("one of %s", variant_measure_names()));
			m = pnstrdup(v.val.string.val, v.val.string.len);
			if (!similarity_measure_from_name(m, &cfg->measure))
				bad_param(name, key, psprintf("one of %s", variant_measure_names()));
		}
		else if (strcmp(key, "history_items") == 0)
			cfg->history_items = int_value(&v, name, key, 1, 1000);
		else if (strcmp(key, "neighbors") == 0)
			cfg->neighbors = int_value(&v, name, key, 1, 1000);
		else if (strcmp(key, "half_life_days") == 0)
		{
			if (v.type == jbvNull)
				cfg->half_life_days = 0.0;
			else
			{
				/*
				 * From 0.1 day (2.4 hours) to 100 years: a shorter half life
				 * leaves nothing of a history older than a few weeks (recommend.c
				 * counts nothing beyond 1000 half lives), and a longer one is no
				 * decay at all; null turns decay off.
				 */
				cfg->half_life_days = numeric_value(&v, name, key, "a number of days from 0.1 to 36500, or null for no decay");
				if (!(cfg->half_life_days >= 0.1 && cfg->half_life_days <= 36500.0))
					bad_param(name, key, "a number of days from 0.1 to 36500, or null for no decay");
			}
		}
		else if (strcmp(key, "category_cap") == 0)
			cfg->category_cap = (v.type == jbvNull) ? 0 : int_value(&v, name, key, 1, 1000);
		else if (strcmp(key, "allow_repeat") == 0)
			cfg->allow_repeat = bool_value(&v, name, key);
		else if (strcmp(key, "popular_fill") == 0)
			cfg->popular_fill = bool_value(&v, name, key);
		else if (strcmp(key, "campaigns") == 0)
			cfg->campaigns = bool_value(&v, name, key);
		else if (strcmp(key, "popularity_weight") == 0)
		{
			cfg->popularity_weight = numeric_value(&v, name, key, "a number from 0 to 1");
			if (!(cfg->popularity_weight >= 0.0 && cfg->popularity_weight <= 1.0))
				bad_param(name, key, "a number from 0 to 1");
		}
		else if (strcmp(key, "llm_history") == 0)
			cfg->llm_history = int_value(&v, name, key, 0, 1000);
		else if (strcmp(key, "content_weight") == 0)
		{
			/* bounded so that weight x history weight x cosine cannot overflow to infinity */
			cfg->content_weight = numeric_value(&v, name, key, "a number from 0 to 1000");
			if (!(cfg->content_weight >= 0.0 && cfg->content_weight <= 1000.0))
				bad_param(name, key, "a number from 0 to 1000");
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown parameter \"%s\" for variant \"%s\"", echo_name(key), echo_name(name)),
					 errhint("Known parameters: %s.", param_names)));
		key = NULL;
	}
	if (cfg->algorithm == ALG_POPULAR && cfg->popularity_weight != 0.0)
		cfg->popularity_weight = 1.0;
}

PG_FUNCTION_INFO_V1(personalize_validate_variant);

/* personalize._validate_variant(name, algorithm, params): error or the measure it needs (NULL for none) */
Datum
personalize_validate_variant(PG_FUNCTION_ARGS)
{
	VariantConfig cfg;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("variant name and algorithm must not be null")));
	variant_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)),
				  PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), &cfg);
	/* popular and llm read no neighbour lists of a measure (no co-occurrence lists to build for them) */
	if (cfg.algorithm == ALG_POPULAR || cfg.algorithm == ALG_LLM)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(similarity_measure_name(cfg.measure)));
}
