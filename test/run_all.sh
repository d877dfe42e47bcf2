#!/bin/bash
# Run every test of personalize on a throw-away cluster (pg_cron and personalize
# preloaded, as docs/reference.md recommends for the OpenAI key):
# pg_regress (sql/ -> expected/), the pgTAP suite (test/pgtap/) and the scripted
# tests (test/scripts/). Installs what it needs first. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
test/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
exec pg_virtualenv -t \
  -o shared_preload_libraries=pg_cron,personalize \
  -o cron.database_name=postgres \
  -o cron.use_background_workers=on \
  -o max_connections=60 \
  bash test/in_cluster.sh
