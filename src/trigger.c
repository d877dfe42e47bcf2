/*
 * trigger.c: keeps the co-occurrence model exactly up to date with
 * personalize.interactions, one statement at a time (statement-level AFTER
 * triggers with transition tables).
 *
 * INSERT is incremental: the statement's events are added to the stored
 * per-(customer, product) rows. DELETE and UPDATE recompute the affected
 * (customer, product) rows from interactions itself. Either way the set of
 * in-model products of each affected customer is re-derived (model_delta.c)
 * and the pair/item/customer counts receive the difference.
 *
 * One statement can fire several of these triggers (INSERT ... ON CONFLICT DO
 * UPDATE, MERGE, a writable CTE), all after every row is written, and
 * PostgreSQL fires UPDATE and DELETE before INSERT there. A recompute then
 * already counts the statement's inserted events, so adding them again would
 * count them twice: an INSERT trigger that runs after a recompute of its own
 * statement recomputes its (customer, product) rows from interactions as well
 * (see insert_follows_recompute()). Recomputing is exact whatever else the
 * statement did; plain INSERT statements stay incremental.
 *
 * The count changes are appended to model_deltas (fold.c): no writer updates a
 * count row, so writers of different customers never wait for each other but
 * on a customer_totals shard. Locking order (no deadlocks between
 * single-statement writers): customer_state rows by customer_id, then
 * customer_items, customer_totals by shard. Every write is one set-wise
 * statement whose input is sorted by that key. The customer_state row
 * is updated (not only locked) so that REPEATABLE READ writers get a
 * serialization failure rather than a stale history.
 */
#include "personalize.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "catalog/namespace.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "fold.h"
#include "model_delta.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_interactions_trigger);
PG_FUNCTION_INFO_V1(personalize_archive_trigger);

/*
 * The last DELETE/UPDATE recompute of this backend: its top-level transaction
 * and the command id current when it finished (every command id it read the
 * truth at is at most that).
 */
static TransactionId last_recompute_xid = InvalidTransactionId;
static CommandId last_recompute_cid = InvalidCommandId;

#define NUM_SHARDS 16
/* statements this large report their progress with NOTICEs */
#define BIG_STATEMENT 50000

/*
 * Statement size. Arrays sized by the statement are huge allocations (not
 * bound by palloc's 1 GB), and one SPI statement is handed at most SPI_CHUNK
 * elements per array parameter (an array datum is bound by 1 GB too): the
 * chunks go in key order, so the locking order stays. What bounds a statement
 * is then memory (docs/reference.md, "Statement size"), and the int counters:
 * a statement of more than MAX_STATEMENT_ROWS events or stored rows is refused.
 */
#define SPI_CHUNK 10000
#define MAX_STATEMENT_ROWS (PG_INT32_MAX / 2)

/* per-customer bookkeeping of the statement */
typedef struct CustomerWork
{
	int64		customer_id;
	int32		items;			/* customer_state before */
	int32		model_items;
	int64		max_model_first_id;
	bool		load_model;		/* its in-model rows take part */
} CustomerWork;

static SPIPlanPtr plan_cap, plan_lock, plan_lock_check, plan_model_rows, plan_all_rows, plan_pair_rows,
			plan_truth, plan_truth_archive, plan_upsert_items, plan_delete_items, plan_update_state,
			plan_delete_state, plan_totals;

#define ITEM_COLS "customer_id, product_id, events, purchases, weight, first_interaction_id, last_at, in_model"
#define ITEM_COLS_READ "customer_id, product_id, events::int8, purchases::int8, weight, first_interaction_id, last_at, in_model"

/* customer_totals shard of a customer */
static int
shard_of(int64 customer_id)
{
	int64		s = customer_id % NUM_SHARDS;

	return (int) (s < 0 ? s + NUM_SHARDS : s);
}

/* A zeroed array of n elements, beyond 1 GB if need be. */
static void *
alloc_rows(Size n, Size size)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, Max(n, 1) * size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
}

/* Refuse a statement whose row count the int counters cannot hold. */
static void
check_statement_size(uint64 n, const char *what)
{
	if (n > (uint64) MAX_STATEMENT_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("statement is too large for the personalize model"),
				 errdetail("It involves more than %d %s; one statement may involve at most that many.",
						   MAX_STATEMENT_ROWS, what),
				 errhint("Split it into smaller statements.")));
}

static int
cmp_item(const void *pa, const void *pb)
{
	const CustomerItem *a = pa;
	const CustomerItem *b = pb;

	if (a->customer_id != b->customer_id)
		return a->customer_id < b->customer_id ? -1 : 1;
	if (a->product_id != b->product_id)
		return a->product_id < b->product_id ? -1 : 1;
	return 0;
}

static int
cmp_int64(const void *pa, const void *pb)
{
	int64		a = *(const int64 *) pa;
	int64		b = *(const int64 *) pb;

	return a < b ? -1 : (a > b ? 1 : 0);
}

/* Read (customer, product, events, purchases, weight, first id, last at) rows of SPI_tuptable into c[]. */
static void
read_changes_into(CustomerItem *c)
{
	for (int i = 0; i < (int) SPI_processed; i++)
	{
		c[i].customer_id = spi_int8(i, 1, 0);
		c[i].product_id = spi_int8(i, 2, 0);
		c[i].events = (int32) spi_int8(i, 3, 0);
		c[i].purchases = (int32) spi_int8(i, 4, 0);
		c[i].weight = spi_float8(i, 5, 0.0);
		c[i].first_id = spi_int8(i, 6, 0);
		c[i].last_at = (TimestampTz) spi_int8(i, 7, 0);
	}
}

