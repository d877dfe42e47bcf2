/*
 * ease.c: the EASE model (Steck, "Embarrassingly Shallow Autoencoders for
 * Sparse Data", WWW 2019) from the exact co-occurrence counts:
 *
 *   personalize._ease_lists(item_counts regclass, pair_counts regclass,
 *                           max_products, lambda, k)
 *
 * G is the Gram matrix of the N = max_products most frequent active products:
 * G_ii = customers of i (item_counts), G_ij = customers of both (pair_counts).
 * P = (G + lambda I)^-1 by Cholesky (ease_solve.c), B_ij = -P_ij / P_jj with a
 * zero diagonal, and each product i gets its top-k positive B_ij, best first
 * (ties: the smaller product id), with the pair's co-occurrence count. Row i
 * holds the weights from history product i to candidate j: recommend() adds
 * them up over a customer's history.
 *
 * Memory: the dense matrix, 8 n^2 bytes, one huge allocation in a context of
 * its own (freed with it on error or cancel; glibc gives such a block back to
 * the system at once), plus about 40 n bytes of ids, counts and the id hash,
 * a top-k heap and, for the answer, the tuplestore (work_mem, then a file).
 * Lower triangle: G + lambda I, then P. Strictly upper triangle: the pair
 * counts, which the solve never touches, for the counts column.
 *
 * Phases, one function each: check the arguments, read the products, read
 * the pairs, solve (cancel checked between two library calls), emit the lists.
 * Progress: a NOTICE per phase (and every 10 s within the solve, with its
 * percentage), and application_name "personalize.ease: <phase> <n>%".
 */
#include "personalize.h"

#include <math.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "ease.h"
#include "ease_solve.h"
#include "spiutil.h"

PG_FUNCTION_INFO_V1(personalize_ease_lists);

#define PAIR_BATCH 10000
#define NOTICE_EVERY_MS 10000

typedef struct EaseModel
{
	MemoryContext cxt;			/* everything below lives here */
	int			n;
	int64	   *ids;			/* product ids, most frequent first */
	int64	   *customers;		/* their counts: the diagonal of G */
	HTAB	   *index;			/* product id -> position */
	double	   *a;				/* n x n, column-major (see the header) */
	int64		pairs;
	TimestampTz started;		/* of the phase */
	TimestampTz last_notice;
	int			last_percent;
	int			last_phase;
} EaseModel;

typedef struct IndexEntry
{
	int64		product_id;
	int			pos;
} IndexEntry;

typedef struct Weight
{
	double		w;
	int			j;
} Weight;

static const char *const phase_names[] = {"factorise", "invert", "multiply"};

static double
seconds_since(TimestampTz t)
{
	return (double) (GetCurrentTimestamp() - t) / 1e6;
}

/* application_name for pg_stat_activity, until the end of the transaction */
static void
set_progress(const char *what)
{
	(void) set_config_option("application_name", what, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

static void
bad_argument(const char *name, const char *got, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s for the EASE model", name),
			 errdetail("Got %s.", got),
			 errhint("%s", want)));
}

/* max_products, lambda and k in range, else 22023 */
static void
check_arguments(FunctionCallInfo fcinfo)
{
	char		got[64];

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the arguments of _ease_lists() must not be null")));
	snprintf(got, sizeof(got), "%d", PG_GETARG_INT32(2));
	if (PG_GETARG_INT32(2) < EASE_MIN_PRODUCTS || PG_GETARG_INT32(2) > EASE_MAX_PRODUCTS)
		bad_argument("max_products", got, "max_products is an integer from 2 to 50000 (the matrix takes 8 n^2 bytes).");
	snprintf(got, sizeof(got), "%g", PG_GETARG_FLOAT8(3));
	if (!(PG_GETARG_FLOAT8(3) > 0.0 && PG_GETARG_FLOAT8(3) <= 1e12))
		bad_argument("lambda", got, "lambda is a finite number above 0 and at most 1e12, for example 100.");
	snprintf(got, sizeof(got), "%d", PG_GETARG_INT32(4));
	if (PG_GETARG_INT32(4) < 1 || PG_GETARG_INT32(4) > EASE_MAX_K)
		bad_argument("k", got, "k is an integer from 1 to 10000.");
}

/* "schema"."name" of a relation, for a statement */
static char *
relation_name(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
}

