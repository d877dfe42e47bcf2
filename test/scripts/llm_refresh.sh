#!/bin/bash
# Cold start from OpenAI, end to end, against the project's mock server
# (test/mock_openai.py on 127.0.0.1): CALL personalize.llm_refresh() in every scenario
# of issue 4 (valid answers, malformed JSON, invented ids, 429 then success, 500 then
# success, persistent 500, a timeout, connection refused, finish_reason = length, a
# refusal, insufficient_quota, a cancel, statement_timeout, a crash then a rerun), the
# Batch API (completed, expired, failed, cancelled), embeddings, and the pg_cron jobs.
# Each scenario asserts the tables afterwards: good answers stored, bad ones rejected
# with their reason, nothing lost, nothing stored twice. Runs inside pg_virtualenv
# (cron.database_name = postgres). TAP output.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
has() { [[ "$1" == *"$2"* ]]; tap $? "$3 (${1//$'\n'/ | })"; }
db=personalize_llm
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
chmod 755 "$tmp"
key=sk-test-personalize-7d4c2b9e1f
echo "$key" > "$tmp/key"
echo "sk-bad-personalize-0123456789abcdef" > "$tmp/badkey"
chmod 644 "$tmp/key" "$tmp/badkey"
fast=$(free_port); slow=$(free_port); closed=$(free_port)
python3 test/mock_openai.py --port "$fast" 2> "$tmp/mock_fast.log" & mock1=$!
python3 test/mock_openai.py --port "$slow" --latency-ms 700 2> "$tmp/mock_slow.log" & mock2=$!
cleanup() {
  kill "$mock1" "$mock2" 2>/dev/null
  psql -X -q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'personalize-%'" >/dev/null 2>&1
  psql -X -q -d postgres -c 'ALTER DATABASE postgres RESET ALL' -c 'SET personalize.allow_drop_with_data = on' -c 'DROP EXTENSION IF EXISTS personalize CASCADE' \
       -c 'DROP EXTENSION IF EXISTS pg_cron' >/dev/null 2>&1
  dropdb --if-exists "$db" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
for p in "$fast" "$slow"; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/_mock/requests" && break; sleep 0.1; done
done

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
# llm <mock token> [psql args...]: a session whose base URL points at the fast mock
llm() { local tok=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c '\set VERBOSITY verbose' \
          -c "SET personalize.openai_base_url = 'http://127.0.0.1:$fast/$tok/v1'" "$@" 2>&1; }
mockq() { curl -s "http://127.0.0.1:$fast/_mock/requests?scenario=$1" |
          python3 -c "import json,sys; r=json.load(sys.stdin); print($2)"; }
run() { q -c "SELECT status, customers, requests, retries, failures FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1"; }
rejections() { q -c "SELECT coalesce(string_agg(reason || '=' || n, ' ' ORDER BY reason), '') FROM (
                     SELECT reason, count(*) n FROM personalize.llm_rejections
                     WHERE run_id = (SELECT max(run_id) FROM personalize.llm_runs) GROUP BY 1) s"; }
reset() { q -c 'DELETE FROM personalize.llm_recommendations' -c 'DELETE FROM personalize.llm_rejections' >/dev/null; }
answered() { q -c "SELECT array_to_string(array_agg(DISTINCT customer_id ORDER BY customer_id), ',') FROM personalize.llm_recommendations"; }
stored() { q -c 'SELECT count(DISTINCT customer_id) FROM personalize.llm_recommendations'; }
# every stored answer: ranks 1..n without a gap, only active products, only cold customers
sane() { q -c "SELECT count(*) FROM (SELECT customer_id FROM personalize.llm_recommendations r
                 JOIN personalize.products p USING (product_id)
                 GROUP BY 1 HAVING max(rank) <> count(*) OR bool_or(NOT p.active) OR min(customer_id) <= 50) s"; }

createdb "$db"
q -c 'CREATE EXTENSION personalize' >/dev/null
q -c "ALTER DATABASE $db SET personalize.openai_api_key_file = '$tmp/key'" >/dev/null
# 300 products in 6 categories (300 inactive), 50 customers with 10 purchases each,
# 150 cold ones: 51..120 with one view, 121..200 with nothing
q <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name, category, price, active)
SELECT g, (ARRAY['WHITE','BLUE','RED','GREEN'])[g % 4 + 1] || ' ' ||
          (ARRAY['METAL LANTERN','CERAMIC MUG','PAPER BAG','GLASS JAR','WOODEN BOX','TEA TOWEL'])[g % 6 + 1] || ' ' || g,
       (ARRAY['lighting','kitchen','bags','storage','storage','kitchen'])[g % 6 + 1], g / 10.0, g <> 300
