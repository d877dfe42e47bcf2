/*
 * model_delta.c: the pure part of incremental maintenance. Given one
 * customer's items before and after a statement, decide which products take
 * part in the model (the cap rule) and emit the pair and item count deltas.
 * No SPI here: trigger.c reads and writes, this file only computes.
 *
 * The cap rule (the same in rebuild()): a customer's in-model products are the
 * first max_items_per_customer of their distinct products, ordered by the
 * smallest interaction_id the customer has with each (then product_id).
 */
#include "personalize.h"

#include "model_delta.h"

/* grow a delta buffer so that it holds at least need more entries */
static void
reserve(DeltaBuffer *buf, Size need)
{
	if (buf->n + need <= buf->cap)
		return;
	buf->cap = Max(buf->cap * 2, buf->n + need + 1024);
	if (buf->items == NULL)
		buf->items = MemoryContextAllocHuge(CurrentMemoryContext, buf->cap * sizeof(Delta));
	else
		buf->items = repalloc_huge(buf->items, buf->cap * sizeof(Delta));
}

/* add one change (a and b in either order) */
void
delta_buffer_add(DeltaBuffer *buf, int64 a, int64 b, int64 d)
{
	Delta	   *x;

	reserve(buf, 1);
	x = &buf->items[buf->n++];
	x->a = Min(a, b);
	x->b = Max(a, b);
	x->d = d;
}

static int
cmp_rank(const void *pa, const void *pb)
{
	const CustomerItem *a = *(CustomerItem *const *) pa;
	const CustomerItem *b = *(CustomerItem *const *) pb;

	if (a->first_id != b->first_id)
		return a->first_id < b->first_id ? -1 : 1;
	if (a->product_id != b->product_id)
		return a->product_id < b->product_id ? -1 : 1;
	return 0;
}

/*
 * Recompute in_model_new for items[0..n) (every item the customer has that
 * can be in the model: the old in-model ones and all changed ones) and emit
 * the deltas. Returns the number of in-model items after.
 */
int
customer_model_delta(CustomerItem *items, int n, int cap,
					 DeltaBuffer *pairs, DeltaBuffer *singles, int64 *max_first_id)
{
	CustomerItem **rank = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(CustomerItem *) * Max(n, 1));
	int			live = 0;
	int			in_new = 0;

	for (int i = 0; i < n; i++)
	{
		items[i].in_model_new = false;
		if (items[i].events > 0)
			rank[live++] = &items[i];
	}
	qsort(rank, live, sizeof(CustomerItem *), cmp_rank);
	*max_first_id = 0;
	for (int i = 0; i < live && i < cap; i++)
	{
		rank[i]->in_model_new = true;
		*max_first_id = rank[i]->first_id;
		in_new++;
	}

	/*
	 * pairs(S_new) - pairs(S_old): each added product pairs with every
	 * product of S_new, each removed one with every product of S_old; a pair
	 * of two added (or two removed) products is emitted once.
	 */
	for (int i = 0; i < n; i++)
	{
		CustomerItem *x = &items[i];

		if (x->in_model_new && !x->in_model_old)
		{
			delta_buffer_add(singles, x->product_id, x->product_id, 1);
			for (int j = 0; j < n; j++)
			{
				CustomerItem *y = &items[j];

				if (j == i || !y->in_model_new)
					continue;
				if (!y->in_model_old && y->product_id < x->product_id)
					continue;	/* the added pair is emitted from y's side */
				delta_buffer_add(pairs, x->product_id, y->product_id, 1);
			}
		}
		else if (x->in_model_old && !x->in_model_new)
		{
			delta_buffer_add(singles, x->product_id, x->product_id, -1);
			for (int j = 0; j < n; j++)
			{
				CustomerItem *y = &items[j];

				if (j == i || !y->in_model_old)
					continue;
				if (!y->in_model_new && y->product_id < x->product_id)
					continue;
				delta_buffer_add(pairs, x->product_id, y->product_id, -1);
			}
		}
	}
	pfree(rank);
	return in_new;
}

static int
cmp_delta(const void *pa, const void *pb)
{
	const Delta *a = pa;
	const Delta *b = pb;

	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	if (a->b != b->b)
		return a->b < b->b ? -1 : 1;
	return 0;
}

/* Sort by key and add up equal keys; entries that cancel out are dropped. */
void
delta_buffer_merge(DeltaBuffer *buf)
{
	Size		out = 0;

	if (buf->n == 0)
		return;
	qsort(buf->items, buf->n, sizeof(Delta), cmp_delta);
	for (Size i = 0; i < buf->n; i++)
	{
		if (out > 0 && buf->items[out - 1].a == buf->items[i].a &&
			buf->items[out - 1].b == buf->items[i].b)
			buf->items[out - 1].d += buf->items[i].d;
		else
		{
			if (out > 0 && buf->items[out - 1].d == 0)
				out--;
			buf->items[out++] = buf->items[i];
		}
	}
	if (out > 0 && buf->items[out - 1].d == 0)
		out--;
	buf->n = out;
}
