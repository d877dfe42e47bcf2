/*
 * content.c: content neighbours, the products most alike by their text, from
 * the cosine similarity of their OpenAI embeddings (personalize.product_embeddings).
 * They are written as neighbour lists of measure 'content', so that a product
 * nobody has bought yet already has neighbours and can be recommended the day
 * it is added (recommend.c reads them with the variant's content_weight).
 *
 * Only active products are compared, and only embeddings of the same model and
 * dimension (vectors of two models live in different spaces). A list holds the
 * personalize.neighbors_k best neighbours with a cosine above 0, best first
 * (ties: smaller product id first); counts hold each neighbour's customers
 * (item_counts) at refresh time, which recommend() compares with
 * personalize.neighbors_min_count to tell a neighbour co-occurrence cannot
 * know yet.
 *
 * The search is exhaustive, not approximate: every pair of a model's products
 * once, O(n^2 * dimension): 20,000 products of 256 dimensions (5 * 10^10
 * multiply-adds) take about 7 s on one core; 100,000 would take minutes. A
 * NOTICE reports progress every 10 s. An incremental refresh (an array of
 * products) costs its products times the catalog.
 */
#include "personalize.h"

#include <math.h>

#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "guc.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_refresh_content_neighbors);

typedef struct Neighbor
{
	double		score;
	int64		product_id;
	int			idx;			/* into the loaded products; -1 if not loaded */
} Neighbor;

/* The best neighbours seen so far: a min-heap (the worst at the root) of at most k. */
typedef struct TopK
{
	int			n;
	double		floor;			/* the worst score once k are held, else -1: most pairs stop here */
	Neighbor   *items;
} TopK;

typedef struct Embedded
{
	int64		product_id;
	int64		customers;		/* item_counts.customers, 0 without a row */
	int			group;			/* same model and dimension: same group */
	int			dim;
	float4	   *vec;
	double		norm;
	bool		target;			/* in the product_ids argument */
	TopK		top;
} Embedded;

typedef struct IdEntry
{
	int64		product_id;		/* hash key */
	int			idx;
} IdEntry;

static SPIPlanPtr plan_upsert, plan_delete;

/* a is a worse neighbour than b: lower score, or the same score and a larger id */
static inline bool
worse(const Neighbor *a, const Neighbor *b)
{
	return a->score < b->score || (a->score == b->score && a->product_id > b->product_id);
}

static int
cmp_best_first(const void *pa, const void *pb)
{
	const Neighbor *a = pa;
	const Neighbor *b = pb;

	if (worse(a, b))
		return 1;
	if (worse(b, a))
		return -1;
	return 0;
}

static void
topk_offer(TopK *t, int k, const Neighbor *cand)
{
	int			i;

	if (t->items == NULL)
		t->items = palloc(sizeof(Neighbor) * k);
	if (t->n < k)
	{
		/* sift up */
		i = t->n++;
		while (i > 0 && worse(cand, &t->items[(i - 1) / 2]))
		{
			t->items[i] = t->items[(i - 1) / 2];
			i = (i - 1) / 2;
		}
		t->items[i] = *cand;
		if (t->n == k)
			t->floor = t->items[0].score;
		return;
	}
	if (!worse(&t->items[0], cand))
		return;
	/* replace the worst and sift down */
	i = 0;
	for (;;)
	{
		int			l = 2 * i + 1,
					m = i;
		const Neighbor *at = cand;

		if (l < t->n && worse(&t->items[l], at))
		{
			m = l;
			at = &t->items[l];
		}
		if (l + 1 < t->n && worse(&t->items[l + 1], at))
			m = l + 1;
		if (m == i)
			break;
		t->items[i] = t->items[m];
		i = m;
	}
	t->items[i] = *cand;
	t->floor = t->items[0].score;
}

/*
 * Dot product in eight independent single-precision sums, which the compiler
 * turns into vector instructions (three times the speed of one double sum;
 * the error, about 1e-7 of the cosine against double precision, does not
 * matter to a ranking). The same order for (a, b) and (b, a), so a pair's
 * cosine is the same whichever product's list is computed.
 */