/* Append the customer_items rows of SPI_tuptable to *rows (as stored: old values). */
static void
append_stored(CustomerItem **rows, int *n, int *cap)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		CustomerItem *r;
		bool		isnull;

		if (*n >= *cap)
		{
			check_statement_size((uint64) *n + 1, "stored (customer, product) rows");
			*cap = Max(*cap * 2, 256);
			*rows = repalloc_huge(*rows, sizeof(CustomerItem) * *cap);
		}
		r = &(*rows)[(*n)++];
		memset(r, 0, sizeof(CustomerItem));
		r->customer_id = spi_int8(i, 1, 0);
		r->product_id = spi_int8(i, 2, 0);
		r->events = (int32) spi_int8(i, 3, 0);
		r->purchases = (int32) spi_int8(i, 4, 0);
		r->weight = spi_float8(i, 5, 0.0);
		r->first_id = spi_int8(i, 6, 0);
		r->last_at = (TimestampTz) spi_int8(i, 7, 0);
		r->in_model_old = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 8, &isnull));
		r->present_old = true;
	}
}

static void
exec_plan(SPIPlanPtr plan, Datum *values, int expect)
{
	int			rc = spi_execute_kept(plan, values, false, 0);

	if (rc != expect)
		elog(ERROR, "personalize: model statement failed: %s", SPI_result_code_string(rc));
}

/*
 * Take the locks truncate_model() needs through _lock_bounded(): attempts of at
 * most 100 ms, so that recommend() never queues behind a TRUNCATE waiting for an
 * open reader; 55P03 naming the blockers after personalize.model_lock_wait.
 * SQL older than 0.2.0 lacks the function: then TRUNCATE takes them as before.
 */
static void
lock_model_bounded(void)
{
	Oid			argtypes[3] = {TEXTOID, REGCLASSARRAYOID, TEXTARRAYOID};
	List	   *name = list_make2(makeString("personalize"), makeString("_lock_bounded"));

	if (!OidIsValid(LookupFuncName(name, 3, argtypes, true)))
		return;
	/* 0.2.0 SQL: the base count tables and the pending changes (fold.c) */
	if (SPI_execute("SELECT personalize._lock_bounded('TRUNCATE personalize.interactions', "
					"ARRAY['personalize.customer_items', 'personalize.customer_state', 'personalize.item_counts_base', "
					"'personalize.pair_counts_base', 'personalize.model_deltas', 'personalize.dirty_products', "
					"'personalize.popular', 'personalize.popular_scores', "
					"'personalize.customer_totals']::pg_catalog.regclass[], "
					"ARRAY['ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', "
					"'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'ACCESS EXCLUSIVE', 'EXCLUSIVE'])",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not lock the model");
}

/*
 * Whether personalize.interactions_archive exists (issue 11, 0.2.0): the
 * library also serves databases whose SQL is still 0.1.0.
 */
static bool
archive_exists(void)
{
	Oid			nsp = get_namespace_oid("personalize", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("interactions_archive", nsp));
}

/* Whether a table of the extension holds any row (as this statement sees it). */
static bool
table_has_rows(const char *sql)
{
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read %s", sql);
	return SPI_processed > 0;
}

/*
 * The whole model is emptied with interactions (TRUNCATE), except the 'content'
 * neighbour lists: they come from product embeddings, not from the events.
 */
static void
truncate_model(void)
{
	lock_model_bounded();
	if (SPI_execute(model_deltas_exist()
					? "TRUNCATE personalize.customer_items, personalize.customer_state, "
					"personalize.item_counts_base, personalize.pair_counts_base, personalize.model_deltas, "
					"personalize.dirty_products, personalize.popular, personalize.popular_scores"
					: "TRUNCATE personalize.customer_items, personalize.customer_state, "
					"personalize.item_counts, personalize.pair_counts, personalize.dirty_products, "
					"personalize.popular, personalize.popular_scores", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "personalize: could not truncate the model");
	if (SPI_execute("DELETE FROM personalize.neighbors WHERE measure OPERATOR(pg_catalog.<>) 'content'",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "personalize: could not empty the neighbour lists");
	if (SPI_execute("UPDATE personalize.customer_totals SET customers = 0", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "personalize: could not reset customer totals");
}

/*
 * Under a transaction snapshot: customers whose customer_state row we just
 * inserted but whose deleted row our snapshot still sees are refused (see
 * lock_customers()).
 */
static void
check_not_deleted(int64 *inserted, int ninserted)
{
	Oid			t1[1] = {INT8ARRAYOID};
	Datum		v[1];

	spi_prepare_kept(&plan_lock_check,
					 "SELECT count(*) FROM personalize.customer_state WHERE customer_id = ANY($1)",
					 1, t1);
	v[0] = int8_array_datum(inserted, ninserted);
	exec_plan(plan_lock_check, v, SPI_OK_SELECT);
	if (spi_int8(0, 1, 0) > ninserted)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent delete"),
				 errdetail("Another transaction deleted a customer's last events after this transaction's snapshot was taken."),
				 errhint("The transaction might succeed if retried.")));
}

/*
 * customer_state rows for the customers, created if missing, locked in id order.
 *
 * Under REPEATABLE READ or SERIALIZABLE, a row updated since our snapshot makes
 * the upsert fail with a serialization error, as it should: our snapshot's
 * history of that customer is stale. A row deleted since our snapshot (the
 * customer's last events deleted, forget_customer) does not: the upsert simply
 * inserts a new one. Our snapshot still sees the deleted row then, so a
 * customer whose row we inserted but whose old row we still see is refused the
 * same way.
 */
static void
lock_customers(CustomerWork *cw, int ncust)
{
	Oid			t1[1] = {INT8ARRAYOID};
	int64	   *ids = alloc_rows(Min(ncust, SPI_CHUNK), sizeof(int64));
	int64	   *inserted = alloc_rows(Min(ncust, SPI_CHUNK), sizeof(int64));

	spi_prepare_kept(&plan_lock,
					 "INSERT INTO personalize.customer_state AS s (customer_id) "
					 "SELECT c FROM unnest($1) AS c ORDER BY c "
					 "ON CONFLICT (customer_id) DO UPDATE SET items = s.items "
					 "RETURNING s.customer_id, s.items, s.model_items, s.max_model_first_id, s.xmax = '0'::xid",
					 1, t1);
	/* in chunks of ascending ids: the locking order stays */
	for (int off = 0; off < ncust; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, ncust - off);
		int			ninserted = 0;
		Datum		v[1];

		for (int i = 0; i < k; i++)
			ids[i] = cw[off + i].customer_id;
		v[0] = int8_array_datum(ids, k);
		exec_plan(plan_lock, v, SPI_OK_INSERT_RETURNING);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			int64		id = spi_int8(i, 1, 0);
			CustomerWork *w = bsearch(&id, &cw[off], k, sizeof(CustomerWork), cmp_int64);
			bool		isnull;

			if (w == NULL)
				elog(ERROR, "personalize: customer_state returned an unknown customer");
			w->items = (int32) spi_int8(i, 2, 0);
			w->model_items = (int32) spi_int8(i, 3, 0);
			w->max_model_first_id = spi_int8(i, 4, PG_INT64_MAX);
			if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull)) && !isnull)
				inserted[ninserted++] = id;
		}
		SPI_freetuptable(SPI_tuptable);
		if (ninserted > 0 && IsolationUsesXactSnapshot())
			check_not_deleted(inserted, ninserted);
	}
}

