/*
 * http.c: a generic HTTP engine on libcurl's multi interface. A list of
 * requests goes in; each comes back with its final status, body, attempts and
 * error. At most opts->concurrency transfers are in flight; failed attempts
 * are retried with exponential backoff and full jitter, waiting at least as
 * long as Retry-After or x-ratelimit-reset-* ask.
 *
 * Invariants:
 * - libcurl callbacks never palloc, ereport or longjmp: they run inside curl,
 *   whose state a longjmp would corrupt. They write to malloc'd buffers and
 *   fixed arrays; a body over HTTP_MAX_BODY aborts its own transfer.
 * - Every curl handle, header list, mime and malloc'd buffer hangs off the
 *   Engine struct, and PG_FINALLY frees them all, so an ERROR (cancel,
 *   statement_timeout, out of memory) leaks nothing.
 * - The loop never blocks longer than 100 ms without CHECK_FOR_INTERRUPTS(), so
 *   a cancel is reported as a cancel within a fraction of a second.
 */
#include "personalize.h"

#include <math.h>
#include <time.h>

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "miscadmin.h"

#include "http.h"
#include "lifecycle.h"

/* curl_multi_poll arrived in 7.66; Debian 12 ships 7.88 */
#if LIBCURL_VERSION_NUM < 0x074200
#error "personalize needs libcurl 7.66 or later"
#endif

/* Longest sleep between two looks at interrupts. */
#define POLL_MS			100

/* Sizes of the header values we keep (longer ones are cut: never valid anyway). */
#define HEADER_VALUE_LEN 64

typedef enum ReqState
{
	REQ_PENDING,				/* never sent */
	REQ_WAITING,				/* sent, failed, waiting to be sent again */
	REQ_RUNNING,
	REQ_DONE
} ReqState;

/* engine-side bookkeeping of one request */
typedef struct ReqTrack
{
	ReqState	state;
	double		due_ms;			/* when a waiting request may go again */
	double		first_ms;		/* when it was first sent */
} ReqTrack;

/* One transfer in flight. Everything a curl callback touches lives here. */
typedef struct Slot
{
	CURL	   *easy;
	curl_mime  *mime;
	int			req;			/* index into the request list, -1 when free */
	char	   *buf;			/* malloc'd response body */
	size_t		len;
	size_t		cap;
	bool		too_big;
	bool		over_budget;
	bool		no_memory;
	struct Engine *eng;
	size_t		counted;		/* bytes of buf counted in eng->inflight */
	char		retry_after[HEADER_VALUE_LEN];
	char		reset_requests[HEADER_VALUE_LEN];
	char		reset_tokens[HEADER_VALUE_LEN];
	char		errbuf[CURL_ERROR_SIZE];
} Slot;

typedef struct Engine
{
	CURLM	   *multi;
	struct curl_slist *headers;
	Slot	   *slots;
	int			nslots;
	size_t		budget;			/* HttpOptions.budget */
	size_t		kept;			/* bytes of the responses kept on the requests */
	size_t		inflight;		/* bytes received by the transfers running now */
} Engine;

static bool curl_ready = false;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1000000.0;
}

/* curl callback: append body bytes; returning less than given aborts the transfer. */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	Slot	   *slot = (Slot *) arg;
	size_t		n = size * nmemb;

	if (n > HTTP_MAX_BODY - slot->len)
	{
		slot->too_big = true;
		return 0;
	}
	if (slot->eng->budget > 0 && slot->eng->kept + slot->eng->inflight + n > slot->eng->budget)
	{
		/* this transfer stops: what it received no longer counts against the others */
		slot->eng->inflight -= Min(slot->counted, slot->eng->inflight);
		slot->counted = 0;
		slot->over_budget = true;
		return 0;
	}
	if (slot->len + n + 1 > slot->cap)
	{
		size_t		cap = Max(slot->cap * 2, 16384);
		char	   *buf;

		while (cap < slot->len + n + 1)
			cap *= 2;
		buf = realloc(slot->buf, cap);
		if (buf == NULL)
		{
			slot->no_memory = true;
			return 0;
		}
		slot->buf = buf;
		slot->cap = cap;
	}
	memcpy(slot->buf + slot->len, data, n);
	slot->len += n;
	slot->counted += n;
	slot->eng->inflight += n;
	slot->buf[slot->len] = '\0';
	return n;
}

