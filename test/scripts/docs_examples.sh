#!/bin/bash
# The documentation's SQL runs as written: every ```sql fenced block of README.md and
# docs/*.md is extracted (indented fences inside lists too) and run with
# psql -v ON_ERROR_STOP=1, one TAP line per block naming its file and line. Each document
# runs in a fresh database of its own (created and dropped here), its blocks in document
# order, so a later block may use what an earlier one created. A block that is not meant to
# be run (a signature, a pattern with placeholders, output, a shell command) must not be
# fenced as ```sql.
#
# Environment given to every document's database, nothing else:
# - personalize.openai_base_url points at the project's mock OpenAI server
#   (test/mock_openai.py on 127.0.0.1, scenario ok) and personalize.openai_api_key_file at
#   a key file, both with ALTER DATABASE … SET (which a document's ALTER SYSTEM does not
#   override), so the cold-start examples run without the network.
# - A document none of whose blocks runs CREATE EXTENSION personalize (docs/design.md's
#   monitoring queries, docs/ab-testing.md) describes an installation that exists: it gets
#   CREATE EXTENSION personalize first.
# - docs/ab-testing.md, an analyst's guide to a shop that already runs on personalize, also
#   gets that shop, kept small: 12 products, customers 17841..17880 with three purchases
#   each from overlapping baskets (customer 17850 among them), and the application's role
#   `app`, whose grants it extends.
# Every other document creates what it uses, starting with CREATE EXTENSION. Roles a
# document creates are dropped after it, with its database.
#
# The README's "Using it" block is also checked to print at least one row for each of its
# recommend() calls: the first hour works before any refresh has run.
#
# schedule_*() needs pg_cron, which lives in the database named by cron.database_name
# (postgres here); the documents' databases are not that one. Cleanup (trap): the pg_cron
# jobs of these databases, the databases, the mock, and any personalize.* setting a
# document added with ALTER SYSTEM. Runs inside pg_virtualenv. TAP output.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
diag() { sed -e 's/^/#   /' | head -n "${2:-15}"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1; }
prefix=personalize_docs_
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
echo "sk-test-personalize-docs-3f9a1c" > "$tmp/key"
chmod 644 "$tmp/key"
port=$(free_port)
python3 test/mock_openai.py --port "$port" 2> "$tmp/mock.log" & mock=$!
# personalize.* settings already in postgresql.auto.conf: a document's ALTER SYSTEM of
# another one is reset at exit
auto_before=$(q -d postgres -c "SELECT string_agg(name, ' ') FROM pg_file_settings
                                 WHERE name LIKE 'personalize.%' AND sourcefile LIKE '%postgresql.auto.conf'")
roles() { q -d postgres -c 'SELECT rolname FROM pg_roles ORDER BY rolname COLLATE "C"'; }
new_roles() { LC_ALL=C comm -13 <(echo "$1") <(roles); }    # roles created since $1
roles_start=$(roles)
cleanup() {
  kill "$mock" 2>/dev/null
  q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database LIKE '${prefix}%'" >/dev/null 2>&1
  for s in $(q -d postgres -c "SELECT DISTINCT name FROM pg_file_settings
                               WHERE name LIKE 'personalize.%' AND sourcefile LIKE '%postgresql.auto.conf'"); do
    [[ " $auto_before " == *" $s "* ]] || q -d postgres -c "ALTER SYSTEM RESET $s" >/dev/null
  done
  q -d postgres -c 'SELECT pg_reload_conf()' >/dev/null
  for db in $(q -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%'"); do
    dropdb --if-exists --force "$db" >/dev/null 2>&1
  done
  for r in $(new_roles "$roles_start"); do q -d postgres -c "DROP ROLE \"$r\"" >/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/_mock/requests" && break; sleep 0.1; done

# blocks: $tmp/blocks/<i>.sql and index.tsv "i<TAB>file<TAB>line<TAB>section"
mkdir "$tmp/blocks"
python3 - "$tmp/blocks" README.md docs/*.md <<'PY'
import re, sys
out, files = sys.argv[1], sys.argv[2:]
index, i = [], 0
for f in files:
    section, block, start, indent = "", None, 0, 0
    for no, line in enumerate(open(f, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if block is None:
            m = re.match(r"^( *)```sql\s*$", line)
            if m:
                block, start, indent = [], no, len(m.group(1))
            elif re.match(r"^ *```", line):
                block, start, indent = False, no, 0       # another fence: skip its body
            elif line.startswith("#"):
                section = line.lstrip("#").strip()
        elif re.match(r"^ *```\s*$", line):
            if block is not False:
                i += 1
                with open("%s/%d.sql" % (out, i), "w", encoding="utf-8") as w:
                    w.write("\n".join(block) + "\n")
                index.append("%d\t%s\t%d\t%s" % (i, f, start, section))
            block = None
        elif block is not False:
            block.append(line[indent:] if line[:indent].strip() == "" else line)
with open(out + "/index.tsv", "w", encoding="utf-8") as w:
    w.write("".join(l + "\n" for l in index))
PY

fixture_ab_testing() {
  q -d "$1" <<'SQL'
CREATE ROLE app LOGIN;
INSERT INTO personalize.products (product_id, name, category, price)
SELECT g, (ARRAY['WHITE METAL LANTERN', 'RED RETROSPOT MUG', 'JUMBO BAG RED', 'GLASS STAR T-LIGHT HOLDER',
                 'WOODEN HEART', 'PARTY BUNTING', 'ASSORTED TEA TOWELS', 'CERAMIC CAKE STAND',
                 'PAPER CHAIN KIT', 'HAND WARMER UNION JACK', 'LUNCH BOX I LOVE LONDON', 'DOORMAT RED SPOT'])[g],
       (ARRAY['lighting', 'kitchen', 'bags', 'lighting', 'decor', 'party', 'kitchen', 'kitchen',
              'party', 'gifts', 'kitchen', 'decor'])[g], 1.25 * g
FROM generate_series(1, 12) g;
INSERT INTO personalize.customers (customer_id, country)
SELECT 17840 + g, CASE WHEN g % 4 = 0 THEN 'France' ELSE 'United Kingdom' END FROM generate_series(1, 40) g;
INSERT INTO personalize.interactions (customer_id, product_id, event_type, occurred_at)
SELECT 17840 + c, 1 + (c + i * (1 + c % 3)) % 12, 'purchase', now() - (c + i) * interval '1 hour'
FROM generate_series(1, 40) c, generate_series(0, 2) i;
SQL
}

# one TAP line per block; $1 = database, $2 = block number, $3 = name; output in $tmp/out
run_block() {
  psql -X -e -v ON_ERROR_STOP=1 -d "$1" -f "$tmp/blocks/$2.sql" > "$tmp/out" 2>&1
  local rc=$?
  tap $rc "$3"
  [ $rc = 0 ] || grep -E '(ERROR|FATAL|error):|^(DETAIL|HINT):' "$tmp/out" | diag
  return $rc
}

docs=$(cut -f 2 "$tmp/blocks/index.tsv" | awk '!seen[$0]++')
for doc in $docs; do
  base=$(basename "$doc" .md | tr 'A-Z-' 'a-z_')
  db="${prefix}$base"
  dropdb --if-exists --force "$db" >/dev/null 2>&1
  createdb "$db" || { tap 1 "$doc: createdb $db"; continue; }
  q -d postgres -c "ALTER DATABASE $db SET personalize.openai_base_url = 'http://127.0.0.1:$port/ok.$base/v1'" \
     -c "ALTER DATABASE $db SET personalize.openai_api_key_file = '$tmp/key'" >/dev/null
  roles_before=$(roles)
  blocks=$(awk -F'\t' -v d="$doc" -v dir="$tmp/blocks" '$2 == d {print dir "/" $1 ".sql"}' "$tmp/blocks/index.tsv")
  if ! grep -qi 'CREATE EXTENSION personalize' $blocks; then
    out=$(q -d "$db" -c 'CREATE EXTENSION personalize') || { tap 1 "$doc: CREATE EXTENSION personalize"; echo "$out" | diag; }
  fi
  if [ "$doc" = docs/ab-testing.md ]; then
    out=$(fixture_ab_testing "$db") || { tap 1 "$doc: fixture"; echo "$out" | diag; }
  fi
  while IFS=$'\t' read -r i file line section; do
    [ "$file" = "$doc" ] || continue
    name="$file:$line ($section)"
    run_block "$db" "$i" "$name"
    rc=$?
    if [ "$file" = README.md ] && [ "$section" = "Using it" ]; then
      # each recommend() call printed at least one row: with -e psql echoes each query
      # before its result, so the footer after a recommend( query is its row count
      counts=$(python3 - "$tmp/out" <<'PY'
import re, sys
counts, pending = [], False
for line in open(sys.argv[1], encoding="utf-8"):
    if re.search(r"personalize\.recommend\(", line) and not line.startswith(" "):
        pending = True
        counts.append(None)
    m = re.match(r"^\((\d+) rows?\)$", line.strip())
    if m and pending:
        counts[-1] = int(m.group(1))
        pending = False
print(" ".join("none" if c is None else str(c) for c in counts))
PY
)
      calls=$(grep -c 'personalize\.recommend(' "$tmp/blocks/$i.sql")
      ok=1
      [ "$rc" = 0 ] && [ "$(wc -w <<< "$counts")" = "$calls" ] && [[ " $counts " != *" 0 "* && " $counts " != *none* ]] && ok=0
      tap $ok "$file:$line: each of its $calls recommend() calls prints at least one row (rows: ${counts:-none})"
    fi
  done < "$tmp/blocks/index.tsv"
  q -d postgres -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = '$db'" >/dev/null 2>&1
  dropdb --if-exists --force "$db" >/dev/null 2>&1
  for r in $(new_roles "$roles_before"); do
    q -d postgres -c "DROP ROLE \"$r\"" >/dev/null
  done
done
echo "1..$n"
exit 0
