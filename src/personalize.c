/*
 * personalize.c: module entry point. Defines the settings and nothing else;
 * each concern lives in its own file (the source layout is in docs/architecture.md).
 */
#include "personalize.h"

#include "utils/guc.h"

#include "guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Called once per backend when the library is loaded. */
void
_PG_init(void)
{
	personalize_define_gucs();
}
