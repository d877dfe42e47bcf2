#!/usr/bin/env python3
"""A scriptable mock of the parts of the OpenAI API that personalize uses (issue 4).

    python3 test/mock_openai.py --port P [--latency-ms N] [--slow-ms N]

Listens on 127.0.0.1 only, prints "mock_openai listening on 127.0.0.1:P" when ready
(--port 0 picks a free port and prints it), exits on SIGTERM/SIGINT.  Python stdlib only.

Base URL for the client: http://127.0.0.1:P/<token>/v1 where <token> is <scenario> or
<scenario>.<tag>; the tag only separates state (the counters of the "once" scenarios, the
request log), so each test uses its own tag.  Endpoints under /v1 (all need
"Authorization: Bearer <non-empty>"):
    POST chat/completions   POST embeddings   POST files (multipart: purpose, file)
    GET files/{id}/content  POST batches      GET batches/{id}
Control endpoints (no auth):
    GET  /_mock/requests[?scenario=<token>]  -> [{"method","path","status","customers","auth","body_bytes"}]
    POST /_mock/reset[?scenario=<token>]     -> forget everything (or only that token's counters/log)
Errors always have the OpenAI shape {"error":{"message","type","param","code"}}.  Bad input
gets a 400, never a crash.  One line per request is logged to stderr (never a header value).
Scenarios: see SCENARIOS below and the contract (/tmp/llm_contract.md, section 1).
Poison scenarios (issue 10, defects 2 and 4) answer 200 with a body that is valid JSON to
many parsers but that PostgreSQL cannot take as jsonb, for the chat requests whose first
customer has an even id (and the batch output lines of such requests), and for the
embeddings requests that have an input containing "POISON"; the other requests are
answered as in "ok":
    poison_nul            \u0000 in the body          poison_nul_content    ... in a reason
    poison_deep           100,000 nested arrays        poison_deep_content   ... as the content
    poison_bigint         "prompt_tokens": 1e30        poison_tiny           1e-50 in an embedding
    poison_latin1         ’ — “ and an emoji, raw UTF-8 (fine in a UTF8 database)
    poison_latin1_esc     the same JSON-escaped in the message content
"""
import argparse, itertools, json, random, re, select, signal, socket, sys, threading, time, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SCENARIOS = {
    "ok", "malformed", "invented", "length", "length_always", "refusal",        # chat content
    "429once", "reset429once", "500once", "500always", "slow", "hang", "quota",  # every endpoint
    "batch_expired", "batch_failed", "batch_cancelled",                          # batch outcome
}
POISONS = {"poison_nul", "poison_nul_content", "poison_deep", "poison_deep_content", "poison_bigint",
           "poison_tiny", "poison_latin1", "poison_latin1_esc"}
SCENARIOS |= POISONS
DEEP = 100000
DEEP_MARK = "__mock_deep_nesting__"
ODD_TEXT = "it\u2019s caf\u00e9 \u2014 \u201cbright\u201d \U0001F600"
HANG_SECONDS = 120
MAX_BODY = 512 * 1024 * 1024
DEFAULT_DIMENSIONS = 64
OPTS = argparse.Namespace(latency_ms=0, slow_ms=5000)  # replaced by main()


class ApiError(Exception):
    """An answer in the OpenAI error shape (raised anywhere while handling a request)."""
    def __init__(self, status, message, type_="invalid_request_error", code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bad_request(message, param=None):
    return ApiError(400, message, param=param)


class State:
    """Everything the mock remembers, behind one lock."""
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self, token=None):
        if token is not None:
            self.counters.pop(token, None)
            self.log.pop(token, None)
            return
        self.counters, self.log = {}, {}        # token -> int, token -> [entries]
        self.files, self.batches = {}, {}       # id -> dict
        self.next_id = {}                       # prefix -> last number used

    def new_id(self, prefix):
        n = self.next_id[prefix] = self.next_id.get(prefix, 0) + 1
        return "%s%d" % (prefix, n)

    def add_file(self, filename, purpose, content):
        fid = self.new_id("file-")
        self.files[fid] = {"meta": {"id": fid, "object": "file", "bytes": len(content),
                                    "created_at": int(time.time()), "filename": filename,
                                    "purpose": purpose, "status": "processed"},
                           "content": content}
        return fid


STATE = State()
CHAT_IDS = itertools.count(1)


