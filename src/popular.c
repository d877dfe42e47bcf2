/*
 * popular.c: the popularity list of the serving functions (recommend.c).
 *
 * popular_scores holds one row of two arrays (up to 1,000 products) that only
 * refresh_popular() rewrites. Reading and decoding it on every call was a
 * good part of recommend()'s time (docs/benchmarks.md, Finding 6), so the
 * decoded list is kept in backend memory together with the identity of the
 * row version it came from: the table's oid, the row's xmin and its ctid.
 * Each call still reads that identity, in the call's own snapshot, and gets
 * the arrays back only when it differs from the kept one (no detoast
 * otherwise): the list used is always the one the call's snapshot sees,
 * whether a refresh committed since, runs in the caller's own transaction or
 * was rolled back. A row version is never reused under the same three values
 * (an update writes a new ctid; a ctid freed by vacuum is taken by another
 * transaction's row, with another xmin; a new table has a new oid).
 * evaluate() makes the same statement read its temporary copy of the table
 * (spiutil.c): another oid, so its list is kept under its own key and never
 * mistaken for the live one.
 *
 * With no row or an empty list (before the first refresh_popular(), after a
 * restore) the live all-time bestsellers (_popular_all_time()) stand in; they
 * change with every event, so they are computed per call, never kept.
 */
#include "personalize.h"

#include "storage/itemptr.h"
#include "utils/memutils.h"

#include "popular.h"
#include "spiutil.h"

static SPIPlanPtr plan_popular,
			plan_popular_live;

/* The list kept, and the row version it was decoded from. */
static MemoryContext popular_context = NULL;
static PopularList popular_kept;
static bool popular_valid = false;
static Oid	popular_relid;
static TransactionId popular_xmin;
static ItemPointerData popular_tid;

