/*
 * ease_solve.h: the inverse of a symmetric positive definite matrix by the
 * blocked Cholesky algorithms of LAPACK (ease_solve.c), driven call by call so
 * that the caller can stop between two library calls. No PostgreSQL header:
 * test/bench/ease_solve_bench.c links the same file.
 */
#ifndef PERSONALIZE_EASE_SOLVE_H
#define PERSONALIZE_EASE_SOLVE_H

#include <stddef.h>

/* The phases of the solve, as the progress callback names them. */
typedef enum EaseSolvePhase
{
	EASE_FACTORISE,				/* A = L L^T (dpotrf) */
	EASE_INVERT_L,				/* L := L^-1 (dtrtri) */
	EASE_MULTIPLY				/* P := L^-T L^-1 (dlauum) */
} EaseSolvePhase;

/*
 * Called between two library calls (each a bounded amount of work) with the
 * phase and the part of it done (0..1); it may longjmp out (a cancel): the
 * matrix is then garbage but nothing else is held.
 */
typedef void (*EaseSolveCheck) (void *arg, EaseSolvePhase phase, double done);

/*
 * Overwrite the lower triangle of the column-major n x n matrix a (lda = n)
 * with its inverse; the strictly upper triangle is never read nor written.
 * Returns 0, or the order of the leading minor that is not positive definite
 * (a is then garbage).
 */
extern int	ease_spd_inverse(double *a, int n, EaseSolveCheck check, void *arg);

#endif							/* PERSONALIZE_EASE_SOLVE_H */
