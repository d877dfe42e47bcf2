#!/bin/bash
# Quality sweeps with personalize.evaluate() and personalize.tune() (issue 13): EASE
# against popular, the co-occurrence measures and hybrid at Online Retail's three cuts;
# EASE's list length K (and dense), lambda and N swept; tune() of the built-in variants at
# every cut and on the synthetic generator's data (size S). Markdown on stdout, progress
# on stderr; docs/quality.md holds a run and its reading.
#
#   bash test/bench/tuning.sh > /tmp/tuning.md        # about 30 minutes on 2 cores
#
# Environment: SKIP_BUILD=1 (use the installed build), CUTS="2011-06-01 2011-09-01 2011-11-01",
# MAIN_CUT=2011-09-01, SYNTHETIC=0 (skip the generator's data), QUICK=1 (main cut only, no tune()).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ "${1:-}" != --in-cluster ]; then
  file=${1:-$root/test/data/online-retail/online_retail.csv.gz}
  [ -r "$file" ] || { echo "tuning: cannot read $file" >&2; exit 2; }
  file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
  TUNING_ENGINE="commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || TUNING_ENGINE="$TUNING_ENGINE with uncommitted changes in src/ or sql/"
  export TUNING_ENGINE
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make -s -C "$root" >&2 && make -s -C "$root" install >&2
  fi
  exec pg_virtualenv -t -o shared_preload_libraries=pg_cron,personalize -o cron.database_name=postgres \
    bash "$0" --in-cluster "$file"
fi

file=$2
cuts=${CUTS:-2011-06-01 2011-09-01 2011-11-01}
main_cut=${MAIN_CUT:-2011-09-01}
quick=${QUICK:-0}
[ "$quick" = 1 ] && cuts=$main_cut
export PGDATABASE=postgres PGOPTIONS='-c client_min_messages=warning'
started=$(date +%s)
say() { echo "tuning: $* ($(( $(date +%s) - started )) s)" >&2; }
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
ts() { echo "$1 00:00 Europe/London"; }

echo "Engine: personalize $TUNING_ENGINE; PostgreSQL $(q -c 'SHOW server_version'); $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM; $(date -u +%Y-%m-%d)."
q -c 'CREATE EXTENSION personalize' -c 'CREATE SCHEMA tuning'
bash "$root/test/load_online_retail.sh" "$file" > /dev/null
q > /dev/null <<'SQL'
SELECT personalize.create_variant('cooc_cosine', 'cooccurrence', '{"measure": "cosine"}');
SELECT personalize.create_variant('cooc_jaccard', 'cooccurrence', '{"measure": "jaccard"}');
-- every evaluate() row of this run, with what was set
CREATE TABLE tuning.rows (data text, cut date, setting text, variant text, customers bigint, hit_rate float8,
                          p float8, r float8, ndcg float8, coverage float8, seconds float8,
                          seq bigint GENERATED ALWAYS AS IDENTITY);
CREATE FUNCTION tuning.eval(data text, cut date, setting text, variants text[]) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    CREATE TEMP TABLE r ON COMMIT DROP AS
    SELECT * FROM personalize.evaluate((cut::timestamp AT TIME ZONE 'Europe/London'), variants, 10);
    INSERT INTO tuning.rows (data, cut, setting, variant, customers, hit_rate, p, r, ndcg, coverage, seconds)
    SELECT data, cut, setting, r.variant, r.customers, r.hit_rate, r.precision, r.recall, r.ndcg, r.coverage,
           extract(epoch FROM clock_timestamp() - t0) FROM r;
END $f$;
CREATE TABLE tuning.tuned (data text, cut date, variant text, rank int, changed text, params jsonb,
                           hit_rate float8, ndcg float8, vs_current float8);
SQL
say "loaded Online Retail"
variants="ARRAY['popular', 'cooccurrence', 'cooc_cosine', 'cooc_jaccard', 'hybrid', 'ease', 'ease_hybrid']"
q -c "SELECT personalize.create_variant('ease_hybrid', 'hybrid', '{\"measure\": \"ease\"}')" > /dev/null

