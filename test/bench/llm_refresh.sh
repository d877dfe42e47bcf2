#!/bin/bash
# Benchmark of the OpenAI cold start (issue 4, item 8): CALL personalize.llm_refresh() for
# 10,000 cold-start customers against the mock OpenAI server (test/mock_openai.py) answering
# every request in 300 ms, at concurrency 1, 2, 4, 8 with 25 customers per request, against
# "the seed's way" (one customer per request, one request at a time) measured in the same run.
# Prints Markdown tables (and progress while it runs).
#
#   bash test/bench/llm_refresh.sh
#
# Environment (all optional):
#   SEED_CUSTOMERS  customers of the seed's way sample (default 500; 10000 = the full ~50 min)
#   CUSTOMERS       cold-start customers (default 10000)
#   CONCURRENCY     the batched runs (default "1 2 4 8")
#   PER_REQUEST     customers per request of the batched runs (default 25)
#   LATENCY_MS      the mock's delay of every answer (default 300)
#   MOCK_PORT       the mock's port (default 18084, or a free one if taken)
#   PORT            the throw-away cluster's port (default 5444, or a free one from 5451)
#   OUT             raw results and logs (default test/bench/out/llm_refresh)
#   FIGURES         also copy the figure there (e.g. FIGURES=docs)
# Data: the Online Retail products and customers (test/load_online_retail.sh), popularity
# refreshed, plus CUSTOMERS new customers created now with 0, 1 or 2 views of a random active
# product each (deterministic). They are the most recently active customers, so
# llm_refresh(CUSTOMERS) picks exactly them (checked).
# Without PG* environment the script builds the extension, installs a private copy and runs in
# its own cluster (pg_virtualenv -t, loading that copy through extension_destdir); with PGHOST,
# PGPORT or PGDATABASE set it uses that server (database bench_llm, dropped and recreated).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SEED_CUSTOMERS=${SEED_CUSTOMERS:-500}
CUSTOMERS=${CUSTOMERS:-10000}
CONCURRENCY=${CONCURRENCY:-1 2 4 8}
PER_REQUEST=${PER_REQUEST:-25}
LATENCY_MS=${LATENCY_MS:-300}
OUT=${OUT:-$root/test/bench/out/llm_refresh}
export SEED_CUSTOMERS CUSTOMERS CONCURRENCY PER_REQUEST LATENCY_MS
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT
[ -n "${FIGURES:-}" ] && { mkdir -p "$FIGURES"; FIGURES=$(cd "$FIGURES" && pwd); export FIGURES; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if [ -z "${BENCH_INSIDE:-}" ] && [ -z "${PGHOST:-}${PGPORT:-}${PGDATABASE:-}" ]; then
  # build, and a private copy (DESTDIR) that the cluster loads through Debian's
  # extension_destdir, so that others installing a newer build meanwhile change nothing
  rm -rf "$OUT/install"
  for try in 1 2 3 4 5 6 7 8 9 10; do
    if (cd "$root" && make -s >/dev/null && make -s install DESTDIR="$OUT/install" >/dev/null); then break; fi
    [ $try = 10 ] && { echo "llm_refresh.sh: the extension does not build" >&2; exit 1; }
    log "build failed, retrying in 30 s"; sleep 30
  done
  port=${PORT:-5444}
  if ss -Hltn "sport = :$port" | grep -q .; then
    for p in $(seq 5451 5499); do ss -Hltn "sport = :$p" | grep -q . || { port=$p; break; }; done
  fi
  [ "$port" = 5440 ] && { echo "llm_refresh.sh: port 5440 is not ours" >&2; exit 2; }
  log "building done; starting a throw-away cluster on port $port"
  export BENCH_INSIDE=1
  exec pg_virtualenv -t -c "-p $port" \
    -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    -o shared_buffers=1GB -o work_mem=64MB -o jit=off -o max_connections=20 \
    -o extension_destdir="$OUT/install" \
    bash "$0"
fi

##############################################################################
# inside the cluster
##############################################################################
db=bench_llm
export PGDATABASE=$db
cd "$OUT"
mkdir -p log
rm -f log/* results.md llm_refresh.dat runs.tsv
Q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
report() { echo "$*" >> results.md; echo "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fmt() { LC_ALL=C awk -v x="$1" -v f="${2:-%.0f}" 'BEGIN { s = sprintf(f, x); n = s; sub(/\..*/, "", n);
          r = substr(s, length(n) + 1); neg = (n ~ /^-/); if (neg) n = substr(n, 2);
          while (length(n) > 3) { r = "," substr(n, length(n) - 2) r; n = substr(n, 1, length(n) - 3) }
          print (neg ? "-" : "") n r }'; }