FROM generate_series(1, 300) g;
INSERT INTO personalize.customers (customer_id, country, created_at)
SELECT g, CASE WHEN g % 3 = 0 THEN 'France' ELSE 'United Kingdom' END, now() - interval '1 year'
FROM generate_series(1, 200) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, (c * 7 + i * 13) % 299 + 1, 'purchase', now() - interval '1 day' - i * interval '1 hour'
FROM generate_series(1, 50) c, generate_series(1, 10) i;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT c, c, 'view', now() - c * interval '1 minute' FROM generate_series(51, 120) c;
SELECT personalize.refresh_popular();
SQL

# ---- pg_cron: scheduled now, checked at the end (pg_cron 1.4 runs at most once a minute)
q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' -c 'CREATE EXTENSION personalize' >/dev/null
q -d postgres -c "ALTER DATABASE postgres SET personalize.openai_base_url = 'http://127.0.0.1:$fast/ok.cron/v1'" \
  -c "ALTER DATABASE postgres SET personalize.openai_api_key_file = '$tmp/key'" >/dev/null
q -d postgres -c "INSERT INTO personalize.products (product_id, name) SELECT g, 'product ' || g FROM generate_series(1, 40) g" \
  -c "INSERT INTO personalize.customers (customer_id) SELECT g FROM generate_series(1, 30) g" >/dev/null
cronjob=$(q -d postgres -c "SELECT personalize.schedule_llm_refresh('* * * * *')")
is "$(q -d postgres -c "SELECT schedule || ' ' || command FROM cron.job WHERE jobid = $cronjob")" \
   "* * * * * CALL personalize.llm_refresh()" "schedule_llm_refresh() creates the pg_cron job"
cron_started=$SECONDS

# ---- valid answers
out=$(llm ok.a -c 'CALL personalize.llm_refresh()')
has "$out" "llm_refresh run" "llm_refresh() says what it does in NOTICEs"
is "$(run)" "completed|150|6|0|0" "ok: 150 cold customers answered in 6 requests of 25, no retry, no failure"
is "$(q -c 'SELECT count(*) FROM personalize.llm_recommendations')" 1500 "ok: 10 recommendations each"
is "$(sane)" 0 "ok: ranks without gaps, only active products, no customer with history"
is "$(rejections)" "" "ok: nothing rejected"
is "$(q -c "SELECT count(*) FROM personalize.llm_recommendations WHERE reason IS NULL OR reason = ''")" 0 "ok: every recommendation has its reason"
is "$(q -c 'SELECT prompt_tokens > 0 AND completion_tokens > 0 FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1')" t "ok: usage recorded"
is "$(mockq ok.a 'len(r), sum(x["customers"] for x in r), max(x["customers"] for x in r), all(x["auth"] == "bearer" and x["path"].endswith("/chat/completions") for x in r)')" \
   "6 150 25 True" "ok: the mock saw 6 authorised chat requests carrying the 150 customers, 25 at most"
is "$(q -c "SELECT count(*) FROM personalize.llm_recommendations r JOIN personalize.interactions i USING (customer_id, product_id)")" 0 \
   "ok: nothing the customer already had (the catalog and the profile were sent as data)"