/* Copy a header's value (without blanks and CRLF) when the line is that header. */
static bool
take_header(const char *line, size_t n, const char *name, char *out)
{
	size_t		nl = strlen(name);
	size_t		k = 0;

	if (n <= nl || pg_strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return false;
	line += nl + 1;
	n -= nl + 1;
	while (n > 0 && (*line == ' ' || *line == '\t'))
		line++, n--;
	while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	for (; k < n && k < HEADER_VALUE_LEN - 1; k++)
		out[k] = line[k];
	out[k] = '\0';
	return true;
}

/* curl callback: keep the headers that say how long to wait before a retry. */
static size_t
header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
	Slot	   *slot = (Slot *) arg;
	size_t		n = size * nmemb;

	/* a status line starts a new response (after a 100 Continue, say) */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		slot->retry_after[0] = slot->reset_requests[0] = slot->reset_tokens[0] = '\0';
		return n;
	}
	if (!take_header(line, n, "retry-after", slot->retry_after) &&
		!take_header(line, n, "x-ratelimit-reset-requests", slot->reset_requests))
		(void) take_header(line, n, "x-ratelimit-reset-tokens", slot->reset_tokens);
	return n;
}

/*
 * curl callback, called while a transfer progresses or idles: abort it when
 * the backend has been asked to cancel or die. The loop then reaches
 * CHECK_FOR_INTERRUPTS(), which reports the cancel.
 */
static int
xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/* "1s", "6m0s", "20ms", "1h2m3.5s" (x-ratelimit-reset-*) in ms; -1 if not that. */
static double
parse_duration_ms(const char *s)
{
	double		total = 0;
	bool		any = false;

	while (*s)
	{
		char	   *end;
		double		v = strtod(s, &end);
		double		unit;

		if (end == s || v < 0)
			return -1;
		s = end;
		if (strncmp(s, "ms", 2) == 0)
			unit = 1, s += 2;
		else if (strncmp(s, "us", 2) == 0)
			unit = 0.001, s += 2;
		else if (strncmp(s, "ns", 2) == 0)
			unit = 0.000001, s += 2;
		else if (*s == 'h')
			unit = 3600000, s++;
		else if (*s == 'm')
			unit = 60000, s++;
		else if (*s == 's' || *s == '\0')
			unit = 1000, s += (*s == 's');
		else
			return -1;
		total += v * unit;
		any = true;
	}
	return any ? total : -1;
}

/* Retry-After: delay-seconds or an HTTP date, in ms; -1 if absent or invalid. */
static double
parse_retry_after_ms(const char *s)
{
	char	   *end;
	double		v;
	time_t		t;

	if (*s == '\0')
		return -1;
	v = strtod(s, &end);
	if (end != s && *end == '\0')
		return v >= 0 ? v * 1000.0 : -1;
	t = curl_getdate(s, NULL);
	if (t == -1)
		return -1;
	return Max(0.0, difftime(t, time(NULL)) * 1000.0);
}

/*
 * How long to wait before attempt number `attempts + 1`: full jitter over an
 * exponential backoff (base * 2^(attempts-1), capped), and never less than
 * the server asked for. Everything is capped at HTTP_MAX_DELAY_MS: a longer
 * wait inside a SQL statement helps nobody, and the retry budget is bounded.
 */
