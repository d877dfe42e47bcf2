/*
 * stats.c: the distribution functions experiment_results needs: the normal
 * CDF (erfc from libm), the chi-square survival function (regularised upper
 * incomplete gamma) and Student's t CDF (regularised incomplete beta), both
 * by series and Lentz continued fractions as in Numerical Recipes, ch. 6.
 */
#include "personalize.h"

#include <math.h>

#include "stats.h"

PG_FUNCTION_INFO_V1(personalize_normal_cdf);
PG_FUNCTION_INFO_V1(personalize_chisq_sf);
PG_FUNCTION_INFO_V1(personalize_t_cdf);

#define STATS_EPS 1e-15
#define STATS_TINY 1e-300
#define STATS_ITER 1000

/* P(Z <= x) for a standard normal Z */
double
stats_normal_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/* Regularised lower incomplete gamma P(a, x) by its series (x < a + 1) */
static double
gamma_p_series(double a, double x)
{
	double		ap = a;
	double		sum = 1.0 / a;
	double		del = sum;

	for (int n = 0; n < STATS_ITER; n++)
	{
		ap += 1.0;
		del *= x / ap;
		sum += del;
		if (fabs(del) < fabs(sum) * STATS_EPS)
			break;
	}
	return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Regularised upper incomplete gamma Q(a, x) by its continued fraction (x >= a + 1) */
static double
gamma_q_cf(double a, double x)
{
	double		b = x + 1.0 - a;
	double		c = 1.0 / STATS_TINY;
	double		d = 1.0 / b;
	double		h = d;

	for (int i = 1; i < STATS_ITER; i++)
	{
		double		an = -i * (i - a);
		double		del;

		b += 2.0;
		d = an * d + b;
		if (fabs(d) < STATS_TINY)
			d = STATS_TINY;
		c = b + an / c;
		if (fabs(c) < STATS_TINY)
			c = STATS_TINY;
		d = 1.0 / d;
		del = d * c;
		h *= del;
		if (fabs(del - 1.0) < STATS_EPS)
			break;
	}
	return exp(-x + a * log(x) - lgamma(a)) * h;
}

/*
 * Beyond this many degrees of freedom the series and continued fractions lose
 * their accuracy (at 1e15 they leave [0, 1]); the normal limits are then exact
 * to far better than the statistics need (the t error is O(1/df)).
 */
#define LARGE_DF 1e7

/* x clamped into [0, 1] (NaN stays NaN) */
static double
probability(double x)
{
	return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
}

/* P(X > x) for X chi-square with df degrees of freedom */
double
stats_chisq_sf(double x, double df)
{
	double		a = df / 2.0;
	double		y = x / 2.0;

	if (isnan(x) || isnan(df))
		return NAN;
	if (x <= 0.0)
		return 1.0;
	if (isinf(x))
		return 0.0;
	if (df > LARGE_DF)
	{
		/* Wilson-Hilferty: (X/df)^(1/3) is nearly normal */
		double		v = 2.0 / (9.0 * df);
		double		z = (cbrt(x / df) - (1.0 - v)) / sqrt(v);

		return probability(0.5 * erfc(z / M_SQRT2));
	}
	if (y < a + 1.0)
		return probability(1.0 - gamma_p_series(a, y));
	return probability(gamma_q_cf(a, y));
}

/* Continued fraction of the incomplete beta function (modified Lentz) */
static double
beta_cf(double a, double b, double x)
{
	double		qab = a + b;
	double		qap = a + 1.0;
	double		qam = a - 1.0;
	double		c = 1.0;
	double		d = 1.0 - qab * x / qap;
	double		h;

	if (fabs(d) < STATS_TINY)
		d = STATS_TINY;
	d = 1.0 / d;
	h = d;
	for (int m = 1; m < STATS_ITER; m++)
	{
		int			m2 = 2 * m;
		double		aa = m * (b - m) * x / ((qam + m2) * (a + m2));
		double		del;

		d = 1.0 + aa * d;
		if (fabs(d) < STATS_TINY)
			d = STATS_TINY;
		c = 1.0 + aa / c;
		if (fabs(c) < STATS_TINY)
			c = STATS_TINY;
		d = 1.0 / d;
		h *= d * c;
		aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
		d = 1.0 + aa * d;
		if (fabs(d) < STATS_TINY)
			d = STATS_TINY;
		c = 1.0 + aa / c;
		if (fabs(c) < STATS_TINY)
			c = STATS_TINY;
		d = 1.0 / d;
		del = d * c;
		h *= del;
		if (fabs(del - 1.0) < STATS_EPS)
			break;
	}
	return h;
}

/* Regularised incomplete beta I_x(a, b) */
static double
incomplete_beta(double a, double b, double x)
{
	double		front;

	if (x <= 0.0)
		return 0.0;
	if (x >= 1.0)
		return 1.0;
	front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
	if (x < (a + 1.0) / (a + b + 2.0))
		return front * beta_cf(a, b, x) / a;
	return 1.0 - front * beta_cf(b, a, 1.0 - x) / b;
}

/* P(T <= t) for T Student-t with df degrees of freedom */
double
stats_t_cdf(double t, double df)
{
	double		tail;

	if (isnan(t) || isnan(df))
		return NAN;
	if (isinf(t))
		return t > 0 ? 1.0 : 0.0;
	if (df > LARGE_DF)
		return stats_normal_cdf(t);
	tail = probability(0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t)));
	return t > 0 ? 1.0 - tail : tail;
}

static void
check_df(double df)
{
	if (!(df > 0.0) || isinf(df))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("degrees of freedom must be a positive finite number"),
				 errdetail("Got %g.", df)));
}

/* personalize._normal_cdf(x float8) */
Datum
personalize_normal_cdf(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(stats_normal_cdf(PG_GETARG_FLOAT8(0)));
}

/* personalize._chisq_sf(x float8, df float8) */
Datum
personalize_chisq_sf(PG_FUNCTION_ARGS)
{
	check_df(PG_GETARG_FLOAT8(1));
	PG_RETURN_FLOAT8(stats_chisq_sf(PG_GETARG_FLOAT8(0), PG_GETARG_FLOAT8(1)));
}

/* personalize._t_cdf(t float8, df float8) */
Datum
personalize_t_cdf(PG_FUNCTION_ARGS)
{
	check_df(PG_GETARG_FLOAT8(1));
	PG_RETURN_FLOAT8(stats_t_cdf(PG_GETARG_FLOAT8(0), PG_GETARG_FLOAT8(1)));
}
