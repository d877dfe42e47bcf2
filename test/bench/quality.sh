#!/bin/bash
# Offline quality of personalize.recommend() on the UCI Online Retail data (issue 3, item 5).
#
#   bash test/bench/quality.sh [path/to/online_retail.csv.gz]
#
# Builds and installs the extension (SKIP_BUILD=1 to skip), starts a throw-away cluster
# with pg_virtualenv, loads the real file, keeps the interactions before the cut, and
# evaluates every variant against what each customer bought after the cut:
# HR@10, precision@10, recall@10, NDCG@10 (binary relevance) and catalog coverage.
# Prints Markdown tables on stdout, progress on stderr (docs/quality.md holds a run
# and its reading). About 5 minutes on 2 cores.
#
# Environment:
#   CUT=2011-09-01        the cut (Europe/London midnight)
#   SENSITIVITY_CUTS="2011-06-01 2011-11-01"   other cuts for the built-ins ("" to skip)
#   QUICK=1               only the main table (no tuning, emulation or other cuts)
#   SKIP_BUILD=1          do not run make / make install first
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ "${1:-}" != --in-cluster ]; then
  file=${1:-$root/test/data/online-retail/online_retail.csv.gz}
  [ -r "$file" ] || { echo "quality: cannot read $file" >&2; exit 2; }
  file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
  # the engine measured: the commit, and whether src/ or sql/ differ from it
  QUALITY_ENGINE="commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  git -C "$root" diff --quiet HEAD -- src sql 2>/dev/null || QUALITY_ENGINE="$QUALITY_ENGINE with uncommitted changes in src/ or sql/"
  [ "${SKIP_BUILD:-0}" = 1 ] && QUALITY_ENGINE="$QUALITY_ENGINE (SKIP_BUILD=1: the installed build, which may differ)"
  export QUALITY_ENGINE
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make -s -C "$root" >&2 && make -s -C "$root" install >&2
  fi
  exec pg_virtualenv -t -o shared_preload_libraries=pg_cron -o cron.database_name=postgres \
    bash "$0" --in-cluster "$file"
fi

# ---- inside the throw-away cluster (PGHOST, PGPORT, PGUSER set by pg_virtualenv) ----
file=$2
QUALITY_ENGINE=${QUALITY_ENGINE:-unknown}
cut=${CUT:-2011-09-01}
sens=${SENSITIVITY_CUTS-2011-06-01 2011-11-01}
quick=${QUICK:-0}
export PGDATABASE=postgres PGOPTIONS='-c client_min_messages=warning'
started=$(date +%s)
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -o /dev/null "$@"; }   # results are not printed
md() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }                 # tuples only, unaligned: the Markdown lines

echo "quality: PostgreSQL $(psql -XAtc 'SHOW server_version'), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM" >&2

psql_q -c 'CREATE EXTENSION personalize' -c 'CREATE SCHEMA eval'

# Load the whole file with the model triggers off (rebuild() below computes the model
# from the training part: the same counts the triggers maintain, and faster).
t0=$(date +%s)
psql_q -c 'ALTER TABLE personalize.interactions DISABLE TRIGGER USER'
bash "$root/test/load_online_retail.sh" "$file" > /dev/null
echo "quality: loaded the file in $(( $(date +%s) - t0 )) s" >&2

psql_q <<'SQL'
-- every kept interaction of the file, for the split
CREATE TABLE eval.all_interactions AS SELECT * FROM personalize.interactions;
CREATE INDEX ON eval.all_interactions (occurred_at);

CREATE TABLE eval.metrics (
    grp text, label text, variant text, params jsonb, setting text, cut date,
    customers int, hits_any int, short int, hr10 float8, p10 float8, r10 float8, ndcg10 float8,
    recommended int, coverage float8, seconds float8, calls_per_s float8,
    seq bigint GENERATED ALWAYS AS IDENTITY);
CREATE TABLE eval.recs (customer_id bigint, rank int, product_id bigint);

-- Install the training part of the cut and the test set; the model is rebuilt from it.
CREATE FUNCTION eval.setup(cut date) RETURNS TABLE (item text, value text)
LANGUAGE plpgsql AS $f$
DECLARE
    c timestamptz := (cut::timestamp AT TIME ZONE 'Europe/London');