/* The N most frequent active products of the item-count relation, and the matrix. */
static void
read_products(EaseModel *m, Oid item_rel, int max_products)
{
	StringInfoData sql;
	Oid			t[1] = {INT4OID};
	Datum		v[1] = {Int32GetDatum(max_products)};
	HASHCTL		ctl;
	size_t		bytes;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT ic.product_id, ic.customers FROM %s ic "
					 "JOIN personalize.products p ON p.product_id = ic.product_id AND p.active "
					 "WHERE ic.customers > 0 ORDER BY ic.customers DESC, ic.product_id LIMIT $1",
					 relation_name(item_rel));
	if (SPI_execute_with_args(sql.data, 1, t, v, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "personalize: could not read the item counts");
	m->n = (int) SPI_processed;
	m->ids = MemoryContextAlloc(m->cxt, sizeof(int64) * Max(m->n, 1));
	m->customers = MemoryContextAlloc(m->cxt, sizeof(int64) * Max(m->n, 1));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(IndexEntry);
	ctl.hcxt = m->cxt;
	m->index = hash_create("personalize EASE products", Max(m->n, 1), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < m->n; i++)
	{
		bool		isnull,
					found;
		IndexEntry *e;

		m->ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		m->customers[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		e = hash_search(m->index, &m->ids[i], HASH_ENTER, &found);
		e->pos = i;
	}
	SPI_freetuptable(SPI_tuptable);
	if (m->n < 2)
		return;
	bytes = sizeof(double) * (size_t) m->n * (size_t) m->n;
	m->a = MemoryContextAllocExtended(m->cxt, bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO | MCXT_ALLOC_NO_OOM);
	if (m->a == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for the EASE model"),
				 errdetail("The matrix of %d products takes %.1f GB (8 n^2 bytes).", m->n, bytes / 1e9),
				 errhint("Lower personalize.ease_products.")));
}

/* position of a product in the model, or -1 */
static int
position(EaseModel *m, int64 product_id)
{
	IndexEntry *e = hash_search(m->index, &product_id, HASH_FIND, NULL);

	return e == NULL ? -1 : e->pos;
}

/*
 * The pair counts among the model's products, through a cursor (a large
 * model has millions): G_ij in the lower triangle, the count again in the
 * upper one.
 */
static void
read_pairs(EaseModel *m, Oid pair_rel)
{
	StringInfoData sql;
	Oid			t[1] = {INT8ARRAYOID};
	Datum		v[1];
	Portal		cur;
	size_t		n = (size_t) m->n;

	v[0] = int8_array_datum(m->ids, m->n);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT pc.product_a, pc.product_b, pc.customers FROM %s pc "
					 "JOIN unnest($1::bigint[]) AS a(id) ON a.id = pc.product_a "
					 "JOIN unnest($1::bigint[]) AS b(id) ON b.id = pc.product_b "
					 "WHERE pc.customers > 0",
					 relation_name(pair_rel));
	cur = SPI_cursor_open_with_args(NULL, sql.data, 1, t, v, NULL, true, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		SPI_cursor_fetch(cur, true, PAIR_BATCH);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			HeapTuple	tup = SPI_tuptable->vals[r];
			int			i = position(m, DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)));
			int			j = position(m, DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)));
			double		c = (double) DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
			size_t		lo = (size_t) Min(i, j),
						hi = (size_t) Max(i, j);

			if (i < 0 || j < 0 || i == j)
				continue;
			m->a[lo * n + hi] = c;	/* row hi, column lo: lower */
			m->a[hi * n + lo] = c;	/* row lo, column hi: upper */
			m->pairs++;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(cur);
}

/* Between two library calls of the solve: a cancel, and the progress. */
static void
solve_check(void *arg, EaseSolvePhase phase, double done)
{
	EaseModel  *m = (EaseModel *) arg;
	int			percent = (int) (done * 100.0);

	CHECK_FOR_INTERRUPTS();
	if (percent == m->last_percent && (int) phase == m->last_phase)
		return;
	m->last_percent = percent;
	{
		char		buf[64];

		snprintf(buf, sizeof(buf), "personalize.ease: %s %d%%", phase_names[phase], percent);
		set_progress(buf);
	}
	if ((int) phase != m->last_phase ||
		GetCurrentTimestamp() - m->last_notice >= NOTICE_EVERY_MS * INT64CONST(1000))
	{
		m->last_phase = (int) phase;
		ereport(NOTICE,
				(errmsg("ease: 2/3 solve: %s %d%% (%.1f s)", phase_names[phase], percent, seconds_since(m->started))));
		m->last_notice = GetCurrentTimestamp();
	}
}

/* P = (G + lambda I)^-1 in the lower triangle */
static void
solve(EaseModel *m, double lambda)
{
	int			bad;

	for (int i = 0; i < m->n; i++)
		m->a[(size_t) i * m->n + i] = (double) m->customers[i] + lambda;
	m->started = m->last_notice = GetCurrentTimestamp();
	m->last_percent = -1;
	m->last_phase = -1;
	bad = ease_spd_inverse(m->a, m->n, solve_check, m);
	if (bad != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the EASE matrix is not positive definite"),
				 errdetail("Its leading minor of order %d (product " INT64_FORMAT ") is not: the pair counts do not fit the item counts.",
						   bad, m->ids[Min(bad, m->n) - 1]),
				 errhint("A pair must have no more customers than either of its products; check the count tables.")));
	ereport(NOTICE, (errmsg("ease: 2/3 solved %d products (%.1f s)", m->n, seconds_since(m->started))));
}