out=$(llm ok.b -c 'CALL personalize.llm_refresh()')
is "$(run)" "completed|0|0|0|0" "a rerun within personalize.llm_ttl asks nothing"
q -c "UPDATE personalize.llm_recommendations SET generated_at = now() - interval '8 days' WHERE customer_id <= 60" >/dev/null
out=$(llm ok.c -c 'CALL personalize.llm_refresh(5)')
is "$(run)" "completed|5|1|0|0" "after the TTL: max_customers = 5 asks about 5 of the 10 stale customers"
is "$(q -c "SELECT count(*) FROM personalize.llm_recommendations WHERE generated_at < now() - interval '1 day'")" 50 "their old answers were replaced, the others kept"
out=$(llm ok.d -c 'CALL personalize.llm_refresh(0)')
has "$out" "22023" "max_customers = 0 is refused (22023)"
out=$(llm ok.d -c 'BEGIN' -c 'CALL personalize.llm_refresh()')
has "$out" "invalid transaction termination" "inside a transaction block llm_refresh() refuses"

# ---- invented ids, duplicates, customers not asked about, customers left out
reset
out=$(llm invented.a -c 'CALL personalize.llm_refresh(50)')
is "$(run)" "completed|48|2|0|0" "invented: 48 of 50 customers stored (the mock leaves one out per request)"
is "$(rejections)" "duplicate_product=48 missing_customer=2 unexpected_customer=2 unknown_product=48" "invented: each bad item rejected with its reason"
is "$(q -c 'SELECT count(*) FROM personalize.llm_recommendations WHERE product_id >= 990000000')" 0 "invented: no invented product stored"
is "$(q -c 'SELECT min(c)::text || max(c) FROM (SELECT count(*) c FROM personalize.llm_recommendations GROUP BY customer_id) s')" "1010" "invented: the valid ten kept for each stored customer"
is "$(sane)" 0 "invented: what is stored is sane"

# ---- malformed JSON, refusal
reset
out=$(llm malformed.a -c 'CALL personalize.llm_refresh(25)')
has "$out" "08000" "malformed: the run fails with SQLSTATE 08000"
is "$(run)" "failed|0|1|0|1" "malformed: the run row says failed"
is "$(rejections)" "malformed_json=25" "malformed: 25 customers rejected as malformed_json"
is "$(stored)" 0 "malformed: nothing stored"
out=$(llm refusal.a -c 'CALL personalize.llm_refresh(25)')
is "$(rejections)" "refusal=25" "refusal: recorded for each customer"
has "$(q -c "SELECT min(detail) FROM personalize.llm_rejections WHERE reason = 'refusal'")" "can't help" "refusal: the model's words kept as the detail"

# ---- finish_reason = length: asked again in halves
reset
out=$(llm length.a -c 'SET personalize.llm_customers_per_request = 4' -c 'CALL personalize.llm_refresh(8)')
is "$(run)" "completed|8|14|0|0" "length: 2 truncated requests of 4 split down to single customers (14 requests), all 8 stored"
is "$(rejections)" "" "length: nothing rejected"
out=$(llm length_always.a -c 'SET personalize.llm_customers_per_request = 2' -c 'CALL personalize.llm_refresh(2)')
is "$(rejections)" "truncated=2" "length_always: a single customer still truncated is rejected as truncated"

