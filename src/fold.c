/*
 * fold.c: the pending count changes of the model (issue 14).
 *
 * The trigger appends each statement's net pair and product count changes to
 * personalize.model_deltas (append_model_deltas(): one row per SPI_CHUNK
 * changes, a heap without an index), so writers never update a shared row and
 * write no index entry per pair. personalize.fold_deltas() sums the pending
 * rows into item_counts_base and pair_counts_base (apply_count_deltas(): one
 * upsert per chunk in key order, a count below zero is an error, a zero count
 * is deleted), marks their products dirty for the neighbour refresh and
 * deletes exactly the rows it read, in the caller's transaction. The views
 * item_counts and pair_counts add the pending rows to the base, so every
 * reader sees the exact counts at commit.
 *
 * The fold takes SHARE UPDATE EXCLUSIVE on model_deltas: one fold at a time,
 * writers (ROW EXCLUSIVE) never wait. Its rows are neither updated nor deleted
 * by anyone else meanwhile (rebuild() and TRUNCATE take ACCESS EXCLUSIVE), so
 * their ctids identify them for the whole fold. When the pending changes do
 * not fit the memory budget, the fold makes several passes over the same rows,
 * each summing the changes of one hash partition of product_a: every key is
 * then applied once, with its final sum (so a pair added in one statement and
 * removed in a later one never goes below zero on the way).
 *
 * A database whose SQL is still 0.1.0 has no model_deltas: the trigger then
 * applies its changes to the count tables directly, as 0.1.0 did.
 */
#include "personalize.h"

#include "miscadmin.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "nodes/makefuncs.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "fold.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_fold_deltas);

/* changes per model_deltas row, keys per SPI statement, rows per read */
#define FOLD_CHUNK 10000
#define FOLD_READ_ROWS 1000
/* folds of more changes than this report each pass with a NOTICE */
#define FOLD_NOTICE_ENTRIES 1000000

static SPIPlanPtr plan_append, plan_add[2][2][2], plan_subtract[2][2], plan_zero[2][2], plan_dirty, plan_list,
			plan_read, plan_delete, plan_empty;

/* Whether personalize.model_deltas exists (SQL 0.2.0 or later). */
bool
model_deltas_exist(void)
{
	Oid			nsp = get_namespace_oid("personalize", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("model_deltas", nsp));
}

