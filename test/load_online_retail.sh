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
} > "$script"
gzip -dc "$file" | psql -X -q -1 -v ON_ERROR_STOP=1 -f "$script"
