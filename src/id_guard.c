/*
 * id_guard.c: interaction ids come from the identity sequence (issue 10,
 * defect 11).
 *
 * interactions.interaction_id is GENERATED ALWAYS, so a plain INSERT cannot
 * choose an id (428C9). But INSERT ... OVERRIDING SYSTEM VALUE and COPY FROM
 * still take the ids they are given, from any role that may insert, and an id
 * ahead of the sequence makes some later default insert fail with 23505 for
 * every session. This statement trigger refuses such ids from a role that may
 * not move the sequence itself: without UPDATE on the sequence (the privilege
 * setval() needs). A role that has it (the owner, a superuser, a restore) could
 * already break the numbering with setval(), so it keeps OVERRIDING SYSTEM
 * VALUE for migrations and pg_dump --inserts, and must advance the sequence
 * after (docs/reference.md).
 *
 * The trigger is not SECURITY DEFINER: it must see the role that inserts. It
 * reads the sequence with its owner's rights, since the application role has
 * no privilege on it.
 */
#include "personalize.h"

#include "catalog/dependency.h"
#include "catalog/pg_sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "id_guard.h"

PG_FUNCTION_INFO_V1(personalize_interactions_id_guard);

/* The smallest and largest id of the statement's new rows; false when there are none. */
static bool
new_id_range(TriggerData *td, AttrNumber attnum, int64 *lo, int64 *hi)
{
	Tuplestorestate *ts = td->tg_newtable;
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(td->tg_relation), &TTSOpsMinimalTuple);
	int			readptr;
	bool		any = false;

	/* our own read pointer, as the model trigger and a NamedTuplestoreScan take one */
	readptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_copy_read_pointer(ts, 0, readptr);
	tuplestore_select_read_pointer(ts, readptr);
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;
		int64		id = DatumGetInt64(slot_getattr(slot, attnum, &isnull));

		if (isnull)
			continue;
		*lo = any ? Min(*lo, id) : id;
		*hi = any ? Max(*hi, id) : id;
		any = true;
	}
	tuplestore_select_read_pointer(ts, 0);
	ExecDropSingleTupleTableSlot(slot);
	return any;
}

/*
 * The last value the sequence has handed out (or, never called yet, the one
 * before its next), read as owner; *increment gets its direction.
 */
static int64
sequence_last_given(Oid seqid, Oid owner, int64 *increment)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_user;
	int			save_sec;
	volatile Datum last = (Datum) 0;
	HeapTuple	tup;
	Form_pg_sequence seqform;
	int64		start;

	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "personalize: cache lookup failed for sequence %u", seqid);
	seqform = (Form_pg_sequence) GETSTRUCT(tup);
	start = seqform->seqstart;
	*increment = seqform->seqincrement;
	ReleaseSysCache(tup);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqid);
	fcinfo->args[0].isnull = false;
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		last = pg_sequence_last_value(fcinfo);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();

	/* never called (or setval(..., false)): nothing handed out before its start */
	if (fcinfo->isnull)
		return *increment > 0 ? start - 1 : start + 1;
	return DatumGetInt64(last);
}

/* Statement-level AFTER INSERT trigger on interactions: ids ahead of the sequence need its UPDATE privilege. */
Datum
personalize_interactions_id_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	AttrNumber	attnum;
	Oid			seqid;
	int64		lo,
				hi,
				last,
				increment;
	bool		ahead;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
		td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("personalize_interactions_id_guard must be an AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH STATEMENT trigger")));
	rel = td->tg_relation;
	attnum = SPI_fnumber(RelationGetDescr(rel), "interaction_id");
	if (attnum <= 0)
		elog(ERROR, "personalize: interactions has no interaction_id column");
	seqid = getIdentitySequence(RelationGetRelid(rel), attnum, true);
	/* no identity, or a role that may move the sequence anyway */
	if (!OidIsValid(seqid) || pg_class_aclcheck(seqid, GetUserId(), ACL_UPDATE) == ACLCHECK_OK)
		PG_RETURN_POINTER(NULL);
	if (!new_id_range(td, attnum, &lo, &hi))
		PG_RETURN_POINTER(NULL);

	last = sequence_last_given(seqid, rel->rd_rel->relowner, &increment);
	ahead = increment > 0 ? hi > last : lo < last;
	if (ahead)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to choose interaction ids ahead of their sequence"),
				 errdetail("interaction_id " INT64_FORMAT " is beyond " INT64_FORMAT ", the last id the sequence %s handed out: a later insert that takes its id from the sequence would collide with it.",
						   increment > 0 ? hi : lo, last, get_rel_name(seqid)),
				 errhint("Leave interaction_id out (it is GENERATED ALWAYS). Only a role with UPDATE on the sequence, such as the table owner, may insert chosen ids, and it must then advance the sequence with setval().")));
	PG_RETURN_POINTER(NULL);
}
