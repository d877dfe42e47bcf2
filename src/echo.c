/*
 * echo.c: error messages repeat the names a caller passed (an unknown variant,
 * experiment, flag, measure, parameter), and a name can be any length. Every
 * message goes through echo_name(), so what is echoed is at most
 * ECHO_MAX_CHARS characters: a longer name is cut at a character boundary and
 * marked with "...". personalize._echo(text) is the same rule for the SQL side.
 */
#include "personalize.h"

#include "mb/pg_wchar.h"

#include "echo.h"

/* s, or its first ECHO_KEEP_CHARS characters and "..." when longer than ECHO_MAX_CHARS */
const char *
echo_name(const char *s)
{
	int			len;
	int			keep;

	if (s == NULL)
		return "NULL";
	len = strlen(s);
	if (pg_mbstrlen_with_len(s, len) <= ECHO_MAX_CHARS)
		return s;
	keep = pg_mbcharcliplen(s, len, ECHO_KEEP_CHARS);
	return psprintf("%.*s...", keep, s);
}

PG_FUNCTION_INFO_V1(personalize_echo);

/* personalize._echo(s text): echo_name() for PL/pgSQL's messages */
Datum
personalize_echo(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(echo_name(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