# ---- retries
reset
t0=$(date +%s%N)
out=$(llm 429once.a -c 'CALL personalize.llm_refresh(25)')
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$(run)" "completed|25|1|1|0" "429 with Retry-After then success: one retry, all stored"
tap $([ "$ms" -ge 1000 ] && echo 0 || echo 1) "429: Retry-After: 1 was honoured (${ms} ms)"
out=$(llm reset429once.a -c 'CALL personalize.llm_refresh(25)')
is "$(run)" "completed|25|1|1|0" "429 with x-ratelimit-reset-requests then success"
out=$(llm 500once.a -c 'CALL personalize.llm_refresh(25)')
is "$(run)" "completed|25|1|1|0" "500 then success: one retry"
out=$(llm 500always.a -c 'SET personalize.openai_max_retries = 2' -c "SET personalize.openai_retry_base = '10ms'" \
      -c 'CALL personalize.llm_refresh(25)')
has "$out" "08000" "persistent 500: the run fails (08000)"
is "$(run)" "failed|0|1|2|1" "persistent 500: 3 attempts, the run row says failed"
is "$(rejections)" "request_failed=25" "persistent 500: the customers recorded as request_failed"
has "$(q -c "SELECT min(detail) FROM personalize.llm_rejections WHERE reason = 'request_failed'")" "HTTP 500" "persistent 500: the detail names the status"
t0=$(date +%s%N)
out=$(llm slow.a -c "SET personalize.openai_timeout = '300ms'" -c 'SET personalize.openai_max_retries = 1' \
      -c "SET personalize.openai_retry_base = '10ms'" -c 'CALL personalize.llm_refresh(25)')
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$(run)" "failed|0|1|1|1" "slower than the timeout: retried once, then failed"
tap $([ "$ms" -lt 3000 ] && echo 0 || echo 1) "the timeout bounds the run (${ms} ms)"
out=$(psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' -c "SET personalize.openai_base_url = 'http://127.0.0.1:$closed/v1'" \
      -c 'SET personalize.openai_max_retries = 1' -c "SET personalize.openai_retry_base = '10ms'" -c 'CALL personalize.llm_refresh(25)' 2>&1)
is "$(run)" "failed|0|1|1|1" "connection refused: retried once, then failed"
is "$(rejections)" "request_failed=25" "connection refused: the customers recorded as request_failed"
out=$(llm ok.e -c 'CALL personalize.llm_refresh()')
is "$(stored)" 150 "nothing lost: after the failures one good run answers every cold customer"
is "$(sane)" 0 "and what is stored is sane"

# ---- insufficient_quota stops the run
reset
out=$(llm quota.a -c 'SET personalize.openai_concurrency = 1' -c 'CALL personalize.llm_refresh(75)')
has "$out" "53000" "insufficient_quota: the run stops with SQLSTATE 53000"
has "$out" "quota" "insufficient_quota: the message says so"
is "$(run)" "quota_exceeded|0|1|0|1" "insufficient_quota: one request, no retry, the run row says quota_exceeded"
is "$(mockq quota.a 'len(r)')" 1 "insufficient_quota: no request after it"
out=$(llm ok.f -c 'CALL personalize.llm_refresh()')
is "$(stored)" 150 "the next run continues with everyone"

# ---- cancel and statement_timeout (700 ms per request, 5 customers per request, one at a time)
slowcall() { PGAPPNAME=$1 psql -X -q -At -d "$db" -c '\set VERBOSITY verbose' \
  -c "SET personalize.openai_base_url = 'http://127.0.0.1:$slow/ok.$1/v1'" \
  -c 'SET personalize.openai_concurrency = 1' -c 'SET personalize.llm_customers_per_request = 5' "${@:2}" 2>&1; }
