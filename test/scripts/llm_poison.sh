#!/bin/bash
# Poisoned 2xx answers (issue 10, defects 2 and 4), against the mock server
# (test/mock_openai.py, its poison_* scenarios): an answer holding \u0000, 100,000 nested
# arrays, "prompt_tokens": 1e30, an embedding value of 1e-50, or characters outside
# Latin-1 in a LATIN1 database. For each poison, in a UTF8 and in a LATIN1 database:
#   llm_refresh()     the run completes, the customers of a poisoned answer get a rejection
#                     with its reason and SQLSTATE, the others of the same run are stored;
#   llm_batch_poll()  a batch with poisoned output lines completes like that, and the batch
#                     submitted after it is ingested by the same poll;
#   embed_products()  the products of a poisoned answer are rejected, the others stored;
#                     1e-50 is stored as 0.
# In a UTF8 database ’ — “ and emoji are no poison: those answers are stored as they are.
# Runs inside pg_virtualenv. TAP output.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
is() { [ "$1" = "$2" ]; tap $? "$3 (got '$1', want '$2')"; }
export PGCLIENTENCODING=UTF8
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
chmod 755 "$tmp"
echo "sk-test-personalize-poison-5e8a1c" > "$tmp/key"
chmod 644 "$tmp/key"
port=$(free_port)
python3 test/mock_openai.py --port "$port" 2> "$tmp/mock.log" & mock=$!
dbs="personalize_poison_utf8 personalize_poison_latin1"
cleanup() {
  kill "$mock" 2>/dev/null
  for d in $dbs; do dropdb --if-exists "$d" >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/_mock/requests" && break; sleep 0.1; done

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1; }
# llm <mock token> [psql args...]: a session whose base URL points at the mock, one
# customer per request (a request is poisoned when its customer's id is even)
llm() { local tok=$1; shift; timeout 120 psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
          -c "SET personalize.openai_base_url = 'http://127.0.0.1:$port/$tok/v1'" \
          -c 'SET personalize.llm_customers_per_request = 1' -c 'SET personalize.openai_embedding_dimensions = 8' \
          "$@" 2>&1; }
last_run() { q -c "SELECT kind || '|' || status FROM personalize.llm_runs ORDER BY run_id DESC LIMIT 1"; }
answered() { q -c "SELECT coalesce(string_agg(DISTINCT customer_id::text, ',' ORDER BY customer_id::text), '') FROM personalize.llm_recommendations"; }
# the rejections of the last run: "customers|reasons|SQLSTATEs named in the details"
rejected() { q -c "SELECT coalesce(string_agg(DISTINCT coalesce(customer_id, product_id)::text, ','), '') || '|' ||
                          coalesce(string_agg(DISTINCT reason, ','), '') || '|' ||
                          coalesce(string_agg(DISTINCT substring(detail FROM '\\((22P05|54001|22003|22P02)'), ','), '')
                     FROM personalize.llm_rejections WHERE run_id = (SELECT max(run_id) FROM personalize.llm_runs)"; }
clear() { q -c 'DELETE FROM personalize.llm_recommendations' -c 'DELETE FROM personalize.llm_rejections' \
            -c 'DELETE FROM personalize.product_embeddings' >/dev/null; }

# poison -> what its answers become: "reason|SQLSTATE", or "stored" (in UTF8 for the
# Latin-1 ones). Chat answers and batch lines alike.
expect() {  # $1 poison, $2 encoding
  case "$1" in
    poison_nul)          echo "malformed_response|22P05" ;;
    poison_nul_content)  echo "malformed_json|22P05" ;;
    poison_deep)         echo "malformed_response|54001" ;;
    poison_deep_content) echo "malformed_json|54001" ;;
    poison_bigint)       echo "malformed_response|22003" ;;
    poison_latin1)       if [ "$2" = UTF8 ]; then echo stored; else echo "malformed_response|22P05"; fi ;;
    poison_latin1_esc)   if [ "$2" = UTF8 ]; then echo stored; else echo "malformed_json|22P05"; fi ;;
  esac
}
chat_poisons="poison_nul poison_nul_content poison_deep poison_deep_content poison_bigint poison_latin1 poison_latin1_esc"

for db in $dbs; do
  if [ "$db" = personalize_poison_latin1 ]; then
    enc=LATIN1; createdb -E LATIN1 -T template0 --locale=C "$db"
  else
    enc=UTF8; createdb -E UTF8 -T template0 --locale=C "$db"
  fi
  is "$(q -c 'SHOW server_encoding')" "$enc" "$enc: the database"
  q -c 'CREATE EXTENSION personalize' >/dev/null
  q -c "ALTER DATABASE $db SET personalize.openai_api_key_file = '$tmp/key'" >/dev/null
  # 2050 active products (an embeddings request takes 2048: the last two make a second
  # one, poisoned by the name of 2050), 20 customers without history, all created at once
  q <<'SQL' >/dev/null
INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, CASE WHEN g = 2050 THEN 'POISON LANTERN' ELSE 'CERAMIC MUG ' || g END,
       (ARRAY['lighting', 'kitchen', 'bags'])[g % 3 + 1], 1 + g % 7
FROM generate_series(1, 2050) g;
INSERT INTO personalize.customers (customer_id, created_at)
SELECT g, '2024-01-01' FROM generate_series(1, 20) g;
SQL

  # ---- llm_refresh(): 8 customers, one per request; the even ones get the poison
  for p in $chat_poisons; do
    clear
    out=$(llm "$p.$db.r" -c 'CALL personalize.llm_refresh(8)')
    want=$(expect "$p" "$enc")
    is "$(last_run)" "refresh|completed" "$enc $p: llm_refresh() completes"
    if [ "$want" = stored ]; then
      is "$(answered)|$(rejected)" "1,2,3,4,5,6,7,8|||" "$enc $p: every answer stored, nothing rejected"
      is "$(q -c "SELECT count(*) FILTER (WHERE reason LIKE '%it’s café — “bright” 😀%') FROM personalize.llm_recommendations WHERE customer_id = 2")" 10 \
         "$enc $p: the reasons keep ’ — “ and the emoji"
    else
      is "$(answered)" "1,3,5,7" "$enc $p: the healthy answers of the run are stored"
      is "$(rejected)" "2,4,6,8|$want" "$enc $p: the poisoned ones are rejected with their reason and SQLSTATE"
    fi
  done

  # ---- llm_batch_poll(): batch A with poisoned lines, then batch B, polled together
  for p in $chat_poisons; do
    clear
    llm "$p.$db.a" -c 'CALL personalize.llm_batch_submit(6)' >/dev/null
    llm "ok.$db.b$p" -c 'CALL personalize.llm_batch_submit(6)' >/dev/null
    polls=0
    while [ "$(q -c 'SELECT count(*) FROM personalize.llm_batches WHERE finished_at IS NULL')" != 0 ] && [ $polls -lt 4 ]; do
      llm "ok.$db.p$p" -c 'CALL personalize.llm_batch_poll()' >/dev/null; polls=$((polls + 1))
    done
    want=$(expect "$p" "$enc")
    is "$(q -c 'SELECT count(*) FROM personalize.llm_batches WHERE finished_at IS NULL')|$(last_run)" \
       "0|batch_poll|completed" "$enc $p: both batches ingested (in $polls polls), the poll run completes"
    if [ "$want" = stored ]; then
      is "$(answered)|$(rejected)" "1,10,11,12,2,3,4,5,6,7,8,9|||" "$enc $p: every line stored"
    else
      is "$(answered)" "1,10,11,12,3,5,7,8,9" "$enc $p: the healthy lines of A and all of B stored"
      is "$(rejected)" "2,4,6|$want" "$enc $p: the poisoned lines rejected for their customers, with reason and SQLSTATE"
    fi
    is "$(q -c 'SELECT count(*) FROM personalize.llm_batch_requests')" 0 "$enc $p: nothing left waiting in a batch"
  done

  # ---- embed_products(): 2048 products in one request, 2049 and 2050 in the poisoned one
  for p in poison_nul poison_deep poison_bigint poison_latin1 poison_tiny; do
    clear
    out=$(llm "$p.$db.e" -c 'CALL personalize.embed_products()')
    is "$(last_run)" "embed|completed" "$enc $p: embed_products() completes"
    if [ "$p" = poison_tiny ] || { [ "$p" = poison_latin1 ] && [ "$enc" = UTF8 ]; }; then
      is "$(q -c 'SELECT count(*) FROM personalize.product_embeddings')|$(rejected)" "2050|||" "$enc $p: every product embedded"
    else
      is "$(q -c 'SELECT count(*), max(product_id) FROM personalize.product_embeddings')" "2048|2048" "$enc $p: the healthy request's products embedded"
      want=$(expect "$p" "$enc")
      is "$(rejected)" "2049,2050|${want%%|*}|${want#*|}" "$enc $p: the poisoned request's products rejected with reason and SQLSTATE"
    fi
    if [ "$p" = poison_tiny ]; then
      is "$(q -c 'SELECT embedding[1], embedding[2] <> 0 FROM personalize.product_embeddings WHERE product_id = 2050')" "0|t" \
         "$enc $p: 1e-50 stored as 0, the rest of the vector kept"
    fi
  done
  is "$(q -c "SELECT count(DISTINCT product_id) FROM personalize.neighbors WHERE measure = 'content'")" 2050 \
     "$enc: the run went on to the content neighbour lists"
done

echo "1..$n"