static double
dot(const float4 *a, const float4 *b, int d)
{
	float4		s0 = 0,
				s1 = 0,
				s2 = 0,
				s3 = 0,
				s4 = 0,
				s5 = 0,
				s6 = 0,
				s7 = 0,
				rest = 0;
	const float4 *end = a + (d & ~7);

	/* pointers, not a[i + l]: with -fwrapv an int index may wrap, and gcc then loads lane by lane */
	for (; a < end; a += 8, b += 8)
	{
		s0 += a[0] * b[0];
		s1 += a[1] * b[1];
		s2 += a[2] * b[2];
		s3 += a[3] * b[3];
		s4 += a[4] * b[4];
		s5 += a[5] * b[5];
		s6 += a[6] * b[6];
		s7 += a[7] * b[7];
	}
	for (int i = 0; i < (d & 7); i++)
		rest += a[i] * b[i];
	return (double) (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + rest);
}

static double
cosine(const Embedded *a, const Embedded *b)
{
	double		c = dot(a->vec, b->vec, a->dim) / (a->norm * b->norm);

	return Min(c, 1.0);
}

/* Both products enter each other's candidates when they are alike at all. */
static void
compare_pair(Embedded *e, int i, int j, int k)
{
	double		c = cosine(&e[i], &e[j]);
	Neighbor	n;

	if (!(c > 0.0))
		return;
	n.score = c;
	if (c >= e[i].top.floor)
	{
		n.product_id = e[j].product_id;
		n.idx = j;
		topk_offer(&e[i].top, k, &n);
	}
	if (c >= e[j].top.floor)
	{
		n.product_id = e[i].product_id;
		n.idx = i;
		topk_offer(&e[j].top, k, &n);
	}
}

static void
progress(TimestampTz started, TimestampTz *last, int done, int total)
{
	TimestampTz now = GetCurrentTimestamp();

	CHECK_FOR_INTERRUPTS();
	if (TimestampDifferenceExceeds(*last, now, 10000))
	{
		ereport(NOTICE,
				(errmsg("refresh_content_neighbors: %d of %d products compared (%.0f s)", done, total,
						(double) (now - started) / USECS_PER_SEC)));
		*last = now;
	}
}

/*
 * Compare within each group: with all, every pair once; otherwise each
 * target with every product of its group (a pair of targets once). Tiled:
 * the vectors of a tile of TILE products stay in the CPU cache while the
 * group streams by once per tile rather than once per product (20% faster
 * at 20,000 products of 256 dimensions).
 */
#define TILE 64

static void
compare_groups(Embedded *e, int n, bool all, int k, int total)
{
	int			side[TILE];
	int			done = 0;
	int			ge;
	TimestampTz started = GetCurrentTimestamp();
	TimestampTz last = started;

	for (int gs = 0; gs < n; gs = ge)
	{
		ge = gs;
		while (ge < n && e[ge].group == e[gs].group)
			ge++;
		for (int next = gs; next < ge;)
		{
			int			ns = 0;

			while (next < ge && ns < TILE)
			{
				if (all || e[next].target)
					side[ns++] = next;
				next++;
			}
			if (ns == 0)
				continue;
			for (int j = all ? side[0] + 1 : gs; j < ge; j++)
				for (int s = 0; s < ns; s++)
				{
					int			i = side[s];

					/* a pair once: from its smaller product when both are on the tile's side */
					if (j > i || (j < i && !all && !e[j].target))
						compare_pair(e, i, j, k);
				}
			done += ns;
			progress(started, &last, done, total);
		}
	}
}

/*
 * The active products' embeddings, ordered by model, dimension and product id,
 * copied out of SPI. Vectors with a non-finite value or a zero length have no
 * direction and are left out.
 */