/* Insert one model_deltas row of n changes. */
static void
append_row(const int64 *a, const int64 *b, const int64 *d, int n)
{
	Oid			t[4] = {INT4OID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		v[4];

	spi_prepare_kept(&plan_append,
					 "INSERT INTO personalize.model_deltas (entries, a, b, d) VALUES ($1, $2, $3, $4)",
					 4, t);
	v[0] = Int32GetDatum(n);
	v[1] = int8_array_datum(a, n);
	v[2] = int8_array_datum(b, n);
	v[3] = int8_array_datum(d, n);
	if (spi_execute_kept(plan_append, v, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "personalize: could not append to model_deltas");
}

/*
 * Append a statement's merged changes, products first then pairs, in rows of
 * at most FOLD_CHUNK changes.
 */
void
append_model_deltas(const DeltaBuffer *pairs, const DeltaBuffer *singles)
{
	int64	   *a = palloc(sizeof(int64) * FOLD_CHUNK);
	int64	   *b = palloc(sizeof(int64) * FOLD_CHUNK);
	int64	   *d = palloc(sizeof(int64) * FOLD_CHUNK);
	int			n = 0;

	for (int which = 0; which < 2; which++)
	{
		const DeltaBuffer *buf = which == 0 ? singles : pairs;

		for (Size i = 0; i < buf->n; i++)
		{
			a[n] = buf->items[i].a;
			b[n] = buf->items[i].b;
			d[n++] = buf->items[i].d;
			if (n == FOLD_CHUNK)
			{
				append_row(a, b, d, n);
				n = 0;
			}
		}
	}
	if (n > 0)
		append_row(a, b, d, n);
	pfree(a);
	pfree(b);
	pfree(d);
}

/* The table of pair (or product) counts: the base (0.2.0) or 0.1.0's table. */
static const char *
count_table(bool is_pairs, bool to_base)
{
	if (is_pairs)
		return to_base ? "pair_counts_base" : "pair_counts";
	return to_base ? "item_counts_base" : "item_counts";
}

/*
 * The statement adding positive changes: an upsert, or a plain insert when the
 * table was empty when the fold began (a first load: no key can exist, and only
 * the fold writes the table meanwhile). Nothing is returned: a count that grows
 * from a count >= 0 cannot go below zero or reach it.
 */
static SPIPlanPtr
add_plan(bool is_pairs, bool to_base, bool insert_only)
{
	Oid			t3[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	char		sql[512];

	if (is_pairs)
		snprintf(sql, sizeof(sql),
				 "INSERT INTO personalize.%s AS pc (product_a, product_b, customers) "
				 "SELECT u.a, u.b, u.d FROM unnest($1, $2, $3) AS u(a, b, d) ORDER BY u.a, u.b%s",
				 count_table(true, to_base),
				 insert_only ? "" : " ON CONFLICT (product_a, product_b) DO UPDATE SET customers = pc.customers + EXCLUDED.customers");
	else
		snprintf(sql, sizeof(sql),
				 "INSERT INTO personalize.%s AS ic (product_id, customers) "
				 "SELECT u.a, u.d FROM unnest($1, $2, $3) AS u(a, b, d) ORDER BY u.a%s",
				 count_table(false, to_base),
				 insert_only ? "" : " ON CONFLICT (product_id) DO UPDATE SET customers = ic.customers + EXCLUDED.customers");
	return spi_prepare_kept(&plan_add[is_pairs][to_base][insert_only], sql, 3, t3);
}

/*
 * The statement subtracting: an upsert in key order (the row locks in the
 * locking order) that returns the new counts; a key without a count gets a
 * negative one, which the caller reports.
 */
static SPIPlanPtr
subtract_plan(bool is_pairs, bool to_base)
{
	Oid			t3[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	char		sql[512];

	if (is_pairs)
		snprintf(sql, sizeof(sql),
				 "INSERT INTO personalize.%s AS pc (product_a, product_b, customers) "
				 "SELECT u.a, u.b, u.d FROM unnest($1, $2, $3) AS u(a, b, d) ORDER BY u.a, u.b "
				 "ON CONFLICT (product_a, product_b) DO UPDATE SET customers = pc.customers + EXCLUDED.customers "
				 "RETURNING pc.product_a, pc.product_b, pc.customers",
				 count_table(true, to_base));
	else
		snprintf(sql, sizeof(sql),
				 "INSERT INTO personalize.%s AS ic (product_id, customers) "
				 "SELECT u.a, u.d FROM unnest($1, $2, $3) AS u(a, b, d) ORDER BY u.a "
				 "ON CONFLICT (product_id) DO UPDATE SET customers = ic.customers + EXCLUDED.customers "
				 "RETURNING ic.product_id, ic.product_id, ic.customers",
				 count_table(false, to_base));
	return spi_prepare_kept(&plan_subtract[is_pairs][to_base], sql, 3, t3);
}

/* XX001: the count of key (a, b) would become c; the events and the model disagree. */
static void
out_of_step(bool is_pairs, int64 a, int64 b, int64 c)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("personalize model is out of step with interactions"),
			 errdetail("The %s count of products " INT64_FORMAT " and " INT64_FORMAT " would become " INT64_FORMAT ".",
					   is_pairs ? "pair" : "product", a, b, c),
			 errhint("Events were changed while the triggers were off; run SELECT personalize.rebuild().")));
}

/* Delete the keys whose count reached zero (a[], b[] of n keys). */
static void
delete_zero_counts(int64 *a, int64 *b, int n, bool is_pairs, bool to_base)
{
	Oid			t2[2] = {INT8ARRAYOID, INT8ARRAYOID};
	char		sql[256];
	Datum		v[2];

	if (is_pairs)
		snprintf(sql, sizeof(sql),
				 "DELETE FROM personalize.%s pc USING unnest($1, $2) AS u(a, b) "
				 "WHERE pc.product_a = u.a AND pc.product_b = u.b AND pc.customers = 0",
				 count_table(true, to_base));
	else
		snprintf(sql, sizeof(sql),
				 "DELETE FROM personalize.%s WHERE product_id = ANY($1) AND customers = 0",
				 count_table(false, to_base));
	spi_prepare_kept(&plan_zero[is_pairs][to_base], sql, is_pairs ? 2 : 1, t2);
	v[0] = int8_array_datum(a, n);
	v[1] = int8_array_datum(b, n);
	if (spi_execute_kept(plan_zero[is_pairs][to_base], v, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "personalize: could not delete zero counts");
}

/* Run plan over the changes a[], b[], d[] of n keys; returns the SPI result code. */
static int
run_changes(SPIPlanPtr plan, int64 *a, int64 *b, int64 *d, int n)
{
	Datum		v[3];
	int			rc;

	v[0] = int8_array_datum(a, n);
	v[1] = int8_array_datum(b, n);
	v[2] = int8_array_datum(d, n);
	rc = spi_execute_kept(plan, v, false, 0);
	for (int k = 0; k < 3; k++)
		pfree(DatumGetPointer(v[k]));
	return rc;
}

/*
 * Subtract the negative changes a[], b[], d[] (n keys): a count below zero is
 * an error (the key had less, or no count), a count of zero is deleted.
 */
static void
subtract_changes(int64 *a, int64 *b, int64 *d, int n, bool is_pairs, bool to_base)
{
	int			nz = 0;

	if (run_changes(subtract_plan(is_pairs, to_base), a, b, d, n) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "personalize: could not write the counts");
	/* a[], b[] are free now: they collect the keys whose count fell to zero */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		c = spi_int8(i, 3, 0);

		if (c < 0)
			out_of_step(is_pairs, spi_int8(i, 1, 0), spi_int8(i, 2, 0), c);
		if (c == 0)
		{
			a[nz] = spi_int8(i, 1, 0);
			b[nz++] = spi_int8(i, 2, 0);
		}
	}
	SPI_freetuptable(SPI_tuptable);
	if (nz > 0)
		delete_zero_counts(a, b, nz, is_pairs, to_base);
}

/*
 * Apply count changes items[0..n) in key order: the positive ones added (one
 * upsert, or one insert into a table empty at the start of the fold), the
 * negative ones subtracted from existing counts.
 */
static void
apply_chunk(const Delta *items, int n, bool is_pairs, bool to_base, bool insert_only)
{
	int64	   *a = palloc(sizeof(int64) * n);
	int64	   *b = palloc(sizeof(int64) * n);
	int64	   *d = palloc(sizeof(int64) * n);
	int			npos = 0,
				nneg = 0;

	/* the positive changes first, then the negative ones, each in key order */
	for (int i = 0; i < n; i++)
		npos += items[i].d > 0;
	for (int i = 0; i < n; i++)
	{
		int			k = items[i].d > 0 ? i - nneg : npos + nneg++;

		a[k] = items[i].a;
		b[k] = items[i].b;
		d[k] = items[i].d;
	}
	if (npos > 0 && run_changes(add_plan(is_pairs, to_base, insert_only), a, b, d, npos) != SPI_OK_INSERT)
		elog(ERROR, "personalize: could not write the counts");
	if (nneg > 0)
	{
		if (insert_only)
			out_of_step(is_pairs, a[npos], b[npos], d[npos]);
		subtract_changes(&a[npos], &b[npos], &d[npos], nneg, is_pairs, to_base);
	}
	pfree(a);
	pfree(b);
	pfree(d);
}

/*
 * Apply a merged change buffer to the base tables (to_base) or to 0.1.0's
 * count tables, in chunks of at most FOLD_CHUNK keys in key order;
 * insert_only when the table was empty as the fold began.
 */
void
apply_count_deltas(const DeltaBuffer *buf, bool is_pairs, bool to_base, bool insert_only)
{
	for (Size off = 0; off < buf->n; off += FOLD_CHUNK)
		apply_chunk(&buf->items[off], (int) Min((Size) FOLD_CHUNK, buf->n - off), is_pairs, to_base, insert_only);
}

static int
cmp_int64(const void *pa, const void *pb)
{
	int64		a = *(const int64 *) pa;
	int64		b = *(const int64 *) pb;

	return a < b ? -1 : (a > b ? 1 : 0);
}

/*
 * Queue every product of the changes in dirty_products (since: when its
 * oldest change was made), once, in product order.
 */
void
mark_products_dirty(const DeltaBuffer *pairs, const DeltaBuffer *singles, TimestampTz since)
{
	Oid			t[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
	Size		total = singles->n + 2 * pairs->n;
	int64	   *ids;
	Size		n = 0;

	if (total == 0)
		return;
	ids = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * total);
	for (Size k = 0; k < singles->n; k++)
		ids[n++] = singles->items[k].a;
	for (Size k = 0; k < pairs->n; k++)
	{
		ids[n++] = pairs->items[k].a;
		ids[n++] = pairs->items[k].b;
	}
	qsort(ids, n, sizeof(int64), cmp_int64);
	{
		Size		out = 1;

		for (Size k = 1; k < n; k++)
			if (ids[k] != ids[out - 1])
				ids[out++] = ids[k];
		n = out;
	}
	spi_prepare_kept(&plan_dirty,
					 "INSERT INTO personalize.dirty_products (product_id, since) "
					 "SELECT p, $2 FROM unnest($1) AS p ORDER BY p ON CONFLICT (product_id) DO NOTHING",
					 2, t);
	for (Size off = 0; off < n; off += FOLD_CHUNK)
	{
		Datum		v[2];

		v[0] = int8_array_datum(&ids[off], (int) Min((Size) FOLD_CHUNK, n - off));
		v[1] = TimestampTzGetDatum(since);
		if (spi_execute_kept(plan_dirty, v, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "personalize: could not mark products dirty");
	}
	pfree(ids);
}

/* The pending rows as the fold sees them */
typedef struct PendingRows
{
	ItemPointerData *tids;
	int			n;
	int64		entries;
	TimestampTz oldest;
	bool		pairs_empty;	/* the base tables were empty (a first load) */
	bool		items_empty;
} PendingRows;

/*
 * Lock model_deltas for this fold and list its rows (no array is read here).
 * Without wait, false when another fold holds the lock (nothing is listed).
 */
static bool
list_pending(PendingRows *pr, bool wait)
{
	if (!wait &&
		!ConditionalLockRelationOid(RangeVarGetRelid(makeRangeVar("personalize", "model_deltas", -1), NoLock, false),
									ShareUpdateExclusiveLock))
		return false;
	/* with the lock already held, this only checks the caller's privilege */
	if (SPI_execute("LOCK TABLE personalize.model_deltas IN SHARE UPDATE EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "personalize: could not lock model_deltas");
	spi_prepare_kept(&plan_list, "SELECT ctid, entries, at FROM personalize.model_deltas", 0, NULL);
	if (spi_execute_kept(plan_list, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read model_deltas");
	pr->n = (int) SPI_processed;
	pr->tids = palloc(sizeof(ItemPointerData) * Max(pr->n, 1));
	pr->entries = 0;
	pr->oldest = DT_NOEND;
	for (int i = 0; i < pr->n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TimestampTz at;

		pr->tids[i] = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		pr->entries += DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		at = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		if (at < pr->oldest)
			pr->oldest = at;
	}
	SPI_freetuptable(SPI_tuptable);
	spi_prepare_kept(&plan_empty,
					 "SELECT NOT EXISTS (SELECT FROM personalize.pair_counts_base), "
					 "NOT EXISTS (SELECT FROM personalize.item_counts_base)", 0, NULL);
	if (spi_execute_kept(plan_empty, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: could not read the base counts");
	{
		bool		isnull;

		pr->pairs_empty = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		pr->items_empty = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/* tid[] of tids[0..n) */
static Datum
tid_array_datum(const ItemPointerData *tids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int16		len;
	bool		byval;
	char		align;

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&tids[i]);
	get_typlenbyvalalign(TIDOID, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, TIDOID, len, byval, align));
}

/* int8[] column col of SPI row i: its elements and count (our rows have no NULLs) */
static int64 *
row_array(int i, int col, int *n)
{
	bool		isnull;
	ArrayType  *arr = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, col, &isnull));

	if (isnull || ARR_HASNULL(arr) || ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("personalize.model_deltas holds a malformed row"),
				 errhint("Run SELECT personalize.rebuild().")));
	*n = ARR_NDIM(arr) == 0 ? 0 : ARR_DIMS(arr)[0];
	return (int64 *) (((char *) arr) + ARR_OVERHEAD_NONULLS(ARR_NDIM(arr)));
}

/* partition of a change: a hash of product_a */
static inline int
partition_of(int64 a, int parts)
{
	return (int) (((uint64) a * UINT64CONST(0x9E3779B97F4A7C15)) >> 33) % parts;
}

/*
 * One pass: the changes of partition part (of parts) of every pending row,
 * summed in memory (merged whenever the buffers outgrow the budget), then
 * applied in key order and their products marked dirty.
 */
static void
fold_pass(const PendingRows *pr, int part, int parts, Size budget, MemoryContext rows_ctx)
{
	Oid			t[1] = {TIDARRAYOID};
	DeltaBuffer pairs = {0};
	DeltaBuffer singles = {0};

	spi_prepare_kept(&plan_read, "SELECT a, b, d FROM personalize.model_deltas WHERE ctid = ANY($1)", 1, t);
	for (int off = 0; off < pr->n; off += FOLD_READ_ROWS)
	{
		Datum		v[1];

		CHECK_FOR_INTERRUPTS();
		v[0] = tid_array_datum(&pr->tids[off], Min(FOLD_READ_ROWS, pr->n - off));
		if (spi_execute_kept(plan_read, v, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "personalize: could not read model_deltas");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			int			na,
						nb,
						nd;
			MemoryContext procmem = MemoryContextSwitchTo(rows_ctx);	/* the detoasted arrays */
			int64	   *a = row_array(i, 1, &na);
			int64	   *b = row_array(i, 2, &nb);
			int64	   *d = row_array(i, 3, &nd);

			MemoryContextSwitchTo(procmem);

			if (na != nb || na != nd)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("personalize.model_deltas holds a malformed row"),
						 errdetail("Its arrays have %d, %d and %d elements.", na, nb, nd),
						 errhint("Run SELECT personalize.rebuild().")));
			for (int k = 0; k < na; k++)
				if (parts == 1 || partition_of(a[k], parts) == part)
					delta_buffer_add(a[k] == b[k] ? &singles : &pairs, a[k], b[k], d[k]);
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(rows_ctx);
		if (pairs.n > budget)
			delta_buffer_merge(&pairs);
	}
	delta_buffer_merge(&pairs);
	delta_buffer_merge(&singles);
	apply_count_deltas(&pairs, true, true, pr->pairs_empty);
	apply_count_deltas(&singles, false, true, pr->items_empty);
	mark_products_dirty(&pairs, &singles, pr->oldest);
	if (pairs.items)
		pfree(pairs.items);
	if (singles.items)
		pfree(singles.items);
}

/* Delete the rows the fold read. */
static void
delete_folded(const PendingRows *pr)
{
	Oid			t[1] = {TIDARRAYOID};

	spi_prepare_kept(&plan_delete, "DELETE FROM personalize.model_deltas WHERE ctid = ANY($1)", 1, t);
	for (int off = 0; off < pr->n; off += FOLD_CHUNK)
	{
		Datum		v[1];

		v[0] = tid_array_datum(&pr->tids[off], Min(FOLD_CHUNK, pr->n - off));
		if (spi_execute_kept(plan_delete, v, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "personalize: could not delete folded model_deltas rows");
	}
}

/*
 * personalize.fold_deltas(budget_kb integer DEFAULT NULL, wait boolean DEFAULT true) RETURNS bigint:
 * fold every committed pending change into the base counts; returns how many
 * changes it folded. budget_kb bounds the memory of one pass (NULL:
 * maintenance_work_mem). With wait false, returns NULL at once when another
 * fold is running (the refresh sessions that share the neighbour lists).
 */
Datum
personalize_fold_deltas(PG_FUNCTION_ARGS)
{
	int			budget_kb = PG_ARGISNULL(0) ? maintenance_work_mem : PG_GETARG_INT32(0);
	bool		wait = PG_ARGISNULL(1) || PG_GETARG_BOOL(1);
	PendingRows pr;
	Size		budget;
	int			parts;
	MemoryContext rows_ctx;

	if (budget_kb < 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("budget_kb must be at least 64"),
				 errdetail("Got %d.", budget_kb),
				 errhint("Pass NULL to use maintenance_work_mem.")));
	budget = Max((Size) budget_kb * 1024 / sizeof(Delta) / 2, 1024);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	if (!list_pending(&pr, wait))
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	/* SPI calls return to SPI's procedure context: what they allocate lives until SPI_finish */
	rows_ctx = AllocSetContextCreate(CurrentMemoryContext, "personalize fold rows", ALLOCSET_DEFAULT_SIZES);
	parts = (int) Min((pr.entries + budget - 1) / budget, 4096);
	parts = Max(parts, 1);
	for (int p = 0; p < parts; p++)
	{
		if (pr.entries >= FOLD_NOTICE_ENTRIES)
			ereport(NOTICE,
					(errmsg("fold_deltas: pass %d of %d over %d rows (" INT64_FORMAT " changes)",
							p + 1, parts, pr.n, pr.entries)));
		fold_pass(&pr, p, parts, budget, rows_ctx);
	}
	delete_folded(&pr);
	SPI_finish();
	PG_RETURN_INT64(pr.entries);
}
