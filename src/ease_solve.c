/*
 * ease_solve.c: P = A^-1 for a symmetric positive definite A, as LAPACK's
 * dpotrf + dpotri compute it, but driven from here one library call at a
 * time so that a cancel is seen within a fraction of a second.
 *
 * One dpotrf or dpotri call on 20,000 products runs for minutes and never
 * returns to PostgreSQL. So the three blocked algorithms of LAPACK (the lower
 * variants of dpotrf, dtrtri and dlauum, block size NB) are run here, step for
 * step as LAPACK's Fortran drivers run them: per block column a library
 * dpotrf / dtrtri / dlauum on the NB x NB diagonal block, and library BLAS 3
 * calls (dsyrk, dgemm, dtrsm, dtrmm) on the panels. No arithmetic is written
 * here: every flop is OpenBLAS's. The large panel products are cut into calls
 * of at most CALL_FLOPS floating-point operations each (rows or columns of the
 * result, which are independent), and the big triangular product of dtrtri
 * into NB-row blocks taken bottom-up (a dtrmm on the diagonal block, then a
 * dgemm with the rows above, which are still unchanged). Between two calls the
 * caller's check runs (CHECK_FOR_INTERRUPTS in ease.c).
 *
 * Only the lower triangle is referenced: ease.c keeps the pair counts in the
 * strictly upper triangle meanwhile.
 */
#include <cblas.h>

#include "ease_solve.h"

/* LAPACK (Fortran): the hidden string lengths are passed, as LAPACKE does */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info,
					size_t uplo_len, size_t diag_len);
extern void dlauum_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

#define NB 256					/* block size of the three algorithms */
#define CALL_FLOPS 2.0e9		/* at most this much work per library call (~0.1 s) */

typedef struct Solve
{
	double	   *a;
	int			n;
	EaseSolveCheck check;
	void	   *arg;
	EaseSolvePhase phase;
	double		total;			/* flops of the phase */
	double		done;
} Solve;

/* element (i, j) of the column-major matrix */
static double *
at(const Solve *s, int i, int j)
{
	return s->a + (size_t) j * (size_t) s->n + (size_t) i;
}

static int
min_int(int a, int b)
{
	return a < b ? a : b;
}

/* flops done: let the caller check for a cancel and report progress */
static void
step(Solve *s, double flops)
{
	double		f;

	s->done += flops;
	f = s->total > 0 ? s->done / s->total : 1.0;
	s->check(s->arg, s->phase, f > 1.0 ? 1.0 : f);
}

static void
begin_phase(Solve *s, EaseSolvePhase phase)
{
	s->phase = phase;
	s->total = (double) s->n * s->n * s->n / 3.0;
	s->done = 0;
	step(s, 0);
}

/*
 * C := alpha op(A) op(B) + beta C (C is m x n, inner dimension k), in calls of
 * at most CALL_FLOPS, cut along the longer side of C.
 */
static void
gemm(Solve *s, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
	 double alpha, const double *a, const double *b, double beta, double *c)
{
	size_t		ld = (size_t) s->n;
	double		per = 2.0 * (k > 0 ? k : 1);

	if (m >= n)
	{
		int			rows = (int) (CALL_FLOPS / (per * (n > 0 ? n : 1)));

		rows = rows < 1 ? 1 : rows;
		for (int r0 = 0; r0 < m; r0 += rows)
		{
			int			rb = min_int(rows, m - r0);

			cblas_dgemm(CblasColMajor, ta, tb, rb, n, k, alpha,
						ta == CblasNoTrans ? a + r0 : a + (size_t) r0 * ld, s->n, b, s->n, beta, c + r0, s->n);
			step(s, per * rb * n);
		}
	}
	else
	{
		int			cols = (int) (CALL_FLOPS / (per * (m > 0 ? m : 1)));

		cols = cols < 1 ? 1 : cols;
		for (int c0 = 0; c0 < n; c0 += cols)
		{
			int			cb = min_int(cols, n - c0);

			cblas_dgemm(CblasColMajor, ta, tb, m, cb, k, alpha, a, s->n,
						tb == CblasNoTrans ? b + (size_t) c0 * ld : b + c0, s->n, beta, c + (size_t) c0 * ld, s->n);
			step(s, per * m * cb);
		}
	}
}

/* B := alpha B op(T)^-1 for the m x nb panel B and the nb x nb lower T, in row chunks */
static void
trsm_right(Solve *s, enum CBLAS_TRANSPOSE tt, int m, int nb, double alpha, const double *t, double *b)
{
	int			rows = (int) (CALL_FLOPS / ((double) nb * nb));

	rows = rows < 1 ? 1 : rows;
	for (int r0 = 0; r0 < m; r0 += rows)
	{
		int			rb = min_int(rows, m - r0);

		cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, tt, CblasNonUnit, rb, nb, alpha, t, s->n, b + r0, s->n);
		step(s, (double) rb * nb * nb);
	}
}

