#!/bin/bash
# The OpenAI HTTP client (src/http.c, src/openai.c) against test/mock_openai.py:
# concurrency, retries (Retry-After, x-ratelimit-reset-*, 5xx, timeouts, refused
# connections), no retry on 404, the insufficient_quota stop, cancel and
# statement_timeout within a fraction of a second, no memory growth over many
# cancels, and the API key: hidden from non-superusers, redacted from errors,
# never in the server log. Runs inside pg_virtualenv (PGHOST, PGPORT, PGUSER set).
# TAP output; exits non-zero when a test fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=0 failed=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
db=personalize_http
user=regress_http_user
userpw=regress_http_pw_$$
tmp=$(mktemp -d)
chmod 755 "$tmp"
KEY="sk-live-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
FILEKEY="sk-file-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BADKEY="sk-bad-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
mocks=()
cleanup() {
  for p in "${mocks[@]}"; do kill "$p" 2>/dev/null; done
  dropdb --if-exists "$db" >/dev/null 2>&1
  psql -X -q -d postgres -c "DROP ROLE IF EXISTS $user" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# start a mock on a free port and set mock_port (not in a $(...) subshell: the
# trap must know the pid)
start_mock() {    # $1 = name, then mock options
  local name=$1; shift
  python3 test/mock_openai.py --port 0 "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  mocks+=($!)
  for _ in $(seq 1 50); do
    grep -q listening "$tmp/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  mock_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/$name.out")
}
start_mock fast; port=$mock_port
start_mock latency --latency-ms 500; slowport=$mock_port
[ -n "$port" ] && [ -n "$slowport" ] || { echo "Bail out! the mock did not start"; cat "$tmp"/*.err; exit 1; }
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# call URL_TOKEN [psql args...]: a session whose base URL is the mock's /<token>/v1
call() {
  local token=$1; shift
  q -c "SET personalize.openai_base_url = 'http://127.0.0.1:$port/$token/v1'" \
    -c "SET personalize.openai_retry_base = '20ms'" "$@"
}
post1="personalize._openai_post('/embeddings', ARRAY['{\"input\": \"hello\", \"model\": \"m\"}'])"

dropdb --if-exists "$db" >/dev/null 2>&1
psql -X -q -d postgres -c "DROP ROLE IF EXISTS $user" >/dev/null 2>&1
createdb "$db"
q -c 'CREATE EXTENSION personalize' >/dev/null
# the key goes in a file named by personalize.openai_api_key_file (the path may be stored
# with ALTER DATABASE; the key itself may not: refused, and the refusal does not echo it)
printf '%s\n' "$KEY" > "$tmp/mainkey"
chmod 644 "$tmp/mainkey"
out=$(q -c "SET log_statement = 'none'" -c "SET log_min_error_statement = 'panic'" -c "LOAD 'personalize'" -c "ALTER DATABASE $db SET personalize.openai_api_key = '$KEY'")
tap $([[ "$out" == *"cannot be stored with ALTER DATABASE"* && "$out" != *"$KEY"* ]] && echo 0 || echo 1) \
  "ALTER DATABASE ... SET personalize.openai_api_key is refused without echoing the key"
q -c "ALTER DATABASE $db SET personalize.openai_api_key_file = '$tmp/mainkey'" >/dev/null

# --- plain requests
is "$(call ok.a -c "SELECT http_status, attempts, error IS NULL, error_code IS NULL, body::json->>'object', idx FROM $post1")" \
   "200|1|t|t|list|1" "POST: a 2xx comes back with its body, one attempt, no error"
fid=$(call ok.a -c "SELECT body::json->>'id' FROM personalize._openai_upload('batch', 'in.jsonl', '{\"custom_id\": \"c1\"}' || chr(10))")
tap $([[ "$fid" == file-* ]] && echo 0 || echo 1) "upload: multipart POST /files answers a file id ($fid)"
is "$(call ok.a -c "SELECT http_status, body FROM personalize._openai_get('/files/$fid/content')")" \
   "200|{\"custom_id\": \"c1\"}" "GET: the uploaded content comes back"
is "$(curl -s "http://127.0.0.1:$port/_mock/requests?scenario=ok.a" | python3 -c 'import json,sys; print(",".join(sorted({r["auth"] for r in json.load(sys.stdin)})))')" \
   "bearer" "every request carried a bearer token"

# --- concurrency: 4 bodies against 500 ms of latency
e='{"input": "x", "model": "m"}'
four="ARRAY['$e', '$e', '$e', '$e']"
wall() {    # $1 = concurrency: wall time of one call in ms, and its statuses
  psql -X -q -At -d "$db" -c "SET personalize.openai_base_url = 'http://127.0.0.1:$slowport/ok.c$1/v1'" \
    -c "SET personalize.openai_concurrency = $1" \
    -c "SELECT round(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000) || ' ' || s
          FROM (SELECT string_agg(http_status::text, ',') s FROM personalize._openai_post('/embeddings', $four)) x" 2>&1
}
w4=$(wall 4); w1=$(wall 1)
tap $([ "${w4#* }" = "200,200,200,200" ] && [ "${w4% *}" -lt 1000 ] && echo 0 || echo 1) "concurrency 4: 4 requests overlap (${w4% *} ms for 4 x 500 ms)"
tap $([ "${w1% *}" -ge 1900 ] && echo 0 || echo 1) "concurrency 1: one at a time (${w1% *} ms)"

# --- retries
is "$(call 429once.a -c "SELECT http_status, attempts, elapsed_ms >= 1000 FROM $post1")" \
   "200|2|t" "429 with Retry-After: 1 is retried after at least 1 s"
is "$(call reset429once.a -c "SELECT http_status, attempts, elapsed_ms >= 1000 FROM $post1")" \
   "200|2|t" "429 with x-ratelimit-reset-requests: 1s is retried after at least 1 s"
is "$(call 500once.a -c "SELECT http_status, attempts, error IS NULL FROM $post1")" \
   "200|2|t" "500 once: retried, then 200"
is "$(call 500always.a -c 'SET personalize.openai_max_retries = 3' -c "SELECT http_status, attempts, error_code, error LIKE 'HTTP 500: %' FROM $post1")" \
   "500|4|server_error|t" "500 always: max_retries + 1 attempts, then the error"
out=$(call slow.a -c "SET personalize.openai_timeout = '1s'" -c 'SET personalize.openai_max_retries = 1' \
        -c "SELECT http_status, attempts, error_code, error LIKE 'Timeout was reached%', elapsed_ms >= 2000 AND elapsed_ms < 3500 FROM $post1")
is "$out" "0|2|timeout|t|t" "a 1 s timeout: error_code timeout, retried once"
out=$(q -c "SET personalize.openai_base_url = 'http://127.0.0.1:$closed/ok/v1'" -c 'SET personalize.openai_retry_base = 10' \
        -c 'SET personalize.openai_max_retries = 2' -c "SELECT http_status, attempts, error_code FROM $post1")
is "$out" "0|3|connect" "connection refused: error_code connect, retried"
is "$(call nosuch.a -c "SELECT http_status, attempts, error_code IS NOT NULL, error LIKE 'HTTP 404: %' FROM $post1")" \
   "404|1|t|t" "404 is not retried"
out=$(call quota.a -c 'SET personalize.openai_concurrency = 1' \
        -c "SELECT string_agg(idx || ':' || http_status || ':' || attempts || ':' || error_code, ' ' ORDER BY idx)
              FROM personalize._openai_post('/embeddings', ARRAY['{}', '{}', '{}'])")
is "$out" "1:429:1:insufficient_quota 2:0:0:not_sent 3:0:0:not_sent" "insufficient_quota: not retried, nothing more is sent"
is "$(curl -s "http://127.0.0.1:$port/_mock/requests?scenario=quota.a" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
   "1" "the mock saw one request of the quota run"

# --- cancel and statement_timeout on a request that hangs
t0=$(ms)
( PGAPPNAME=http_cancel call hang.a -v VERBOSITY=verbose -c "SELECT * FROM $post1" > "$tmp/cancel.out"; ms > "$tmp/cancel.end" ) &
bg=$!
for _ in $(seq 1 30); do
  [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'http_cancel' AND query LIKE '%_openai_post%'")" = 1 ] && break
  sleep 0.1
done
sleep $(awk -v t=$(( $(ms) - t0 )) 'BEGIN { s = (1000 - t) / 1000; print (s > 0 ? s : 0) }')
tc=$(ms)
q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'http_cancel'" >/dev/null
wait $bg
te=$(cat "$tmp/cancel.end")
tap $(grep -q 57014 "$tmp/cancel.out" && [ $((te - tc)) -lt 500 ] && [ $((te - t0)) -lt 1800 ] && echo 0 || echo 1) \
  "pg_cancel_backend: SQLSTATE 57014, $((te - tc)) ms after the cancel, $((te - t0)) ms in all"
t0=$(ms)
out=$(call hang.b -v VERBOSITY=verbose -c "SET statement_timeout = '1s'" -c "SELECT * FROM personalize._openai_post('/embeddings', $four)")
t1=$(ms)
tap $([[ "$out" == *57014* ]] && [ $((t1 - t0)) -lt 1500 ] && echo 0 || echo 1) "statement_timeout 1s: SQLSTATE 57014 after $((t1 - t0)) ms"

# --- no memory growth over many cancelled calls on one backend (posts of 4 and uploads)
{
  echo "SET personalize.openai_base_url = 'http://127.0.0.1:$port/hang.mem/v1';"
  echo "SET statement_timeout = '50ms';"
  for _ in $(seq 1 10); do
    echo "SELECT count(*) FROM personalize._openai_post('/embeddings', $four);"
    echo "SELECT count(*) FROM personalize._openai_upload('batch', 'f.jsonl', repeat('x', 100000));"
  done
  mem="SELECT 'MEM ' || substring(pg_read_file('/proc/self/status') from 'RssAnon:\s+(\d+)') || ' ' || (SELECT sum(total_bytes) FROM pg_backend_memory_contexts);"
  echo "$mem"
  for _ in $(seq 1 60); do
    echo "SELECT count(*) FROM personalize._openai_post('/embeddings', $four);"
    echo "SELECT count(*) FROM personalize._openai_upload('batch', 'f.jsonl', repeat('x', 100000));"
  done
  echo "$mem"
} > "$tmp/loop.sql"
psql -X -q -At -d "$db" -f "$tmp/loop.sql" > "$tmp/loop.out" 2>&1
cancels=$(grep -c 'statement timeout' "$tmp/loop.out")
read -r _ rss0 ctx0 < <(grep '^MEM' "$tmp/loop.out" | head -n 1)
read -r _ rss1 ctx1 < <(grep '^MEM' "$tmp/loop.out" | tail -n 1)
tap $([ "$cancels" = 140 ] && [ -n "$rss0" ] && [ $((rss1 - rss0)) -lt 512 ] && [ $((ctx1 - ctx0)) -lt 65536 ] && echo 0 || echo 1) \
  "120 more cancelled calls (480 transfers): RssAnon ${rss0:-?} -> ${rss1:-?} kB, memory contexts ${ctx0:-?} -> ${ctx1:-?} bytes ($cancels timeouts)"

# --- the key
q -c "CREATE ROLE $user LOGIN PASSWORD '$userpw'" -c "ALTER ROLE $user SET session_preload_libraries = 'personalize'" >/dev/null
asuser() { PGPASSWORD=$userpw psql -X -q -At -U "$user" -d "$db" "$@" 2>&1; }
out=$(asuser -c 'SHOW personalize.openai_api_key')
tap $([[ "$out" == *"must be superuser"* && "$out" != *"$KEY"* ]] && echo 0 || echo 1) "non-superuser: SHOW refuses (${out%%$'\n'*})"
out=$(asuser -c "SELECT current_setting('personalize.openai_api_key')")
tap $([[ "$out" == *"must be superuser"* && "$out" != *"$KEY"* ]] && echo 0 || echo 1) "non-superuser: current_setting refuses"
is "$(asuser -c "SELECT count(*) FROM pg_settings WHERE name LIKE 'personalize.openai_api_key%'") $(asuser -c "SELECT current_setting('personalize.openai_model')")" \
   "0 gpt-4o-mini" "non-superuser: pg_settings shows neither the key nor the key file (the library is loaded)"
out=$(asuser -c "SELECT * FROM $post1")
tap $([[ "$out" == *"permission denied"* ]] && echo 0 || echo 1) "non-superuser: _openai_post is not executable (${out%%$'\n'*})"
out=$(q -c "LOAD 'personalize'" -c 'SHOW ALL')
tap $([[ "$out" != *"personalize.openai_api_key|"* && "$out" != *"$KEY"* && "$out" == *"personalize.openai_model|"* ]] && echo 0 || echo 1) \
  "SHOW ALL does not list the key"
out=$(call ok.a -c "SET personalize.openai_api_key = '$BADKEY'" -c "SELECT http_status, error_code, error, body FROM $post1")
tap $([[ "$out" == 401\|invalid_api_key\|*"[redacted]"* && "$out" != *sk-* ]] && echo 0 || echo 1) "a rejected sk-bad key is redacted from error and body (${out%%|\{*})"
out=$(call ok.a -v VERBOSITY=verbose -c "SET personalize.openai_api_key = ''" -c "SET personalize.openai_api_key_file = ''" -c "SELECT * FROM $post1")
tap $([[ "$out" == *55000*"no OpenAI API key is configured"*HINT* ]] && echo 0 || echo 1) "no key: ERROR 55000 with a hint"

# --- the key file
printf '  %s  \nsecond line\n' "$FILEKEY" > "$tmp/key"
chmod 644 "$tmp/key"
is "$(call ok.f -c "SET personalize.openai_api_key = ''" -c "SET personalize.openai_api_key_file = '$tmp/key'" -c "SELECT http_status FROM $post1")" \
   "200" "the key file's first line is used when the key is empty"
printf '%s\n' "$BADKEY" > "$tmp/badkey"
chmod 644 "$tmp/badkey"
is "$(call ok.f -c "SET personalize.openai_api_key = ''" -c "SET personalize.openai_api_key_file = '$tmp/badkey'" -c "SELECT http_status, error LIKE '%[redacted]%' FROM $post1")" \
   "401|t" "the key file is read at each request (a bad key there gets 401, redacted)"
out=$(call ok.f -v VERBOSITY=verbose -c "SET personalize.openai_api_key = ''" -c "SET personalize.openai_api_key_file = '$tmp/missing'" -c "SELECT * FROM $post1")
tap $([[ "$out" == *58P01*"$tmp/missing"* ]] && echo 0 || echo 1) "a missing key file: ERROR 58P01 naming the file (${out%%$'\n'*})"
cp "$tmp/key" "$tmp/locked"
chmod 000 "$tmp/locked"
if [ "$(id -u)" = 0 ]; then    # the server never runs as root, so it cannot read a mode 000 file
  out=$(call ok.f -c "SET personalize.openai_api_key = ''" -c "SET personalize.openai_api_key_file = '$tmp/locked'" -c "SELECT * FROM $post1")
  tap $([[ "$out" == *"$tmp/locked"* && "$out" != *"$FILEKEY"* && "$out" == ERROR* ]] && echo 0 || echo 1) "an unreadable key file: an ERROR naming the file, never its contents"
else
  n=$((n + 1)); echo "ok $n # SKIP an unreadable key file needs the test to run as root"
fi

# --- the base URL
# (LOAD first: before the library is loaded, a personalize.* setting is an unchecked placeholder)
out=$(q -v VERBOSITY=verbose -c "LOAD 'personalize'" -c "SET personalize.openai_base_url = 'ftp://127.0.0.1/v1'")
tap $([[ "$out" == *22023* ]] && echo 0 || echo 1) "base_url ftp:// is refused with SQLSTATE 22023"
out=$(q -c "LOAD 'personalize'" -c "SET personalize.openai_base_url = 'file:///etc/passwd'")
tap $([[ "$out" == *ERROR* ]] && echo 0 || echo 1) "base_url file:// is refused"

# --- the server log never holds a key, after all of the above
log=$(q -c "SELECT CASE WHEN pg_current_logfile() IS NULL THEN '' WHEN pg_current_logfile() LIKE '/%' THEN pg_current_logfile()
                         ELSE current_setting('data_directory') || '/' || pg_current_logfile() END")
if [ -z "$log" ]; then    # no logging collector: the log is the postmaster's stderr
  pmpid=$(q -c "SELECT split_part(pg_read_file('postmaster.pid'), E'\n', 1)")
  log=$(readlink "/proc/$pmpid/fd/2" 2>/dev/null)
fi
logtext=$(q -c "SELECT pg_read_file('$log')" 2>/dev/null)
tap $([ -n "$log" ] && [[ "$logtext" == *"canceling statement due to"* ]] && echo 0 || echo 1) "the server log is found and holds this test's cancels ($log)"
tap $([[ "$logtext" != *"$KEY"* && "$logtext" != *"$FILEKEY"* && "$logtext" != *"$BADKEY"* && "$logtext" != *"${BADKEY:0:10}"* ]] && echo 0 || echo 1) \
  "no key (nor the start of the bad one) is in the server log"

echo "1..$n"
[ "$failed" = 0 ]