static Embedded *
load_embeddings(int *n_out, HTAB *index)
{
	Embedded   *e;
	int			n = 0;
	uint64		rows;
	char	   *prev_model = NULL;
	int			prev_dim = -1;
	int			group = -1;

	if (SPI_execute("SELECT e.product_id, e.model, e.embedding, coalesce(ic.customers, 0) "
					"FROM personalize.product_embeddings e "
					"JOIN personalize.products p ON p.product_id = e.product_id AND p.active "
					"LEFT JOIN personalize.item_counts ic ON ic.product_id = e.product_id "
					"ORDER BY e.model COLLATE \"C\", cardinality(e.embedding), e.product_id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read product embeddings");
	rows = SPI_processed;
	e = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(Embedded) * Max(rows, 1));
	for (uint64 r = 0; r < rows; r++)
	{
		bool		isnull;
		char	   *model = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull);
		ArrayType  *a = DatumGetArrayTypeP(d);
		int			dim = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
		float4	   *src;
		double		norm = 0.0;
		bool		finite = true;
		IdEntry    *slot;
		bool		found;

		if (ARR_ELEMTYPE(a) != FLOAT4OID || ARR_HASNULL(a) || dim < 1)
			continue;			/* the table's CHECK forbids these */
		/* no null bitmap (checked above): the values follow the fixed header */
		src = (float4 *) ((char *) a + ARR_OVERHEAD_NONULLS(ARR_NDIM(a)));
		for (int i = 0; i < dim; i++)
		{
			if (isinf(src[i]) || isnan(src[i]))
				finite = false;
			norm += (double) src[i] * (double) src[i];
		}
		norm = sqrt(norm);
		if (!finite || !(norm > 0.0) || isinf(norm))
			continue;
		if (prev_model == NULL || strcmp(model, prev_model) != 0 || dim != prev_dim)
		{
			group++;
			prev_model = model;
			prev_dim = dim;
		}
		else
			pfree(model);
		memset(&e[n], 0, sizeof(Embedded));
		e[n].top.floor = -1.0;
		e[n].product_id = spi_int8(r, 1, 0);
		e[n].customers = spi_int8(r, 4, 0);
		e[n].group = group;
		e[n].dim = dim;
		e[n].vec = palloc(sizeof(float4) * dim);
		memcpy(e[n].vec, src, sizeof(float4) * dim);
		e[n].norm = norm;
		slot = hash_search(index, &e[n].product_id, HASH_ENTER, &found);
		slot->idx = n;
		n++;
		/* a detoasted copy is not needed any more (the catalog may be large) */
		if ((Pointer) a != DatumGetPointer(d))
			pfree(a);
	}
	SPI_freetuptable(SPI_tuptable);
	*n_out = n;
	return e;
}

