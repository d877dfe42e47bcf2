/*
 * openai.c: the OpenAI side of the HTTP client. Builds URLs and headers from
 * the personalize.openai_* settings, reads the API key, turns OpenAI's error
 * bodies into error/error_code, and exposes _openai_post, _openai_get and
 * _openai_upload to SQL. The transport itself is http.c.
 *
 * The API key is a secret: it goes into the Authorization header and nowhere
 * else. Every error text and every body handed back is scrubbed of it (and
 * error texts of anything that looks like an OpenAI key, "sk-..."), because
 * OpenAI's 401 message quotes part of the key it was given.
 */
#include "personalize.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "common/jsonapi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "guc.h"
#include "http.h"

PG_FUNCTION_INFO_V1(personalize_openai_post);
PG_FUNCTION_INFO_V1(personalize_openai_get);
PG_FUNCTION_INFO_V1(personalize_openai_upload);
PG_FUNCTION_INFO_V1(personalize_redact_columns);

/* Error bodies larger than this are not parsed for error.message. */
#define ERROR_BODY_PARSE_MAX	(1024 * 1024)

/* Deeper JSON is not searched: the parser's stack check would throw. */
#define ERROR_BODY_MAX_DEPTH	64

#define REDACTED "[redacted]"

/* Bytes of a response converted to the database encoding per call. */
#define CONVERT_CHUNK	(64 * 1024)

/* ---------- the API key ---------- */

/*
 * The first line of the key file, blanks trimmed; NULL if it cannot be read and
 * quiet (an error otherwise).
 */
static char *
key_from_file(const char *path, bool quiet)
{
	char		line[4096];
	FILE	   *f = AllocateFile(path, PG_BINARY_R);
	char	   *start;
	size_t		len;
	char	   *key;

	if (f == NULL)
	{
		if (quiet)
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open OpenAI API key file \"%s\": %m", path),
				 errhint("personalize.openai_api_key_file must name a file the server can read.")));
	}
	if (fgets(line, sizeof(line), f) == NULL)
	{
		bool		failed = ferror(f);

		FreeFile(f);
		if (failed && quiet)
			return NULL;
		if (failed)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read OpenAI API key file \"%s\": %m", path)));
		line[0] = '\0';
	}
	else
		FreeFile(f);
	start = line;
	while (*start == ' ' || *start == '\t')
		start++;
	len = strlen(start);
	while (len > 0 && (start[len - 1] == '\n' || start[len - 1] == '\r' ||
					   start[len - 1] == ' ' || start[len - 1] == '\t'))
		len--;
	key = pnstrdup(start, len);
	explicit_bzero(line, sizeof(line));
	return key;
}

/* The key from personalize.openai_api_key, else the first line of the key file. */
static char *
openai_api_key(void)
{
	char	   *key;

	if (personalize_openai_api_key != NULL && personalize_openai_api_key[0] != '\0')
		key = pstrdup(personalize_openai_api_key);
	else if (personalize_openai_api_key_file != NULL && personalize_openai_api_key_file[0] != '\0')
	{
		key = key_from_file(personalize_openai_api_key_file, false);
		if (key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("OpenAI API key file \"%s\" is empty", personalize_openai_api_key_file),
					 errdetail("The key is read from the file's first line.")));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no OpenAI API key is configured"),
				 errhint("A superuser sets personalize.openai_api_key, or personalize.openai_api_key_file to a file holding the key, for example with ALTER SYSTEM.")));

	/* a line break in the key would smuggle headers into the request */
	for (const char *p = key; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the OpenAI API key contains control characters")));
	return key;
}

/* ---------- redaction ---------- */

static bool
sk_char(char c)
{
	return isalnum((unsigned char) c) || c == '-' || c == '_' || c == '*';
}

/* Length of "-" or of its JSON escape "\u002d" at p, else 0. */
static int
dash_at(const char *p)
{
	if (*p == '-')
		return 1;
	if (p[0] == '\\' && p[1] == 'u' && strncmp(p + 2, "002", 3) == 0 && (p[5] == 'd' || p[5] == 'D'))
		return 6;
	return 0;
}

