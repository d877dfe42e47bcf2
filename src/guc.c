/*
 * guc.c: the personalize.* settings.
 */
#include "personalize.h"

#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/varlena.h"

#include "ease.h"
#include "guc.h"

int			personalize_neighbors_k = 50;
bool		personalize_allow_drop_with_data = false;
int			personalize_neighbors_min_count = 2;
char	   *personalize_as_of = NULL;
int			personalize_model_lock_wait = 60000;

/* the EASE model (ease.c, refresh_ease()) */
int			personalize_ease_products = 10000;
double		personalize_ease_lambda = 100.0;
int			personalize_ease_k = 100;

/* personalize.health thresholds (seconds, products) and the pg_cron jobs it expects */
int			personalize_health_refresh_warn = 600;
int			personalize_health_refresh_critical = 3600;
int			personalize_health_backlog_warn = 10000;
int			personalize_health_backlog_critical = 100000;
int			personalize_health_llm_warn = 129600;
int			personalize_health_llm_critical = 604800;
char	   *personalize_health_expected_jobs = NULL;

/* OpenAI client (http.c, openai.c) and the LLM cold start */
char	   *personalize_openai_base_url = NULL;
char	   *personalize_openai_api_key = NULL;
char	   *personalize_openai_api_key_file = NULL;
char	   *personalize_openai_model = NULL;
char	   *personalize_openai_embedding_model = NULL;
int			personalize_openai_embedding_dimensions = 256;
int			personalize_openai_concurrency = 4;
int			personalize_openai_connect_timeout = 10000;
int			personalize_openai_timeout = 120000;
int			personalize_openai_max_retries = 5;
int			personalize_openai_retry_base = 500;
int			personalize_openai_response_budget = 512;
int			personalize_llm_customers_per_request = 25;
int			personalize_llm_max_interactions = 3;
int			personalize_llm_ttl = 10080;
int			personalize_llm_k = 10;
int			personalize_llm_candidates = 100;

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
	/* a date the parser takes but timestamptz cannot hold would fail later, in recommend() */
	if (tm.tm_year < 1 || tm.tm_year > 294000)
	{
		GUC_check_errdetail("\"%s\" is outside the timestamps PostgreSQL can hold (years 1 to 294000 here).", *newval);
		return false;
	}
	return true;
}

/*
 * personalize.openai_base_url must be an http:// or https:// URL: the key is
 * sent there, and libcurl would otherwise speak file://, ftp:// and more.
 */
static bool
check_base_url(char **newval, void **extra, GucSource source)
{
	const char *s = *newval ? *newval : "";

	if (pg_strncasecmp(s, "https://", 8) != 0 && pg_strncasecmp(s, "http://", 7) != 0)
	{
		GUC_check_errdetail("The OpenAI base URL must start with https:// or http://.");
		return false;
	}
	for (const char *p = s; *p; p++)
		if ((unsigned char) *p <= 0x20 || *p == 0x7f)
		{
			GUC_check_errdetail("The OpenAI base URL must not contain blanks or control characters.");
			return false;
		}
	/* every role can read this setting: no user or password in it (user:pass@host) */
	{
		const char *host = strstr(s, "://") + 3;
		size_t		authority = strcspn(host, "/?#");

		if (memchr(host, '@', authority) != NULL)
		{
			GUC_check_errdetail("The OpenAI base URL must not carry a user or password: every role can read this setting. Put the key in personalize.openai_api_key_file.");
			return false;
		}
	}
	return true;
}

/*
 * personalize.openai_api_key must not be stored where every user can read it:
 * ALTER DATABASE/ROLE ... SET keep it in pg_db_role_setting and a function's SET
 * clause in pg_proc, both readable by PUBLIC. Those are validated (PGC_S_TEST) and
 * applied (PGC_S_DATABASE, PGC_S_USER, PGC_S_DATABASE_USER) with these sources, so
 * a non-empty key from them is refused. The key file is the way that stays
 * private everywhere; SET in a session is private to it; the server configuration
 * files need the library preloaded (see warn_unprotected_key), and the postmaster
 * logs a changed value when the configuration is reloaded.
 */
static bool api_key_from_file = false;	/* a non-empty key came from postgresql.conf */