BEGIN
    ALTER TABLE personalize.interactions DISABLE TRIGGER USER;
    DELETE FROM personalize.interactions;
    INSERT INTO personalize.interactions SELECT * FROM eval.all_interactions WHERE occurred_at < c;
    ALTER TABLE personalize.interactions ENABLE TRIGGER USER;
    PERFORM personalize.rebuild(max_items_per_customer => 100);   -- the default cap
    PERFORM personalize.refresh_popular(as_of => c);    -- rebuild() refreshed it as of now()
    PERFORM set_config('personalize.as_of', c::text, false);

    DROP TABLE IF EXISTS eval.before, eval.after, eval.heldout, eval.t, eval.hist;
    CREATE TABLE eval.before AS
        SELECT DISTINCT customer_id, product_id FROM eval.all_interactions WHERE occurred_at < c;
    CREATE TABLE eval.after AS
        SELECT DISTINCT customer_id, product_id FROM eval.all_interactions WHERE occurred_at >= c;
    ALTER TABLE eval.before ADD PRIMARY KEY (customer_id, product_id);
    -- held out: products bought after the cut that the customer had not bought before
    -- (recommend() excludes purchased products), for customers with history before it
    CREATE TABLE eval.heldout AS
        SELECT a.customer_id, a.product_id FROM eval.after a
        WHERE EXISTS (SELECT FROM eval.before b WHERE b.customer_id = a.customer_id)
          AND NOT EXISTS (SELECT FROM eval.before b WHERE b.customer_id = a.customer_id AND b.product_id = a.product_id);
    ALTER TABLE eval.heldout ADD PRIMARY KEY (customer_id, product_id);
    CREATE TABLE eval.t AS
        SELECT g.customer_id, g.n_heldout,
               (SELECT sum(1 / log(2, i + 1)) FROM generate_series(1, least(10, g.n_heldout)::int) i)::float8 AS idcg
        FROM (SELECT h.customer_id, count(*) AS n_heldout FROM eval.heldout h GROUP BY h.customer_id) g;
    ALTER TABLE eval.t ADD PRIMARY KEY (customer_id);
    -- test customers' history as recommend() reads it, for the SQL emulation
    CREATE TABLE eval.hist AS
        SELECT ci.*, extract(epoch FROM c - ci.last_at) / 86400 AS age_days
        FROM personalize.customer_items ci JOIN eval.t USING (customer_id);
    ANALYZE eval.before; ANALYZE eval.heldout; ANALYZE eval.t; ANALYZE eval.hist;

    RETURN QUERY VALUES
        ('cut', format('%s 00:00 Europe/London', cut)),
        ('training interactions (purchase lines before the cut)',
            (SELECT count(*) FROM personalize.interactions)::text),
        ('training customers / products',
            format('%s / %s', (SELECT count(DISTINCT customer_id) FROM eval.before),
                              (SELECT count(DISTINCT product_id) FROM eval.before))),
        ('test-period interactions (after the cut)',
            (SELECT count(*) FROM eval.all_interactions WHERE occurred_at >= c)::text),
        ('test customers (history before, a new product after)', (SELECT count(*) FROM eval.t)::text),
        ('held-out (customer, new product) pairs',
            format('%s (mean %s, median %s per customer)', (SELECT count(*) FROM eval.heldout),
                   (SELECT round(avg(n_heldout), 1) FROM eval.t),
                   (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n_heldout) FROM eval.t))),
        ('held-out pairs whose product has no training history (unreachable)',
            (SELECT count(*) FROM eval.heldout h
             WHERE NOT EXISTS (SELECT FROM eval.before b WHERE b.product_id = h.product_id))::text),
        ('repeat purchases by test customers after the cut (not scored)',
            (SELECT count(*) FROM eval.after a JOIN eval.t USING (customer_id)
             WHERE EXISTS (SELECT FROM eval.before b WHERE b.customer_id = a.customer_id AND b.product_id = a.product_id))::text),
        ('active products in the catalog (coverage denominator)',
            (SELECT count(*) FROM personalize.products WHERE active)::text),
        ('model: customers / products / pairs',
            (SELECT format('%s / %s / %s (max_items_per_customer %s)', customers, products, pairs, max_items_per_customer)
             FROM personalize.model_stats)),
        ('popularity list', (SELECT format('%s-day window before the cut, top product bought by %s customers',
                                           extract(day FROM max(window_end - window_start)), max(customers))
                             FROM personalize.popular));