apppid() { for _ in $(seq 50); do p=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1'"); [ -n "$p" ] && break; sleep 0.1; done; echo "$p"; }
reset
first30=$(q -c "SELECT array_to_string(ARRAY(SELECT unnest(personalize._llm_pick(30)) ORDER BY 1), ',')")
slowcall cancel1 -c 'CALL personalize.llm_refresh(30)' > "$tmp/cancel.out" & call=$!
pid=$(apppid cancel1)
sleep 2.2
t0=$(date +%s%N)
q -c "SELECT pg_cancel_backend($pid)" >/dev/null
wait $call
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
has "$(cat "$tmp/cancel.out")" "57014" "cancel: the CALL ends as a cancel (57014)"
tap $([ "$ms" -lt 1500 ] && echo 0 || echo 1) "cancel: it stopped ${ms} ms after pg_cancel_backend"
is "$(q -c 'SELECT status FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1')" cancelled "cancel: the run row says cancelled"
kept=$(stored)
tap $([ "$kept" -ge 5 ] && [ "$kept" -lt 30 ] && [ $((kept % 5)) = 0 ] && echo 0 || echo 1) "cancel: the rounds committed before it are kept ($kept customers)"
is "$(q -c 'SELECT customers FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1')" "$kept" "cancel: the run row counts what was kept"
out=$(llm ok.g -c "CALL personalize.llm_refresh($((30 - kept)))")
is "$(run)" "completed|$((30 - kept))|1|0|0" "after a cancel the rerun continues with the $((30 - kept)) left"
is "$(stored)|$(sane)|$(rejections)" "30|0|" "after a cancel and a rerun: 30 answered, each once, nothing rejected"
is "$(answered)" "$first30" "after a cancel and a rerun: exactly the 30 customers the cancelled run had picked"
out=$(slowcall stimeout -c "SET statement_timeout = '1500ms'" -c 'CALL personalize.llm_refresh(30)')
has "$out" "57014" "statement_timeout: the CALL ends as a cancel (57014)"
is "$(q -c 'SELECT status FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1')" cancelled "statement_timeout: the run row says cancelled"

# ---- a second run while one is in progress
reset
slowcall busy -c 'CALL personalize.llm_refresh(10)' > /dev/null & call=$!
apppid busy >/dev/null
sleep 0.3
out=$(llm ok.h -c 'CALL personalize.llm_refresh()')
has "$out" "55P03" "a second llm_refresh() while one runs is refused (55P03)"
has "$out" "HINT" "and says what to do"
wait $call

# ---- crash mid-run: kill -9 the backend, then rerun
reset
first30=$(q -c "SELECT array_to_string(ARRAY(SELECT unnest(personalize._llm_pick(30)) ORDER BY 1), ',')")
slowcall crash1 -c 'CALL personalize.llm_refresh(30)' > /dev/null & call=$!
pid=$(apppid crash1)
sleep 2.2
kill -9 "$pid"
wait $call
for _ in $(seq 100); do q -c 'SELECT 1' >/dev/null && break; sleep 0.2; done
crashrun=$(q -c 'SELECT run_id FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1')
is "$(q -c "SELECT status FROM personalize.llm_runs WHERE run_id = $crashrun")" running "crash: the run row is left as committed (running)"
kept=$(stored)
tap $([ "$kept" -ge 5 ] && [ "$kept" -lt 30 ] && echo 0 || echo 1) "crash: the committed rounds survive the crash ($kept customers)"
out=$(llm ok.i -c "CALL personalize.llm_refresh($((30 - kept)))")
is "$(q -c "SELECT status FROM personalize.llm_runs WHERE run_id = $crashrun")" interrupted "crash: the next run marks the crashed one interrupted"
is "$(run)" "completed|$((30 - kept))|1|0|0" "crash: the rerun continues with the $((30 - kept)) left"
is "$(stored)|$(sane)|$(rejections)" "30|0|" "after a crash and a rerun: 30 answered, each once"
is "$(answered)" "$first30" "after a crash and a rerun: exactly the 30 customers the crashed run had picked"

# ---- the key never shows: a rejected key is redacted from everything stored
reset
out=$(llm ok.j -c "SET personalize.openai_api_key_file = '$tmp/badkey'" -c 'CALL personalize.llm_refresh(25)')
is "$(rejections)" "request_failed=25" "a bad key: HTTP 401, the customers recorded as request_failed"
is "$(q -c "SELECT count(*) FROM personalize.llm_rejections WHERE detail ~ 'sk-[a-z]'")$(q -c "SELECT count(*) FROM personalize.llm_runs WHERE error ~ 'sk-[a-z]'")" \
   "00" "a bad key: the key the API echoed is redacted from rejections and runs"
# a key in the server configuration (ALTER SYSTEM) with personalize preloaded, as
# docs/reference.md says: a non-superuser cannot read it, even in a fresh session
if [[ "$(q -c 'SHOW shared_preload_libraries')" == *personalize* ]]; then
  confkey=sk-conf-visibility-only-5e8a1c
  q -c "ALTER SYSTEM SET personalize.openai_api_key = '$confkey'" -c 'SELECT pg_reload_conf()' >/dev/null
  q -c "DROP ROLE IF EXISTS regress_llm_reader" -c "CREATE ROLE regress_llm_reader LOGIN PASSWORD 'regress_llm_pw'" >/dev/null
  reader() { PGPASSWORD=regress_llm_pw psql -X -q -At -d "$db" -U regress_llm_reader "$@" 2>&1; }
  sleep 0.5
  is "$(q -c "SELECT current_setting('personalize.openai_api_key') = '$confkey'")" t "a key set with ALTER SYSTEM reaches the sessions"
  out=$(reader -c "SELECT current_setting('personalize.openai_api_key')" 2>&1)
  has "$out" "must be superuser" "a non-superuser cannot read it in a fresh session"
  out=$(reader -c "SHOW personalize.openai_api_key" 2>&1)
  has "$out" "must be superuser" "nor SHOW it"
  is "$(reader -c "SELECT count(*) FROM pg_settings WHERE name = 'personalize.openai_api_key'")" 0 \
     "nor see it in pg_settings"
  out=$(reader -c "SHOW ALL" 2>&1)
  [[ "$out" != *"$confkey"* ]]; tap $? "nor in SHOW ALL"
  q -c 'ALTER SYSTEM RESET personalize.openai_api_key' -c 'SELECT pg_reload_conf()' -c 'DROP ROLE regress_llm_reader' >/dev/null
else
  tap 0 "a key set with ALTER SYSTEM is hidden # SKIP personalize is not in shared_preload_libraries"
fi
# the server log: the collector's file, or the postmaster's stderr
logfile=$(q -c "SELECT CASE WHEN pg_current_logfile() LIKE '/%' THEN pg_current_logfile()
                            ELSE current_setting('data_directory') || '/' || pg_current_logfile() END")
if [ -z "$logfile" ]; then
  pmpid=$(head -n 1 "$(q -c "SELECT current_setting('data_directory')")/postmaster.pid" 2>/dev/null)
  logfile=$(readlink "/proc/$pmpid/fd/2" 2>/dev/null)
fi
logtext=$(q -c "SELECT pg_read_file('$logfile')" 2>/dev/null)
# (the key set with ALTER SYSTEM above is left out: the postmaster itself logs a changed
# setting on reload, which is why docs/reference.md recommends the key file)
tap $([ -n "$logtext" ] && [[ "$logtext" != *"$key"* && "$logtext" != *"sk-bad-personalize"* ]] && echo 0 || echo 1) \
  "the server log never contains the keys used by the runs ($logfile)"

# ---- Batch API
reset
out=$(llm ok.batch -c 'CALL personalize.llm_batch_submit(60)')
is "$(q -c "SELECT status || '|' || requests || '|' || customers FROM personalize.llm_batches")" "validating|3|60" "batch: one batch of 3 requests for 60 customers"
is "$(q -c "SELECT count(*) FROM personalize.llm_batch_requests")" 3 "batch: its requests are recorded by custom_id"
is "$(mockq ok.batch '[x["path"].rsplit("/", 1)[-1] for x in r]')" "['files', 'batches']" "batch: the JSONL uploaded to /files, then /batches"
out=$(llm ok.e2 -c 'CALL personalize.llm_refresh(200)')
is "$(q -c 'SELECT count(*) FROM personalize.llm_recommendations r JOIN personalize.llm_batch_requests q ON r.customer_id = ANY (q.customer_ids)')" 0 \
   "batch: llm_refresh() leaves the customers of an unfinished batch alone"
is "$(run)" "completed|90|4|0|0" "batch: and answers the 90 others"
polls=0
while [ "$(q -c 'SELECT count(*) FROM personalize.llm_batches WHERE finished_at IS NULL')" != 0 ] && [ $polls -lt 6 ]; do
  llm ok.batch -c 'CALL personalize.llm_batch_poll()' >/dev/null; polls=$((polls + 1))
done
is "$(q -c "SELECT status FROM personalize.llm_batches")" completed "batch: completed after $polls polls"
is "$(stored)|$(sane)" "150|0" "batch: its 60 customers stored from the output file (lines matched by custom_id)"
is "$(q -c "SELECT kind || '|' || status || '|' || customers FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" "batch_poll|completed|60" "batch: the poll run counts them"
out=$(llm ok.batch -c 'CALL personalize.llm_batch_poll()')
has "$out" "no unfinished batch" "batch: polling with nothing open does nothing"
for scen in batch_expired batch_failed batch_cancelled; do
  reset
  llm "$scen.a" -c 'CALL personalize.llm_batch_submit(50)' >/dev/null
  polls=0
  while [ "$(q -c 'SELECT count(*) FROM personalize.llm_batches WHERE finished_at IS NULL')" != 0 ] && [ $polls -lt 6 ]; do
    llm "$scen.a" -c 'CALL personalize.llm_batch_poll()' >/dev/null; polls=$((polls + 1))
  done
  st=$(q -c "SELECT status FROM personalize.llm_batches ORDER BY created_at DESC LIMIT 1")
  is "$st" "${scen#batch_}" "$scen: the batch ends ${scen#batch_} and is marked finished"
  if [ "$scen" = batch_expired ]; then
    is "$(stored)|$(rejections)" "25|batch_error=25" "batch_expired: the answered half stored, the other half rejected from the error file"
  else
    is "$(stored)|$(rejections)" "0|missing_in_batch=50" "$scen: every customer recorded as missing_in_batch"
  fi
done
out=$(llm ok.k -c 'CALL personalize.llm_refresh()')
is "$(stored)" 150 "after failed batches the customers are asked again"

# ---- embeddings and content neighbours
out=$(llm ok.emb -c 'CALL personalize.embed_products()')
is "$(q -c "SELECT kind || '|' || status || '|' || customers || '|' || requests FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" \
   "embed|completed|299|1" "embed_products(): the 299 active products in one request"
is "$(q -c 'SELECT count(*), min(cardinality(embedding)), max(cardinality(embedding)) FROM personalize.product_embeddings')" "299|256|256" \
   "embed_products(): 256-dimensional vectors stored"
is "$(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'content'")" 299 "embed_products(): a content neighbour list per product"
q -c "INSERT INTO personalize.products (product_id, name, category, price) VALUES (301, 'WHITE METAL LANTERN 301', 'lighting', 3)" >/dev/null
out=$(llm ok.emb2 -c 'CALL personalize.embed_products()')
is "$(q -c "SELECT customers || '|' || requests FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" "1|1" "a new product: only it is embedded"
is "$(q -c "SELECT count(*) > 0 FROM personalize.neighbors WHERE measure = 'content' AND 301 = ANY (neighbor_ids)")" t \
   "a new product enters the content lists of the products like it"
q -c "UPDATE personalize.products SET name = 'BLUE GLASS JAR RENAMED' WHERE product_id = 7" >/dev/null
out=$(llm ok.emb3 -c 'CALL personalize.embed_products()')
is "$(q -c "SELECT customers FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" 1 "a renamed product is embedded again"

q -c "INSERT INTO personalize.products (product_id, name) VALUES (302, 'RED PAPER BAG 302')" >/dev/null
out=$(llm quota.emb -c 'CALL personalize.embed_products()')
has "$out" "53000" "embed_products(): insufficient_quota stops it (53000)"
is "$(q -c "SELECT status || '|' || requests || '|' || rejections FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1")" "quota_exceeded|1|1" \
   "embed_products(): the run row says quota_exceeded, the product recorded as request_failed"
out=$(llm 500always.emb -c 'SET personalize.openai_max_retries = 0' -c 'CALL personalize.embed_products()')
has "$out" "08000" "embed_products(): every request failing is an error (08000), so pg_cron reports it"
out=$(llm ok.emb4 -c 'CALL personalize.embed_products()')
is "$(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'content' AND product_id = 302")" 1 "embed_products(): the product is embedded by the next good run"
q -c 'SELECT personalize.refresh_neighbors(all_products => true)' -c 'SELECT personalize.rebuild()' >/dev/null 2>&1
is "$(q -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'content'")" 301 "refresh_neighbors() and rebuild() keep the content lists"
q -c 'BEGIN' -c 'TRUNCATE personalize.interactions CASCADE' \
  -c "SELECT count(*) FROM personalize.neighbors WHERE measure = 'content'" -c 'ROLLBACK' > "$tmp/trunc.out" 2>&1