# ---------------------------------------------------------------- chat completions
def parse_chat_request(body):
    """-> (request dict, the user message's JSON: {"k","catalog","customers"}). Raises 400."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("you must provide a model parameter", "model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise bad_request("'messages' must be a non-empty array of objects.", "messages")
    users = [m for m in msgs if m.get("role") == "user"]
    if not users:
        raise bad_request("mock_openai: no user message", "messages")
    content = users[-1].get("content")
    if isinstance(content, list):     # content parts: [{"type":"text","text":...}]
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    try:
        task = json.loads(content)
        if not isinstance(task, dict) or not isinstance(task.get("customers"), list) \
                or not isinstance(task.get("catalog"), list):
            raise ValueError("need an object with arrays 'customers' and 'catalog'")
        k = task.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError("'k' must be a non-negative integer")
        for c in task["customers"]:
            if not isinstance(c, dict) or not isinstance(c.get("customer_id"), int):
                raise ValueError("every customer needs an integer customer_id")
        for p in task["catalog"]:
            if not isinstance(p, dict) or not isinstance(p.get("product_id"), int):
                raise ValueError("every catalog entry needs an integer product_id")
    except (TypeError, ValueError) as e:
        raise bad_request("mock_openai: the user message is not the contract's JSON (%s)" % e, "messages")
    return body, task


def recommend(task, customer):
    """k distinct catalog products the customer has no event for, the catalog rotated by id."""
    catalog, k = task["catalog"], task.get("k", 10)
    seen = {e.get("product_id") for e in customer.get("events") or [] if isinstance(e, dict)}
    recs = []
    start = customer["customer_id"] % len(catalog) if catalog else 0
    for p in catalog[start:] + catalog[:start]:
        if len(recs) >= k:
            break
        if p["product_id"] in seen:
            continue
        seen.add(p["product_id"])
        recs.append({"product_id": p["product_id"],
                     "reason": "fits their interest in %s" % (p.get("category") or "general goods")})
    return recs


def answer_text(task, scenario):
    """The message content (a JSON text) for scenario ok, or invented."""
    out = []
    asked = task["customers"]
    for n, c in enumerate(asked):
        recs = recommend(task, c)
        if scenario == "invented":
            if c is asked[-1]:
                continue                      # the last customer asked about is omitted
            # an invented id, then a duplicate of the first valid one, then the k valid ones:
            # after dropping the invented one and the duplicate, k valid recommendations remain
            recs = [{"product_id": 990000000 + n, "reason": "a product that does not exist"}] + recs[:1] + recs
        out.append({"customer_id": c["customer_id"], "recommendations": recs})
    if scenario == "invented":
        out.append({"customer_id": 424242424, "recommendations": recommend(task, {"customer_id": 424242424})})
    return json.dumps({"customers": out})


def chat_completion(req, task, scenario, body_bytes):
    """A CreateChatCompletionResponse for a parsed request under a content scenario."""
    text = answer_text(task, "invented" if scenario == "invented" else "ok")
    finish, refusal = "stop", None
    if scenario == "malformed":
        text = text[: len(text) // 2] + '"}]}} <<garbage'
    elif scenario == "length_always" or (scenario == "length" and len(task["customers"]) > 1):
        text, finish = text[: len(text) // 2], "length"
    elif scenario == "refusal":
        text, refusal = None, "I'm sorry, I can't help with that."
    cid = "chatcmpl-mock%d" % next(CHAT_IDS)      # itertools.count: atomic, no lock needed
    prompt, completion = body_bytes // 4, len(text or refusal) // 4
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": req["model"],
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": refusal,
                                     "annotations": []}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
            "service_tier": "default", "system_fingerprint": "fp_mock"}


class RawJson(bytes):
    """A JSON body already serialised (a poisoned one): sent as it is."""


def poisoned(answer, kind, wrap=None):
    """answer (a chat completion or embeddings dict) with the poison of kind, serialised;
    wrap(answer) is what is serialised (a batch output line), answer itself by default."""
    ascii_only = kind != "poison_latin1"
    chat = "choices" in answer
    if kind == "poison_nul":
        answer["system_fingerprint"] = "fp_\x00mock"
    elif kind == "poison_deep":
        answer["system_fingerprint"] = DEEP_MARK
    elif kind == "poison_bigint":
        answer["usage"]["prompt_tokens"] = 1e30
    elif kind == "poison_tiny" and not chat:
        answer["data"][-1]["embedding"][0] = 1e-50
    elif kind in ("poison_latin1", "poison_latin1_esc") and not chat:
        answer["note"] = ODD_TEXT
    elif chat and kind in ("poison_nul_content", "poison_latin1", "poison_latin1_esc"):
        msg = answer["choices"][0]["message"]
        content = json.loads(msg["content"])
        for c in content["customers"]:
            for r in c["recommendations"]:
                r["reason"] += "\x00" if kind == "poison_nul_content" else " " + ODD_TEXT
        msg["content"] = json.dumps(content, ensure_ascii=ascii_only)
    elif chat and kind == "poison_deep_content":
        answer["choices"][0]["message"]["content"] = '{"customers": %s}' % DEEP_MARK
    text = json.dumps(wrap(answer) if wrap else answer, ensure_ascii=ascii_only)
    return text.replace('"%s"' % DEEP_MARK, "[" * DEEP + "]" * DEEP).replace(DEEP_MARK, "[" * DEEP + "]" * DEEP)


def chat_poisoned(task, scenario):
    """Whether this chat request gets the poison: its first customer's id is even."""
    return scenario in POISONS and bool(task["customers"]) and task["customers"][0]["customer_id"] % 2 == 0