# ---- every variant at every cut, the default settings --------------------------------
for c in $cuts; do
  q -c "SELECT tuning.eval('Online Retail', '$c', 'defaults', $variants)"
  say "variants at $c"
done

# ---- EASE: list length K (and the whole row: dense), lambda, N ------------------------
for c in $cuts; do
  for k in 20 50 100 200 1000 5000; do
    q -c "SET personalize.ease_k = $k" -c "SELECT tuning.eval('Online Retail', '$c', 'ease_k $k', ARRAY['ease'])"
  done
  say "EASE K at $c"
done
for l in 10 50 100 200 500 1000 2000; do
  q -c "SET personalize.ease_lambda = $l" -c "SELECT tuning.eval('Online Retail', '$main_cut', 'ease_lambda $l', ARRAY['ease'])"
done
say "EASE lambda"
for n in 500 1000 2000 5000; do
  q -c "SET personalize.ease_products = $n" -c "SELECT tuning.eval('Online Retail', '$main_cut', 'ease_products $n', ARRAY['ease'])"
done
say "EASE N"

# ---- tune() of the built-in variants ---------------------------------------------------
tune() {  # tune DATA CUT VARIANT [DB]
  q -d "${4:-postgres}" -c "INSERT INTO tuning.tuned SELECT '$1', '$2', '$3', t.rank, t.changed, t.params, t.hit_rate, t.ndcg, t.vs_current
                            FROM personalize.tune('$3', '$(ts "$2")') t"
}
if [ "$quick" != 1 ]; then
  for c in $cuts; do
    for v in hybrid ease_hybrid; do tune 'Online Retail' "$c" "$v"; done
    say "tune() at $c"
  done
fi

# ---- the synthetic generator (size S), cut at day 91 of its 120 ------------------------
if [ "${SYNTHETIC:-1}" = 1 ] && [ "$quick" != 1 ]; then
  q -c 'CREATE DATABASE synthetic'
  q -d synthetic -c 'CREATE EXTENSION personalize' -c 'CREATE SCHEMA tuning'
  psql -X -q -d synthetic -v size=S -f "$root/test/bench/generate.sql" > /dev/null
  q -d synthetic -c "SELECT personalize.create_variant('ease_hybrid', 'hybrid', '{\"measure\": \"ease\"}')" \
    -c "CREATE TABLE tuning.tuned (data text, cut date, variant text, rank int, changed text, params jsonb,
                                   hit_rate float8, ndcg float8, vs_current float8)" > /dev/null
  for v in hybrid ease_hybrid; do
    q -d synthetic -c "INSERT INTO tuning.tuned SELECT 'synthetic S', '2024-04-01', '$v', t.rank, t.changed, t.params, t.hit_rate, t.ndcg, t.vs_current
                       FROM personalize.tune('$v', '2024-04-01 00:00+00') t"
  done
  q -d synthetic -c "CREATE TABLE tuning.ev AS SELECT * FROM personalize.evaluate('2024-04-01 00:00+00', ARRAY['popular', 'cooccurrence', 'hybrid', 'ease', 'ease_hybrid'], 10)"
  q -d synthetic -c "COPY tuning.tuned TO STDOUT" | q -c "COPY tuning.tuned FROM STDIN"
  q -d synthetic -c "COPY (SELECT 'synthetic S', '2024-04-01'::date, 'defaults', variant, customers, hit_rate, precision, recall, ndcg, coverage, NULL::float8 FROM tuning.ev) TO STDOUT" \
    | q -c "COPY tuning.rows (data, cut, setting, variant, customers, hit_rate, p, r, ndcg, coverage, seconds) FROM STDIN"
  say "synthetic S"
fi

