#!/bin/bash
# The response memory budget of one OpenAI call (issue 10, defect 10): a loopback server
# answers every POST with a 10 MB body. Under personalize.openai_response_budget = 16MB, of
# two requests sent together one is kept and the other fails cleanly (error_code
# response_budget, no retry, nothing else lost); under 64MB both are kept. Before 0.2.0 the
# bodies were bounded only per response (256 MB each, up to 64 at once).
# Runs inside pg_virtualenv. TAP output; creates and drops personalize_budget_<pid>.
set -uo pipefail
db=personalize_budget_$$
tmp=$(mktemp -d)
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { local r=1; [ "$1" = "$2" ] && r=0; ok $r "$3"; [ $r = 0 ] || printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
cat > "$tmp/big.py" <<'PY'
import http.server, sys
BODY = b'{"data": "' + b"a" * (10 * 1024 * 1024) + b'"}'
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$tmp/big.py" > "$tmp/out" 2>&1 & srv=$!
trap 'kill $srv 2>/dev/null; dropdb --if-exists "$db" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do grep -q listening "$tmp/out" && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$port" ] || { echo "Bail out! the server did not start"; exit 2; }
createdb "$db" && q -c 'CREATE EXTENSION personalize' >/dev/null || { echo "Bail out! no database"; exit 2; }
call() {   # $1 = budget
  q -c "SET personalize.openai_base_url = 'http://127.0.0.1:$port/v1'" -c "SET personalize.openai_api_key = 'sk-test-budget'" \
    -c "SET personalize.openai_concurrency = 2" -c "SET personalize.openai_max_retries = 2" \
    -c "SET personalize.openai_response_budget = '$1'" \
    -c "SELECT string_agg(coalesce(http_status, 0) || ':' || coalesce(length(body), 0) || ':' || coalesce(error_code, '-') || ':' || attempts, ' ' ORDER BY http_status DESC NULLS LAST, idx)
        FROM personalize._openai_post('/embeddings', ARRAY['{\"input\": \"a\"}', '{\"input\": \"b\"}'])"
}
is "$(call 16MB)" "200:10485772:-:1 0:0:response_budget:1" \
   "budget 16 MB: one 10 MB answer is kept, the other fails with error_code response_budget, not retried"
is "$(call 64MB)" "200:10485772:-:1 200:10485772:-:1" "budget 64 MB: both answers are kept"
err=$(q -c "SET personalize.openai_response_budget = '1MB'")
ok $([[ "$err" == *"ERROR"* ]] && echo 0 || echo 1) "a budget below 16 MB is refused (${err%%$'\n'*})"
is "$(q -c 'SHOW personalize.openai_response_budget')" 512MB "the default is 512 MB"
exit 0
