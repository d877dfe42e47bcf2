/*
 * ranking.c: the candidates of a serving call best first (score descending,
 * ties by product id), ranked only as deep as the walk goes.
 *
 * The walk (recommend.c) cannot know beforehand how many ranked candidates it
 * needs for k products: it skips inactive products, purchases, what the
 * filters and the category cap leave out. Sorting every candidate (the 1,000
 * of the popularity list among them) took about 30% of recommend()
 * (docs/benchmarks.md, Finding 6). The scored candidates go into a binary
 * heap instead (linear time) and the walk takes them from it one position at
 * a time (logarithmic each), as far as it goes: as the order is total, the
 * first positions are those a full sort gives, whatever k is.
 *
 * Products that only popularity brings in are not candidates of the hash:
 * they come from the popularity list (popular.c), which is kept best first.
 * Without another part a product's score is a non-decreasing function of its
 * popularity (recommend_score(): pop, or popularity_weight * pop), so they can
 * enter the heap in list order: it always holds every not yet ranked entry of
 * the best score left in the list (all of them when several share it, which
 * the heap then orders by product id as a sort would), and the next group
 * enters when one of the list's is ranked. Entries that are candidates of the
 * hash (a neighbour, an LLM answer, a campaign, an exclusion) are ranked from
 * there and skipped here.
 */
#include "personalize.h"

#include "utils/hsearch.h"

#include "ranking.h"

/* a ranks before b */
static inline bool
ranks_before(const Candidate *a, const Candidate *b)
{
	if (a->score != b->score)
		return a->score > b->score;
	return a->product_id < b->product_id;
}

static void
sift_down(Candidate **h, int n, int i)
{
	Candidate  *x = h[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= n)
			break;
		if (child + 1 < n && ranks_before(h[child + 1], h[child]))
			child++;
		if (!ranks_before(h[child], x))
			break;
		h[i] = h[child];
		i = child;
	}
	h[i] = x;
}

static void
heap_push(Ranking *r, Candidate *c)
{
	int			i = r->nheap++;

	if (r->nheap > r->capacity)
		elog(ERROR, "personalize: ranking overflow");
	while (i > 0 && ranks_before(c, r->heap[(i - 1) / 2]))
	{
		r->heap[i] = r->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	r->heap[i] = c;
}

/*
 * A ranking for up to ncand candidates of the hash, and the products of the
 * popularity list (NULL: none) that no other part brings in.
 */
Ranking *
ranking_create(RecommendState *rs, int ncand, const PopularList *popular)
{
	Ranking    *r = palloc0(sizeof(Ranking));

	r->rs = rs;
	r->popular = popular;
	r->capacity = Max(ncand + (popular ? popular->n : 0), 1);
	r->heap = palloc(sizeof(Candidate *) * r->capacity);
	r->order = palloc(sizeof(Candidate *) * r->capacity);
	return r;
}

/* A scored candidate of the hash; ranking_start() orders them. */
void
ranking_add(Ranking *r, Candidate *c)
{
	if (r->nheap >= r->capacity)
		elog(ERROR, "personalize: ranking overflow");
	r->heap[r->nheap++] = c;
}

/*
 * The next group of popularity-only products into the heap: the entries of
 * the list from popular_next that share the best score left, skipping those
 * of the hash and those not recommended at all.
 */
static void
push_popular_group(Ranking *r)
{
	const PopularList *pl = r->popular;
	bool		have = false;
	double		score = 0.0;
	ScoreParts	sp;

	while (pl != NULL && r->popular_next < pl->n)
	{
		int			i = r->popular_next;
		bool		found;
		Candidate	c;
		Candidate  *kept;

		(void) hash_search(r->rs->cands, &pl->ids[i], HASH_FIND, &found);
		if (found)
		{
			r->popular_next++;
			continue;
		}
		/* as candidate() and recommend_rank() would have made it */
		memset(&c, 0, sizeof(c));
		c.product_id = pl->ids[i];
		c.boost = 1.0;
		c.pop = pl->scores[i];
		c.pop_source = c.pop > 0.5 ? 1 : 2;
		c.from_popular = true;
		if (!recommend_score(&c, r->rs, &sp))
		{
			r->popular_next++;
			continue;
		}
		if (have && c.score != score)
			break;
		have = true;
		score = c.score;
		kept = palloc(sizeof(Candidate));
		*kept = c;
		heap_push(r, kept);
		r->popular_next++;
	}
}

/* Heapify the candidates added, and bring in the first popularity-only group. */
void
ranking_start(Ranking *r)
{
	for (int i = r->nheap / 2 - 1; i >= 0; i--)
		sift_down(r->heap, r->nheap, i);
	push_popular_group(r);
}

/* The next position: false when every candidate is ranked. */
static bool
ranking_next(Ranking *r)
{
	Candidate  *best;

	if (r->nheap == 0)
		return false;
	best = r->heap[0];
	r->heap[0] = r->heap[--r->nheap];
	if (r->nheap > 0)
		sift_down(r->heap, r->nheap, 0);
	r->order[r->norder++] = best;
	if (best->from_popular)
		push_popular_group(r);
	return true;
}

/*
 * Rank positions start .. start + want - 1 (r->order); returns how many of
 * them there are (fewer at the end of the ranking).
 */
int
ranking_fill(Ranking *r, int start, int want)
{
	while (r->norder < start + want && ranking_next(r))
		;
	return Max(Min(r->norder, start + want) - start, 0);
}
