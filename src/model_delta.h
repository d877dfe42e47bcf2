/*
 * model_delta.h: one customer's items around a statement, and the deltas
 * they cause (see model_delta.c).
 */
#ifndef MODEL_DELTA_H
#define MODEL_DELTA_H

typedef struct CustomerItem
{
	int64		customer_id;
	int64		product_id;
	/* values after the statement (events == 0: the row goes away) */
	int32		events;
	int32		purchases;
	double		weight;
	int64		first_id;
	TimestampTz last_at;
	bool		present_old;	/* a customer_items row existed */
	bool		in_model_old;
	bool		in_model_new;
	bool		changed;		/* values differ from the stored row */
} CustomerItem;

/* a count change: pair (a < b), or a single product (a == b) */
typedef struct Delta
{
	int64		a;
	int64		b;
	int64		d;
} Delta;

typedef struct DeltaBuffer
{
	Delta	   *items;
	Size		n;
	Size		cap;
} DeltaBuffer;

extern int	customer_model_delta(CustomerItem *items, int n, int cap,
								 DeltaBuffer *pairs, DeltaBuffer *singles, int64 *max_first_id);
extern void delta_buffer_add(DeltaBuffer *buf, int64 a, int64 b, int64 d);
extern void delta_buffer_merge(DeltaBuffer *buf);

#endif							/* MODEL_DELTA_H */
