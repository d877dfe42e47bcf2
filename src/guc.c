/*
 * guc.c: the personalize.* settings.
 */
#include "personalize.h"

#include "utils/guc.h"

int			personalize_neighbors_k = 50;

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

	MarkGUCPrefixReserved("personalize");
}
