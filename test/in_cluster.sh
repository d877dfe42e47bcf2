#!/bin/bash
# The body of test/run_all.sh, run inside pg_virtualenv (PGHOST, PGPORT, PGUSER set).
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# TAP lines on stdin -> counts (a program that failed without a "not ok" counts once)
count_tap() {    # $1 = exit status of the producer, $2 = name
  local ok nok
  ok=$(grep -cE '^[[:space:]]*ok [0-9]+' "$log/out" || true)
  nok=$(grep -cE '^[[:space:]]*not ok [0-9]+' "$log/out" || true)
  if [ "$1" != 0 ] && [ "$nok" = 0 ]; then nok=1; echo "FAILED: $2 exited $1 with no failing test line"; fi
  passed=$((passed + ok)); failed=$((failed + nok))
  grep -E '^[[:space:]]*not ok' "$log/out" | sed "s|^|$2: |"
}

echo "== pg_regress"
make -s installcheck PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config > "$log/out" 2>&1
rc=$?
cat "$log/out" | grep -E '^(test | ?ok|not ok|     [a-z])|tests? (passed|failed)' || true
ok=$(grep -cE '^(test|     ) *[a-z_0-9]+ +\.\.\. ok' "$log/out" || true)
nok=$(grep -cE '^(test|     ) *[a-z_0-9]+ +\.\.\. FAILED' "$log/out" || true)
if [ $rc != 0 ] && [ "$nok" = 0 ]; then nok=1; tail -n 20 "$log/out"; fi
[ "$nok" != 0 ] && [ -f regression.diffs ] && head -n 200 regression.diffs
passed=$((passed + ok)); failed=$((failed + nok))

echo "== pgTAP"
if compgen -G 'test/pgtap/*.sql' >/dev/null; then
  dropdb --if-exists personalize_tap >/dev/null 2>&1
  createdb personalize_tap && psql -X -q -d personalize_tap -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION personalize' >/dev/null
  pg_prove -v -d personalize_tap test/pgtap/*.sql > "$log/out" 2>&1
  rc=$?
  grep -E '^test/|^(Files|Result)' "$log/out"
  count_tap $rc pgtap
fi

echo "== scripted tests"
for t in test/scripts/*.sh; do
  [ -e "$t" ] || continue
  timeout 900 bash "$t" > "$log/out" 2>&1
  rc=$?
  echo "$t: $(grep -cE '^ok ' "$log/out") ok, $(grep -cE '^not ok ' "$log/out") not ok (exit $rc)"
  [ $rc != 0 ] && tail -n 15 "$log/out"
  count_tap $rc "$t"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
