/*
 * ease_solve_bench.c: time the inverse of a synthetic SPD Gram-like matrix
 * (random co-occurrence counts off the diagonal, row sums + lambda on it), as
 * refresh_ease() computes it (src/ease_solve.c, one bounded library call at a
 * time) or as one dpotrf + dpotri call. test/bench/ease.sh builds it against
 * serial OpenBLAS and against reference BLAS/LAPACK.
 *
 *   ease_solve_bench N blocked|lapack|check [lambda]
 *
 * check: both ways on the same matrix, prints the largest difference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ease_solve.h"

extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void
no_check(void *arg, EaseSolvePhase phase, double done)
{
	(void) arg;
	(void) phase;
	(void) done;
}

/* symmetric, both triangles: 5% of the pairs co-occur 1..5 times, diagonal = row sum + lambda */
static double *
gram(int n, double lambda)
{
	double	   *a = calloc((size_t) n * n, sizeof(double));
	unsigned int seed = 12345;

	if (a == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (int j = 0; j < n; j++)
		for (int i = j + 1; i < n; i++)
			if (rand_r(&seed) % 20 == 0)
			{
				double		c = 1 + rand_r(&seed) % 5;

				a[(size_t) j * n + i] = c;
				a[(size_t) i * n + j] = c;
				a[(size_t) i * n + i] += c;
				a[(size_t) j * n + j] += c;
			}
	for (int i = 0; i < n; i++)
		a[(size_t) i * n + i] += lambda;
	return a;
}

static int
lapack(double *a, int n)
{
	int			info = 0;

	dpotrf_("L", &n, a, &n, &info, 1);
	if (info == 0)
		dpotri_("L", &n, a, &n, &info, 1);
	return info;
}

int
main(int argc, char **argv)
{
	int			n = argc > 2 ? atoi(argv[1]) : 0;
	double		lambda = argc > 3 ? atof(argv[3]) : 100.0;
	double	   *a,
				t0,
				t1;
	int			bad;

	if (n < 2)
	{
		fprintf(stderr, "usage: %s N blocked|lapack|check [lambda]\n", argv[0]);
		return 2;
	}
	t0 = now();
	a = gram(n, lambda);
	t1 = now();
	fprintf(stderr, "generated %d x %d in %.1f s\n", n, n, t1 - t0);
	if (strcmp(argv[2], "check") == 0)
	{
		double	   *b = malloc((size_t) n * n * sizeof(double));
		double		worst = 0,
					big = 0;

		memcpy(b, a, (size_t) n * n * sizeof(double));
		if (ease_spd_inverse(a, n, no_check, NULL) != 0 || lapack(b, n) != 0)
			return 1;
		for (int j = 0; j < n; j++)
			for (int i = j; i < n; i++)
			{
				worst = fmax(worst, fabs(a[(size_t) j * n + i] - b[(size_t) j * n + i]));
				big = fmax(big, fabs(b[(size_t) j * n + i]));
			}
		printf("n=%d max |blocked - dpotri| = %.3g (largest entry %.3g)\n", n, worst, big);
		return worst <= 1e-12 * fmax(big, 1e-300) * n ? 0 : 1;
	}
	t0 = now();
	bad = strcmp(argv[2], "lapack") == 0 ? lapack(a, n) : ease_spd_inverse(a, n, no_check, NULL);
	t1 = now();
	if (bad != 0)
	{
		fprintf(stderr, "not positive definite (%d)\n", bad);
		return 1;
	}
	printf("n=%d %s %.2f s\n", n, argv[2], t1 - t0);
	return 0;
}