/* A = L L^T (LAPACK dpotrf, lower, blocked); 0 or the failing minor's order */
static int
factorise(Solve *s)
{
	int			n = s->n;

	begin_phase(s, EASE_FACTORISE);
	for (int j = 0; j < n; j += NB)
	{
		int			jb = min_int(NB, n - j);
		int			info = 0;

		if (j > 0)
		{
			cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, jb, j, -1.0, at(s, j, 0), n, 1.0, at(s, j, j), n);
			step(s, (double) jb * jb * j);
		}
		dpotrf_("L", &jb, at(s, j, j), &n, &info, 1);
		if (info != 0)
			return j + info;
		step(s, (double) jb * jb * jb / 3.0);
		if (j + jb < n)
		{
			if (j > 0)
				gemm(s, CblasNoTrans, CblasTrans, n - j - jb, jb, j, -1.0, at(s, j + jb, 0), at(s, j, 0), 1.0,
					 at(s, j + jb, j));
			trsm_right(s, CblasTrans, n - j - jb, jb, 1.0, at(s, j, j), at(s, j + jb, j));
		}
	}
	return 0;
}

/*
 * B := T B for the m x m lower T at t (already inverted) and the m x nb panel
 * B at b: NB-row blocks bottom-up, so the rows above a block are still the
 * old B when its dgemm reads them.
 */
static void
trmm_left(Solve *s, int m, int nb, const double *t, double *b)
{
	size_t		ld = (size_t) s->n;

	for (int r0 = ((m - 1) / NB) * NB; r0 >= 0; r0 -= NB)
	{
		int			rb = min_int(NB, m - r0);

		cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, rb, nb, 1.0,
					t + (size_t) r0 * ld + r0, s->n, b + r0, s->n);
		step(s, (double) rb * rb * nb);
		if (r0 > 0)
			gemm(s, CblasNoTrans, CblasNoTrans, rb, nb, r0, 1.0, t + r0, b, 1.0, b + r0);
	}
}

/* L := L^-1 (LAPACK dtrtri, lower, non-unit, blocked: block columns right to left) */
static int
invert_l(Solve *s)
{
	int			n = s->n;

	begin_phase(s, EASE_INVERT_L);
	for (int j = ((n - 1) / NB) * NB; j >= 0; j -= NB)
	{
		int			jb = min_int(NB, n - j);
		int			info = 0;

		if (j + jb < n)
		{
			trmm_left(s, n - j - jb, jb, at(s, j + jb, j + jb), at(s, j + jb, j));
			trsm_right(s, CblasNoTrans, n - j - jb, jb, -1.0, at(s, j, j), at(s, j + jb, j));
		}
		dtrtri_("L", "N", &jb, at(s, j, j), &n, &info, 1, 1);
		if (info != 0)
			return j + info;
		step(s, (double) jb * jb * jb / 3.0);
	}
	return 0;
}

/* A := L^T L for the L^-1 in the lower triangle (LAPACK dlauum, lower, blocked) */
static void
multiply(Solve *s)
{
	int			n = s->n;
	size_t		ld = (size_t) n;

	begin_phase(s, EASE_MULTIPLY);
	for (int i = 0; i < n; i += NB)
	{
		int			ib = min_int(NB, n - i);
		int			info = 0;
		int			cols = (int) (CALL_FLOPS / ((double) ib * ib));

		for (int c0 = 0; c0 < i; c0 += cols)
		{
			int			cb = min_int(cols, i - c0);

			cblas_dtrmm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, ib, cb, 1.0,
						at(s, i, i), n, s->a + (size_t) c0 * ld + i, n);
			step(s, (double) ib * ib * cb);
		}
		dlauum_("L", &ib, at(s, i, i), &n, &info, 1);
		step(s, (double) ib * ib * ib / 3.0);
		if (i + ib < n)
		{
			if (i > 0)
				gemm(s, CblasTrans, CblasNoTrans, ib, i, n - i - ib, 1.0, at(s, i + ib, i), at(s, i + ib, 0), 1.0,
					 at(s, i, 0));
			cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, ib, n - i - ib, 1.0, at(s, i + ib, i), n, 1.0,
						at(s, i, i), n);
			step(s, (double) ib * ib * (n - i - ib));
		}
	}
}

int
ease_spd_inverse(double *a, int n, EaseSolveCheck check, void *arg)
{
	Solve		s = {a, n, check, arg, EASE_FACTORISE, 0, 0};
	int			bad;

	if ((bad = factorise(&s)) != 0)
		return bad;
	if ((bad = invert_l(&s)) != 0)
		return bad;
	multiply(&s);
	return 0;
}