calc() { LC_ALL=C awk "BEGIN { printf \"${2:-%.2f}\", $1 }"; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
echo "sk-bench-personalize-llm-refresh" > "$tmp/key"
chmod 644 "$tmp/key"
mock=
poller=
cleanup() {
  [ -n "$poller" ] && kill "$poller" 2>/dev/null
  [ -n "$mock" ] && kill "$mock" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the mock
mport=${MOCK_PORT:-18084}
if ss -Hltn "sport = :$mport" | grep -q .; then mport=$(free_port); fi
python3 "$root/test/mock_openai.py" --port "$mport" --latency-ms "$LATENCY_MS" > log/mock.out 2> log/mock.log &
mock=$!
for _ in $(seq 100); do grep -q listening log/mock.out 2>/dev/null && break; sleep 0.1; done
grep -q listening log/mock.out || { echo "llm_refresh.sh: the mock did not start (log/mock.log)" >&2; exit 1; }
log "mock OpenAI on 127.0.0.1:$mport, every answer delayed by $LATENCY_MS ms"

# ---- the data
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
Q -c 'CREATE EXTENSION personalize' >/dev/null
Q -c "ALTER DATABASE $db SET personalize.openai_api_key_file = '$tmp/key'" >/dev/null
log "loading Online Retail (test/load_online_retail.sh, ~20-40 s)"
t0=$(date +%s)
bash "$root/test/load_online_retail.sh" > log/load.log 2>&1
log "loaded in $(( $(date +%s) - t0 )) s; adding $CUSTOMERS cold-start customers"
Q > log/setup.log <<SQL
SELECT personalize.refresh_popular();
CREATE TEMP TABLE act AS SELECT row_number() OVER (ORDER BY product_id) AS n, product_id
  FROM personalize.products WHERE active;
-- new customers from id 100000001, created now, 0, 1 or 2 views each (a third each)
INSERT INTO personalize.customers (customer_id, country, created_at)
SELECT 100000000 + g,
       (ARRAY['United Kingdom','United Kingdom','United Kingdom','Germany','France','EIRE','Spain','Netherlands'])
           [1 + abs(hashint8extended(g::bigint, 1)) % 8],
       now() - interval '1 hour' + g * interval '1 ms'
FROM generate_series(1, $CUSTOMERS) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT 100000000 + g, a.product_id, 'view', now() - interval '30 minutes' + g * interval '1 ms' + e * interval '1 s'
FROM generate_series(1, $CUSTOMERS) g
CROSS JOIN LATERAL generate_series(1, (abs(hashint8extended(g::bigint, 2)) % 3)::int) e
JOIN act a ON a.n = 1 + abs(hashint8extended(g * 10::bigint + e, 3)) % (SELECT count(*) FROM act);
ANALYZE;
SQL
read -r n_or n_new n_events n_products n_catalog n_picked n_picked_new <<<"$(Q -F ' ' -c "
  SELECT (SELECT count(*) FROM personalize.customers WHERE customer_id < 100000000),
         (SELECT count(*) FROM personalize.customers WHERE customer_id > 100000000),
         (SELECT count(*) FROM personalize.interactions WHERE customer_id > 100000000),
         (SELECT count(*) FROM personalize.products WHERE active),
         jsonb_array_length(personalize._llm_catalog()),
         cardinality(p), (SELECT count(*) FROM unnest(p) c WHERE c > 100000000)
  FROM personalize._llm_pick($CUSTOMERS) p")"
log "$n_new new customers ($n_events views), $n_or Online Retail customers, $n_products active products, catalog of $n_catalog sent per request"
if [ "$n_picked_new" != "$CUSTOMERS" ]; then
  echo "llm_refresh.sh: _llm_pick($CUSTOMERS) picks $n_picked customers, $n_picked_new of them new: not the $CUSTOMERS new customers" >&2
  exit 1
fi

# ---- one run: label, concurrency, customers per request, max_customers
# appends to runs.tsv: label conc per_req max run_id status customers requests retries failures
#   rejections prompt completion seconds client_seconds stored stored_new mock_requests mock_customers
run_one() {
  local label=$1 conc=$2 per=$3 max=$4 tok="ok.$1"
  Q -c 'DELETE FROM personalize.llm_recommendations' -c 'DELETE FROM personalize.llm_rejections' >/dev/null
  local before; before=$(Q -c 'SELECT coalesce(max(run_id), 0) FROM personalize.llm_runs')
  log "$label: llm_refresh($max), $per customer(s) per request, concurrency $conc"
  # progress from llm_runs (the procedure commits after every round)
  ( while sleep 10; do
      Q -F ' ' -c "SELECT coalesce(details ->> 'done', '0'), customers, requests,
                          round(extract(epoch FROM clock_timestamp() - started_at))
                   FROM personalize.llm_runs WHERE run_id > $before ORDER BY run_id DESC LIMIT 1" 2>/dev/null |
      while read -r done cust req secs; do
        echo "[$(date -u +%H:%M:%S)]   $label: $done of $max asked, $cust answered, $req requests, ${secs} s" >&2
        echo "$label $secs $req $cust" >> log/progress.tsv
      done
    done ) &
  poller=$!
  local t0 t1
  t0=$(date +%s.%N)
  psql -X -q -v ON_ERROR_STOP=1 \
       -c "SET personalize.openai_base_url = 'http://127.0.0.1:$mport/$tok/v1'" \
       -c "SET personalize.openai_concurrency = $conc" \
       -c "SET personalize.llm_customers_per_request = $per" \
       -c "CALL personalize.llm_refresh($max)" > "log/$label.out" 2>&1 || {
    kill "$poller" 2>/dev/null; poller=
    echo "llm_refresh.sh: $label: llm_refresh failed:" >&2; cat "log/$label.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null || true; poller=
  local row mock_json
  row=$(Q -F $'\t' -c "SELECT run_id, status, customers, requests, retries, failures, rejections,
                              prompt_tokens, completion_tokens,
                              round(extract(epoch FROM finished_at - started_at)::numeric, 3),
                              (SELECT count(DISTINCT customer_id) FROM personalize.llm_recommendations),
                              (SELECT count(DISTINCT customer_id) FROM personalize.llm_recommendations WHERE customer_id > 100000000)
                       FROM personalize.llm_runs WHERE run_id > $before ORDER BY run_id DESC LIMIT 1")
  mock_json=$(curl -s "http://127.0.0.1:$mport/_mock/requests?scenario=$tok" |
              python3 -c 'import json, sys; r = json.load(sys.stdin); print(len(r), sum(x["customers"] or 0 for x in r))')
  IFS=$'\t' read -r run status cust req retries fail rej prompt compl secs stored stored_new <<<"$row"
  local client; client=$(calc "$t1 - $t0" %.3f)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$label" "$conc" "$per" "$max" "$run" "$status" "$cust" "$req" "$retries" "$fail" "$rej" \
    "$prompt" "$compl" "$secs" "$client" "$stored" "$stored_new" ${mock_json} >> runs.tsv
  log "$label: $status, $cust customers, $req requests in $secs s (client $client s); mock saw ${mock_json% *} requests carrying ${mock_json#* } customers"
  local odd=
  [ "$status" = completed ] || odd="$odd status $status;"
  [ "$cust" = "$max" ] || odd="$odd $cust customers answered, not $max;"
  [ "$stored_new" = "$max" ] && [ "$stored" = "$max" ] || odd="$odd $stored customers stored ($stored_new new);"
  [ "$fail" = 0 ] && [ "$rej" = 0 ] && [ "$retries" = 0 ] || odd="$odd $fail failures, $rej rejections, $retries retries;"
  [ "${mock_json% *}" = "$req" ] || odd="$odd llm_runs says $req requests, the mock saw ${mock_json% *};"
  [ "${mock_json#* }" = "$max" ] || odd="$odd the mock saw ${mock_json#* } customers;"
  if [ -n "$odd" ]; then log "$label: ODD:$odd"; echo "$label:$odd" >> log/odd.txt; fi
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
: > log/progress.tsv
for c in $CONCURRENCY; do run_one "c$c" "$c" "$PER_REQUEST" "$CUSTOMERS"; done
log "the seed's way on a sample of $SEED_CUSTOMERS customers: ~$(( SEED_CUSTOMERS * (LATENCY_MS + 15) / 1000 )) s"
run_one seed 1 1 "$SEED_CUSTOMERS"
load1=$(cut -d' ' -f1-3 /proc/loadavg)

##############################################################################
# the report
##############################################################################
# the seed's way: per customer, scaled to CUSTOMERS (sequential, one request per customer)
IFS=$'\t' read -r _ _ _ s_max _ _ s_cust s_req _ _ _ s_prompt s_compl s_secs _ <<<"$(grep '^seed' runs.tsv)"
s_scaled=$(calc "$s_secs / $s_cust * $CUSTOMERS" %.1f)
s_req_scaled=$(calc "$s_req / $s_cust * $CUSTOMERS" %.0f)
s_ms_req=$(calc "$s_secs * 1000 / $s_req" %.1f)
# linearity: request rate over the first and the second half of the sample (progress samples)
half=$(awk -v m="$s_secs" '$1 == "seed" { t[++n] = $2; r[n] = $3 }
  END { if (n < 4) { print "too short to sample (progress every 10 s)"; exit }
        h = 0; for (i = 1; i <= n; i++) if (t[i] <= m / 2) h = i;
        if (h < 1 || r[n] == r[h]) { print "-"; exit }
        printf "%.1f ms per request over the first %d s, %.1f ms over the next %d s",
               t[h] * 1000 / r[h], t[h], (t[n] - t[h]) * 1000 / (r[n] - r[h]), t[n] - t[h] }' log/progress.tsv)

machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc), Debian $(cat /etc/debian_version), $(Q -c 'SELECT version()' | sed 's/ on .*//; s/ (Debian.*//'), personalize at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || echo ' (with uncommitted changes in src/ or sql/)')"
report "### Measured $started"
report ""
report "- machine: $machine; load average $load0 at the start, $load1 at the end (2 shared cores)"
report "- data: Online Retail ($(fmt "$n_or") customers, $(fmt "$n_products") active products) + $(fmt "$n_new") new customers with $(fmt "$n_events") views (0-2 each); catalog of $n_catalog products in every request; mock latency $LATENCY_MS ms"
report ""
report "| way | customers | requests | wall s | customers/s | wall ms per request | prompt tokens | completion tokens | tokens per customer | × fewer requests | × less wall time |"
report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
report "| seed's way (1 per request, sequential), measured | $(fmt "$s_cust") | $(fmt "$s_req") | $(fmt "$s_secs" %.1f) | $(calc "$s_cust / $s_secs" %.2f) | $s_ms_req | $(fmt "$s_prompt") | $(fmt "$s_compl") | $(fmt "$(calc "($s_prompt + $s_compl) / $s_cust" %.0f)") | $( [ "$s_cust" = "$CUSTOMERS" ] && echo 1) | $( [ "$s_cust" = "$CUSTOMERS" ] && echo 1) |"
[ "$s_cust" = "$CUSTOMERS" ] || report "| seed's way, scaled to $(fmt "$CUSTOMERS") | $(fmt "$CUSTOMERS") | $(fmt "$s_req_scaled") | $(fmt "$s_scaled" %.0f) | $(calc "$s_cust / $s_secs" %.2f) | $s_ms_req | $(fmt "$(calc "$s_prompt / $s_cust * $CUSTOMERS" %.0f)") | $(fmt "$(calc "$s_compl / $s_cust * $CUSTOMERS" %.0f)") | $(fmt "$(calc "($s_prompt + $s_compl) / $s_cust" %.0f)") | 1 | 1 |"
: > llm_refresh.dat
met_req=yes; met_wall=yes; best_wall=
while IFS=$'\t' read -r label conc per max run status cust req retries fail rej prompt compl secs client stored stored_new mreq mcust; do
  [ "$label" = seed ] && continue
  rr=$(calc "$s_req_scaled / $req" %.1f)
  wr=$(calc "$s_scaled / $secs" %.1f)
  report "| llm_refresh, $per per request, concurrency $conc | $(fmt "$cust") | $(fmt "$req") | $(fmt "$secs" %.1f) | $(calc "$cust / $secs" %.1f) | $(calc "$secs * 1000 / $req" %.1f) | $(fmt "$prompt") | $(fmt "$compl") | $(calc "($prompt + $compl) / $cust" %.0f) | $rr | $wr |"
  floor=$(calc "int(($req + $conc - 1) / $conc) * $LATENCY_MS / 1000" %.1f)
  echo "$conc $secs $req $cust $floor $client" >> llm_refresh.dat
  awk -v a="$rr" 'BEGIN { exit !(a < 20) }' && met_req="no (concurrency $conc: ${rr}×)"
  echo "$conc $wr" >> log/wall_ratios.txt
done < runs.tsv
report ""
report "- the seed's way: $(fmt "$s_cust") customers measured, $s_ms_req ms per request (the mock's $LATENCY_MS ms + building the request, validating and committing the answer); scaled linearly to $(fmt "$CUSTOMERS") customers: $(fmt "$s_scaled" %.0f) s. Linearity: $half."
report "- target ≥ 20× fewer requests: $( [ "$met_req" = yes ] && echo "met at every concurrency" || echo "$met_req")"
report "- target ≥ 50× less wall time: $(awk '{ printf "%s%s× at concurrency %s (%s)", (NR > 1 ? ", " : ""), $2, $1, ($2 >= 50 ? "met" : "missed") }' log/wall_ratios.txt)"
if [ -s log/odd.txt ]; then report "- ODD: $(tr '\n' ' ' < log/odd.txt)"; else report "- every run: status completed, every customer answered and stored, no retry, failure or rejection; the mock's request and customer counts equal llm_runs'"; fi
report ""

# ---- the figure
if command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='$OUT/llm_refresh.dat'; outfile='$OUT/benchmark_llm_refresh.png'; seed=$s_scaled; customers=$CUSTOMERS; per=$PER_REQUEST; latency=$LATENCY_MS" \
          "$here/llm_refresh.gp" && log "figure: $OUT/benchmark_llm_refresh.png"
  [ -n "${FIGURES:-}" ] && cp "$OUT/benchmark_llm_refresh.png" "$FIGURES/" && log "figure copied to $FIGURES/benchmark_llm_refresh.png"
else
  log "gnuplot not found: no figure"
fi
log "raw results in $OUT (results.md, runs.tsv, llm_refresh.dat, log/)"