# ---- the tables -------------------------------------------------------------------------
row() { q -F ' | ' -c "$1" | sed -e 's/^/| /' -e 's/$/ |/'; }
echo
echo "## Variants at each cut (defaults, k = 10)"
echo
echo "| data | cut | variant | customers | HR@10 | × popular | × best co-occurrence | P@10 | R@10 | NDCG@10 | coverage | seconds (call) |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
row "SELECT r.data, r.cut, r.variant, r.customers, round(r.hit_rate::numeric, 3),
            round((r.hit_rate / p.hit_rate)::numeric, 2) || '×', round((r.hit_rate / b.hr)::numeric, 2) || '×',
            round(r.p::numeric, 4), round(r.r::numeric, 4), round(r.ndcg::numeric, 4), round(r.coverage::numeric, 3),
            coalesce(round(r.seconds::numeric, 0)::text, '')
     FROM tuning.rows r
     JOIN tuning.rows p ON p.data = r.data AND p.cut = r.cut AND p.setting = r.setting AND p.variant = 'popular'
     JOIN LATERAL (SELECT max(x.hit_rate) AS hr FROM tuning.rows x WHERE x.data = r.data AND x.cut = r.cut
                   AND x.setting = r.setting AND x.variant IN ('cooccurrence', 'cooc_cosine', 'cooc_jaccard')) b ON true
     WHERE r.setting = 'defaults' ORDER BY r.data, r.cut, r.hit_rate DESC"
echo
echo "## EASE: list length K, lambda, N (Online Retail)"
echo
echo "| cut | setting | HR@10 | × best co-occurrence at the cut | × popular | P@10 | NDCG@10 | coverage | seconds (evaluate() call) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
row "SELECT r.cut, r.setting, round(r.hit_rate::numeric, 3), round((r.hit_rate / b.hr)::numeric, 2) || '×',
            round((r.hit_rate / p.hit_rate)::numeric, 2) || '×', round(r.p::numeric, 4), round(r.ndcg::numeric, 4),
            round(r.coverage::numeric, 3), round(r.seconds::numeric, 0)
     FROM tuning.rows r
     JOIN tuning.rows p ON p.data = r.data AND p.cut = r.cut AND p.setting = 'defaults' AND p.variant = 'popular'
     JOIN LATERAL (SELECT max(x.hit_rate) AS hr FROM tuning.rows x WHERE x.data = r.data AND x.cut = r.cut
                   AND x.setting = 'defaults' AND x.variant IN ('cooccurrence', 'cooc_cosine', 'cooc_jaccard')) b ON true
     WHERE r.setting <> 'defaults' ORDER BY r.cut, r.seq"
if [ "$quick" != 1 ]; then
  echo
  echo "## tune(): each setting's hit rate over the variant's current one"
  echo
  echo "Rows: the settings tune() tried (one parameter changed, or the best ones combined); columns: data"
  echo "set and cut. The last columns are the smallest and the mean ratio over all of them."
  echo
  q -c "SELECT string_agg(DISTINCT format('%s %s', data, cut), ', ') FROM tuning.tuned" >&2
  row "SELECT variant, changed, params -> changed AS value,
              string_agg(round(vs_current::numeric, 3)::text, ' | ' ORDER BY data, cut),
              round(min(vs_current)::numeric, 3), round(avg(vs_current)::numeric, 3)
       FROM tuning.tuned WHERE changed NOT IN ('(current)', 'combined')
       GROUP BY variant, changed, params -> changed HAVING count(*) = (SELECT count(DISTINCT (data, cut)) FROM tuning.tuned)
       ORDER BY variant, min(vs_current) DESC" > /tmp/tuning_rows.$$
  hdr=$(q -c "SELECT string_agg(format('%s %s', data, cut), ' | ' ORDER BY data, cut) FROM (SELECT DISTINCT data, cut FROM tuning.tuned) d")
  echo "| variant | parameter | value | $hdr | min | mean |"
  echo "|---|---|---|$(q -c "SELECT string_agg('---:', '|') FROM (SELECT DISTINCT data, cut FROM tuning.tuned) d")|---:|---:|"
  cat /tmp/tuning_rows.$$; rm -f /tmp/tuning_rows.$$
  echo
  echo "## tune(): the best setting found at each cut"
  echo
  echo "| data | cut | variant | best params | HR@10 | × current |"
  echo "|---|---|---|---|---:|---:|"
  row "SELECT data, cut, variant, params, round(hit_rate::numeric, 3), round(vs_current::numeric, 3) || '×'
       FROM tuning.tuned WHERE rank = 1 ORDER BY data, cut, variant"
fi
echo
echo "(total $(( $(date +%s) - started )) s)"