static bool
check_api_key(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (source == PGC_S_FILE)
		api_key_from_file = true;

	/*
	 * Refused by raising our own error rather than returning false: the
	 * generic "invalid value for parameter" message would echo the key.
	 */
	if (source == PGC_S_TEST)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("personalize.openai_api_key cannot be stored with ALTER DATABASE, ALTER ROLE or a function's SET clause"),
				 errdetail("Those keep it in pg_db_role_setting or pg_proc, which every user can read."),
				 errhint("Put the key in a file only the server can read and name the file in personalize.openai_api_key_file (that setting may be stored anywhere).")));

	/* one stored before the library was loaded: not used, and not echoed */
	if (source == PGC_S_DATABASE || source == PGC_S_USER || source == PGC_S_DATABASE_USER)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("personalize.openai_api_key set with ALTER DATABASE or ALTER ROLE is ignored"),
				 errdetail("It is stored in pg_db_role_setting, which every user can read."),
				 errhint("Remove it with ALTER DATABASE ... RESET or ALTER ROLE ... RESET, replace the key at OpenAI, and use personalize.openai_api_key_file.")));
		(*newval)[0] = '\0';
	}
	return true;
}

/*
 * A key in the server configuration is readable by anyone with current_setting()
 * in a session that has not loaded this library yet (an unknown setting is a
 * placeholder without GUC_SUPERUSER_ONLY). Preloading defines it in the postmaster,
 * before any session; without that, say so wherever the library gets loaded.
 */
static void
warn_unprotected_key(void)
{
	if (api_key_from_file && !process_shared_preload_libraries_in_progress)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("personalize.openai_api_key is set in the server configuration, but personalize is not in shared_preload_libraries"),
				 errdetail("Until a session loads personalize, any user can read that setting with current_setting()."),
				 errhint("Add personalize to shared_preload_libraries, or keep the key in a file named by personalize.openai_api_key_file.")));
}

