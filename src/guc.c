/*
 * guc.c: the personalize.* settings.
 */
#include "personalize.h"

#include "utils/datetime.h"
#include "utils/guc.h"

int			personalize_neighbors_k = 50;
int			personalize_neighbors_min_count = 2;
char	   *personalize_as_of = NULL;

/* personalize.as_of must be empty or parse as a timestamp with time zone. */
static bool
check_as_of(char **newval, void **extra, GucSource source)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (strlen(*newval) >= MAXDATELEN ||
		ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 ||
		dtype != DTK_DATE)
	{
		GUC_check_errdetail("\"%s\" is not a timestamp; for example '2011-12-10 00:00+00', or empty for now().", *newval);
		return false;
	}
	return true;
}

/* Define every personalize.* GUC and reserve the prefix. */
void
personalize_define_gucs(void)
{
	DefineCustomIntVariable("personalize.neighbors_k",
							"Neighbours kept per product in the serving lists.",
							"Takes effect for lists refreshed after the change.",
							&personalize_neighbors_k,
							50, 1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.neighbors_min_count",
							"Fewest co-occurring customers a pair needs to enter a neighbour list.",
							"Pairs seen by one customer only are mostly noise.",
							&personalize_neighbors_min_count,
							2, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("personalize.as_of",
							   "Time recommend() treats as now (recency decay, active campaigns); empty means now().",
							   "For evaluation on historical data and for tests.",
							   &personalize_as_of,
							   "",
							   PGC_USERSET, 0,
							   check_as_of, NULL, NULL);

	MarkGUCPrefixReserved("personalize");
}

/* The time recommend() scores against: personalize.as_of, or the transaction start. */
TimestampTz
personalize_now(void)
{
	if (personalize_as_of == NULL || personalize_as_of[0] == '\0')
		return GetCurrentTransactionStartTimestamp();
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
												   CStringGetDatum(personalize_as_of),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
}
