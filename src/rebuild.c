/*
 * rebuild.c: the pair phase of rebuild() (3/5) in C: for every pair a < b of
 * products that some customer's in-model set holds, the number of such
 * customers, counted in memory and written into a table in key order. The
 * SQL self-join it replaces spilled gigabytes to disk at size L.
 *
 * Products are numbered densely in product_id order (a first, cheap read), so
 * a pair is one uint64 key (a << 32 | b) and sorting keys sorts (a, b).
 *
 * Memory: one hash table of key -> count, sized once from the budget
 * (maintenance_work_mem by default) and never grown, in a memory context of
 * its own that is reset after every pass. A pass reads the in-model rows of
 * customer_items with product_id >= its first product, in customer order,
 * and counts the pairs whose product_a lies in its range [lo, hi). When the
 * table is full the pass narrows hi (it deletes the counts of the products
 * at and above the new hi, which a later pass counts again) and goes on: the
 * counts it keeps hold every customer read so far, so they are complete at
 * the end of the read. Then it sorts its entries and writes them in batches.
 *
 * The write: into an empty target (what rebuild() passes: pair_counts_base,
 * just emptied) straight into the heap, as COPY does (table_multi_insert()
 * with a BulkInsertState, fillfactor kept, CHECK and NOT NULL constraints
 * checked per row, no index entries), and at the end every index of the
 * target built anew from the heap by a sort, as REINDEX does. Into a target
 * with rows, or one whose INSERTs would do more than store the rows
 * (triggers, rules, row security, other columns), INSERT statements.
 *
 * Every read shares the caller's snapshot (read-only SPI), so all passes see
 * the same customer_items. Both writes are WAL-logged and belong to the
 * caller's transaction: an error or a cancel rolls them back, the index
 * build's new files included.
 */
#include "personalize.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "rebuild.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_rebuild_pairs);

typedef struct PairEntry
{
	uint64		key;			/* dense product_a << 32 | dense product_b */
	uint32		count;
	char		status;
} PairEntry;

/* the 64-bit finaliser of MurmurHash3 */
static inline uint32
pair_hash(uint64 k)
{
	k ^= k >> 33;
	k *= UINT64CONST(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64CONST(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return (uint32) k;
}

#define SH_PREFIX pairtab
#define SH_ELEMENT_TYPE PairEntry
#define SH_KEY_TYPE uint64
#define SH_KEY key
#define SH_HASH_KEY(tb, k) pair_hash(k)
#define SH_EQUAL(tb, x, y) ((x) == (y))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

#define ST_SORT sort_pair_entries
#define ST_ELEMENT_TYPE PairEntry
#define ST_COMPARE(x, y) ((x)->key < (y)->key ? -1 : (x)->key > (y)->key ? 1 : 0)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define PAIR_A(k) ((uint32) ((k) >> 32))
#define PAIR_B(k) ((uint32) (k))

/* the direct write into an empty target: heap tuples in batches, indexes rebuilt at the end */
typedef struct HeapWriter
{
	Relation	rel;
	AttrNumber	att[3];			/* product_a, product_b, customers */
	BulkInsertState bistate;
	EState	   *estate;			/* for the CHECK and NOT NULL constraints */
	ResultRelInfo *rri;
	TupleTableSlot *slots[REBUILD_HEAP_BATCH];
	CommandId	cid;
	int			options;
} HeapWriter;

typedef struct PairBuild
{
	char	   *target_name;	/* "schema"."table" */
	char	   *items_name;		/* the extension's customer_items */
	int64	   *products;		/* in-model product ids, ascending: dense id = index */
	uint32		nproducts;
	uint32	   *acount;			/* entries in the table per dense product_a */
	uint64		slots;			/* the table's size (a power of 2) */
	uint64		limit;			/* entries at which a pass narrows its range */
	MemoryContext pass_cxt;
	SPIPlanPtr	read_plan;
	SPIPlanPtr	insert_plan;
	HeapWriter *heap;			/* the target was empty: write its heap directly; else NULL */
	uint32		lo;				/* the pass's range of dense product_a: [lo, hi) */
	uint32		hi;
	int			pass;
	int64		read_rows;
	int64		pass_pairs;
	int64		written;
	TimestampTz started;
	TimestampTz last_notice;
} PairBuild;

/* "schema"."name" of the target, checked: a table with bigint product_a, product_b, customers */
static const char *const target_columns[] = {"product_a", "product_b", "customers"};

static char *
check_target(Oid relid)
{
	const char *const *columns = target_columns;
	char		relkind = get_rel_relkind(relid);
	char	   *name;

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("the target of _rebuild_pairs() must be a table"),
				 errdetail("%s is not a plain table (relkind '%c').", name, relkind),
				 errhint("Pass the table that stores the pair counts, as rebuild() does.")));
	for (int i = 0; i < (int) lengthof(target_columns); i++)
	{
		AttrNumber	att = get_attnum(relid, columns[i]);

		if (att == InvalidAttrNumber || get_atttype(relid, att) != INT8OID)
			ereport(ERROR,
					(errcode(att == InvalidAttrNumber ? ERRCODE_UNDEFINED_COLUMN : ERRCODE_DATATYPE_MISMATCH),
					 errmsg("the target of _rebuild_pairs() has no bigint column \"%s\"", columns[i]),
					 errdetail("%s must have the columns product_a, product_b and customers, all bigint.", name),
					 errhint("Pass the table that stores the pair counts, as rebuild() does.")));
	}
	return name;
}