static double
retry_delay_ms(const Slot *slot, int attempts, int base_ms)
{
	double		ceiling = base_ms * pow(2.0, Min(attempts - 1, 30));
	double		delay = pg_prng_double(&pg_global_prng_state) * Min(ceiling, HTTP_MAX_DELAY_MS);

	if (slot != NULL)
	{
		delay = Max(delay, parse_retry_after_ms(slot->retry_after));
		delay = Max(delay, parse_duration_ms(slot->reset_requests));
		delay = Max(delay, parse_duration_ms(slot->reset_tokens));
	}
	return Min(delay, HTTP_MAX_DELAY_MS);
}

/* Release one slot's transfer; safe on a half-built or free slot. */
static void
slot_release(Engine *eng, Slot *slot)
{
	if (slot->easy != NULL)
	{
		if (eng->multi != NULL)
			curl_multi_remove_handle(eng->multi, slot->easy);
		curl_easy_cleanup(slot->easy);
		slot->easy = NULL;
	}
	if (slot->mime != NULL)
	{
		curl_mime_free(slot->mime);
		slot->mime = NULL;
	}
	free(slot->buf);
	eng->inflight -= Min(slot->counted, eng->inflight);
	slot->buf = NULL;
	slot->len = slot->cap = slot->counted = 0;
	slot->req = -1;
}

#define SETOPT(easy, opt, val) \
	do { \
		if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK) \
			elog(ERROR, "personalize: curl_easy_setopt(%s) failed", #opt); \
	} while (0)

