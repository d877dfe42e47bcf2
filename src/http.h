/*
 * http.h: the generic HTTP engine (http.c) that openai.c drives. No libcurl
 * type appears here: only http.c includes curl.
 */
#ifndef PERSONALIZE_HTTP_H
#define PERSONALIZE_HTTP_H

/* One part of a multipart/form-data body; filename NULL for a plain field. */
typedef struct HttpFormPart
{
	const char *name;
	const char *data;
	size_t		len;
	const char *filename;
	const char *type;
} HttpFormPart;

/* What to do after a response: keep it, send again later, or start nothing more. */
typedef enum HttpVerdict
{
	HTTP_DONE,
	HTTP_RETRY,
	HTTP_STOP
} HttpVerdict;

typedef struct HttpRequest
{
	/* set by the caller */
	const char *url;
	const char *body;			/* POST body, or NULL for GET (unless parts) */
	size_t		body_len;
	const HttpFormPart *parts;	/* multipart POST when nparts > 0 */
	int			nparts;

	/* set by the engine (and by the judge) */
	int			status;			/* final HTTP status; 0 when there was none */
	char	   *response;		/* final body, NUL-terminated, or NULL */
	size_t		response_len;
	int			attempts;		/* times sent */
	char	   *error;			/* NULL when the request succeeded */
	char	   *error_code;
	double		elapsed_ms;		/* first send to final answer, waits included */
} HttpRequest;

/*
 * The judge sees every HTTP response (transport failures never reach it): it
 * may replace req->response, sets req->error and req->error_code, and returns
 * a verdict; proposed is the engine's (2xx done; 408, 409, 429, 5xx retry).
 */
typedef HttpVerdict (*HttpJudge) (HttpRequest *req, HttpVerdict proposed, void *arg);

typedef struct HttpOptions
{
	const char *const *headers; /* "Name: value" lines sent with every request */
	int			nheaders;
	int			concurrency;
	int			connect_timeout_ms;
	int			timeout_ms;
	int			max_retries;
	int			retry_base_ms;
	HttpJudge	judge;
	void	   *judge_arg;
	size_t		budget;			/* most response bytes one call holds at once; 0: no limit */
} HttpOptions;

/* Largest response body kept; a longer one aborts its transfer. */
#define HTTP_MAX_BODY		((size_t) 256 * 1024 * 1024)

/* Longest wait before a retry, whatever the server asks for. */
#define HTTP_MAX_DELAY_MS	60000.0

extern void http_run(HttpRequest *reqs, int n, const HttpOptions *opts);

#endif							/* PERSONALIZE_HTTP_H */