/*
 * The truth for the (customer, product) keys of changes[], read from
 * interactions. Called only once the customers are locked, so that it sees
 * every event committed by writers that held those locks before us.
 */
static CustomerItem *
load_truth(CustomerItem *keys, int n)
{
	Oid			t[2] = {INT8ARRAYOID, INT8ARRAYOID};
	int64	   *c = alloc_rows(Min(n, SPI_CHUNK), sizeof(int64));
	int64	   *p = alloc_rows(Min(n, SPI_CHUNK), sizeof(int64));
	CustomerItem *truth = alloc_rows(n, sizeof(CustomerItem));

	SPIPlanPtr	plan;

	/* archived events count as if they were still in interactions (issue 11) */
	if (archive_exists())
		plan = spi_prepare_kept(&plan_truth_archive,
								"SELECT u.c, u.p, count(i.interaction_id), "
								"count(*) FILTER (WHERE i.event_type = 'purchase'), coalesce(sum(e.weight), 0), "
								"min(i.interaction_id), max(i.occurred_at) "
								"FROM unnest($1, $2) AS u(c, p) "
								"LEFT JOIN (SELECT interaction_id, customer_id, product_id, event_type, occurred_at "
								"           FROM personalize.interactions "
								"           UNION ALL "
								"           SELECT interaction_id, customer_id, product_id, event_type, occurred_at "
								"           FROM personalize.interactions_archive) i "
								"  ON i.customer_id = u.c AND i.product_id = u.p "
								"LEFT JOIN personalize.event_types e ON e.event_type = i.event_type "
								"GROUP BY u.c, u.p ORDER BY u.c, u.p",
								2, t);
	else
		plan = spi_prepare_kept(&plan_truth,
								"SELECT u.c, u.p, count(i.interaction_id), "
								"count(*) FILTER (WHERE i.event_type = 'purchase'), coalesce(sum(e.weight), 0), "
								"min(i.interaction_id), max(i.occurred_at) "
								"FROM unnest($1, $2) AS u(c, p) "
								"LEFT JOIN personalize.interactions i ON i.customer_id = u.c AND i.product_id = u.p "
								"LEFT JOIN personalize.event_types e ON e.event_type = i.event_type "
								"GROUP BY u.c, u.p ORDER BY u.c, u.p",
								2, t);
	for (int off = 0; off < n; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, n - off);
		Datum		v[2];

		for (int i = 0; i < k; i++)
		{
			c[i] = keys[off + i].customer_id;
			p[i] = keys[off + i].product_id;
		}
		v[0] = int8_array_datum(c, k);
		v[1] = int8_array_datum(p, k);
		exec_plan(plan, v, SPI_OK_SELECT);
		if (SPI_processed != (uint64) k)
			elog(ERROR, "personalize: recomputed " UINT64_FORMAT " of %d histories", SPI_processed, k);
		read_changes_into(&truth[off]);
		SPI_freetuptable(SPI_tuptable);
	}
	return truth;
}