/* The OpenAI client's and the LLM cold start's settings (all superuser-only to change). */
static void
define_openai_gucs(void)
{
	DefineCustomStringVariable("personalize.openai_base_url",
							   "Base URL of the OpenAI API (paths such as /chat/completions are appended).",
							   "Only http:// and https:// URLs are accepted; redirects are not followed.",
							   &personalize_openai_base_url,
							   "https://api.openai.com/v1",
							   PGC_SUSET, 0,
							   check_base_url, NULL, NULL);

	DefineCustomStringVariable("personalize.openai_api_key",
							   "OpenAI API key (secret: visible to superusers only).",
							   "When empty, the first line of personalize.openai_api_key_file is used.",
							   &personalize_openai_api_key,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_api_key, NULL, NULL);

	DefineCustomStringVariable("personalize.openai_api_key_file",
							   "File whose first line is the OpenAI API key, read at each request.",
							   "Used when personalize.openai_api_key is empty; keeps the key out of the configuration files.",
							   &personalize_openai_api_key_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("personalize.openai_model",
							   "OpenAI chat model that writes the cold-start recommendations.",
							   NULL,
							   &personalize_openai_model,
							   "gpt-4o-mini",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("personalize.openai_embedding_model",
							   "OpenAI embedding model for product content similarity.",
							   NULL,
							   &personalize_openai_embedding_model,
							   "text-embedding-3-small",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_embedding_dimensions",
							"Dimensions asked of the embedding model; 0 sends none (the model's default).",
							NULL,
							&personalize_openai_embedding_dimensions,
							256, 0, 16000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_concurrency",
							"OpenAI requests in flight at once per call.",
							NULL,
							&personalize_openai_concurrency,
							4, 1, 64,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_connect_timeout",
							"Longest wait to connect to the OpenAI API.",
							NULL,
							&personalize_openai_connect_timeout,
							10000, 1, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_timeout",
							"Longest time one OpenAI request may take, connection included.",
							"A request that times out is retried like a connection error.",
							&personalize_openai_timeout,
							120000, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_max_retries",
							"Retries of an OpenAI request after a connection error, timeout, 408, 409, 429 or 5xx.",
							NULL,
							&personalize_openai_max_retries,
							5, 0, 20,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_retry_base",
							"First retry delay of the exponential backoff (full jitter, at most 60 s).",
							"The server's Retry-After and x-ratelimit-reset-* headers can only lengthen the wait.",
							&personalize_openai_retry_base,
							500, 0, 60000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.openai_response_budget",
							"Most response bytes one OpenAI call holds in memory at once, over all its requests.",
							"A response that would exceed it fails (error_code response_budget) and is recorded; the others are kept.",
							&personalize_openai_response_budget,
							512, 16, 16384,
							PGC_SUSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.llm_customers_per_request",
							"Customers described in one chat request of the LLM cold start.",
							NULL,
							&personalize_llm_customers_per_request,
							25, 1, 500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.llm_max_interactions",
							"A customer with fewer interactions than this is cold: the LLM refresh asks about them.",
							"The default matches hybrid's llm_history (3): every customer asked about gets the answer served.",
							&personalize_llm_max_interactions,
							3, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.llm_ttl",
							"How long LLM recommendations stay fresh before they are asked for again.",
							NULL,
							&personalize_llm_ttl,
							10080, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.llm_k",
							"Recommendations asked of the LLM per customer.",
							NULL,
							&personalize_llm_k,
							10, 1, 100,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("personalize.llm_candidates",
							"Catalogue products offered to the LLM to choose from.",
							NULL,
							&personalize_llm_candidates,
							100, 10, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/* The <what> of the pg_cron jobs schedule_*() create (personalize-<what>@<database>). */
static const char *const known_jobs[] = {"refresh", "llm-refresh", "llm-batch-submit", "llm-batch-poll", "embed-products", "maintenance",
"refresh-ease"};

/* personalize.health_expected_jobs: a comma-separated list of known job names, or empty. */
static bool
check_expected_jobs(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	copy = pstrdup(*newval);
	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("A comma-separated list of job names is expected.");
		return false;
	}
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		bool		known = false;

		for (size_t i = 0; i < lengthof(known_jobs); i++)
			known |= strcmp(name, known_jobs[i]) == 0;
		if (!known)
		{
			GUC_check_errdetail("\"%s\" is not a personalize job; known: refresh, llm-refresh, llm-batch-submit, llm-batch-poll, embed-products, maintenance, refresh-ease.",
								strlen(name) > 64 ? "(a long name)" : name);
			return false;
		}
	}
	return true;
}

/* The thresholds of personalize.health (docs/reference.md, "Health"). */
static void
define_health_gucs(void)
{
	DefineCustomIntVariable("personalize.health_refresh_warn",
							"Age of the last successful refresh (and of the oldest dirty product, and of the popularity list) at which personalize.health says warn.",
							"0 turns the warning off.",
							&personalize_health_refresh_warn,
							600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.health_refresh_critical",
							"Age of the last successful refresh (and of the oldest dirty product, and of the popularity list) at which personalize.health says critical.",
							"0 turns it off.",
							&personalize_health_refresh_critical,
							3600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.health_backlog_warn",
							"Dirty products (neighbour lists waiting for the refresh) at which personalize.health says warn.",
							"0 turns the warning off.",
							&personalize_health_backlog_warn,
							10000, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.health_backlog_critical",
							"Dirty products at which personalize.health says critical.",
							"0 turns it off.",
							&personalize_health_backlog_critical,
							100000, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.health_llm_warn",
							"Age of the last OpenAI run of a kind (refresh, batch_submit, embed) at which personalize.health says warn.",
							"0 turns the warning off.",
							&personalize_health_llm_warn,
							129600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.health_llm_critical",
							"Age of the last OpenAI run of a kind at which personalize.health says critical.",
							"0 turns it off.",
							&personalize_health_llm_critical,
							604800, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("personalize.health_expected_jobs",
							   "The pg_cron jobs of this database that personalize.health expects (comma-separated: refresh, llm-refresh, llm-batch-submit, llm-batch-poll, embed-products, maintenance, refresh-ease).",
							   "A missing or inactive expected job is critical; empty when another scheduler runs the jobs.",
							   &personalize_health_expected_jobs,
							   "refresh",
							   PGC_USERSET, 0,
							   check_expected_jobs, NULL, NULL);
}

/* The EASE model's settings (refresh_ease(), docs/reference.md "EASE"). */
static void
define_ease_gucs(void)
{
	DefineCustomIntVariable("personalize.ease_products",
							"Products in the EASE model: the most frequent active ones (refresh_ease()).",
							"Its matrix takes 8 n^2 bytes of memory while refresh_ease() runs (10000: 0.8 GB); the time grows as n^3.",
							&personalize_ease_products,
							10000, EASE_MIN_PRODUCTS, EASE_MAX_PRODUCTS,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomRealVariable("personalize.ease_lambda",
							 "L2 regularisation of the EASE model (added to the Gram matrix's diagonal).",
							 "Larger values shrink the weights of rarely bought products.",
							 &personalize_ease_lambda,
							 100.0, 1e-6, 1e12,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("personalize.ease_k",
							"Neighbours kept per product in the EASE lists.",
							"Takes effect at the next refresh_ease().",
							&personalize_ease_k,
							100, 1, EASE_MAX_K,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
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

	DefineCustomIntVariable("personalize.model_lock_wait",
							"Longest time rebuild() and a TRUNCATE of interactions try to take the model's locks.",
							"They try in attempts of at most 100 ms, so that nobody queues behind them for longer; then 55P03. 0: one attempt.",
							&personalize_model_lock_wait,
							60000, 0, 86400000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("personalize.allow_drop_with_data",
							 "Lets DROP EXTENSION personalize delete products, customers and interactions that hold rows.",
							 "Off: such a drop is refused (see Uninstalling in docs/reference.md). Set it for the one session that uninstalls.",
							 &personalize_allow_drop_with_data,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	define_openai_gucs();
	define_health_gucs();
	define_ease_gucs();

	MarkGUCPrefixReserved("personalize");
	warn_unprotected_key();
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

PG_FUNCTION_INFO_V1(personalize_engine_settings);

/*
 * personalize._engine_settings(): the settings the SQL side of the engine reads
 * (neighbors_k, neighbors_min_count, model_lock_wait, ease_products, ease_lambda, ease_k, as_of), validated. Calling it loads this
 * library first: current_setting() in a session that has not loaded it returns
 * an unchecked placeholder (ALTER DATABASE ... SET personalize.neighbors_k = 0
 * once made a refresh delete every list).
 */
Datum
personalize_engine_settings(PG_FUNCTION_ARGS)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"neighbors_k\": %d, \"neighbors_min_count\": %d, \"model_lock_wait\": %d, "
					 "\"ease_products\": %d, \"ease_lambda\": %.17g, \"ease_k\": %d, \"as_of\": ",
					 personalize_neighbors_k, personalize_neighbors_min_count, personalize_model_lock_wait,
					 personalize_ease_products, personalize_ease_lambda, personalize_ease_k);
	if (personalize_as_of == NULL || personalize_as_of[0] == '\0')
		appendStringInfoString(&s, "null}");
	else
	{
		escape_json(&s, personalize_as_of);
		appendStringInfoChar(&s, '}');
	}
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}

PG_FUNCTION_INFO_V1(personalize_llm_settings);

/*
 * personalize._llm_settings(): the LLM cold start's settings as one jsonb object,
 * for the PL/pgSQL procedures. Calling it loads this library, which is what defines
 * the settings: current_setting() in a fresh session would not know them yet. The
 * key itself is never included, only whether one is configured.
 */
Datum
personalize_llm_settings(PG_FUNCTION_ARGS)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"openai_model\": ");
	escape_json(&s, personalize_openai_model ? personalize_openai_model : "");
	appendStringInfoString(&s, ", \"openai_embedding_model\": ");
	escape_json(&s, personalize_openai_embedding_model ? personalize_openai_embedding_model : "");
	appendStringInfo(&s, ", \"openai_embedding_dimensions\": %d, \"openai_concurrency\": %d, "
					 "\"llm_customers_per_request\": %d, \"llm_max_interactions\": %d, "
					 "\"llm_ttl_minutes\": %d, \"llm_k\": %d, \"llm_candidates\": %d, "
					 "\"api_key_configured\": %s}",
					 personalize_openai_embedding_dimensions, personalize_openai_concurrency,
					 personalize_llm_customers_per_request, personalize_llm_max_interactions,
					 personalize_llm_ttl, personalize_llm_k, personalize_llm_candidates,
					 ((personalize_openai_api_key && personalize_openai_api_key[0]) ||
					  (personalize_openai_api_key_file && personalize_openai_api_key_file[0])) ? "true" : "false");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}

PG_FUNCTION_INFO_V1(personalize_health_settings);

/*
 * personalize._health_settings(): the thresholds of personalize.health and the
 * jobs it expects, validated (calling it loads this library, like
 * _engine_settings()). Seconds and products; 0 means the check is off.
 */
Datum
personalize_health_settings(PG_FUNCTION_ARGS)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"refresh_warn\": %d, \"refresh_critical\": %d, \"backlog_warn\": %d, "
					 "\"backlog_critical\": %d, \"llm_warn\": %d, \"llm_critical\": %d, \"expected_jobs\": ",
					 personalize_health_refresh_warn, personalize_health_refresh_critical,
					 personalize_health_backlog_warn, personalize_health_backlog_critical,
					 personalize_health_llm_warn, personalize_health_llm_critical);
	escape_json(&s, personalize_health_expected_jobs ? personalize_health_expected_jobs : "");
	appendStringInfoChar(&s, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(s.data)));
}
