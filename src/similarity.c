/*
 * similarity.c: the similarity measures of a product pair, from the pair's
 * co-occurrence count ab, the products' counts a and b and the number of
 * customers n. Also the SQL function personalize.similarity().
 */
#include "personalize.h"

#include <math.h>

#include "echo.h"
#include "similarity.h"

static const char *const measure_names[] = {"count", "jaccard", "cosine", "lift", "llr", "ease"};

/* Look a measure up by name; false if there is none. */
bool
similarity_measure_from_name(const char *name, SimilarityMeasure *measure)
{
	for (int i = 0; i < (int) lengthof(measure_names); i++)
	{
		if (strcmp(name, measure_names[i]) == 0)
		{
			*measure = (SimilarityMeasure) i;
			return true;
		}
	}
	return false;
}

/* The SQL name of a measure. */
const char *
similarity_measure_name(SimilarityMeasure measure)
{
	return measure_names[measure];
}

/* "count, jaccard, ..." for error hints: the pair formulas */
const char *
similarity_measure_names(void)
{
	return "count, jaccard, cosine, lift, llr";
}

/* ... and what a variant may name, EASE too */
const char *
variant_measure_names(void)
{
	return "count, jaccard, cosine, lift, llr, ease";
}

static double
xlogx(double x)
{
	return x <= 0 ? 0.0 : x * log(x);
}

/*
 * Dunning's log-likelihood ratio (G^2) of the 2x2 contingency table, as
 * Mahout's LogLikelihood computes it; 0 when the pair co-occurs less often
 * than independence predicts (we only want positive association).
 */
static double
llr(double k11, double k12, double k21, double k22)
{
	double		n = k11 + k12 + k21 + k22;
	double		row,
				col,
				mat;

	if (n <= 0 || k11 * n <= (k11 + k12) * (k11 + k21))
		return 0.0;
	row = xlogx(n) - xlogx(k11 + k12) - xlogx(k21 + k22);
	col = xlogx(n) - xlogx(k11 + k21) - xlogx(k12 + k22);
	mat = xlogx(n) - xlogx(k11) - xlogx(k12) - xlogx(k21) - xlogx(k22);
	return Max(0.0, 2.0 * (row + col - mat));
}

/* The score of a pair under a measure; 0 when a count is missing. */
double
similarity_score(SimilarityMeasure measure, int64 ab, int64 a, int64 b, int64 n)
{
	/* in double precision: a + b or n - a - b could overflow int64 */
	double		dab = (double) ab,
				da = (double) a,
				db = (double) b,
				dn = (double) n;

	if (ab <= 0 || a <= 0 || b <= 0)
		return 0.0;
	switch (measure)
	{
		case SIM_COUNT:
			return dab;
		case SIM_JACCARD:
			/* the union is at least the intersection, even for inconsistent counts */
			return dab / Max(da + db - dab, dab);
		case SIM_COSINE:
			return dab / sqrt(da * db);
		case SIM_LIFT:
			return n <= 0 ? 0.0 : dab * dn / (da * db);
		case SIM_LLR:
			return llr(dab, Max(da - dab, 0.0), Max(db - dab, 0.0), Max(dn - da - db + dab, 0.0));
		case SIM_EASE:
			return 0.0;			/* not a pair formula (refused by similarity()) */
	}
	return 0.0;
}

PG_FUNCTION_INFO_V1(personalize_similarity);

/* personalize.similarity(measure text, ab bigint, a bigint, b bigint, n bigint) */
Datum
personalize_similarity(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		ab = PG_GETARG_INT64(1);
	int64		a = PG_GETARG_INT64(2);
	int64		b = PG_GETARG_INT64(3);
	int64		n = PG_GETARG_INT64(4);
	SimilarityMeasure m;

	if (!similarity_measure_from_name(name, &m))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown similarity measure \"%s\"", echo_name(name)),
				 errhint("Known measures: %s.", similarity_measure_names())));
	if (m == SIM_EASE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"ease\" is not a similarity of a product pair"),
				 errdetail("EASE weights come from the whole co-occurrence matrix at once: personalize.refresh_ease() stores them as the \"ease\" neighbour lists."),
				 errhint("Known pair measures: %s.", similarity_measure_names())));
	if (ab < 0 || a < 0 || b < 0 || n < 0 || ab > a || ab > b || a > n || b > n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("inconsistent counts for a similarity"),
				 errdetail("Got ab = " INT64_FORMAT ", a = " INT64_FORMAT ", b = " INT64_FORMAT ", n = " INT64_FORMAT ".", ab, a, b, n),
				 errhint("Counts must satisfy 0 <= ab <= a, b <= n.")));
	PG_RETURN_FLOAT8(similarity_score(m, ab, a, b, n));
}