/* The statement's state, handed from one phase of apply_changes() to the next. */
typedef struct StatementWork
{
	CustomerItem *changes;		/* sorted by (customer, product) */
	int			nchanges;
	bool		recompute;
	int			cap;			/* max_items_per_customer */
	CustomerWork *cw;			/* distinct customers, in id order */
	int			ncust;
	CustomerItem *rows;			/* stored rows, then merged with changes */
	int			nrows;
	DeltaBuffer pairs;
	DeltaBuffer singles;
	int64		shard_delta[NUM_SHARDS];
	/* write buffers */
	CustomerItem **up;
	int			nup;
	int64	   *del_c,
			   *del_p;
	int			ndel;
	int64	   *st_c,
			   *st_x;
	int32	   *st_i,
			   *st_m;
	int			nst;
} StatementWork;

/* max_items_per_customer from model_settings. */
static int
read_cap(void)
{
	if (spi_execute_kept(spi_prepare_kept(&plan_cap,
										  "SELECT max_items_per_customer FROM personalize.model_settings",
										  0, NULL), NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "personalize: model_settings has no row");
	return (int) spi_int8(0, 1, 100);
}

/* The distinct customers of the changes, in id order. */
static void
collect_customers(StatementWork *sw)
{
	sw->cw = alloc_rows(sw->nchanges, sizeof(CustomerWork));
	for (int i = 0; i < sw->nchanges; i++)
		if (sw->ncust == 0 || sw->cw[sw->ncust - 1].customer_id != sw->changes[i].customer_id)
			sw->cw[sw->ncust++].customer_id = sw->changes[i].customer_id;
	if (sw->nchanges >= BIG_STATEMENT)
		ereport(NOTICE,
				(errmsg("personalize: updating the model for %d (customer, product) histories of %d customers",
						sw->nchanges, sw->ncust)));
}

/* Which customers' in-model rows take part. */
static void
mark_model_loads(StatementWork *sw)
{
	int			ci = 0;

	for (int i = 0; i < sw->nchanges; i++)
	{
		while (sw->cw[ci].customer_id != sw->changes[i].customer_id)
			ci++;
		if (sw->recompute || sw->cw[ci].model_items < sw->cap ||
			sw->changes[i].first_id < sw->cw[ci].max_model_first_id)
			sw->cw[ci].load_model = true;
	}
}

/* Load stored rows: changed pairs, plus in-model rows (insert) or all rows (recompute). */
static void
load_stored_rows(StatementWork *sw)
{
	int			rowcap = 256;
	Oid			t1[1] = {INT8ARRAYOID};
	Oid			t2[2] = {INT8ARRAYOID, INT8ARRAYOID};
	int64	   *lc = alloc_rows(Min(sw->ncust, SPI_CHUNK), sizeof(int64));
	int64	   *pc = alloc_rows(Min(sw->nchanges, SPI_CHUNK), sizeof(int64));
	int64	   *pp = alloc_rows(Min(sw->nchanges, SPI_CHUNK), sizeof(int64));
	int			nl = 0;
	Datum		v[2];
	SPIPlanPtr	p = sw->recompute
		? spi_prepare_kept(&plan_all_rows,
						   "SELECT " ITEM_COLS_READ " FROM personalize.customer_items WHERE customer_id = ANY($1)",
						   1, t1)
		: spi_prepare_kept(&plan_model_rows,
						   "SELECT " ITEM_COLS_READ " FROM personalize.customer_items WHERE customer_id = ANY($1) AND in_model",
						   1, t1);

	sw->rows = alloc_rows(rowcap, sizeof(CustomerItem));
	for (int i = 0; i <= sw->ncust; i++)
	{
		/* a full chunk of customers, or the last one */
		if (nl > 0 && (i == sw->ncust || nl == SPI_CHUNK))
		{
			v[0] = int8_array_datum(lc, nl);
			exec_plan(p, v, SPI_OK_SELECT);
			append_stored(&sw->rows, &sw->nrows, &rowcap);
			SPI_freetuptable(SPI_tuptable);
			nl = 0;
		}
		if (i < sw->ncust && sw->cw[i].load_model)
			lc[nl++] = sw->cw[i].customer_id;
	}
	spi_prepare_kept(&plan_pair_rows,
					 "SELECT ci.customer_id, ci.product_id, ci.events::int8, ci.purchases::int8, ci.weight, "
					 "ci.first_interaction_id, ci.last_at, ci.in_model "
					 "FROM unnest($1, $2) AS u(c, p) JOIN personalize.customer_items ci "
					 "ON ci.customer_id = u.c AND ci.product_id = u.p",
					 2, t2);
	for (int off = 0; off < sw->nchanges; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, sw->nchanges - off);

		for (int i = 0; i < k; i++)
		{
			pc[i] = sw->changes[off + i].customer_id;
			pp[i] = sw->changes[off + i].product_id;
		}
		v[0] = int8_array_datum(pc, k);
		v[1] = int8_array_datum(pp, k);
		exec_plan(plan_pair_rows, v, SPI_OK_SELECT);
		append_stored(&sw->rows, &sw->nrows, &rowcap);
		SPI_freetuptable(SPI_tuptable);
	}
}