/* the budget in bytes: budget_kb, or maintenance_work_mem when NULL; 22023 when not positive */
static Size
budget_bytes(FunctionCallInfo fcinfo)
{
	int			budget_kb = PG_ARGISNULL(1) ? maintenance_work_mem : PG_GETARG_INT32(1);

	if (budget_kb <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("budget_kb of _rebuild_pairs() must be positive"),
				 errdetail("Got %d.", budget_kb),
				 errhint("Pass the memory for the counts in kilobytes, or NULL for maintenance_work_mem.")));
	return (Size) budget_kb * 1024;
}

static double
seconds_since(TimestampTz t)
{
	return (double) (GetCurrentTimestamp() - t) / USECS_PER_SEC;
}

/* application_name always; a NOTICE when forced or every REBUILD_NOTICE_EVERY_S seconds */
static void
progress(PairBuild *pb, const char *step, bool force)
{
	TimestampTz now = GetCurrentTimestamp();
	char		buf[NAMEDATALEN];

	if (!force && now - pb->last_notice < REBUILD_NOTICE_EVERY_S * USECS_PER_SEC)
		return;
	snprintf(buf, sizeof(buf), "personalize.rebuild: 3/5 pairs pass %d %s", pb->pass, step);
	(void) set_config_option("application_name", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (now - pb->last_notice < REBUILD_NOTICE_EVERY_S * USECS_PER_SEC)
		return;
	pb->last_notice = now;
	ereport(NOTICE,
			(errmsg("rebuild: 3/5 pairs: pass %d %s: %lld customer item rows read, %lld pairs written (%.1f s)",
					pb->pass, step, (long long) pb->read_rows, (long long) pb->written,
					seconds_since(pb->started))));
}

/*
 * Would an INSERT into rel only store the rows? A plain table, not a partition nor another
 * session's temporary table, without triggers, rules or row security, whose only columns are the three (none generated), into
 * which the caller may INSERT and which the caller may TRUNCATE (so it may lock it as hard).
 */
static bool
heap_path_allowed(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	int			live = 0;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		RELATION_IS_OTHER_TEMP(rel) ||
		rel->trigdesc != NULL || rel->rd_rel->relhasrules || rel->rd_rel->relrowsecurity ||
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		pg_class_aclcheck(relid, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->attgenerated != '\0')
			return false;
		live++;
	}
	return live == (int) lengthof(target_columns);
}

/* no row of rel is visible to a snapshot taken now */
static bool
heap_is_empty(Relation rel)
{
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		empty;

	if (RelationGetNumberOfBlocks(rel) == 0)
		return true;
	snap = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snap, 0, NULL);
	empty = !table_scan_getnextslot(scan, ForwardScanDirection, slot);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	return empty;
}