/*
 * s with every occurrence of key replaced, and with sk_tokens every
 * "sk-..." word too, its dashes plain or JSON-escaped ("sk\u002d..."). Returns
 * s itself when there is nothing to replace.
 */
static char *
redact(char *s, const char *key, bool sk_tokens)
{
	size_t		keylen = key ? strlen(key) : 0;
	StringInfoData out;
	const char *p = s;

	if (s == NULL)
		return NULL;
	if ((keylen == 0 || strstr(s, key) == NULL) && (!sk_tokens || strstr(s, "sk") == NULL))
		return s;
	initStringInfo(&out);
	while (*p)
	{
		if (keylen > 0 && strncmp(p, key, keylen) == 0)
		{
			appendStringInfoString(&out, REDACTED);
			p += keylen;
		}
		else if (sk_tokens && strncmp(p, "sk", 2) == 0 && dash_at(p + 2) > 0 && (p == s || !sk_char(p[-1])))
		{
			appendStringInfoString(&out, REDACTED);
			p += 2;
			while (*p && (sk_char(*p) || dash_at(p) > 0))
				p += Max(dash_at(p), 1);
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

/* ---------- error.message and error.code ---------- */

typedef struct ErrorParse
{
	int			depth;			/* objects and arrays open */
	bool		top_is_error;	/* the current top-level field is "error" */
	bool		in_error;		/* inside the top-level "error" object */
	char	   *field;			/* current field of the error object */
	char	   *message;
	char	   *code;
	char	   *type;
} ErrorParse;

static void
ep_object_start(void *state)
{
	ErrorParse *ep = state;

	ep->depth++;
	if (ep->depth == 2 && ep->top_is_error)
		ep->in_error = true;
}

static void
ep_object_end(void *state)
{
	ErrorParse *ep = state;

	if (ep->depth == 2)
		ep->in_error = false;
	ep->depth--;
}

static void
ep_array_start(void *state)
{
	((ErrorParse *) state)->depth++;
}

static void
ep_array_end(void *state)
{
	((ErrorParse *) state)->depth--;
}

static void
ep_field_start(void *state, char *fname, bool isnull)
{
	ErrorParse *ep = state;

	if (ep->depth == 1)
		ep->top_is_error = (strcmp(fname, "error") == 0);
	else if (ep->depth == 2 && ep->in_error)
		ep->field = fname;
}

static void
ep_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ErrorParse *ep = state;

	if (tokentype == JSON_TOKEN_NULL)
		return;
	/* {"error": "text"} */
	if (ep->depth == 1 && ep->top_is_error && tokentype == JSON_TOKEN_STRING)
		ep->message = token;
	else if (ep->depth == 2 && ep->in_error && ep->field != NULL)
	{
		if (strcmp(ep->field, "message") == 0 && tokentype == JSON_TOKEN_STRING)
			ep->message = token;
		else if (strcmp(ep->field, "code") == 0)
			ep->code = token;
		else if (strcmp(ep->field, "type") == 0 && tokentype == JSON_TOKEN_STRING)
			ep->type = token;
	}
}

/* Whether JSON nesting (outside strings) stays within max. */
static bool
json_depth_ok(const char *s, size_t len, int max)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > max)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/*
 * In a database that is not UTF-8, the parser converts \uXXXX escapes to the
 * server encoding and throws when a character has no equivalent; turn every
 * non-ASCII escape into "\u003f" ('?', same length) so it cannot.
 */
static void
json_ascii_escapes(char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
	{
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 5 < len &&
			isxdigit((unsigned char) s[i + 2]) && isxdigit((unsigned char) s[i + 3]) &&
			isxdigit((unsigned char) s[i + 4]) && isxdigit((unsigned char) s[i + 5]) &&
			!(s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] >= '0' && s[i + 4] <= '7'))
			memcpy(s + i + 2, "003f", 4);
		i++;					/* skip the escaped character */
	}
}