/* Merge stored rows (deduplicated) and changes into one sorted item list. */
static void
merge_rows(StatementWork *sw)
{
	CustomerItem *rows = sw->rows;
	int			nrows = sw->nrows;
	CustomerItem *changes = sw->changes;
	int			nchanges = sw->nchanges;
	CustomerItem *merged;
	int			out = 0;
	int			i = 0,
				j = 0,
				m = 0;

	qsort(rows, nrows, sizeof(CustomerItem), cmp_item);
	for (int r = 0; r < nrows; r++)
		if (out == 0 || cmp_item(&rows[out - 1], &rows[r]) != 0)
			rows[out++] = rows[r];
	nrows = out;

	merged = MemoryContextAllocHuge(CurrentMemoryContext,
									sizeof(CustomerItem) * (nrows + nchanges + 1));
	while (i < nrows || j < nchanges)
	{
		int			c = (i >= nrows) ? 1 : (j >= nchanges) ? -1 : cmp_item(&rows[i], &changes[j]);

		if (c < 0)
			merged[m++] = rows[i++];
		else
		{
			CustomerItem *x = &merged[m++];
			CustomerItem *d = &changes[j++];

			if (c == 0)
			{
				*x = rows[i++];
				if (sw->recompute)
				{
					x->changed = x->events != d->events || x->purchases != d->purchases ||
						x->weight != d->weight || x->first_id != d->first_id || x->last_at != d->last_at;
					x->events = d->events;
					x->purchases = d->purchases;
					x->weight = d->weight;
					x->first_id = d->first_id;
					x->last_at = d->last_at;
				}
				else
				{
					x->events += d->events;
					x->purchases += d->purchases;
					x->weight += d->weight;
					x->first_id = Min(x->first_id, d->first_id);
					x->last_at = Max(x->last_at, d->last_at);
					x->changed = true;
				}
			}
			else
			{
				*x = *d;
				x->present_old = false;
				x->in_model_old = false;
				x->changed = x->events > 0;
			}
		}
	}
	sw->rows = merged;
	sw->nrows = m;
}

/* Per customer: the model set and its deltas, and the rows and state to write. */
static void
compute_customer_deltas(StatementWork *sw)
{
	CustomerItem *rows = sw->rows;
	int			nrows = sw->nrows;

	sw->up = alloc_rows(nrows, sizeof(CustomerItem *));
	sw->del_c = alloc_rows(nrows, sizeof(int64));
	sw->del_p = alloc_rows(nrows, sizeof(int64));
	sw->st_c = alloc_rows(sw->ncust, sizeof(int64));
	sw->st_x = alloc_rows(sw->ncust, sizeof(int64));
	sw->st_i = alloc_rows(sw->ncust, sizeof(int32));
	sw->st_m = alloc_rows(sw->ncust, sizeof(int32));
	for (int ci = 0, r = 0; ci < sw->ncust; ci++)
	{
		CustomerWork *w = &sw->cw[ci];
		int			start = r;
		int			items = w->items;
		int			model_items = w->model_items;
		int64		max_first = w->max_model_first_id;

		CHECK_FOR_INTERRUPTS();
		while (r < nrows && rows[r].customer_id == w->customer_id)
			r++;

		if (w->load_model)
		{
			model_items = customer_model_delta(&rows[start], r - start, sw->cap,
											   &sw->pairs, &sw->singles, &max_first);
			if (model_items == 0)
				max_first = PG_INT64_MAX;
		}
		else
		{
			/* model full and every change ranks after it: flags stay */
			for (int i = start; i < r; i++)
				rows[i].in_model_new = rows[i].in_model_old;
		}

		for (int i = start; i < r; i++)
		{
			CustomerItem *x = &rows[i];

			if (x->events == 0)
			{
				if (x->present_old)
				{
					sw->del_c[sw->ndel] = x->customer_id;
					sw->del_p[sw->ndel++] = x->product_id;
					items--;
				}
			}
			else
			{
				if (!x->present_old)
					items++;
				if (x->changed || x->in_model_new != x->in_model_old || !x->present_old)
					sw->up[sw->nup++] = x;
			}
		}
		if (w->model_items == 0 && model_items > 0)
			sw->shard_delta[shard_of(w->customer_id)]++;
		else if (w->model_items > 0 && model_items == 0)
			sw->shard_delta[shard_of(w->customer_id)]--;

		sw->st_c[sw->nst] = w->customer_id;
		sw->st_i[sw->nst] = items;
		sw->st_m[sw->nst] = model_items;
		sw->st_x[sw->nst++] = (model_items > 0) ? max_first : 0;
	}
}