/* Start one attempt of request i in a free slot. */
static void
start_transfer(Engine *eng, Slot *slot, HttpRequest *req, int i, const HttpOptions *opts)
{
	CURL	   *easy;

	slot->req = i;
	slot->eng = eng;
	slot->too_big = slot->over_budget = slot->no_memory = false;
	slot->retry_after[0] = slot->reset_requests[0] = slot->reset_tokens[0] = '\0';
	slot->errbuf[0] = '\0';
	slot->easy = easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
						errdetail("curl_easy_init() failed.")));

	SETOPT(easy, CURLOPT_PRIVATE, (void *) slot);
	SETOPT(easy, CURLOPT_URL, req->url);
	SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	/* http and https only, and no redirects: a 3xx is an answer like any other */
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SETOPT(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SETOPT(easy, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) opts->connect_timeout_ms);
	SETOPT(easy, CURLOPT_TIMEOUT_MS, (long) opts->timeout_ms);
	SETOPT(easy, CURLOPT_HTTPHEADER, eng->headers);
	SETOPT(easy, CURLOPT_USERAGENT, "personalize/" PERSONALIZE_LIBRARY_VERSION);
	SETOPT(easy, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(easy, CURLOPT_ERRORBUFFER, slot->errbuf);
	SETOPT(easy, CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(easy, CURLOPT_WRITEDATA, (void *) slot);
	SETOPT(easy, CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(easy, CURLOPT_HEADERDATA, (void *) slot);
	SETOPT(easy, CURLOPT_NOPROGRESS, 0L);
	SETOPT(easy, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);

	if (req->nparts > 0)
	{
		slot->mime = curl_mime_init(easy);
		if (slot->mime == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		for (int p = 0; p < req->nparts; p++)
		{
			const HttpFormPart *fp = &req->parts[p];
			curl_mimepart *part = curl_mime_addpart(slot->mime);

			if (part == NULL ||
				curl_mime_name(part, fp->name) != CURLE_OK ||
				curl_mime_data(part, fp->data, fp->len) != CURLE_OK ||
				(fp->filename && curl_mime_filename(part, fp->filename) != CURLE_OK) ||
				(fp->type && curl_mime_type(part, fp->type) != CURLE_OK))
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
								errdetail("Could not build the multipart body.")));
		}
		SETOPT(easy, CURLOPT_MIMEPOST, slot->mime);
	}
	else if (req->body != NULL)
	{
		SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
		SETOPT(easy, CURLOPT_POSTFIELDS, req->body);
	}

	if (curl_multi_add_handle(eng->multi, easy) != CURLM_OK)
		elog(ERROR, "personalize: curl_multi_add_handle failed");
}

/* Map a failed transfer to an error code; *retry says whether another try may help. */
static const char *
transport_code(CURLcode rc, bool *retry)
{
	*retry = true;
	switch (rc)
	{
		case CURLE_OPERATION_TIMEDOUT:
			return "timeout";
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return "connect";
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_ENGINE_NOTFOUND:
		case CURLE_NOT_BUILT_IN:
			*retry = false;
			return "transport";
		default:
			return "transport";
	}
}

/*
 * A transfer ended: record its outcome on the request and decide whether it
 * is done, goes again later, or stops the whole run. Returns the verdict.
 */
static HttpVerdict
finish_transfer(Engine *eng, Slot *slot, CURLcode rc, HttpRequest *reqs, ReqTrack *track,
				const HttpOptions *opts, MemoryContext resultcxt)
{
	int			i = slot->req;
	HttpRequest *req = &reqs[i];
	HttpVerdict verdict;
	MemoryContext old;
	double		delay;

	if (rc == CURLE_ABORTED_BY_CALLBACK)
	{
		/* we aborted it for an interrupt: report that (cleanup is in PG_FINALLY) */
		CHECK_FOR_INTERRUPTS();
		/* the interrupt was not a cancel after all: count it as a failed try */
	}

	old = MemoryContextSwitchTo(resultcxt);
	if (req->response != NULL)
	{
		eng->kept -= Min(req->response_len, eng->kept);
		pfree(req->response);
	}
	req->response = NULL;
	req->response_len = 0;
	req->status = 0;
	req->error = req->error_code = NULL;

	if (rc != CURLE_OK)
	{
		bool		retry;

		req->error_code = (char *) transport_code(rc, &retry);
		if (slot->too_big)
		{
			req->error = psprintf("response body larger than %zu MB", HTTP_MAX_BODY / (1024 * 1024));
			retry = false;
		}
		else if (slot->over_budget)
		{
			req->error = psprintf("the responses of this call would exceed its memory budget of %zu MB",
								  eng->budget / (1024 * 1024));
			req->error_code = (char *) "response_budget";
			retry = false;
		}
		else if (slot->no_memory)
			req->error = pstrdup("out of memory while receiving the response body");
		else if (rc == CURLE_ABORTED_BY_CALLBACK)
			req->error = pstrdup("transfer interrupted");
		else if (slot->errbuf[0] != '\0')
			req->error = psprintf("%s: %s", curl_easy_strerror(rc), slot->errbuf);
		else
			req->error = pstrdup(curl_easy_strerror(rc));
		verdict = retry ? HTTP_RETRY : HTTP_DONE;
	}
	else
	{
		long		status = 0;

		curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
		req->status = (int) status;
		req->response = palloc(slot->len + 1);
		if (slot->len > 0)
			memcpy(req->response, slot->buf, slot->len);
		req->response[slot->len] = '\0';
		req->response_len = slot->len;

		if (status >= 200 && status < 300)
			verdict = HTTP_DONE;
		else if (status == 408 || status == 409 || status == 429 || status >= 500)
			verdict = HTTP_RETRY;
		else
			verdict = HTTP_DONE;
		if (opts->judge != NULL)
			verdict = opts->judge(req, verdict, opts->judge_arg);
		if (req->response != NULL)
			eng->kept += req->response_len;
	}
	MemoryContextSwitchTo(old);

	delay = retry_delay_ms(rc == CURLE_OK ? slot : NULL, req->attempts, opts->retry_base_ms);
	slot_release(eng, slot);

	if (verdict == HTTP_RETRY && req->attempts <= opts->max_retries)
	{
		track[i].state = REQ_WAITING;
		track[i].due_ms = now_ms() + delay;
	}
	else
	{
		track[i].state = REQ_DONE;
		req->elapsed_ms = now_ms() - track[i].first_ms;
		if (verdict == HTTP_RETRY)
			verdict = HTTP_DONE;
	}
	return verdict;
}

/* Free everything the engine holds; safe at any point of a run. */
static void
engine_cleanup(Engine *eng)
{
	for (int s = 0; s < eng->nslots; s++)
		slot_release(eng, &eng->slots[s]);
	if (eng->multi != NULL)
		curl_multi_cleanup(eng->multi);
	eng->multi = NULL;
	if (eng->headers != NULL)
		curl_slist_free_all(eng->headers);
	eng->headers = NULL;
}

/* Where a run is: what the phases of http_run() share besides the engine. */
typedef struct RunState
{
	HttpRequest *reqs;
	ReqTrack   *track;
	int			n;
	int			done;
	int			next_new;		/* requests before this were all started once */
	int			inflight;
	int			nwaiting;
	bool		stopped;
	const char *stop_code;
	MemoryContext resultcxt;
} RunState;

/* Clear the engine's fields of every request before a run. */
static void
reset_requests(HttpRequest *reqs, int n)
{
	for (int i = 0; i < n; i++)
	{
		reqs[i].status = 0;
		reqs[i].response = NULL;
		reqs[i].response_len = 0;
		reqs[i].attempts = 0;
		reqs[i].error = reqs[i].error_code = NULL;
		reqs[i].elapsed_ms = 0;
	}
}

/* One header line onto the engine's list (out of memory: ERROR). */
static void
engine_add_header(Engine *eng, const char *line)
{
	struct curl_slist *l = curl_slist_append(eng->headers, line);

	if (l == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	eng->headers = l;
}

/* The multi handle and the shared headers; inside the caller's PG_TRY. */
static void
engine_start(Engine *eng, const HttpOptions *opts)
{
	eng->multi = curl_multi_init();
	if (eng->multi == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory"),
						errdetail("curl_multi_init() failed.")));
	for (int h = 0; h < opts->nheaders; h++)
		engine_add_header(eng, opts->headers[h]);
	/* no "Expect: 100-continue" round trip before large bodies */
	engine_add_header(eng, "Expect:");
}

/* Fill free slots: retries that are due first, then requests never sent. */
static void
start_due(Engine *eng, RunState *st, const HttpOptions *opts)
{
	double		now = now_ms();

	for (int s = 0; s < eng->nslots && !st->stopped; s++)
	{
		int			i = -1;

		if (eng->slots[s].req >= 0)
			continue;
		if (st->nwaiting > 0)
		{
			for (int j = 0; j < st->n; j++)
				if (st->track[j].state == REQ_WAITING && st->track[j].due_ms <= now)
				{
					i = j;
					st->nwaiting--;
					break;
				}
		}
		if (i < 0 && st->next_new < st->n)
			i = st->next_new++;
		if (i < 0)
			break;
		if (st->reqs[i].attempts == 0)
			st->track[i].first_ms = now;
		st->reqs[i].attempts++;
		st->track[i].state = REQ_RUNNING;
		st->inflight++;
		start_transfer(eng, &eng->slots[s], &st->reqs[i], i, opts);
	}
}

/* Take every finished transfer: done, or waiting for a retry; note a stop. */
static void
collect_finished(Engine *eng, RunState *st, const HttpOptions *opts)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(eng->multi, &left)) != NULL)
	{
		Slot	   *slot = NULL;
		HttpVerdict v;
		int			i;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
		i = slot->req;
		v = finish_transfer(eng, slot, msg->data.result, st->reqs, st->track, opts, st->resultcxt);
		st->inflight--;
		if (st->track[i].state == REQ_DONE)
			st->done++;
		else
			st->nwaiting++;
		if (v == HTTP_STOP && !st->stopped)
		{
			st->stopped = true;
			st->stop_code = st->reqs[i].error_code;
		}
	}
}