/* Write one product's list (a row of measure 'content'), or delete it when empty. */
static bool
write_list(int64 product_id, Neighbor *items, int n, const Embedded *e, MemoryContext tmp)
{
	MemoryContext old = MemoryContextSwitchTo(tmp);
	bool		written = false;

	if (n == 0)
	{
		Oid			t[1] = {INT8OID};
		Datum		v[1] = {Int64GetDatum(product_id)};

		spi_prepare_kept(&plan_delete,
						 "DELETE FROM personalize.neighbors WHERE measure = 'content' AND product_id = $1",
						 1, t);
		if (SPI_execute_plan(plan_delete, v, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "personalize: could not delete a content neighbour list");
	}
	else
	{
		Oid			t[4] = {INT8OID, INT8ARRAYOID, FLOAT8ARRAYOID, INT8ARRAYOID};
		Datum		v[4];
		int64	   *ids = palloc(sizeof(int64) * n);
		double	   *scores = palloc(sizeof(double) * n);
		int64	   *counts = palloc(sizeof(int64) * n);

		for (int i = 0; i < n; i++)
		{
			ids[i] = items[i].product_id;
			scores[i] = items[i].score;
			counts[i] = items[i].idx >= 0 ? e[items[i].idx].customers : 0;
		}
		spi_prepare_kept(&plan_upsert,
						 "INSERT INTO personalize.neighbors (measure, product_id, neighbor_ids, scores, counts, refreshed_at) "
						 "VALUES ('content', $1, $2, $3, $4, now()) "
						 "ON CONFLICT (measure, product_id) DO UPDATE SET neighbor_ids = excluded.neighbor_ids, "
						 "scores = excluded.scores, counts = excluded.counts, refreshed_at = excluded.refreshed_at",
						 4, t);
		v[0] = Int64GetDatum(product_id);
		v[1] = int8_array_datum(ids, n);
		v[2] = float8_array_datum(scores, n);
		v[3] = int8_array_datum(counts, n);
		if (SPI_execute_plan(plan_upsert, v, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "personalize: could not write a content neighbour list");
		written = true;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(tmp);
	return written;
}

static int
cmp_int64(const void *pa, const void *pb)
{
	int64		a = *(const int64 *) pa;
	int64		b = *(const int64 *) pb;

	return a < b ? -1 : (a > b ? 1 : 0);
}

/*
 * Incremental refresh: the lists that are not the targets' own. A list that
 * holds a target, or that a target now enters, is rewritten: its entries that
 * are not targets and still in its model's group (others are gone from a full
 * refresh too), plus the targets that beat its K-th entry (any alike target
 * when it is shorter than K: it then held every product alike to it), best K
 * kept. So every list stays a true prefix of what a full refresh gives: a
 * target that leaves a full list leaves it one shorter, since what ranked
 * K+1-th was never stored; the next full refresh fills it. targets is sorted.
 * Returns the number of lists written.
 */
static int64
merge_targets(Embedded *e, int n, HTAB *index, int64 *targets, int ntargets, int k, MemoryContext tmp)
{
	int64	   *touched = palloc(sizeof(int64) * Max(n, 1));
	int			ntouched = 0;
	Oid			t[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		v[2];
	SPITupleTable *tt;
	uint64		rows;
	bool	   *seen = palloc0(sizeof(bool) * Max(n, 1));
	int64		written = 0;

	for (int j = 0; j < n; j++)
		if (!e[j].target && e[j].top.n > 0)
			touched[ntouched++] = e[j].product_id;
	v[0] = int8_array_datum(touched, ntouched);
	v[1] = int8_array_datum(targets, ntargets);
	/* planned with the arrays at hand (not kept): a few lists by key, or a scan of all */
	if (SPI_execute_with_args("SELECT product_id, neighbor_ids, scores FROM personalize.neighbors "
							  "WHERE measure = 'content' AND (product_id = ANY($1) OR neighbor_ids && $2)",
							  2, t, v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read content neighbour lists");
	tt = SPI_tuptable;
	rows = SPI_processed;
	for (uint64 r = 0; r < rows; r++)
	{
		bool		isnull;
		int64		pid = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
		ArrayType  *na = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull));
		ArrayType  *sa = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
		int			len = ArrayGetNItems(ARR_NDIM(na), ARR_DIMS(na));
		IdEntry    *slot = hash_search(index, &pid, HASH_FIND, NULL);
		Embedded   *j;
		int64	   *nid;
		double	   *nsc;
		Neighbor   *merged;
		Neighbor	kth = {0, 0, -1};
		int			m = 0;
		bool		changed = false;

		/* a list of a product no longer compared (inactive, no embedding) waits for a full refresh */
		if (slot == NULL || e[slot->idx].target)
			continue;
		j = &e[slot->idx];
		seen[slot->idx] = true;
		if (ARR_HASNULL(na) || ARR_HASNULL(sa) || ArrayGetNItems(ARR_NDIM(sa), ARR_DIMS(sa)) != len)
			continue;
		nid = (int64 *) ((char *) na + ARR_OVERHEAD_NONULLS(ARR_NDIM(na)));
		nsc = (double *) ((char *) sa + ARR_OVERHEAD_NONULLS(ARR_NDIM(sa)));
		merged = palloc(sizeof(Neighbor) * (len + j->top.n + 1));
		if (len >= k)
		{
			/* the K-th entry (lists are best first) */
			kth.score = nsc[k - 1];
			kth.product_id = nid[k - 1];
		}
		for (int i = 0; i < len; i++)
		{
			IdEntry    *ns = hash_search(index, &nid[i], HASH_FIND, NULL);

			/* the targets come again from the comparison, with their new score (or not at all) */
			if (bsearch(&nid[i], targets, ntargets, sizeof(int64), cmp_int64) != NULL)
			{
				changed = true;
				continue;
			}
			if (ns == NULL || e[ns->idx].group != j->group)
				continue;
			merged[m].product_id = nid[i];
			merged[m].score = nsc[i];
			merged[m].idx = ns->idx;
			m++;
		}
		for (int i = 0; i < j->top.n; i++)
			if (len < k || worse(&kth, &j->top.items[i]))
				merged[m++] = j->top.items[i];
		qsort(merged, m, sizeof(Neighbor), cmp_best_first);
		m = Min(m, k);
		/* rewritten only if a target left the list or entered it */
		for (int i = 0; i < m && !changed; i++)
			changed = e[merged[i].idx].target;
		if (changed && write_list(j->product_id, merged, m, e, tmp))
			written++;
		pfree(merged);
		CHECK_FOR_INTERRUPTS();
	}
	/* products without a list that a target enters */
	for (int j = 0; j < n; j++)
	{
		if (e[j].target || seen[j] || e[j].top.n == 0)
			continue;
		qsort(e[j].top.items, e[j].top.n, sizeof(Neighbor), cmp_best_first);
		if (write_list(e[j].product_id, e[j].top.items, e[j].top.n, e, tmp))
			written++;
		CHECK_FOR_INTERRUPTS();
	}
	return written;
}

/*
 * personalize._refresh_content_neighbors(product_ids bigint[] DEFAULT NULL) RETURNS bigint
 *
 * NULL: every list again (the old ones deleted). An array: those products'
 * lists, and those products merged into the other products' lists (so a new
 * product enters the lists of old products alike to it). Returns the number
 * of lists written.
 */
Datum
personalize_refresh_content_neighbors(PG_FUNCTION_ARGS)
{
	bool		all = PG_ARGISNULL(0);
	int64	   *targets = NULL;
	int			ntargets = 0;
	int			k = personalize_neighbors_k;
	HASHCTL		ctl;
	HTAB	   *index;
	Embedded   *e;
	int			n;
	int64		written = 0;
	MemoryContext tmp;

	if (!all)
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *nulls;
		int			ne;

		deconstruct_array(a, INT8OID, sizeof(int64), true, TYPALIGN_DOUBLE, &elems, &nulls, &ne);
		targets = palloc(sizeof(int64) * Max(ne, 1));
		for (int i = 0; i < ne; i++)
			if (!nulls[i])
				targets[ntargets++] = DatumGetInt64(elems[i]);
		if (ntargets == 0)
			PG_RETURN_INT64(0);
		/* sorted and unique: looked up by bsearch, each list written once */
		qsort(targets, ntargets, sizeof(int64), cmp_int64);
		ne = ntargets;
		ntargets = 1;
		for (int i = 1; i < ne; i++)
			if (targets[i] != targets[ntargets - 1])
				targets[ntargets++] = targets[i];
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	/* one refresh at a time: an incremental one reads, merges and writes other products' lists */
	if (SPI_execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('personalize.content_neighbors'))",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not take the content neighbours lock");
	tmp = AllocSetContextCreate(CurrentMemoryContext, "personalize content list", ALLOCSET_DEFAULT_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(IdEntry);
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("personalize embedded products", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	e = load_embeddings(&n, index);

	if (all)
	{
		compare_groups(e, n, true, k, n);
		if (SPI_execute("DELETE FROM personalize.neighbors WHERE measure = 'content'", false, 0) != SPI_OK_DELETE)
			elog(ERROR, "personalize: could not delete the content neighbour lists");
		for (int i = 0; i < n; i++)
		{
			if (e[i].top.n == 0)
				continue;
			qsort(e[i].top.items, e[i].top.n, sizeof(Neighbor), cmp_best_first);
			if (write_list(e[i].product_id, e[i].top.items, e[i].top.n, e, tmp))
				written++;
			CHECK_FOR_INTERRUPTS();
		}
	}
	else
	{
		int			loaded = 0;

		for (int q = 0; q < ntargets; q++)
		{
			IdEntry    *slot = hash_search(index, &targets[q], HASH_FIND, NULL);

			if (slot != NULL)
			{
				e[slot->idx].target = true;
				loaded++;
			}
		}
		compare_groups(e, n, false, k, loaded);
		/* the targets' own lists; a target not loaded (inactive, no embedding) loses its list */
		for (int q = 0; q < ntargets; q++)
		{
			IdEntry    *slot = hash_search(index, &targets[q], HASH_FIND, NULL);
			Embedded   *t = slot != NULL ? &e[slot->idx] : NULL;

			if (t != NULL && t->top.n > 0)
				qsort(t->top.items, t->top.n, sizeof(Neighbor), cmp_best_first);
			if (write_list(targets[q], t != NULL ? t->top.items : NULL, t != NULL ? t->top.n : 0, e, tmp))
				written++;
		}
		written += merge_targets(e, n, index, targets, ntargets, k, tmp);
	}

	SPI_finish();
	PG_RETURN_INT64(written);
}