/* Upsert the new and changed customer_items rows, one statement in key order. */
static void
write_item_upserts(CustomerItem **up, int nup)
{
	Oid			t[8] = {INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
	FLOAT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, BOOLARRAYOID};
	int			chunk = Min(nup, SPI_CHUNK);
	int64	   *c = palloc(sizeof(int64) * chunk);
	int64	   *p = palloc(sizeof(int64) * chunk);
	int32	   *ev = palloc(sizeof(int32) * chunk);
	int32	   *pu = palloc(sizeof(int32) * chunk);
	double	   *we = palloc(sizeof(double) * chunk);
	int64	   *fi = palloc(sizeof(int64) * chunk);
	TimestampTz *la = palloc(sizeof(TimestampTz) * chunk);
	bool	   *im = palloc(sizeof(bool) * chunk);

	spi_prepare_kept(&plan_upsert_items,
					 "INSERT INTO personalize.customer_items AS ci (" ITEM_COLS ") "
					 "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) "
					 "ON CONFLICT (customer_id, product_id) DO UPDATE SET events = EXCLUDED.events, "
					 "purchases = EXCLUDED.purchases, weight = EXCLUDED.weight, "
					 "first_interaction_id = EXCLUDED.first_interaction_id, last_at = EXCLUDED.last_at, "
					 "in_model = EXCLUDED.in_model",
					 8, t);
	for (int off = 0; off < nup; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, nup - off);
		Datum		v[8];

		for (int i = 0; i < k; i++)
		{
			CustomerItem *x = up[off + i];

			c[i] = x->customer_id;
			p[i] = x->product_id;
			ev[i] = x->events;
			pu[i] = x->purchases;
			we[i] = x->weight;
			fi[i] = x->first_id;
			la[i] = x->last_at;
			im[i] = x->in_model_new;
		}
		v[0] = int8_array_datum(c, k);
		v[1] = int8_array_datum(p, k);
		v[2] = int4_array_datum(ev, k);
		v[3] = int4_array_datum(pu, k);
		v[4] = float8_array_datum(we, k);
		v[5] = int8_array_datum(fi, k);
		v[6] = timestamptz_array_datum(la, k);
		v[7] = bool_array_datum(im, k);
		exec_plan(plan_upsert_items, v, SPI_OK_INSERT);
	}
}

/* Delete the customer_items rows whose events are all gone. */
static void
write_item_deletes(int64 *del_c, int64 *del_p, int ndel)
{
	Oid			t[2] = {INT8ARRAYOID, INT8ARRAYOID};

	spi_prepare_kept(&plan_delete_items,
					 "DELETE FROM personalize.customer_items ci USING unnest($1, $2) AS u(c, p) "
					 "WHERE ci.customer_id = u.c AND ci.product_id = u.p",
					 2, t);
	for (int off = 0; off < ndel; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, ndel - off);
		Datum		v[2];

		v[0] = int8_array_datum(&del_c[off], k);
		v[1] = int8_array_datum(&del_p[off], k);
		exec_plan(plan_delete_items, v, SPI_OK_DELETE);
	}
}

/* Write the customers' customer_state rows; delete those left without items. */
static void
write_state(StatementWork *sw)
{
	Oid			t[4] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
	Oid			t1[1] = {INT8ARRAYOID};

	spi_prepare_kept(&plan_update_state,
					 "UPDATE personalize.customer_state s SET items = u.i, model_items = u.m, "
					 "max_model_first_id = nullif(u.x, 0) "
					 "FROM unnest($1, $2, $3, $4) AS u(c, i, m, x) WHERE s.customer_id = u.c",
					 4, t);
	spi_prepare_kept(&plan_delete_state,
					 "DELETE FROM personalize.customer_state WHERE customer_id = ANY($1) AND items = 0",
					 1, t1);
	for (int off = 0; off < sw->nst; off += SPI_CHUNK)
	{
		int			k = Min(SPI_CHUNK, sw->nst - off);
		Datum		v[4];

		v[0] = int8_array_datum(&sw->st_c[off], k);
		v[1] = int4_array_datum(&sw->st_i[off], k);
		v[2] = int4_array_datum(&sw->st_m[off], k);
		v[3] = int8_array_datum(&sw->st_x[off], k);
		exec_plan(plan_update_state, v, SPI_OK_UPDATE);
		if (sw->ndel > 0)
			exec_plan(plan_delete_state, v, SPI_OK_DELETE);
	}
}

/* Add each shard's change in customers with a model to customer_totals, in shard order. */
static void
write_totals(const int64 *shard_delta)
{
	for (int s = 0; s < NUM_SHARDS; s++)
	{
		Oid			t[2] = {INT2OID, INT8OID};
		Datum		v[2];

		if (shard_delta[s] == 0)
			continue;
		spi_prepare_kept(&plan_totals,
						 "UPDATE personalize.customer_totals SET customers = customers + $2 WHERE shard = $1",
						 2, t);
		v[0] = Int16GetDatum(s);
		v[1] = Int64GetDatum(shard_delta[s]);
		exec_plan(plan_totals, v, SPI_OK_UPDATE);
	}
}

/*
 * The statement's work: changes[] are per-(customer, product) deltas (insert)
 * or only the keys to recompute from interactions once locked (recompute),
 * sorted by (customer, product).
 */