END $f$;

-- Metrics of a recommendation table (customer_id, rank, product_id) against eval.heldout.
CREATE FUNCTION eval.score(grp text, label text, variant text, setting text, recs regclass, seconds float8)
RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format($q$
    INSERT INTO eval.metrics (grp, label, variant, params, setting, cut, customers, hits_any, short,
                              hr10, p10, r10, ndcg10, recommended, coverage, seconds, calls_per_s)
    SELECT %L, %L, %L, (SELECT v.params FROM personalize.variants v WHERE v.name = %L), %L,
           (SELECT current_setting('personalize.as_of')::timestamptz AT TIME ZONE 'Europe/London')::date,
           count(*), count(*) FILTER (WHERE s.hits > 0), count(*) FILTER (WHERE s.n_recs < 10),
           avg((s.hits > 0)::int), avg(s.hits / 10.0), avg(s.hits::float8 / s.n_heldout), avg(s.dcg / s.idcg),
           (SELECT count(DISTINCT r.product_id) FROM %s r WHERE r.rank <= 10),
           (SELECT count(DISTINCT r.product_id) FROM %s r WHERE r.rank <= 10)::float8
               / (SELECT count(*) FROM personalize.products p WHERE p.active),
           %s, count(*) / nullif(%s, 0)
    FROM (SELECT t.customer_id, t.n_heldout, t.idcg, count(h.product_id) AS hits, count(r.product_id) AS n_recs,
                 coalesce(sum(1 / log(2, r.rank + 1)) FILTER (WHERE h.product_id IS NOT NULL), 0)::float8 AS dcg
          FROM eval.t t
          LEFT JOIN %s r ON r.customer_id = t.customer_id AND r.rank <= 10
          LEFT JOIN eval.heldout h ON h.customer_id = r.customer_id AND h.product_id = r.product_id
          GROUP BY t.customer_id, t.n_heldout, t.idcg) s $q$,
        grp, label, variant, variant, setting, recs, recs, seconds, seconds, recs);
END $f$;

-- recommend(customer, variant, 10) for every test customer in one lateral join, timed.
CREATE FUNCTION eval.run(grp text, label text, variant text, setting text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz;
BEGIN
    TRUNCATE eval.recs;
    t0 := clock_timestamp();
    INSERT INTO eval.recs
    SELECT t.customer_id, r.ord, r.product_id
    FROM eval.t t, LATERAL personalize.recommend(t.customer_id, variant, 10) WITH ORDINALITY AS r(product_id, score, reason, ord);
    PERFORM eval.score(grp, label, variant, setting, 'eval.recs', extract(epoch FROM clock_timestamp() - t0));
END $f$;

CREATE FUNCTION eval.variant(name text, algorithm text, params jsonb) RETURNS void
LANGUAGE plpgsql AS $f$
BEGIN
    IF NOT EXISTS (SELECT FROM personalize.variants v WHERE v.name = variant.name) THEN
        PERFORM personalize.create_variant(name, algorithm, params);
    END IF;
END $f$;

-- A query's rows as Markdown table lines (columns in the query's order; the first two left-aligned).
CREATE FUNCTION eval.md(q text) RETURNS SETOF text LANGUAGE plpgsql AS $f$
DECLARE
    r record;
    first boolean := true;
BEGIN
    FOR r IN EXECUTE format('SELECT row_to_json(x) AS j FROM (%s) x', q) LOOP
        IF first THEN
            RETURN NEXT (SELECT '| ' || string_agg(e.key, ' | ' ORDER BY e.n) || ' |'
                         FROM json_each_text(r.j) WITH ORDINALITY e(key, value, n));
            RETURN NEXT (SELECT '|' || string_agg(CASE WHEN e.n <= 2 THEN '---' ELSE '---:' END, '|' ORDER BY e.n) || '|'
                         FROM json_each_text(r.j) WITH ORDINALITY e(key, value, n));
            first := false;
        END IF;
        RETURN NEXT (SELECT '| ' || string_agg(coalesce(e.value, ''), ' | ' ORDER BY e.n) || ' |'
                     FROM json_each_text(r.j) WITH ORDINALITY e(key, value, n));
    END LOOP;
END $f$;

