/*
 * ranking.h: the candidates of a serving call in rank order, produced as far
 * as the walk needs them (ranking.c).
 */
#ifndef RANKING_H
#define RANKING_H

#include "popular.h"
#include "recommend.h"

struct Ranking
{
	Candidate **heap;			/* candidates not ranked yet: a binary heap, best at [0] */
	int			nheap;
	Candidate **order;			/* ranked so far, best first */
	int			norder;
	int			capacity;		/* of heap and order */
	RecommendState *rs;
	const PopularList *popular; /* popularity-only candidates, taken from it lazily */
	int			popular_next;	/* its first entry not yet in the heap */
};

extern Ranking *ranking_create(RecommendState *rs, int ncand, const PopularList *popular);
extern void ranking_add(Ranking *r, Candidate *c);
extern void ranking_start(Ranking *r);
extern int	ranking_fill(Ranking *r, int start, int want);

#endif							/* RANKING_H */