/*
 * The direct write, when the target is empty and an INSERT would only store the rows: then
 * SHARE ROW EXCLUSIVE on the target (no other writer until the end of the transaction; what
 * rebuild() holds is stronger) and empty under it. NULL: the INSERT path, as for a target
 * with rows. The rows go into the heap in batches (its fillfactor kept, each row checked
 * against the table's CHECK and NOT NULL constraints), the indexes are built at the end.
 */
static HeapWriter *
heap_writer_open(Oid relid)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	HeapWriter *hw;

	if (!heap_path_allowed(rel) || !heap_is_empty(rel))
	{
		table_close(rel, NoLock);
		return NULL;
	}
	LockRelationOid(relid, ShareRowExclusiveLock);
	if (!heap_is_empty(rel))
	{
		table_close(rel, NoLock);
		return NULL;
	}
	hw = palloc0(sizeof(HeapWriter));
	hw->rel = rel;
	for (int i = 0; i < (int) lengthof(target_columns); i++)
		hw->att[i] = get_attnum(relid, target_columns[i]);
	hw->cid = GetCurrentCommandId(true);
	/* as COPY: a table emptied or created in this transaction has no free space to look up */
	if (rel->rd_createSubid != InvalidSubTransactionId ||
		rel->rd_firstRelfilenodeSubid != InvalidSubTransactionId)
		hw->options = TABLE_INSERT_SKIP_FSM;
	hw->bistate = GetBulkInsertState();
	hw->estate = CreateExecutorState();
	hw->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(hw->rri, rel, 0, NULL, 0);
	for (int i = 0; i < REBUILD_HEAP_BATCH; i++)
		hw->slots[i] = table_slot_create(rel, NULL);
	return hw;
}

/* m (at most REBUILD_HEAP_BATCH) sorted pairs into the heap, no index entries */
static void
heap_write_batch(PairBuild *pb, const PairEntry *e, int m)
{
	HeapWriter *hw = pb->heap;
	bool		check = RelationGetDescr(hw->rel)->constr != NULL;

	for (int k = 0; k < m; k++)
	{
		TupleTableSlot *slot = hw->slots[k];

		ExecClearTuple(slot);
		for (int i = 0; i < slot->tts_tupleDescriptor->natts; i++)
			slot->tts_isnull[i] = true;		/* dropped columns */
		slot->tts_values[hw->att[0] - 1] = Int64GetDatum(pb->products[PAIR_A(e[k].key)]);
		slot->tts_values[hw->att[1] - 1] = Int64GetDatum(pb->products[PAIR_B(e[k].key)]);
		slot->tts_values[hw->att[2] - 1] = Int64GetDatum((int64) e[k].count);
		for (int i = 0; i < (int) lengthof(hw->att); i++)
			slot->tts_isnull[hw->att[i] - 1] = false;
		ExecStoreVirtualTuple(slot);
		if (check)
			ExecConstraints(hw->rri, slot, hw->estate);
	}
	table_multi_insert(hw->rel, hw->slots, m, hw->cid, hw->options, hw->bistate);
	ResetPerTupleExprContext(hw->estate);
}

/*
 * End the direct write: then every index of the target is built anew from the heap (a
 * sort, as REINDEX; unique and exclusion constraints checked), in this transaction.
 */
static void
heap_writer_close(PairBuild *pb)
{
	HeapWriter *hw = pb->heap;
	ReindexParams params = {0};
	TimestampTz t0 = GetCurrentTimestamp();

	FreeBulkInsertState(hw->bistate);
	table_finish_bulk_insert(hw->rel, hw->options);
	for (int i = 0; i < REBUILD_HEAP_BATCH; i++)
		ExecDropSingleTupleTableSlot(hw->slots[i]);
	FreeExecutorState(hw->estate);
	CommandCounterIncrement();
	progress(pb, "index", true);
	(void) reindex_relation(RelationGetRelid(hw->rel), REINDEX_REL_CHECK_CONSTRAINTS, &params);
	/* a cancel during the last index's load (which does not check) still rolls it all back */
	CHECK_FOR_INTERRUPTS();
	table_close(hw->rel, NoLock);
	pb->heap = NULL;
	ereport(NOTICE,
			(errmsg("rebuild: 3/5 pairs: written into the empty %s directly, its indexes built in %.1f s",
					pb->target_name, seconds_since(t0))));
}