-- The metrics rows of a group as a Markdown table, HR@10 also relative to `popular`
-- (the built-in popular variant, same cut, same model settings group 'main').
CREATE FUNCTION eval.table(grp_like text, cut date DEFAULT NULL) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT eval.md(format($q$
        SELECT m.label AS "variant / change", concat_ws(' ', CASE WHEN m.grp IN ('main', 'params') AND m.params <> '{}' THEN m.params::text END,
                         nullif(m.setting, '')) AS "params / setting",
               to_char(m.hr10, '0.000') || ' ± ' || to_char(sqrt(m.hr10 * (1 - m.hr10) / m.customers), '0.000') AS "HR@10 ± se",
               to_char(m.hr10 / nullif(p.hr10, 0), '0.00') || '×' AS "HR / popular",
               to_char(m.p10, '0.0000') AS "P@10", to_char(m.r10, '0.0000') AS "R@10",
               to_char(m.ndcg10, '0.0000') AS "NDCG@10",
               to_char(m.coverage, '0.000') || ' (' || m.recommended || ')' AS "coverage (products)",
               m.short AS "< 10 recs",
               to_char(m.seconds, '990.0') AS "seconds", to_char(m.calls_per_s, '99990') AS "calls/s"
        FROM eval.metrics m
        LEFT JOIN LATERAL (SELECT p.hr10 FROM eval.metrics p
                           WHERE p.grp IN ('main', 'cut') AND p.variant = 'popular' AND p.cut = m.cut
                           ORDER BY p.seq LIMIT 1) p ON true
        WHERE m.grp LIKE %L AND (%L::date IS NULL OR m.cut = %L::date)
        ORDER BY m.seq $q$, grp_like, cut, cut));
$f$;
SQL

# variants: one per similarity measure (the built-in cooccurrence and hybrid use llr);
# created before the rebuild, which computes the neighbour lists of every measure in use
psql_q <<'SQL'
SELECT eval.variant('cooc_' || m, 'cooccurrence', jsonb_build_object('measure', m))
FROM unnest(ARRAY['count', 'jaccard', 'cosine', 'lift']) m;
SQL

t0=$(date +%s)
echo "Engine: personalize $QUALITY_ENGINE; PostgreSQL $(psql -XAtc 'SHOW server_version'); $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM; $(date -u +%Y-%m-%d)."
echo
echo "## Data and split"
echo
md -c "SELECT eval.md('SELECT * FROM eval.setup(''$cut'')')"
echo
echo "(set-up: training load, rebuild() and neighbour lists for 5 measures: $(( $(date +%s) - t0 )) s)"
echo
md -c "SELECT 'Neighbour lists: ' || string_agg(format('%s %s lists (%s neighbours on average)', measure, count, round(avg, 1)), ', ' ORDER BY measure) || '.'
       FROM (SELECT measure, count(*), avg(cardinality(neighbor_ids)) FROM personalize.neighbors GROUP BY 1) s"

# ---- main table -------------------------------------------------------------------
# each psql session sets personalize.as_of itself (eval.setup's set_config is per session)
run() {   # run GROUP LABEL VARIANT [SETTING]
  psql_q -c "SET personalize.as_of = '$cut 00:00 Europe/London'" -c "SELECT eval.run('$1', '$2', '$3', '${4:-}')"
}
for v in popular cooccurrence cooc_count cooc_jaccard cooc_cosine cooc_lift hybrid; do
  run main "$v" "$v"
done
echo
echo "## Variants (cut $cut, k = 10)"
echo
md -c "SELECT eval.table('main')"

if [ "$quick" = 1 ]; then
  echo; echo "(QUICK=1: tuning skipped; total $(( $(date +%s) - started )) s)"; exit 0
fi

