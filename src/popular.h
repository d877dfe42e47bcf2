/*
 * popular.h: the popularity list as the serving functions read it (popular.c):
 * decoded once per backend, reused while its row is unchanged.
 */
#ifndef POPULAR_H
#define POPULAR_H

/*
 * The list of popular_scores (or, with no list, the live bestsellers), one
 * entry per product, best first (score descending, ties by product id), and
 * an index from product id to score.
 */
typedef struct PopularList
{
	int			n;
	int64	   *ids;
	double	   *scores;
	double		window_days;	/* 0 without a stored list */
	bool		live;			/* computed now from item_counts (not stored yet) */
	/* open addressing: slot -> entry + 1 (0 empty); mask + 1 slots */
	int		   *slots;
	uint32		mask;
} PopularList;

extern const PopularList *popular_read(void);
extern bool popular_lookup(const PopularList *pl, int64 product_id, double *score);

#endif							/* POPULAR_H */