/* The in-model products, ascending: their index is their dense id. */
static void
read_products(PairBuild *pb, MemoryContext cxt)
{
	char	   *sql = psprintf("SELECT product_id FROM %s WHERE in_model GROUP BY product_id ORDER BY product_id",
							   pb->items_name);
	Size		cap = 1024;
	Portal		cur = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, 0);

	pb->products = MemoryContextAllocHuge(cxt, cap * sizeof(int64));
	pb->nproducts = 0;
	for (;;)
	{
		SPI_cursor_fetch(cur, true, REBUILD_READ_BATCH);
		if (SPI_processed == 0)
			break;
		if (pb->nproducts + SPI_processed >= PG_UINT32_MAX / 2)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many products for _rebuild_pairs()")));
		while (pb->nproducts + SPI_processed > cap)
			cap *= 2;
		pb->products = repalloc_huge(pb->products, cap * sizeof(int64));
		for (uint64 r = 0; r < SPI_processed; r++)
			pb->products[pb->nproducts++] = spi_int8((int) r, 1, 0);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(cur);
	pb->acount = MemoryContextAllocHuge(cxt, Max(pb->nproducts, 1) * sizeof(uint32));
}

/*
 * The table's size from the budget (what the product arrays and a write batch
 * leave of it), rounded down to a power of 2, no larger than all pairs of
 * products need, but at least 3 entries per
 * product: a pass narrows its range to at most half of a full table, or to its
 * first product (fewer pairs than products), and one history adds fewer pairs
 * than there are products, so every pass moves on.
 */
static void
size_table(PairBuild *pb, Size budget)
{
	Size		fixed = (Size) pb->nproducts * (sizeof(int64) + sizeof(uint32)) +
		REBUILD_WRITE_BATCH * 3 * (sizeof(int64) + sizeof(Datum));
	Size		room = budget > fixed ? budget - fixed : 0;
	uint64		need = (uint64) ((3.0 * pb->nproducts + 16) / REBUILD_FILL) + 1;
	/* no more entries than there are pairs of products */
	double		pairs = 0.5 * pb->nproducts * ((double) pb->nproducts - 1);
	uint64		slots = 256;

	while (slots * 2 * sizeof(PairEntry) <= room && slots < (UINT64CONST(1) << 31) &&
		   slots * REBUILD_FILL < pairs)
		slots *= 2;
	if (slots < need)
	{
		while (slots < need)
			slots *= 2;
		ereport(NOTICE,
				(errmsg("rebuild: 3/5 pairs: the budget of %zu kB is below the %llu kB that %u products need; using that",
						budget / 1024, (unsigned long long) ((slots * sizeof(PairEntry) + fixed) / 1024),
						pb->nproducts)));
	}
	pb->slots = slots;
	pb->limit = (uint64) (slots * REBUILD_FILL);
}

/* dense id of an in-model product (binary search) */
static uint32
dense_id(const PairBuild *pb, int64 product_id)
{
	uint32		l = 0,
				r = pb->nproducts;

	while (l < r)
	{
		uint32		m = l + (r - l) / 2;

		if (pb->products[m] < product_id)
			l = m + 1;
		else
			r = m;
	}
	if (l == pb->nproducts || pb->products[l] != product_id)
		elog(ERROR, "product %lld appeared in customer_items during _rebuild_pairs()", (long long) product_id);
	return l;
}

/*
 * The table is full: keep the lowest products of the range that hold at most
 * half of the entries (at least the first product), delete the rest.
 */