is "$(tail -n 1 "$tmp/trunc.out")" 301 "TRUNCATE of the events empties the model but keeps the content lists"

# ---- pg_cron: the job scheduled at the start has run by now
while [ $((SECONDS - cron_started)) -lt 75 ] && \
      [ "$(q -d postgres -c "SELECT count(*) FROM personalize.llm_runs WHERE status <> 'running'")" = 0 ]; do sleep 1; done
is "$(q -d postgres -c "SELECT status || '|' || customers FROM personalize.llm_runs ORDER BY run_id LIMIT 1")" "completed|30" \
   "pg_cron ran llm_refresh(): its run is in personalize.llm_runs"
for _ in $(seq 20); do
  st=$(q -d postgres -c "SELECT status FROM cron.job_run_details WHERE jobid = $cronjob ORDER BY runid LIMIT 1")
  [ "$st" = succeeded ] && break; sleep 0.5
done
is "$st" succeeded "and in cron.job_run_details"
is "$(q -d postgres -c 'SELECT personalize.unschedule_llm_refresh()')" t "unschedule_llm_refresh() removes it"
j1=$(q -d postgres -c "SELECT personalize.schedule_llm_batch_poll()")
j2=$(q -d postgres -c "SELECT personalize.schedule_llm_batch()")
j3=$(q -d postgres -c "SELECT personalize.schedule_embed_products()")
is "$(q -d postgres -c "SELECT string_agg(schedule || ' ' || command, ', ' ORDER BY jobid) FROM cron.job WHERE jobid IN ($j1, $j2, $j3)")" \
   "*/10 * * * * CALL personalize.llm_batch_poll(), 0 2 * * * CALL personalize.llm_batch_submit(), 30 * * * * CALL personalize.embed_products()" \
   "the batch poll, batch submit and embedding jobs"
is "$(q -d postgres -c 'SELECT personalize.unschedule_llm_batch_poll() AND personalize.unschedule_llm_batch() AND personalize.unschedule_embed_products()')" t "and their unschedule twins"
other=$(q -c 'SELECT personalize.schedule_llm_refresh()')
is "$(q -d postgres -c "SELECT jobname || ' ' || database FROM cron.job WHERE jobid = $other")" "personalize-llm-refresh@$db $db" \
   "from a database without pg_cron: the job is created in pg_cron's database and runs in this one"
is "$(q -c 'SELECT personalize.unschedule_llm_refresh()')" t "and unschedule_llm_refresh() from there removes it"
echo "1..$n"