/* x ranks below y: smaller weight, or the same and a larger product id */
static bool
worse(const EaseModel *m, const Weight *x, const Weight *y)
{
	return x->w < y->w || (x->w == y->w && m->ids[x->j] > m->ids[y->j]);
}

/* keep the k best in a heap whose root is the worst kept */
static void
heap_offer(const EaseModel *m, Weight *heap, int *len, int k, Weight x)
{
	int			i;

	if (*len == k)
	{
		if (!worse(m, &heap[0], &x))
			return;
		i = 0;					/* replace the root, sift down */
		for (;;)
		{
			int			c = 2 * i + 1;

			if (c >= k)
				break;
			if (c + 1 < k && worse(m, &heap[c + 1], &heap[c]))
				c++;
			if (!worse(m, &heap[c], &x))
				break;
			heap[i] = heap[c];
			i = c;
		}
		heap[i] = x;
		return;
	}
	for (i = (*len)++; i > 0 && worse(m, &x, &heap[(i - 1) / 2]); i = (i - 1) / 2)
		heap[i] = heap[(i - 1) / 2];
	heap[i] = x;
}

static const EaseModel *sort_model;

static int
cmp_best_first(const void *a, const void *b)
{
	const Weight *x = a,
			   *y = b;

	return worse(sort_model, x, y) ? 1 : worse(sort_model, y, x) ? -1 : 0;
}

/* Row i's top-k positive weights B_ij = -P_ij / P_jj as one result row. */
static void
emit_row(EaseModel *m, int i, int k, Weight *heap, ReturnSetInfo *rsinfo)
{
	size_t		n = (size_t) m->n;
	int			len = 0;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Datum	   *ids,
			   *scores,
			   *counts;

	for (size_t j = 0; j < n; j++)
	{
		/* P_ij from the lower triangle, the count from the upper one */
		double		p = j > (size_t) i ? m->a[i * n + j] : m->a[j * n + i];
		Weight		x;

		if (j == (size_t) i)
			continue;
		x.w = -p / m->a[j * n + j];
		x.j = (int) j;
		if (x.w > 0.0)
			heap_offer(m, heap, &len, k, x);
	}
	if (len == 0)
		return;
	sort_model = m;
	qsort(heap, len, sizeof(Weight), cmp_best_first);
	ids = palloc(sizeof(Datum) * len);
	scores = palloc(sizeof(Datum) * len);
	counts = palloc(sizeof(Datum) * len);
	for (int r = 0; r < len; r++)
	{
		size_t		lo = (size_t) Min(i, heap[r].j),
					hi = (size_t) Max(i, heap[r].j);

		ids[r] = Int64GetDatum(m->ids[heap[r].j]);
		scores[r] = Float8GetDatum(heap[r].w);
		counts[r] = Int64GetDatum((int64) m->a[hi * n + lo]);
	}
	values[0] = Int64GetDatum(m->ids[i]);
	values[1] = PointerGetDatum(construct_array(ids, len, INT8OID, sizeof(int64), true, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(scores, len, FLOAT8OID, sizeof(double), true, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(counts, len, INT8OID, sizeof(int64), true, TYPALIGN_DOUBLE));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Every product's list, into the result. */
static void
emit_lists(EaseModel *m, int k, ReturnSetInfo *rsinfo)
{
	MemoryContext row_cxt = AllocSetContextCreate(m->cxt, "personalize EASE row", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	Weight	   *heap = MemoryContextAlloc(m->cxt, sizeof(Weight) * k);
	TimestampTz started = GetCurrentTimestamp();

	set_progress("personalize.ease: lists");
	for (int i = 0; i < m->n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		emit_row(m, i, k, heap, rsinfo);
		MemoryContextReset(row_cxt);
	}
	MemoryContextSwitchTo(old);
	ereport(NOTICE, (errmsg("ease: 3/3 lists of %d products (%.1f s)", m->n, seconds_since(started))));
}

/*
 * personalize._ease_lists(item_counts regclass, pair_counts regclass,
 * max_products integer, lambda double precision, k integer)
 */
Datum
personalize_ease_lists(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EaseModel	m;
	TimestampTz started = GetCurrentTimestamp();

	check_arguments(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	memset(&m, 0, sizeof(m));
	m.cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize EASE", ALLOCSET_DEFAULT_SIZES);
	set_progress("personalize.ease: read");
	SPI_connect();
	read_products(&m, PG_GETARG_OID(0), PG_GETARG_INT32(2));
	if (m.n >= 2)
		read_pairs(&m, PG_GETARG_OID(1));
	SPI_finish();
	ereport(NOTICE,
			(errmsg("ease: 1/3 read %d products and " INT64_FORMAT " pairs (%.1f s); the matrix takes %.0f MB",
					m.n, m.pairs, seconds_since(started), 8.0 * m.n * m.n / 1e6)));
	if (m.n >= 2)
	{
		solve(&m, PG_GETARG_FLOAT8(3));
		emit_lists(&m, PG_GETARG_INT32(4), rsinfo);
	}
	MemoryContextDelete(m.cxt);
	return (Datum) 0;
}