# ---- tuning through variant parameters ---------------------------------------------
psql_q <<'SQL'
SELECT eval.variant(n, a, p::jsonb) FROM (VALUES
    ('t_hl_7',    'cooccurrence', '{"half_life_days": 7}'),
    ('t_hl_90',   'cooccurrence', '{"half_life_days": 90}'),
    ('t_hl_365',  'cooccurrence', '{"half_life_days": 365}'),
    ('t_hl_none', 'cooccurrence', '{"half_life_days": null}'),
    ('t_hist_10', 'cooccurrence', '{"history_items": 10}'),
    ('t_hist_20', 'cooccurrence', '{"history_items": 20}'),
    ('t_hist_200','cooccurrence', '{"history_items": 200}'),
    ('t_nb_10',   'cooccurrence', '{"neighbors": 10}'),
    ('t_nb_20',   'cooccurrence', '{"neighbors": 20}'),
    ('t_pw_02',   'hybrid',       '{"popularity_weight": 0.2}'),
    ('t_pw_03',   'hybrid',       '{"popularity_weight": 0.3}'),
    ('t_pw_05',   'hybrid',       '{"popularity_weight": 0.5}'),
    ('t_pw_10',   'hybrid',       '{"popularity_weight": 1.0}'),
    ('t_best',    'hybrid',       '{"half_life_days": 365, "history_items": 1000, "popularity_weight": 0.2}'),
    ('t_best_jac','hybrid',       '{"measure": "jaccard", "half_life_days": 365, "history_items": 1000, "popularity_weight": 0.2}'),
    ('t_no_fill', 'cooccurrence', '{"popular_fill": false}')) v(n, a, p);
SQL
for v in t_hl_7 t_hl_90 t_hl_365 t_hl_none t_hist_10 t_hist_20 t_hist_200 t_nb_10 t_nb_20 \
         t_pw_02 t_pw_03 t_pw_05 t_pw_10 t_best t_best_jac t_no_fill; do
  run params "$v" "$v"
done

echo
echo "## Tuning (cut $cut): variant parameters"
echo
md -c "SELECT eval.table('params')"

# ---- the baseline's own window: is the 7-day popular list the strongest? ------------
for w in "1 day" "14 days" "30 days" "90 days"; do
  psql_q -c "SELECT personalize.refresh_popular(window_length => '$w', as_of => '$cut 00:00 Europe/London')" > /dev/null
  run popwin popular popular "popularity window $w"
done
psql_q -c "SELECT personalize.refresh_popular(as_of => '$cut 00:00 Europe/London')" > /dev/null

echo
echo "## The baseline's window (popular, refresh_popular(window_length => ...))"
echo
md -c "SELECT eval.table('popwin')"

# ---- SQL emulation of recommend(), and of the scoring changes proposed in Findings --
psql_q <<'SQL'
-- The co-occurrence part of recommend() in SQL: history weight wexpr (columns of
-- customer_items and age_days), the top hist_n history products, neighbour score sexpr
-- (nl.score; nl.top = the best score of the list), purchased products excluded.
-- pw NULL: scored as recommend() does, 1 + sum / max_sum, then the popularity fill-up
-- below 1. pw a number: one blended score (1 - pw) * sum / max_sum + pw * customers /
-- top customers of the popularity window, over co-occurrence and popular candidates alike.
-- The top 20 per customer go to eval.emu.
CREATE FUNCTION eval.emulate(wexpr text, measure text, hist_n int, sexpr text, pw float8) RETURNS float8
LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    DROP TABLE IF EXISTS eval.emu;
    EXECUTE format($q$
    CREATE TABLE eval.emu AS
    WITH h AS (
        SELECT customer_id, product_id, w FROM (
            SELECT customer_id, product_id, (%1$s)::float8 AS w,
                   row_number() OVER (PARTITION BY customer_id ORDER BY (%1$s)::float8 DESC, product_id) AS rn
            FROM eval.hist) x
        WHERE rn <= %2$s),
    nl AS (
        SELECT l.product_id, l.neighbor_id, l.rank, l.score,
               first_value(l.score) OVER (PARTITION BY l.product_id ORDER BY l.rank) AS top
        FROM personalize.neighbor_list l WHERE l.measure = %3$L),
    c AS (
        SELECT h.customer_id, nl.neighbor_id AS product_id, sum(h.w * (%4$s)) AS s
        FROM h JOIN nl ON nl.product_id = h.product_id
        WHERE NOT EXISTS (SELECT FROM eval.hist b WHERE b.customer_id = h.customer_id
                          AND b.product_id = nl.neighbor_id AND b.purchases > 0)
        GROUP BY 1, 2),
    cn AS (SELECT customer_id, product_id, s / max(s) OVER (PARTITION BY customer_id) AS cs FROM c WHERE s > 0),
    pop AS (SELECT product_id, rank, CASE WHEN source = 'window' THEN
                       customers::float8 / max(customers) FILTER (WHERE source = 'window') OVER () ELSE 0 END AS ps
            FROM (SELECT * FROM personalize.popular ORDER BY rank LIMIT 300) p),
    pc AS (SELECT t.customer_id, pop.product_id, pop.rank FROM eval.t t CROSS JOIN pop
           WHERE NOT EXISTS (SELECT FROM eval.hist b WHERE b.customer_id = t.customer_id
                             AND b.product_id = pop.product_id AND b.purchases > 0)),
    cand AS (
        SELECT customer_id, product_id, max(score) AS score FROM (
            SELECT customer_id, product_id, 1 + cs AS score FROM cn WHERE %5$L::float8 IS NULL
            UNION ALL
            SELECT customer_id, product_id, 0.5 - rank / 1e6 FROM pc WHERE %5$L::float8 IS NULL
            UNION ALL
            SELECT coalesce(cn.customer_id, pc.customer_id), coalesce(cn.product_id, pc.product_id),
                   (1 - %5$L::float8) * coalesce(cn.cs, 0) + %5$L::float8 * coalesce(pop.ps, 0)
            FROM cn FULL JOIN pc ON pc.customer_id = cn.customer_id AND pc.product_id = cn.product_id
            LEFT JOIN pop ON pop.product_id = coalesce(cn.product_id, pc.product_id)
            WHERE %5$L::float8 IS NOT NULL) u
        GROUP BY customer_id, product_id)
    SELECT customer_id, rank, product_id FROM (
        SELECT b.customer_id, b.product_id,
               row_number() OVER (PARTITION BY b.customer_id ORDER BY b.score DESC, b.product_id)::int AS rank
        FROM cand b JOIN personalize.products p ON p.product_id = b.product_id AND p.active) z
    WHERE rank <= 20 $q$, wexpr, hist_n, measure, sexpr, pw);
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $f$;

