#!/bin/bash
# Load the UCI Online Retail file into personalize (connection from the PG* environment).
#   test/load_online_retail.sh [path/to/online_retail.csv.gz]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
file=${1:-$here/data/online-retail/online_retail.csv.gz}
[ -r "$file" ] || { echo "load_online_retail: cannot read $file" >&2; exit 2; }
script=$(mktemp)
trap 'rm -f "$script"' EXIT
{
  cat "$here/online_retail/stage.sql"
  echo '\echo loader: reading the file'
  echo '\copy online_retail_raw FROM pstdin WITH (FORMAT csv, HEADER true)'
  cat "$here/online_retail/map.sql"
  # a bulk load folds its count changes at once (0.2.0, issue 14): until the refresh does,
  # every reader of the counts would scan the whole pending log
  echo '\echo loader: folding the count changes'
  echo "DO \$\$ BEGIN IF pg_catalog.to_regprocedure('personalize.fold_deltas(integer, boolean)') IS NOT NULL THEN PERFORM personalize.fold_deltas(); END IF; END \$\$;"
} > "$script"
gzip -dc "$file" | psql -X -q -1 -v ON_ERROR_STOP=1 -f "$script"