static void
apply_changes(CustomerItem *changes, int nchanges, bool recompute)
{
	StatementWork sw = {0};

	if (nchanges == 0)
		return;
	sw.changes = changes;
	sw.nchanges = nchanges;
	sw.recompute = recompute;

	sw.cap = read_cap();
	collect_customers(&sw);
	lock_customers(sw.cw, sw.ncust);
	if (recompute)
		sw.changes = load_truth(sw.changes, nchanges);
	mark_model_loads(&sw);
	load_stored_rows(&sw);
	merge_rows(&sw);
	compute_customer_deltas(&sw);

	/* writes, each one statement in key order */
	if (sw.nup > 0)
		write_item_upserts(sw.up, sw.nup);
	if (sw.ndel > 0)
		write_item_deletes(sw.del_c, sw.del_p, sw.ndel);
	write_state(&sw);

	delta_buffer_merge(&sw.pairs);
	delta_buffer_merge(&sw.singles);
	if (nchanges >= BIG_STATEMENT)
		ereport(NOTICE,
				(errmsg("personalize: writing %zu pair count changes", (size_t) sw.pairs.n)));
	if (model_deltas_exist())
	{
		/* appended: fold_deltas() applies them and marks their products dirty */
		append_model_deltas(&sw.pairs, &sw.singles);
		write_totals(sw.shard_delta);
	}
	else
	{
		/* SQL 0.1.0: the count tables directly, as 0.1.0 did */
		apply_count_deltas(&sw.pairs, true, false, false);
		apply_count_deltas(&sw.singles, false, false, false);
		write_totals(sw.shard_delta);
		mark_products_dirty(&sw.pairs, &sw.singles, GetCurrentTransactionStartTimestamp());
	}
}

typedef struct EventWeight
{
	char		name[NAMEDATALEN];
	double		weight;
} EventWeight;

static int
cmp_change(const void *pa, const void *pb)
{
	const CustomerItem *a = pa;
	const CustomerItem *b = pb;
	int			c = cmp_item(a, b);

	if (c != 0)
		return c;
	return a->first_id < b->first_id ? -1 : (a->first_id > b->first_id ? 1 : 0);
}

/*
 * The inserted events, read straight from the NEW transition table (no query
 * to parse and plan per statement), aggregated per (customer, product):
 * events, purchases, summed event weight, smallest id, latest time.
 */
static CustomerItem *
read_inserted(TriggerData *td, int *n_out)
{
	static SPIPlanPtr plan_weights;
	Tuplestorestate *ts = td->tg_newtable;
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	int			a_cust = SPI_fnumber(desc, "customer_id");
	int			a_prod = SPI_fnumber(desc, "product_id");
	int			a_type = SPI_fnumber(desc, "event_type");
	int			a_id = SPI_fnumber(desc, "interaction_id");
	int			a_at = SPI_fnumber(desc, "occurred_at");
	EventWeight *weights;
	int			nweights;
	CustomerItem *rows;
	int			n = 0,
				cap = 1024,
				out = 0;
	int			readptr;

	if (a_cust <= 0 || a_prod <= 0 || a_type <= 0 || a_id <= 0 || a_at <= 0)
		elog(ERROR, "personalize: interactions lacks a column the model needs");

	/* event type weights: a handful of rows */
	exec_plan(spi_prepare_kept(&plan_weights, "SELECT event_type, weight FROM personalize.event_types", 0, NULL),
			  NULL, SPI_OK_SELECT);
	nweights = (int) SPI_processed;
	weights = palloc(sizeof(EventWeight) * Max(nweights, 1));
	for (int i = 0; i < nweights; i++)
	{
		strlcpy(weights[i].name, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1), NAMEDATALEN);
		weights[i].weight = spi_float8(i, 2, 0.0);
	}

	/* our own read pointer, as a NamedTuplestoreScan takes one */
	readptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_copy_read_pointer(ts, 0, readptr);
	tuplestore_select_read_pointer(ts, readptr);
	tuplestore_rescan(ts);
	rows = palloc(sizeof(CustomerItem) * cap);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;
		char	   *type;
		CustomerItem *r;

		if (n >= cap)
		{
			check_statement_size((uint64) n + 1, "inserted events");
			cap *= 2;
			rows = repalloc_huge(rows, sizeof(CustomerItem) * cap);
		}
		r = &rows[n++];
		memset(r, 0, sizeof(CustomerItem));
		r->customer_id = DatumGetInt64(slot_getattr(slot, a_cust, &isnull));
		r->product_id = DatumGetInt64(slot_getattr(slot, a_prod, &isnull));
		r->first_id = DatumGetInt64(slot_getattr(slot, a_id, &isnull));
		r->last_at = DatumGetTimestampTz(slot_getattr(slot, a_at, &isnull));
		type = TextDatumGetCString(slot_getattr(slot, a_type, &isnull));
		r->events = 1;
		r->purchases = strcmp(type, "purchase") == 0 ? 1 : 0;
		for (int i = 0; i < nweights; i++)
			if (strcmp(weights[i].name, type) == 0)
			{
				r->weight = weights[i].weight;
				break;
			}
		pfree(type);
	}
	tuplestore_select_read_pointer(ts, 0);
	ExecDropSingleTupleTableSlot(slot);

	/* sort by key, then by id so that weights add up in insertion order as SQL's sum would */
	qsort(rows, n, sizeof(CustomerItem), cmp_change);
	for (int i = 0; i < n; i++)
	{
		if (out > 0 && cmp_item(&rows[out - 1], &rows[i]) == 0)
		{
			CustomerItem *x = &rows[out - 1];

			x->events += rows[i].events;
			x->purchases += rows[i].purchases;
			x->weight += rows[i].weight;
			x->first_id = Min(x->first_id, rows[i].first_id);
			x->last_at = Max(x->last_at, rows[i].last_at);
		}
		else
			rows[out++] = rows[i];
	}
	*n_out = out;
	return rows;
}

/*
 * Did a recompute (DELETE or UPDATE trigger) of the same statement already run,
 * so that it counted the inserted events? The inserted rows carry the
 * statement's command id S (cmin); a recompute that read interactions after
 * they were written ran at a command id above S, a recompute of an earlier
 * statement at most at S. Costs one look-up only in a transaction that has
 * recomputed before; when in doubt, the answer is yes (recomputing is always
 * exact).
 */