CREATE FUNCTION eval.emu_run(grp text, label text, setting text, wexpr text, measure text, hist_n int, sexpr text, pw float8)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    secs float8 := eval.emulate(wexpr, measure, hist_n, sexpr, pw);
BEGIN
    PERFORM eval.score(grp, label, 'cooccurrence', setting, 'eval.emu'::regclass, secs);
END $f$;

-- Top `m` of list a, then list b, without duplicates: 10 per customer into eval.mix.
CREATE FUNCTION eval.interleave(a regclass, b regclass, m int) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    DROP TABLE IF EXISTS eval.mix;
    EXECUTE format($q$
    CREATE TABLE eval.mix AS
    SELECT customer_id, rank, product_id FROM (
        SELECT customer_id, product_id, row_number() OVER (PARTITION BY customer_id ORDER BY o)::int AS rank
        FROM (SELECT DISTINCT ON (customer_id, product_id) customer_id, product_id, o
              FROM (SELECT customer_id, product_id, CASE WHEN rank <= %3$s THEN rank ELSE 1000 + rank END::numeric AS o FROM %1$s
                    UNION ALL
                    SELECT customer_id, product_id, 500 + rank FROM %2$s) u
              ORDER BY customer_id, product_id, o) d) z
    WHERE rank <= 10 $q$, a, b, m);
END $f$;

CREATE TABLE eval.rec_popular AS SELECT * FROM eval.recs WITH NO DATA;
CREATE TABLE eval.rec_cooc AS SELECT * FROM eval.recs WITH NO DATA;
SQL
psql_q <<SQL
SET personalize.as_of = '$cut 00:00 Europe/London';
INSERT INTO eval.rec_popular SELECT t.customer_id, r.ord, r.product_id
FROM eval.t t, LATERAL personalize.recommend(t.customer_id, 'popular', 20) WITH ORDINALITY r(product_id, score, reason, ord);
INSERT INTO eval.rec_cooc SELECT t.customer_id, r.ord, r.product_id
FROM eval.t t, LATERAL personalize.recommend(t.customer_id, 'cooccurrence', 20) WITH ORDINALITY r(product_id, score, reason, ord);

-- E0: the emulation of the built-in cooccurrence variant must give recommend()'s lists
SELECT eval.emu_run('emu', 'E0 emulation of cooccurrence (as built)', 'SQL',
                    'weight * power(0.5, greatest(age_days, 0) / 30)', 'llr', 50, 'nl.score', NULL);