static inline uint32
slot_hash(int64 id)
{
	uint64		x = (uint64) id;

	/* splitmix64's finaliser */
	x = (x ^ (x >> 30)) * UINT64CONST(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64CONST(0x94d049bb133111eb);
	return (uint32) (x ^ (x >> 31));
}

/* The slot of id in pl's index: where it is, or the empty one it would take. */
static uint32
slot_of(const PopularList *pl, const int64 *ids, int64 id)
{
	uint32		s = slot_hash(id) & pl->mask;

	while (pl->slots[s] != 0 && ids[pl->slots[s] - 1] != id)
		s = (s + 1) & pl->mask;
	return s;
}

bool
popular_lookup(const PopularList *pl, int64 product_id, double *score)
{
	uint32		s;

	if (pl == NULL || pl->n == 0)
		return false;
	s = slot_of(pl, pl->ids, product_id);
	if (pl->slots[s] == 0)
		return false;
	*score = pl->scores[pl->slots[s] - 1];
	return true;
}

typedef struct PopularEntry
{
	int64		id;
	double		score;
} PopularEntry;

/* best first: score descending, ties by product id */
static int
cmp_entry(const void *pa, const void *pb)
{
	const PopularEntry *a = pa;
	const PopularEntry *b = pb;

	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return a->id < b->id ? -1 : (a->id > b->id ? 1 : 0);
}

/*
 * Fill pl (in the current memory context) from n products and their scores:
 * a product listed twice keeps its last score (as the candidates' hash did),
 * then best first, with the index.
 */
static void
build_list(PopularList *pl, const int64 *id, const double *score, int n)
{
	PopularEntry *e = palloc(sizeof(PopularEntry) * Max(n, 1));
	uint32		size = 16;
	int			m = 0;

	while (size < (uint32) n * 2)
		size <<= 1;
	pl->mask = size - 1;
	pl->slots = palloc0(sizeof(int) * size);
	pl->ids = palloc(sizeof(int64) * Max(n, 1));
	pl->scores = palloc(sizeof(double) * Max(n, 1));
	/* deduplicate through the index, which holds positions in pl->ids meanwhile */
	for (int i = 0; i < n; i++)
	{
		uint32		s = slot_of(pl, pl->ids, id[i]);

		if (pl->slots[s] == 0)
		{
			pl->ids[m] = id[i];
			e[m].id = id[i];
			pl->slots[s] = ++m;
		}
		e[pl->slots[s] - 1].score = score[i];
	}
	qsort(e, m, sizeof(PopularEntry), cmp_entry);
	memset(pl->slots, 0, sizeof(int) * size);
	for (int i = 0; i < m; i++)
	{
		pl->ids[i] = e[i].id;
		pl->scores[i] = e[i].score;
	}
	pl->n = m;
	for (int i = 0; i < m; i++)
		pl->slots[slot_of(pl, pl->ids, pl->ids[i])] = i + 1;
	pfree(e);
}

/*
 * The live all-time bestsellers, as refresh_popular() will store them
 * (0.5 * share): built per call in the current memory context.
 */
static const PopularList *
read_live(void)
{
	PopularList *pl = palloc0(sizeof(PopularList));
	int			n;
	int64	   *id;
	double	   *score;
	int64		top = 1;

	spi_prepare_kept(&plan_popular_live,
					 "SELECT product_id, customers FROM personalize._popular_all_time(1000)", 0, NULL);
	if (SPI_execute_plan(spi_kept(&plan_popular_live), NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not compute the popularity list");
	n = (int) SPI_processed;
	id = palloc(sizeof(int64) * Max(n, 1));
	score = palloc(sizeof(double) * Max(n, 1));
	for (int r = 0; r < n; r++)
	{
		int64		customers = spi_int8(r, 2, 0);

		if (r == 0)
			top = Max(customers, 1);
		id[r] = spi_int8(r, 1, 0);
		score[r] = 0.5 * (double) customers / (double) top;
	}
	build_list(pl, id, score, n);
	pl->live = n > 0;
	pl->window_days = 0.0;
	return pl;
}

/* Decode the arrays of the row read (columns 5 and 6) into the kept list, under its key. */
static void
keep_row(Oid relid, TransactionId xmin, ItemPointer tid)
{
	bool		isnull;
	ArrayType  *ids = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	ArrayType  *scores = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	int			n = ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids));
	double		window_days = spi_float8(0, 4, 7.0);
	MemoryContext old;

	if (ARR_HASNULL(ids) || ARR_HASNULL(scores) || ArrayGetNItems(ARR_NDIM(scores), ARR_DIMS(scores)) != n)
		elog(ERROR, "personalize: popular_scores is malformed");
	popular_valid = false;
	if (popular_context == NULL)
		popular_context = AllocSetContextCreate(TopMemoryContext, "personalize popularity list",
												ALLOCSET_SMALL_SIZES);
	MemoryContextReset(popular_context);
	old = MemoryContextSwitchTo(popular_context);
	memset(&popular_kept, 0, sizeof(popular_kept));
	/* no null bitmap (checked above): the values follow the fixed header */
	build_list(&popular_kept, (int64 *) ((char *) ids + ARR_OVERHEAD_NONULLS(ARR_NDIM(ids))),
			   (double *) ((char *) scores + ARR_OVERHEAD_NONULLS(ARR_NDIM(scores))), n);
	MemoryContextSwitchTo(old);
	popular_kept.window_days = window_days;
	popular_relid = relid;
	popular_xmin = xmin;
	ItemPointerCopy(tid, &popular_tid);
	popular_valid = true;
}

/*
 * The popularity list the call's snapshot sees: the kept one while its row
 * version is the visible one, else the row decoded now (and kept); with no
 * row or an empty list, the live bestsellers. NULL never.
 */
const PopularList *
popular_read(void)
{
	Oid			t[3] = {OIDOID, XIDOID, TIDOID};
	Datum		v[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;
	Oid			relid;
	TransactionId xmin;
	ItemPointer tid;

	spi_prepare_kept(&plan_popular,
					 "SELECT tableoid, xmin, ctid, window_days, "
					 "  CASE WHEN tableoid = $1 AND xmin = $2 AND ctid = $3 THEN NULL ELSE product_ids END, "
					 "  CASE WHEN tableoid = $1 AND xmin = $2 AND ctid = $3 THEN NULL ELSE scores END "
					 "FROM personalize.popular_scores",
					 3, t);
	v[0] = ObjectIdGetDatum(popular_relid);
	v[1] = TransactionIdGetDatum(popular_xmin);
	v[2] = PointerGetDatum(&popular_tid);
	if (!popular_valid)
		memset(nulls, 'n', sizeof(nulls));
	if (SPI_execute_plan(spi_kept(&plan_popular), v, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the popularity list");
	if (SPI_processed == 0)
		return read_live();
	relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	tid = (ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
	if (isnull)
	{
		/* the kept row version (its arrays are not null: NOT NULL columns) */
		Assert(popular_valid && relid == popular_relid && xmin == popular_xmin);
	}
	else
		keep_row(relid, xmin, tid);
	if (popular_kept.n == 0)
		return read_live();
	return &popular_kept;
}