static bool
insert_follows_recompute(CustomerItem *changes)
{
	static SPIPlanPtr plan_cmin;
	Oid			t1[1] = {INT8OID};
	Datum		v[1];
	bool		isnull_c,
				isnull_x;
	Datum		cmin,
				xmin;

	if (!TransactionIdIsValid(last_recompute_xid) ||
		!TransactionIdEquals(last_recompute_xid, GetTopTransactionIdIfAny()))
		return false;
	/* any inserted event: its row version is the one the statement wrote */
	v[0] = Int64GetDatum(changes[0].first_id);
	exec_plan(spi_prepare_kept(&plan_cmin,
							   "SELECT cmin, xmin FROM personalize.interactions WHERE interaction_id = $1",
							   1, t1), v, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return true;
	cmin = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull_c);
	xmin = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull_x);
	if (isnull_c || isnull_x || !TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin)))
		return true;
	return last_recompute_cid > DatumGetCommandId(cmin);
}

/*
 * Recompute the model rows of the (customer, product) keys keys_sql returns
 * (sorted) from the events, interactions and archive: what a DELETE or UPDATE
 * of interactions, and any change of the archive, does.
 */
static void
recompute_keys(const char *keys_sql)
{
	CustomerItem *changes;
	int			nchanges;

	if (SPI_execute(keys_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the changed events");
	check_statement_size(SPI_processed, "changed (customer, product) pairs");
	nchanges = (int) SPI_processed;
	changes = alloc_rows(nchanges, sizeof(CustomerItem));
	for (int i = 0; i < nchanges; i++)
	{
		changes[i].customer_id = spi_int8(i, 1, 0);
		changes[i].product_id = spi_int8(i, 2, 0);
	}
	SPI_freetuptable(SPI_tuptable);
	apply_changes(changes, nchanges, true);
	if (nchanges > 0)
	{
		last_recompute_xid = GetTopTransactionIdIfAny();
		last_recompute_cid = GetCurrentCommandId(false);
	}
}

/* Statement-level AFTER INSERT/UPDATE/DELETE/TRUNCATE trigger on interactions. */
Datum
personalize_interactions_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CustomerItem *changes;
	int			nchanges;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("personalize_interactions_trigger must be an AFTER ... FOR EACH STATEMENT trigger")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "personalize: could not register transition tables");

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		truncate_model();
		/* archived events count in the model: TRUNCATE them with interactions */
		if (archive_exists() && table_has_rows("SELECT 1 FROM personalize.interactions_archive"))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot truncate personalize.interactions alone while personalize.interactions_archive holds events"),
					 errdetail("Archived events still count in the model; emptying the model would leave them out."),
					 errhint("TRUNCATE personalize.interactions, personalize.interactions_archive; in one statement, or DELETE the events you mean to forget.")));
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		changes = read_inserted(td, &nchanges);
		/* after a recompute of this statement: the sorted keys are recomputed too */
		apply_changes(changes, nchanges, nchanges > 0 && insert_follows_recompute(changes));
	}
	else
		/* DELETE or UPDATE: recompute the affected (customer, product) rows from interactions */
		recompute_keys(TRIGGER_FIRED_BY_DELETE(td->tg_event)
					   ? "SELECT DISTINCT customer_id, product_id FROM personalize_old ORDER BY 1, 2"
					   : "SELECT customer_id, product_id FROM personalize_old UNION "
					   "SELECT customer_id, product_id FROM personalize_new ORDER BY 1, 2");

	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * Statement-level AFTER INSERT/UPDATE/DELETE/TRUNCATE trigger on
 * interactions_archive (issue 11). Archived events keep counting in the model,
 * so any change of the archive recomputes the (customer, product) rows it
 * touches from interactions and the archive together: archive_events() moves
 * events in one statement (its DELETE from interactions and INSERT here both
 * find the counts unchanged), forget_customer() deleting archived events
 * subtracts them, a restore's COPY adds them. No flag lets a statement skip the
 * model: whatever the statement, the model follows the events.
 */
Datum
personalize_archive_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("personalize_archive_trigger must be an AFTER ... FOR EACH STATEMENT trigger")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "personalize: SPI_connect failed");
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "personalize: could not register transition tables");

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (table_has_rows("SELECT 1 FROM personalize.interactions"))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot truncate personalize.interactions_archive alone while personalize.interactions holds events"),
					 errdetail("Archived events count in the model; a TRUNCATE cannot say which counts to subtract."),
					 errhint("DELETE FROM personalize.interactions_archive (the model subtracts those events), or TRUNCATE personalize.interactions, personalize.interactions_archive; to forget every event.")));
		truncate_model();
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		recompute_keys("SELECT DISTINCT customer_id, product_id FROM personalize_new ORDER BY 1, 2");
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		recompute_keys("SELECT DISTINCT customer_id, product_id FROM personalize_old ORDER BY 1, 2");
	else
		recompute_keys("SELECT customer_id, product_id FROM personalize_old UNION "
					   "SELECT customer_id, product_id FROM personalize_new ORDER BY 1, 2");

	SPI_finish();
	return PointerGetDatum(NULL);
}