CREATE TABLE eval.emu_check AS
SELECT count(*) AS slots, count(*) FILTER (WHERE e.product_id IS DISTINCT FROM r.product_id) AS differ
FROM eval.rec_cooc r FULL JOIN eval.emu e USING (customer_id, rank);
SELECT eval.emu_run('emu', 'E1 binary history weights, whole history', 'SQL', '1', 'llr', 1000, 'nl.score', NULL);
SELECT eval.emu_run('emu', 'E2 = E1 + each neighbour list scaled to its best score', 'SQL', '1', 'llr', 1000, 'nl.score / nl.top', NULL);
CREATE TABLE eval.rec_e2 AS SELECT * FROM eval.emu;
SELECT eval.emu_run('emu', 'B1 as built + one blended score', 'SQL pw=0.3',
                    'weight * power(0.5, greatest(age_days, 0) / 30)', 'llr', 50, 'nl.score', 0.3);
SELECT eval.emu_run('emu', 'B2 E2 + one blended score', 'SQL pw=0.2', '1', 'llr', 1000, 'nl.score / nl.top', 0.2);
SELECT eval.emu_run('emu', 'B3 E2 + one blended score', 'SQL pw=0.3', '1', 'llr', 1000, 'nl.score / nl.top', 0.3);
SELECT eval.emu_run('emu', 'B4 E2 + one blended score', 'SQL pw=0.4', '1', 'llr', 1000, 'nl.score / nl.top', 0.4);
SELECT eval.emu_run('emu', 'B5 E2 + one blended score', 'SQL pw=0.5', '1', 'llr', 1000, 'nl.score / nl.top', 0.5);
SELECT eval.interleave('eval.rec_cooc', 'eval.rec_popular', 8);
SELECT eval.score('emu', 'I1 cooccurrence top 8 + popular 2 (interleaved)', 'cooccurrence', 'SQL', 'eval.mix', 0);
SELECT eval.interleave('eval.rec_e2', 'eval.rec_popular', 8);
SELECT eval.score('emu', 'I2 E2 top 8 + popular 2 (interleaved)', 'cooccurrence', 'SQL', 'eval.mix', 0);
SQL
echo
echo "## SQL emulation of scoring changes (Findings; seconds = the whole SQL query, not per call)"
echo
md -c "SELECT eval.table('emu')"
echo
md -c "SELECT format('Emulation check: %s of %s (customer, rank) slots differ between E0 and recommend(customer, ''cooccurrence'', 20).', differ, slots) FROM eval.emu_check"

# ---- tuning through model settings (neighbour lists, cap) --------------------------
model_runs() {  # SETTING [more variants]
  for v in cooccurrence hybrid t_best ${2:-}; do run model "$v" "$v" "$1"; done
}
for s in "neighbors_k=100" "neighbors_min_count=1" "neighbors_min_count=5" "neighbors_min_count=10"; do
  g=${s%%=*}; val=${s#*=}
  psql_q -c "SET personalize.$g = $val" -c "SELECT personalize.refresh_neighbors(all_products => true)"
  case $g in neighbors_min_count) model_runs "$s" cooc_lift ;; *) model_runs "$s" ;; esac
done
for cap in 25 300; do
  psql_q -c "SELECT personalize.rebuild(max_items_per_customer => $cap)" \
         -c "SELECT personalize.refresh_popular(as_of => '$cut 00:00 Europe/London')"
  model_runs "max_items_per_customer=$cap"
done
# (eval.setup() rebuilds the next model with the default cap again)

echo
echo "## Tuning: model settings (lists refreshed / model rebuilt for each row)"
echo
md -c "SELECT eval.table('model')"

# ---- other cuts: built-ins, t_best, B3 --------------------------------------------------
for c in $sens; do
  echo
  echo "## Cut $c"
  echo
  md -c "SELECT eval.md('SELECT * FROM eval.setup(''$c'')')"
  for v in popular cooccurrence hybrid t_best; do
    psql_q -c "SET personalize.as_of = '$c 00:00 Europe/London'" -c "SELECT eval.run('cut', '$v', '$v', 'cut $c')"
  done
  # the proposed scoring, with the blend weight chosen on the main cut
  psql_q -c "SET personalize.as_of = '$c 00:00 Europe/London'" -c "SELECT eval.emu_run('cut', 'B3 E2 + one blended score (SQL emulation)', 'cut $c pw=0.3', '1', 'llr', 1000, 'nl.score / nl.top', 0.3)"
  echo
  md -c "SELECT eval.table('cut', '$c')"
done

echo
echo "(total $(( $(date +%s) - started )) s inside the cluster)"