def embeddings_poisoned(body, scenario):
    """Whether this embeddings request gets the poison: an input contains POISON."""
    inp = body.get("input") if isinstance(body, dict) else None
    texts = [inp] if isinstance(inp, str) else inp if isinstance(inp, list) else []
    return scenario in POISONS and any(isinstance(t, str) and "POISON" in t for t in texts)


# ---------------------------------------------------------------- embeddings
def embed_one(text, dims):
    """Signed feature hashing of the lower-cased words, plus a tiny per-text part, L2-normalised."""
    v = [0.0] * dims
    for w in re.findall(r"\w+", text.lower()):
        h = zlib.crc32(w.encode("utf-8", "surrogatepass"))    # lone surrogates (\ud800) are valid JSON
        v[h % dims] += 1.0 if (h >> 31) & 1 else -1.0
    rng = random.Random(zlib.crc32(text.encode("utf-8", "surrogatepass")))
    v = [x + 0.02 * rng.uniform(-1.0, 1.0) for x in v]
    norm = sum(x * x for x in v) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in v]


def embeddings(body):
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("you must provide a model parameter", "model")
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or len(texts) > 2048 \
            or not all(isinstance(t, str) and t for t in texts):
        raise bad_request("'input' must be a non-empty string or an array of 1 to 2048 non-empty strings.", "input")
    dims = body.get("dimensions", DEFAULT_DIMENSIONS)
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 4096:
        raise bad_request("'dimensions' must be an integer from 1 to 4096.", "dimensions")
    tokens = sum(len(t) // 4 + 1 for t in texts)
    return {"object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": embed_one(t, dims)}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# ---------------------------------------------------------------- files and batches
def parse_multipart(ctype, body):
    """multipart/form-data -> {name: (filename or None, bytes)}. Raises 400."""
    m = re.search(r'boundary="?([^";]+)"?', ctype or "")
    if not (ctype or "").lower().startswith("multipart/form-data") or not m:
        raise bad_request("POST /files needs a multipart/form-data body.")
    fields = {}
    for part in body.split(b"--" + m.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            raise bad_request("malformed multipart part")
        data = data[:-2] if data.endswith(b"\r\n") else data
        disp = next((l for l in head.decode("utf-8", "replace").split("\r\n")
                     if l.lower().startswith("content-disposition:")), "")
        name = re.search(r'\bname="([^"]*)"', disp)
        fname = re.search(r'\bfilename="([^"]*)"', disp)
        if name:
            fields[name.group(1)] = (fname.group(1) if fname else None, data)
    return fields


def upload_file(handler, body):
    fields = parse_multipart(handler.headers.get("Content-Type"), body)
    if "purpose" not in fields or "file" not in fields:
        raise bad_request("'file' and 'purpose' are required.", "file" if "file" not in fields else "purpose")
    purpose = fields["purpose"][1].decode("utf-8", "replace").strip()
    if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
        raise bad_request("'%s' is not a valid purpose." % purpose, "purpose")
    filename, content = fields["file"]
    if filename is None:
        raise bad_request("'file' must be a file part (with a filename).", "file")
    with STATE.lock:
        return dict(STATE.files[STATE.add_file(filename, purpose, content)]["meta"])


def create_batch(body, scenario):
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    endpoint, fid = body.get("endpoint"), body.get("input_file_id")
    if endpoint not in ("/v1/chat/completions", "/v1/embeddings"):
        raise bad_request("mock_openai: 'endpoint' must be /v1/chat/completions or /v1/embeddings.", "endpoint")
    if body.get("completion_window") != "24h":
        raise bad_request("'completion_window' must be '24h'.", "completion_window")
    now = int(time.time())
    with STATE.lock:
        f = STATE.files.get(fid) if isinstance(fid, str) else None
        if f is None or f["meta"]["purpose"] != "batch":
            raise bad_request("Invalid 'input_file_id': %r (no file with purpose batch)." % (fid,), "input_file_id")
        bid = STATE.new_id("batch_")
        obj = {"id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
               "completion_window": "24h", "status": "validating", "output_file_id": None,
               "error_file_id": None, "created_at": now, "in_progress_at": None,
               "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
               "expired_at": None, "cancelling_at": None, "cancelled_at": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0},
               "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else None}
        STATE.batches[bid] = {"obj": obj, "scenario": scenario, "lines": None}
        return json.loads(json.dumps(obj))


def validate_batch_input(b):
    """Parse the input JSONL into b["lines"]; -> None or an errors list (the batch fails)."""
    content = STATE.files[b["obj"]["input_file_id"]]["content"]
    lines, ids = [], set()
    for no, raw in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return [{"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "param": None, "line": no}]
        problem = None
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            problem = ("missing_required_parameter", "custom_id")
        elif line["custom_id"] in ids:
            problem = ("duplicate_custom_id", "custom_id")
        elif line.get("method") != "POST":
            problem = ("invalid_method", "method")
        elif line.get("url") != b["obj"]["endpoint"]:
            problem = ("mismatched_endpoint", "url")
        elif not isinstance(line.get("body"), dict):
            problem = ("missing_required_parameter", "body")
        if problem:
            return [{"code": problem[0], "message": "Line %d: invalid '%s'." % (no, problem[1]),
                     "param": problem[1], "line": no}]
        ids.add(line["custom_id"])
        lines.append(line)
    if not lines:
        return [{"code": "empty_file", "message": "The input file contains no requests.", "param": None, "line": None}]
    b["lines"] = lines
    return None


def batch_output_line(b, line):
    """One output line: the request's response as the synchronous endpoint would give it."""
    rid = STATE.new_id("batch_req_")
    body = line["body"]
    poison = False
    try:
        if b["obj"]["endpoint"] == "/v1/embeddings":
            status, resp = 200, embeddings(body)
            poison = embeddings_poisoned(body, b["scenario"])
        else:
            req, task = parse_chat_request(body)
            scen = "invented" if b["scenario"] == "invented" else "ok"
            status, resp = 200, chat_completion(req, task, scen, len(json.dumps(body)))
            poison = chat_poisoned(task, b["scenario"])
    except ApiError as e:
        status, resp = e.status, e.body
    wrap = lambda r: {"id": rid, "custom_id": line["custom_id"],
                      "response": {"status_code": status, "request_id": "req_" + rid, "body": r},
                      "error": None}
    return status, poisoned(resp, b["scenario"], wrap) if poison else wrap(resp)


def advance_batch(bid):
    """GET batches/{id}: validating -> in_progress (or failed) -> the scenario's final state."""
    now = int(time.time())
    with STATE.lock:
        b = STATE.batches.get(bid)
        if b is None:
            raise ApiError(404, "No batch found with id '%s'." % bid)
        o, scen = b["obj"], b["scenario"]
        if o["status"] == "validating":
            errors = validate_batch_input(b)
            if errors is None and scen == "batch_failed":
                errors = [{"code": "invalid_request", "message": "mock_openai: scenario batch_failed.",
                           "param": None, "line": None}]
            if errors:
                o.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            else:
                o.update(status="in_progress", in_progress_at=now)
                o["request_counts"]["total"] = len(b["lines"])
        elif o["status"] == "in_progress":
            lines = b["lines"]
            if scen == "batch_cancelled":
                o.update(status="cancelled", cancelling_at=now, cancelled_at=now)
            else:
                done = lines[: len(lines) // 2] if scen == "batch_expired" else lines
                good, bad = [], []
                for line in done:
                    status, out = batch_output_line(b, line)
                    (good if status == 200 else bad).append(out)
                for line in lines[len(done):]:        # batch_expired: the rest never ran
                    bad.append({"id": STATE.new_id("batch_req_"), "custom_id": line["custom_id"], "response": None,
                                "error": {"code": "batch_expired", "message": "This request could not be "
                                          "executed before the completion window expired."}})
                rng = random.Random(bid)                 # order not kept, but reproducible
                rng.shuffle(good)
                rng.shuffle(bad)
                jsonl = lambda rows: "".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                             for r in rows).encode()
                if good:
                    o["output_file_id"] = STATE.add_file(bid + "_output.jsonl", "batch_output", jsonl(good))
                if bad:
                    o["error_file_id"] = STATE.add_file(bid + "_error.jsonl", "batch_output", jsonl(bad))
                o["request_counts"].update(completed=len(good), failed=len(bad))
                o["finalizing_at"] = now
                if scen == "batch_expired":
                    o.update(status="expired", expired_at=now)
                else:
                    o.update(status="completed", completed_at=now)
        return json.loads(json.dumps(o))


# ---------------------------------------------------------------- HTTP
TRANSPORT = {  # scenario -> (status, message, type, code, headers), for the first request only if "once"
    "429once": (429, "Rate limit reached for requests (mock).", "requests", "rate_limit_exceeded", {"Retry-After": "1"}),
    "reset429once": (429, "Rate limit reached for requests (mock).", "requests", "rate_limit_exceeded",
                     {"x-ratelimit-reset-requests": "1s"}),
    "500once": (500, "The server had an error while processing your request. Sorry about that!", "server_error", None, {}),
    "500always": (500, "The server had an error while processing your request. Sorry about that!", "server_error", None, {}),
    "quota": (429, "You exceeded your current quota, please check your plan and billing details.",
              "insufficient_quota", "insufficient_quota", {}),
}


class ClientGone(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, as curl likes it
    server_version = "mock_openai/1"

    def log_message(self, fmt, *args):     # http.server's own messages (bad request lines...)
        sys.stderr.write("mock_openai: %s\n" % (fmt % args))

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, header too long...): JSON, not HTML."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        try:
            self._send(code, ApiError(code, message or "bad request").body, {"Connection": "close"})
        except OSError:
            pass

    def log_request(self, code="-", size="-"):
        pass                               # we log one line of our own in _dispatch

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = lambda self: self._dispatch()

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass                 # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "Request body too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ApiError(413, "Request body too large.")
        return self.rfile.read(n) if n else b""

    def _wait(self, seconds):
        """Sleep, but raise ClientGone as soon as the client closes the connection."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([self.connection], [], [], min(left, 0.1))
            if ready:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        raise ClientGone()
                except OSError:
                    raise ClientGone()
                time.sleep(min(left, 0.1))   # pipelined bytes: nothing to detect, keep sleeping

    def _send(self, status, payload, headers=None, ctype="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_mock%d" % (time.monotonic_ns() % 10**12))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self):
        t0, status, token, entry = time.monotonic(), 500, None, None
        auth = self.headers.get("Authorization") or ""
        m = re.match(r"(?i)bearer\s+(\S.*)$", auth.strip())
        key = m.group(1).strip() if m else ""
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                raise bad_request("unreadable request body")
            path = urlsplit(self.path)
            parts = path.path.split("/")   # "", token, "v1", rest...
            if path.path.startswith("/_mock/"):
                status = self._control(path)
            elif len(parts) < 4 or parts[2] != "v1" or not parts[1]:
                raise ApiError(404, "Invalid URL (%s %s): use /<scenario>/v1/..." % (self.command, path.path))
            else:
                token = parts[1]
                entry = {"method": self.command, "path": path.path, "status": None, "customers": None,
                         "auth": "bearer" if key else "none", "body_bytes": len(body)}
                with STATE.lock:
                    STATE.log.setdefault(token, []).append(entry)
                status, payload, headers = self._v1(token, "/".join(parts[3:]), body, key, entry)
                self._send(status, payload, headers, "application/octet-stream"
                           if isinstance(payload, bytes) and not isinstance(payload, RawJson) else "application/json")
        except ApiError as e:
            status = e.status
            self._safe_send(e.status, e.body, e.headers)
        except ClientGone:
            status, self.close_connection = 499, True      # nginx's "client closed request"
        except (BrokenPipeError, ConnectionResetError):
            status, self.close_connection = 499, True
        except Exception as e:                            # a bug of the mock: say so, do not die
            import traceback
            traceback.print_exc()
            status = 500
            self._safe_send(500, ApiError(500, "mock_openai internal error: %r" % e, "server_error").body)
        if entry is not None:
            entry["status"] = status
        sys.stderr.write("mock_openai: %s %s -> %d auth=%s %dms\n" % (
            self.command, self.path, status, "bearer" if key else "none", (time.monotonic() - t0) * 1000))

    def _safe_send(self, status, body, headers=None):
        try:
            self._send(status, body, headers)
        except OSError:
            self.close_connection = True

    def _control(self, path):
        q = parse_qs(path.query)
        token = q.get("scenario", [None])[0]
        if path.path == "/_mock/requests" and self.command == "GET":
            with STATE.lock:
                rows = STATE.log.get(token, []) if token else [e for l in STATE.log.values() for e in l]
                out = [dict(e) for e in rows]
            self._send(200, out)
        elif path.path == "/_mock/reset" and self.command == "POST":
            with STATE.lock:
                STATE.reset(token)
            self._send(200, {"reset": token or "all"})
        else:
            raise ApiError(404, "unknown control endpoint %s %s" % (self.command, path.path))
        return 200

    def _v1(self, token, rest, body, key, entry):
        """-> (status, payload, headers) for /<token>/v1/<rest>; raises ApiError."""
        scenario = token.split(".", 1)[0]
        if OPTS.latency_ms:
            self._wait(OPTS.latency_ms / 1000.0)
        if scenario not in SCENARIOS:
            raise ApiError(404, "mock_openai: unknown scenario '%s'." % scenario)
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                           code="invalid_api_key")
        if key.startswith("sk-bad"):
            raise ApiError(401, "Incorrect API key provided: sk-bad****%s." % key[-4:], code="invalid_api_key")
        routes = {("POST", "chat/completions"): "chat", ("POST", "embeddings"): "embeddings",
                  ("POST", "files"): "upload", ("POST", "batches"): "create_batch"}
        route = routes.get((self.command, rest))
        if route is None and self.command == "GET":
            m = re.fullmatch(r"files/([^/]+)/content|batches/([^/]+)", rest)
            route = m and ("file_content" if m.group(1) else "get_batch")
        if route is None:
            raise ApiError(404, "Invalid URL (%s /v1/%s)" % (self.command, rest))

        if route == "chat":                                # log the customer count even when failing
            try:
                entry["customers"] = len(parse_chat_request(json.loads(body))[1]["customers"])
            except (ApiError, ValueError):
                pass
        with STATE.lock:
            nth = STATE.counters[token] = STATE.counters.get(token, 0) + 1
        if scenario in TRANSPORT and (nth == 1 or not scenario.endswith("once")):
            st, msg, typ, code, headers = TRANSPORT[scenario]
            raise ApiError(st, msg, typ, code, headers=headers)
        if scenario == "slow":
            self._wait(OPTS.slow_ms / 1000.0)
        elif scenario == "hang":
            self._wait(HANG_SECONDS)

        def json_body():
            try:
                return json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise bad_request("We could not parse the JSON body of your request. (HINT: This likely "
                                  "means you aren't using your HTTP library correctly.)")
        if route == "chat":
            req, task = parse_chat_request(json_body())
            answer = chat_completion(req, task, scenario, len(body))
            if chat_poisoned(task, scenario):
                return 200, RawJson(poisoned(answer, scenario).encode()), None
            return 200, answer, None
        if route == "embeddings":
            answer = embeddings(json_body())
            if embeddings_poisoned(json_body(), scenario):
                return 200, RawJson(poisoned(answer, scenario).encode()), None
            return 200, answer, None
        if route == "upload":
            return 200, upload_file(self, body), None
        if route == "create_batch":
            return 200, create_batch(json_body(), scenario), None
        if route == "get_batch":
            return 200, advance_batch(m.group(2)), None
        with STATE.lock:                                   # file_content
            f = STATE.files.get(m.group(1))
        if f is None:
            raise ApiError(404, "No such File object: %s" % m.group(1), param="id")
        return 200, f["content"], None


class Server(ThreadingHTTPServer):
    daemon_threads = True                 # a hanging request never blocks the exit
    request_queue_size = 128

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ConnectionError, socket.timeout)):
            return                          # the client went away: not worth a traceback
        sys.stderr.write("mock_openai: error with %s: %r\n" % (client_address, e))


def main():
    global OPTS
    ap = argparse.ArgumentParser(description="mock OpenAI API for personalize tests")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=int, default=0, help="delay every /v1 answer")
    ap.add_argument("--slow-ms", type=int, default=5000, help="delay of the 'slow' scenario")
    OPTS = ap.parse_args()
    try:
        server = Server(("127.0.0.1", OPTS.port), Handler)
    except OSError as e:
        sys.exit("mock_openai: cannot listen on 127.0.0.1:%d: %s" % (OPTS.port, e))

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("mock_openai listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