/* After a stop nothing new starts; what waits for a retry ends as it is. */
static void
end_after_stop(RunState *st)
{
	for (int j = 0; j < st->n; j++)
	{
		MemoryContext old;

		if (st->track[j].state == REQ_WAITING)
		{
			st->track[j].state = REQ_DONE;
			st->reqs[j].elapsed_ms = now_ms() - st->track[j].first_ms;
			st->done++;
		}
		else if (st->track[j].state == REQ_PENDING)
		{
			st->track[j].state = REQ_DONE;
			old = MemoryContextSwitchTo(st->resultcxt);
			st->reqs[j].error = psprintf("not sent: an earlier response said %s",
										 st->stop_code ? st->stop_code : "stop");
			st->reqs[j].error_code = "not_sent";
			MemoryContextSwitchTo(old);
			st->done++;
		}
	}
	st->nwaiting = 0;
	st->next_new = st->n;
}

/* How long to wait for sockets: less when a free slot has a retry due soon, 0 for a new request. */
static long
next_wait_ms(const Engine *eng, const RunState *st)
{
	long		wait_ms = POLL_MS;

	if (st->inflight < eng->nslots && st->nwaiting > 0)
	{
		double		next = -1;
		double		now = now_ms();

		for (int j = 0; j < st->n; j++)
			if (st->track[j].state == REQ_WAITING && (next < 0 || st->track[j].due_ms < next))
				next = st->track[j].due_ms;
		wait_ms = (long) Max(0.0, Min((double) POLL_MS, next - now));
	}
	if (st->inflight < eng->nslots && st->next_new < st->n && !st->stopped)
		wait_ms = 0;
	return wait_ms;
}