/*
 * Find error.message and error.code (or error.type) in an OpenAI error body.
 * Never throws on bad input: invalid JSON just yields nothing. Results are
 * palloc'd in the current context.
 */
static void
openai_error_fields(const char *body, size_t len, char **message, char **code)
{
	MemoryContext cxt;
	MemoryContext old;
	ErrorParse	ep = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	char	   *copy;

	*message = *code = NULL;
	if (body == NULL || len == 0 || len > ERROR_BODY_PARSE_MAX ||
		!json_depth_ok(body, len, ERROR_BODY_MAX_DEPTH))
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "personalize error body", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	copy = pnstrdup(body, len);
	if (GetDatabaseEncoding() != PG_UTF8)
		json_ascii_escapes(copy, len);
	sem.semstate = &ep;
	sem.object_start = ep_object_start;
	sem.object_end = ep_object_end;
	sem.array_start = ep_array_start;
	sem.array_end = ep_array_end;
	sem.object_field_start = ep_field_start;
	sem.scalar = ep_scalar;
	lex = makeJsonLexContextCstringLen(copy, (int) len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		ep.message = ep.code = ep.type = NULL;
	MemoryContextSwitchTo(old);

	if (ep.message != NULL)
		*message = pstrdup(ep.message);
	if (ep.code != NULL)
		*code = pstrdup(ep.code);
	else if (ep.type != NULL)
		*code = pstrdup(ep.type);
	MemoryContextDelete(cxt);
}

/* ---------- the body in the database encoding ---------- */

/* Append the JSON escape of the code point cp: \uXXXX, a surrogate pair above U+FFFF. */
static void
append_json_escape(StringInfo out, pg_wchar cp)
{
	if (cp > 0xFFFF)
	{
		cp -= 0x10000;
		appendStringInfo(out, "\\u%04X\\u%04X", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
	}
	else
		appendStringInfo(out, "\\u%04X", cp);
}

/*
 * src (len bytes of valid UTF-8) in the database encoding, never an error for
 * a character the encoding lacks: such a character (’ — “ or an emoji in
 * LATIN1) becomes its JSON escape. pg_any_to_server() would throw instead,
 * and one answer would end the whole call with every other answer in it; the
 * escape makes that answer alone fail where it is parsed (22P05), and the
 * caller rejects it. Inside a JSON string the escape means the same
 * character; outside one the text was no valid JSON to begin with.
 */
static char *
utf8_to_server_escaped(const char *src, size_t len, size_t *outlen)
{
	int			enc = GetDatabaseEncoding();
	Oid			proc = FindDefaultConversionProc(PG_UTF8, enc);
	int			bufsize = CONVERT_CHUNK * MAX_CONVERSION_GROWTH + 1;
	unsigned char *buf;
	StringInfoData out;
	size_t		pos = 0;

	if (!OidIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("default conversion function for encoding \"%s\" to \"%s\" does not exist",
						pg_encoding_to_char(PG_UTF8), pg_encoding_to_char(enc))));
	buf = palloc(bufsize);
	initStringInfo(&out);
	while (pos < len)
	{
		size_t		chunk = Min(len - pos, CONVERT_CHUNK);
		int			done;
		int			charlen;

		CHECK_FOR_INTERRUPTS();
		done = pg_do_encoding_conversion_buf(proc, PG_UTF8, enc, (unsigned char *) src + pos, (int) chunk,
											 buf, bufsize, true);
		appendBinaryStringInfo(&out, (char *) buf, strlen((char *) buf));
		pos += done;
		if ((size_t) done == chunk)
			continue;
		/* stopped at a character: cut by the chunk's end, or untranslatable */
		charlen = Min((size_t) pg_utf_mblen((const unsigned char *) src + pos), len - pos);
		if (done > 0 && pos + charlen > pos - done + chunk)
			continue;			/* the next chunk starts with it */
		append_json_escape(&out, utf8_to_unicode((const unsigned char *) src + pos));
		pos += charlen;
	}
	pfree(buf);
	*outlen = out.len;
	return out.data;
}

/*
 * The judge http.c calls on every response: make the body valid text in the
 * database encoding, name the error, and stop the run on insufficient_quota.
 */
static HttpVerdict
openai_judge(HttpRequest *req, HttpVerdict proposed, void *arg)
{
	int			enc = GetDatabaseEncoding();
	char	   *message;
	char	   *code;

	if (!pg_verify_mbstr(PG_UTF8, req->response, (int) req->response_len, true))
	{
		req->response = NULL;
		req->response_len = 0;
		req->error = psprintf("HTTP %d: the response body is not valid UTF-8 text", req->status);
		req->error_code = "transport";
		return HTTP_DONE;
	}
	if (enc != PG_UTF8 && enc != PG_SQL_ASCII && req->response != NULL)
		req->response = utf8_to_server_escaped(req->response, req->response_len, &req->response_len);

	if (req->status >= 200 && req->status < 300)
		return proposed;

	openai_error_fields(req->response, req->response_len, &message, &code);
	req->error = message ? psprintf("HTTP %d: %s", req->status, message)
		: psprintf("HTTP %d", req->status);
	req->error_code = code ? code : psprintf("http_%d", req->status);
	if (code != NULL && strcmp(code, "insufficient_quota") == 0)
		return HTTP_STOP;
	return proposed;
}

/* ---------- SQL functions ---------- */

/* base_url + path, with exactly one slash between them */
static char *
openai_url(const char *path)
{
	const char *base = personalize_openai_base_url ? personalize_openai_base_url : "";
	size_t		blen = strlen(base);

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	while (*path == '/')
		path++;
	return psprintf("%.*s/%s", (int) blen, base, path);
}

/* Run the requests with the settings' options and return them as the SRF's rows. */
static void
openai_run(FunctionCallInfo fcinfo, HttpRequest *reqs, int n, bool json)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *key = openai_api_key();
	const char *headers[2];
	HttpOptions opts = {0};

	InitMaterializedSRF(fcinfo, 0);

	headers[0] = psprintf("Authorization: Bearer %s", key);
	headers[1] = "Content-Type: application/json";
	opts.headers = headers;
	opts.nheaders = json ? 2 : 1;
	opts.concurrency = personalize_openai_concurrency;
	opts.connect_timeout_ms = personalize_openai_connect_timeout;
	opts.timeout_ms = personalize_openai_timeout;
	opts.max_retries = personalize_openai_max_retries;
	opts.retry_base_ms = personalize_openai_retry_base;
	opts.budget = (size_t) personalize_openai_response_budget * 1024 * 1024;
	opts.judge = openai_judge;

	http_run(reqs, n, &opts);

	explicit_bzero((char *) headers[0], strlen(headers[0]));
	for (int i = 0; i < n; i++)
	{
		HttpRequest *r = &reqs[i];
		bool		ok = r->status >= 200 && r->status < 300;
		Datum		values[7];
		bool		nulls[7] = {0};
		char	   *body;
		char	   *error;

		/* a key shorter than 8 characters is no secret worth mangling bodies for */
		body = redact(r->response, strlen(key) >= 8 ? key : NULL, !ok);
		error = redact(r->error, key, true);

		values[0] = Int32GetDatum(i + 1);
		values[1] = Int32GetDatum(r->status);
		values[2] = body ? CStringGetTextDatum(body) : (Datum) 0;
		nulls[2] = body == NULL;
		values[3] = Int32GetDatum(r->attempts);
		values[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
		nulls[4] = error == NULL;
		values[5] = r->error_code ? CStringGetTextDatum(r->error_code) : (Datum) 0;
		nulls[5] = r->error_code == NULL;
		values[6] = Float8GetDatum(r->elapsed_ms);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	explicit_bzero(key, strlen(key));
}

/* Request text in UTF-8, as OpenAI wants it, from text in the database encoding. */
static char *
utf8_text(text *t, size_t *len)
{
	char	   *s = text_to_cstring(t);
	char	   *u = pg_server_to_any(s, strlen(s), PG_UTF8);

	*len = strlen(u);
	return u;
}

/* personalize._openai_post(path, bodies): POST each body (JSON), concurrently. */
Datum
personalize_openai_post(PG_FUNCTION_ARGS)
{
	char	   *url = openai_url(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *elnulls;
	int			n;
	HttpRequest *reqs;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elnulls, &n);
	reqs = palloc0(sizeof(HttpRequest) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (elnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("request body %d is NULL", i + 1),
					 errdetail("Every element of bodies is sent as a request.")));
		reqs[i].url = url;
		reqs[i].body = utf8_text(DatumGetTextPP(elems[i]), &reqs[i].body_len);
	}
	openai_run(fcinfo, reqs, n, true);
	return (Datum) 0;
}

/* personalize._openai_get(path): one GET. */
Datum
personalize_openai_get(PG_FUNCTION_ARGS)
{
	HttpRequest *req = palloc0(sizeof(HttpRequest));

	req->url = openai_url(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	openai_run(fcinfo, req, 1, false);
	return (Datum) 0;
}

/* personalize._openai_upload(purpose, filename, content): multipart POST /files. */
Datum
personalize_openai_upload(PG_FUNCTION_ARGS)
{
	HttpRequest *req = palloc0(sizeof(HttpRequest));
	HttpFormPart *parts = palloc0(sizeof(HttpFormPart) * 2);

	parts[0].name = "purpose";
	parts[0].data = utf8_text(PG_GETARG_TEXT_PP(0), &parts[0].len);
	parts[1].name = "file";
	parts[1].filename = utf8_text(PG_GETARG_TEXT_PP(1), &parts[1].len);
	parts[1].data = utf8_text(PG_GETARG_TEXT_PP(2), &parts[1].len);
	parts[1].type = "application/octet-stream";
	req->url = openai_url("/files");
	req->parts = parts;
	req->nparts = 2;
	openai_run(fcinfo, req, 1, false);
	return (Datum) 0;
}

/* ---------- redaction of what is stored ---------- */

/* The configured key, if any can be read; never an error (for redaction). */
static char *
configured_key_quietly(void)
{
	if (personalize_openai_api_key != NULL && personalize_openai_api_key[0] != '\0')
		return personalize_openai_api_key;
	if (personalize_openai_api_key_file != NULL && personalize_openai_api_key_file[0] != '\0')
		return key_from_file(personalize_openai_api_key_file, true);
	return NULL;
}

/*
 * personalize._redact_columns(): a BEFORE INSERT OR UPDATE row trigger on the
 * tables that keep text from OpenAI's answers (reasons, rejection details, run
 * errors); its arguments name the text columns. Whatever arrives, decoded from
 * JSON escapes or not, is stored with the key and every "sk-..." word
 * replaced by [redacted]: the answers' own copies of a key never reach a
 * table a monitoring role reads.
 */
Datum
personalize_redact_columns(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *key;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "personalize._redact_columns() is a BEFORE ... FOR EACH ROW trigger");
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	key = configured_key_quietly();
	if (key != NULL && strlen(key) < 8)
		key = NULL;				/* a short key would redact ordinary words */
	for (int i = 0; i < td->tg_trigger->tgnargs; i++)
	{
		int			attnum = SPI_fnumber(desc, td->tg_trigger->tgargs[i]);
		bool		isnull;
		Datum		d;
		char	   *s,
				   *r;
		Datum		value;
		bool		isnullv = false;

		if (attnum <= 0)
			elog(ERROR, "personalize: no column \"%s\" to redact", td->tg_trigger->tgargs[i]);
		d = heap_getattr(tuple, attnum, desc, &isnull);
		if (isnull)
			continue;
		s = TextDatumGetCString(d);
		r = redact(s, key, true);
		if (r == s)
			continue;
		value = CStringGetTextDatum(r);
		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &attnum, &value, &isnullv);
	}
	return PointerGetDatum(tuple);
}

