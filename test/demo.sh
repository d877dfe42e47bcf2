#!/bin/bash
# The main job on the embedded default: load the real Online Retail data into a
# throw-away cluster (pg_cron preloaded), let the triggers build the model as the
# purchases stream in, and show recommendations for a few customers under two
# variants, with their reasons; then the OpenAI cold start for customers without
# history (OpenAI when OPENAI_API_KEY is set, else the project's mock server).
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
test/setup.sh
exec pg_virtualenv -t -o shared_preload_libraries=pg_cron,personalize -o cron.database_name=postgres \
  bash -c 'set -euo pipefail
createdb personalize_demo
export PGDATABASE=personalize_demo
psql -X -q -c "CREATE EXTENSION personalize"
echo "== loading Online Retail (UCI, CC BY 4.0) through the co-occurrence triggers"
SECONDS=0
test/load_online_retail.sh
echo "loaded in ${SECONDS} s"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
\echo == building the neighbour lists and the popularity list (what the pg_cron job does)
SELECT personalize.refresh_neighbors() AS products_refreshed;
-- the data ends on 2011-12-09: recommend as of the day after
SELECT personalize.refresh_popular(as_of => '"'"'2011-12-10'"'"') AS popular_products;
SET personalize.as_of = '"'"'2011-12-10'"'"';
\echo == the model
SELECT * FROM personalize.model_stats;
\echo == recommendations: a regular customer, an occasional one, and an anonymous visitor
\echo ---- variant hybrid (the default)
SELECT r.customer_id, r.rank, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM (VALUES (17850), (12347), (0)) AS c(customer_id),
     LATERAL (SELECT c.customer_id, x.* FROM personalize.recommend(c.customer_id, NULL, 5)
              WITH ORDINALITY AS x(product_id, score, reason, rank)) r
JOIN personalize.products p USING (product_id)
ORDER BY r.customer_id DESC, r.rank;
\echo ---- variant popular
SELECT r.customer_id, r.rank, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM (VALUES (17850), (12347)) AS c(customer_id),
     LATERAL (SELECT c.customer_id, x.* FROM personalize.recommend(c.customer_id, '"'"'popular'"'"', 3)
              WITH ORDINALITY AS x(product_id, score, reason, rank)) r
JOIN personalize.products p USING (product_id)
ORDER BY r.customer_id DESC, r.rank;
\echo == a new customer buys two products: the pair count moves in the same transaction
BEGIN;
SELECT personalize.cooccurrence_count(1765, 2232) AS before;
INSERT INTO personalize.customers (customer_id, country) VALUES (999999, '"'"'France'"'"');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (999999, 1765, '"'"'purchase'"'"'), (999999, 2232, '"'"'purchase'"'"');
SELECT personalize.cooccurrence_count(1765, 2232) AS after;
SELECT p.name, r.reason FROM personalize.recommend(999999, NULL, 3) r JOIN personalize.products p USING (product_id);
ROLLBACK;
SQL

echo "== cold start from OpenAI: customers without history"
if [ -n "${OPENAI_API_KEY:-}" ]; then
  echo "using the OpenAI key in \$OPENAI_API_KEY (base URL ${OPENAI_BASE_URL:-https://api.openai.com/v1})"
  base=${OPENAI_BASE_URL:-https://api.openai.com/v1}
  keyopt="-c personalize.openai_api_key=$OPENAI_API_KEY"
else
  cat <<TXT
No OpenAI key is configured. To ask OpenAI (or any OpenAI-compatible server) here, run
  OPENAI_API_KEY=sk-... [OPENAI_BASE_URL=https://.../v1] bash test/demo.sh
In your own database, keep the key in a file only the server can read and name it:
  ALTER SYSTEM SET personalize.openai_api_key_file = '"'"'/etc/postgresql/openai.key'"'"';
  SELECT pg_reload_conf();
(docs/reference.md, "The OpenAI key", says why not ALTER DATABASE/ROLE SET.)
Meanwhile this demo asks the project'"'"'s mock OpenAI server (test/mock_openai.py, 127.0.0.1).
TXT
  port=$(python3 -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")
  python3 test/mock_openai.py --port "$port" --latency-ms 300 2>/dev/null &
  mock=$!
  trap "kill $mock 2>/dev/null" EXIT
  for _ in $(seq 50); do python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:$port/_mock/requests\")" 2>/dev/null && break; sleep 0.1; done
  base=http://127.0.0.1:$port/ok/v1
  keyopt="-c personalize.openai_api_key=sk-mock-demo"
fi
PGOPTIONS="$keyopt -c personalize.openai_base_url=$base" psql -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO personalize.customers (customer_id, country) VALUES (900001, '"'"'France'"'"'), (900002, '"'"'Germany'"'"');
INSERT INTO personalize.interactions (customer_id, product_id, event_type) VALUES (900002, 1765, '"'"'view'"'"');
\echo ---- the bulk refresh (what the nightly pg_cron job runs): both new customers in one request
CALL personalize.llm_refresh(2);
SELECT run_id, status, customers, requests, retries, failures, prompt_tokens, completion_tokens,
       round(extract(epoch FROM finished_at - started_at)::numeric, 2) AS seconds
FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1;
\echo ---- recommend() serves the stored answers without calling the network (variant hybrid, the default)
SELECT r.customer_id, r.rank, p.name, round(r.score::numeric, 3) AS score, r.reason
FROM (VALUES (900001), (900002)) AS c(customer_id),
     LATERAL (SELECT c.customer_id, x.* FROM personalize.recommend(c.customer_id, NULL, 4)
              WITH ORDINALITY AS x(product_id, score, reason, rank)) r
JOIN personalize.products p USING (product_id)
ORDER BY r.customer_id, r.rank;
SQL
'