static void
narrow_range(PairBuild *pb, pairtab_hash *tb)
{
	uint64		kept = pb->acount[pb->lo];
	uint32		new_hi = pb->lo + 1;
	pairtab_iterator it;
	PairEntry  *e;
	uint64		seen = 0;

	if (pb->hi <= pb->lo + 1)
		return;
	while (new_hi < pb->hi && kept + pb->acount[new_hi] <= tb->members / 2)
		kept += pb->acount[new_hi++];
	pairtab_start_iterate(tb, &it);
	while ((e = pairtab_iterate(tb, &it)) != NULL)
	{
		if (PAIR_A(e->key) >= new_hi)
			pairtab_delete_item(tb, e);
		if ((++seen & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	for (uint32 a = new_hi; a < pb->hi; a++)
		pb->acount[a] = 0;
	pb->hi = new_hi;
}

/* count one customer's pairs (d: dense ids, ascending) whose product_a is in the range */
static void
count_customer(PairBuild *pb, pairtab_hash *tb, const uint32 *d, int n)
{
	for (int i = 0; i < n - 1; i++)
	{
		uint64		a = (uint64) d[i] << 32;

		if (tb->members + (uint64) (n - 1 - i) > pb->limit)
			narrow_range(pb, tb);
		if (d[i] >= pb->hi)
			return;
		for (int j = i + 1; j < n; j++)
		{
			bool		found;
			PairEntry  *e = pairtab_insert(tb, a | d[j], &found);

			if (found)
				e->count++;
			else
			{
				e->count = 1;
				pb->acount[d[i]]++;
			}
		}
	}
}

/* Read the in-model rows from the range's first product on, customer by customer. */
static void
read_pass(PairBuild *pb, pairtab_hash *tb)
{
	Datum		arg = Int64GetDatum(pb->products[pb->lo]);
	Portal		cur = SPI_cursor_open(NULL, pb->read_plan, &arg, NULL, true);
	int			cap = 1024,
				n = 0;
	uint32	   *items = MemoryContextAlloc(pb->pass_cxt, cap * sizeof(uint32));
	int64		customer = 0;

	for (;;)
	{
		SPI_cursor_fetch(cur, true, REBUILD_READ_BATCH);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			int64		c = spi_int8((int) r, 1, 0);
			uint32		p = dense_id(pb, spi_int8((int) r, 2, 0));

			if (n > 0 && c != customer)
			{
				count_customer(pb, tb, items, n);
				n = 0;
			}
			customer = c;
			if (n > 0 && p <= items[n - 1])
				elog(ERROR, "customer_items not in (customer_id, product_id) order in _rebuild_pairs()");
			if (n == cap)
				items = repalloc(items, (cap *= 2) * sizeof(uint32));
			items[n++] = p;
		}
		pb->read_rows += SPI_processed;
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
		progress(pb, "read", false);
	}
	if (n > 0)
		count_customer(pb, tb, items, n);
	SPI_cursor_close(cur);
}

/* m sorted pairs in one INSERT statement */
static void
spi_write_batch(PairBuild *pb, const PairEntry *e, int m, MemoryContext batch_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(batch_cxt);
	int64	   *a = palloc(m * sizeof(int64));
	int64	   *b = palloc(m * sizeof(int64));
	int64	   *c = palloc(m * sizeof(int64));
	Datum		values[3];

	for (int k = 0; k < m; k++)
	{
		a[k] = pb->products[PAIR_A(e[k].key)];
		b[k] = pb->products[PAIR_B(e[k].key)];
		c[k] = e[k].count;
	}
	values[0] = int8_array_datum(a, m);
	values[1] = int8_array_datum(b, m);
	values[2] = int8_array_datum(c, m);
	if (SPI_execute_plan(pb->insert_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "_rebuild_pairs(): the insert into %s failed", pb->target_name);
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch_cxt);
}

/*
 * Sort the pass's entries by (a, b) and write them in batches: into the heap when the
 * target was empty (pb->heap), else in INSERT statements.
 */
static void
write_pass(PairBuild *pb, pairtab_hash *tb)
{
	PairEntry  *e = tb->data;
	uint64		n = 0;
	uint64		step = pb->heap ? REBUILD_HEAP_BATCH : REBUILD_WRITE_BATCH;
	MemoryContext batch_cxt = AllocSetContextCreate(pb->pass_cxt, "personalize rebuild pairs batch",
													ALLOCSET_DEFAULT_SIZES);

	progress(pb, "sort", true);
	for (uint64 i = 0; i < tb->size; i++)
	{
		if (e[i].status == pairtab_SH_IN_USE)
			e[n++] = e[i];
		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	sort_pair_entries(e, n);
	pb->pass_pairs = (int64) n;
	progress(pb, "write", true);
	for (uint64 i = 0; i < n; i += step)
	{
		int			m = (int) Min(step, n - i);

		if (pb->heap)
			heap_write_batch(pb, e + i, m);
		else
			spi_write_batch(pb, e + i, m, batch_cxt);
		pb->written += m;
		CHECK_FOR_INTERRUPTS();
		progress(pb, "write", false);
	}
}

/* Prepare the pass read and the batch insert (kept until SPI_finish). */
static void
prepare_plans(PairBuild *pb)
{
	Oid			read_type = INT8OID;
	Oid			insert_types[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	char	   *read_sql = psprintf("SELECT customer_id, product_id FROM %s WHERE in_model AND product_id >= $1 "
									"ORDER BY customer_id, product_id", pb->items_name);
	char	   *insert_sql = psprintf("INSERT INTO %s (product_a, product_b, customers) "
									  "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))", pb->target_name);

	pb->read_plan = SPI_prepare(read_sql, 1, &read_type);
	pb->insert_plan = SPI_prepare(insert_sql, 3, insert_types);
	if (pb->read_plan == NULL || pb->insert_plan == NULL)
		elog(ERROR, "_rebuild_pairs(): SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
}

/*
 * _rebuild_pairs(target regclass, budget_kb integer DEFAULT NULL) RETURNS bigint:
 * write the pair counts of customer_items' in-model rows into target; the pairs written.
 */
Datum
personalize_rebuild_pairs(PG_FUNCTION_ARGS)
{
	PairBuild	pb = {0};
	Size		budget;
	MemoryContext cxt,
				old;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the target of _rebuild_pairs() must not be null"),
				 errhint("Pass the table that stores the pair counts, as rebuild() does.")));
	pb.target_name = check_target(PG_GETARG_OID(0));
	budget = budget_bytes(fcinfo);
	pb.items_name = quote_qualified_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)),
											   "customer_items");
	pb.started = GetCurrentTimestamp();
	pb.last_notice = pb.started;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize rebuild pairs", ALLOCSET_DEFAULT_SIZES);
	pb.pass_cxt = AllocSetContextCreate(cxt, "personalize rebuild pairs pass", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	pb.heap = heap_writer_open(PG_GETARG_OID(0));
	MemoryContextSwitchTo(old);

	SPI_connect();
	prepare_plans(&pb);
	read_products(&pb, cxt);
	size_table(&pb, budget);
	for (pb.lo = 0; pb.lo + 1 < pb.nproducts; pb.lo = pb.hi)
	{
		pairtab_hash *tb = pairtab_create(pb.pass_cxt, (uint32) (pb.slots * REBUILD_FILL), NULL);

		if (tb->size != pb.slots)
			elog(ERROR, "_rebuild_pairs(): hash table of %llu slots, expected %llu",
				 (unsigned long long) tb->size, (unsigned long long) pb.slots);
		pb.pass++;
		pb.hi = pb.nproducts;
		memset(pb.acount, 0, pb.nproducts * sizeof(uint32));
		progress(&pb, "read", true);
		read_pass(&pb, tb);
		write_pass(&pb, tb);
		MemoryContextReset(pb.pass_cxt);
	}
	SPI_finish();
	if (pb.heap)
		heap_writer_close(&pb);
	ereport(NOTICE,
			(errmsg("rebuild: 3/5 pairs: %lld pairs of %u products counted in %d pass%s",
					(long long) pb.written, pb.nproducts, pb.pass, pb.pass == 1 ? "" : "es")));
	MemoryContextDelete(cxt);
	PG_RETURN_INT64(pb.written);
}