/* The event loop: start, perform, collect, wait, until every request is done. */
static void
engine_loop(Engine *eng, RunState *st, const HttpOptions *opts)
{
	while (st->done < st->n)
	{
		int			running;
		long		wait_ms;
		CURLMcode	mrc;

		CHECK_FOR_INTERRUPTS();
		start_due(eng, st, opts);
		mrc = curl_multi_perform(eng->multi, &running);
		if (mrc != CURLM_OK)
			elog(ERROR, "personalize: curl_multi_perform failed: %s", curl_multi_strerror(mrc));
		collect_finished(eng, st, opts);
		if (st->stopped)
			end_after_stop(st);
		if (st->done >= st->n)
			break;
		wait_ms = next_wait_ms(eng, st);
		if (wait_ms > 0)
		{
			mrc = curl_multi_poll(eng->multi, NULL, 0, (int) wait_ms, NULL);
			if (mrc != CURLM_OK)
				elog(ERROR, "personalize: curl_multi_poll failed: %s", curl_multi_strerror(mrc));
		}
	}
}

/*
 * Send every request; fills the engine's fields of each. Results are palloc'd
 * in the caller's memory context.
 */
void
http_run(HttpRequest *reqs, int n, const HttpOptions *opts)
{
	Engine	   *eng = palloc0(sizeof(Engine));
	RunState	st = {0};

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			elog(ERROR, "personalize: curl_global_init failed");
		curl_ready = true;
	}
	reset_requests(reqs, n);
	st.reqs = reqs;
	st.n = n;
	st.track = palloc0(sizeof(ReqTrack) * Max(n, 1));
	st.resultcxt = CurrentMemoryContext;
	eng->nslots = Max(1, Min(opts->concurrency, n));
	eng->budget = opts->budget;
	eng->kept = eng->inflight = 0;
	eng->slots = palloc0(sizeof(Slot) * eng->nslots);
	for (int s = 0; s < eng->nslots; s++)
		eng->slots[s].req = -1;

	PG_TRY();
	{
		engine_start(eng, opts);
		engine_loop(eng, &st, opts);
	}
	PG_FINALLY();
	{
		engine_cleanup(eng);
	}
	PG_END_TRY();

	pfree(eng->slots);
	pfree(eng);
	pfree(st.track);
}
