#!/bin/bash
# Offline quality of personalize.recommend() on the UCI Online Retail data (issue 3, item 5).
#
#   bash test/bench/quality.sh [path/to/online_retail.csv.gz] > /tmp/q.md
#
# Builds and installs the extension (SKIP_BUILD=1 to skip), starts a throw-away cluster
# with pg_virtualenv, loads the real file, keeps the interactions before the cut, and
# evaluates every variant against what each customer bought after the cut:
# HR@10, precision@10, recall@10, NDCG@10 (binary relevance) and catalog coverage, and
# the HR difference against the built-in `hybrid` on the same customers (paired).
# Prints Markdown tables on stdout, progress on stderr (docs/quality.md holds a run
# and its reading). About 8 minutes on 2 cores.
#
# It also holds a SQL emulation of recommend()'s scoring (eval.emulate), used to measure
# scoring changes that would need a change to src/. The emulation is checked against
# recommend() itself in every run, slot by slot, for the built-in cooccurrence and hybrid
# variants (and t_best): the same product in every (customer, rank) slot and the same score
# to 1e-12 (the last bits of a sum depend on the order recommend() reads the neighbour
# lists in). If any slot differs, the emulated rows are not printed and the script exits
# with status 3.
#
# Environment:
#   CUT=2011-09-01        the cut (Europe/London midnight)
#   SENSITIVITY_CUTS="2011-06-01 2011-11-01"   other cuts ("" to skip)
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
say() { echo "quality: $* ($(( $(date +%s) - started )) s)" >&2; }

echo "quality: PostgreSQL $(psql -XAtc 'SHOW server_version'), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM" >&2

psql_q -c 'CREATE EXTENSION personalize' -c 'CREATE SCHEMA eval'

# Load the whole file with the model triggers off (rebuild() below computes the model
# from the training part: the same counts the triggers maintain, and faster).
t0=$(date +%s)
psql_q -c 'ALTER TABLE personalize.interactions DISABLE TRIGGER USER'
bash "$root/test/load_online_retail.sh" "$file" > /dev/null
say "loaded the file in $(( $(date +%s) - t0 )) s"

psql_q <<'SQL'
-- every kept interaction of the file, for the split
CREATE TABLE eval.all_interactions AS SELECT * FROM personalize.interactions;
CREATE INDEX ON eval.all_interactions (occurred_at);

CREATE TABLE eval.metrics (
    grp text, label text, variant text, params jsonb, setting text, cut date,
    customers int, hits_any int, short int, hr10 float8, p10 float8, r10 float8, ndcg10 float8,
    recommended int, coverage float8, seconds float8, calls_per_s float8,
    seq bigint GENERATED ALWAYS AS IDENTITY);
-- per test customer and metrics row: was there a hit (for paired differences)
CREATE TABLE eval.hits (seq bigint, customer_id bigint, hit int, PRIMARY KEY (seq, customer_id));
CREATE TABLE eval.recs (customer_id bigint, rank int, product_id bigint, score float8);

-- Install the training part of the cut and the test set; the model is rebuilt from it.
-- personalize.as_of is set first: recommend() ages the history from it, and rebuild()'s
-- refresh_popular() now ends its window there (checked below).
CREATE FUNCTION eval.setup(cut date) RETURNS TABLE (item text, value text)
LANGUAGE plpgsql AS $f$
DECLARE
    c timestamptz := (cut::timestamp AT TIME ZONE 'Europe/London');
    wend timestamptz;
BEGIN
    PERFORM set_config('personalize.as_of', c::text, false);
    ALTER TABLE personalize.interactions DISABLE TRIGGER USER;
    DELETE FROM personalize.interactions;
    INSERT INTO personalize.interactions OVERRIDING SYSTEM VALUE SELECT * FROM eval.all_interactions WHERE occurred_at < c;
    ALTER TABLE personalize.interactions ENABLE TRIGGER USER;
    PERFORM personalize.rebuild(max_items_per_customer => 100);   -- the default cap
    SELECT max(window_end) INTO wend FROM personalize.popular;
    IF wend IS DISTINCT FROM c THEN
        RAISE EXCEPTION 'rebuild() refreshed the popularity list as of %, not as of personalize.as_of = %', wend, c;
    END IF;

    DROP TABLE IF EXISTS eval.before, eval.after, eval.heldout, eval.t;
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
    ANALYZE eval.before; ANALYZE eval.heldout; ANALYZE eval.t;

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
        ('popularity list (refreshed by rebuild() with personalize.as_of set)',
            (SELECT format('%s-day window ending at the cut: %s products, the top one bought by %s customers',
                           extract(day FROM max(window_end - window_start)), count(*) FILTER (WHERE source = 'window'),
                           max(customers) FILTER (WHERE source = 'window'))
             FROM personalize.popular));
END $f$;

-- Metrics of a recommendation table (customer_id, rank, product_id) against eval.heldout;
-- the per-customer hits go to eval.hits.
CREATE FUNCTION eval.score(grp text, label text, variant text, setting text, recs regclass, seconds float8)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    s bigint;
BEGIN
    DROP TABLE IF EXISTS pg_temp.per_customer;
    EXECUTE format($q$
    CREATE TEMP TABLE per_customer AS
    SELECT t.customer_id, t.n_heldout, t.idcg, count(h.product_id) AS hits, count(r.product_id) AS n_recs,
           coalesce(sum(1 / log(2, r.rank + 1)) FILTER (WHERE h.product_id IS NOT NULL), 0)::float8 AS dcg
    FROM eval.t t
    LEFT JOIN %s r ON r.customer_id = t.customer_id AND r.rank <= 10
    LEFT JOIN eval.heldout h ON h.customer_id = r.customer_id AND h.product_id = r.product_id
    GROUP BY t.customer_id, t.n_heldout, t.idcg $q$, recs);
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
    FROM pg_temp.per_customer s
    RETURNING seq $q$,
        grp, label, variant, variant, setting, recs, recs, seconds, seconds) INTO s;
    INSERT INTO eval.hits SELECT s, p.customer_id, (p.hits > 0)::int FROM pg_temp.per_customer p;
END $f$;

-- recommend(customer, variant, k) for every test customer in one lateral join, into eval.recs.
CREATE FUNCTION eval.fetch(variant text, k int) RETURNS float8
LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz;
BEGIN
    TRUNCATE eval.recs;
    t0 := clock_timestamp();
    INSERT INTO eval.recs
    SELECT t.customer_id, r.ord, r.product_id, r.score
    FROM eval.t t, LATERAL personalize.recommend(t.customer_id, variant, k) WITH ORDINALITY AS r(product_id, score, reason, ord);
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $f$;

-- recommend(customer, variant, 10) for every test customer, timed, and scored.
CREATE FUNCTION eval.run(grp text, label text, variant text, setting text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    secs float8 := eval.fetch(variant, 10);
BEGIN
    PERFORM eval.score(grp, label, variant, setting, 'eval.recs', secs);
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

-- The metrics rows of a group as a Markdown table. HR@10 also relative to `popular`, and
-- as a difference from `hybrid` on the same customers (mean of hit - hybrid's hit, ± its
-- standard error: the paired se, much smaller than the se of each HR); both references are
-- the built-in variants on the same cut with the default model (groups 'main' and 'cut').
CREATE FUNCTION eval.table(grp_like text, cut date DEFAULT NULL) RETURNS SETOF text LANGUAGE sql AS $f$
    SELECT eval.md(format($q$
        SELECT m.label AS "variant / change", concat_ws(' ', CASE WHEN m.grp IN ('main', 'params') AND m.params <> '{}' THEN m.params::text END,
                         nullif(m.setting, '')) AS "params / setting",
               to_char(m.hr10, '0.000') || ' ± ' || to_char(sqrt(m.hr10 * (1 - m.hr10) / m.customers), '0.000') AS "HR@10 ± se",
               to_char(m.hr10 / nullif(p.hr10, 0), '0.00') || '×' AS "HR / popular",
               CASE WHEN h.seq = m.seq THEN '(reference)'
                    ELSE to_char(d.d, 'S0.000') || ' ± ' || to_char(d.se, '0.000') END AS "ΔHR vs hybrid ± se",
               to_char(m.p10, '0.0000') AS "P@10", to_char(m.r10, '0.0000') AS "R@10",
               to_char(m.ndcg10, '0.0000') AS "NDCG@10",
               to_char(m.coverage, '0.000') || ' (' || m.recommended || ')' AS "coverage (products)",
               m.short AS "< 10 recs",
               to_char(m.seconds, '990.0') AS "seconds", to_char(m.calls_per_s, '99990') AS "calls/s"
        FROM eval.metrics m
        LEFT JOIN LATERAL (SELECT p.hr10 FROM eval.metrics p
                           WHERE p.grp IN ('main', 'cut') AND p.variant = 'popular' AND p.cut = m.cut
                           ORDER BY p.seq LIMIT 1) p ON true
        LEFT JOIN LATERAL (SELECT h.seq FROM eval.metrics h
                           WHERE h.grp IN ('main', 'cut') AND h.variant = 'hybrid' AND h.cut = m.cut
                           ORDER BY h.seq LIMIT 1) h ON true
        LEFT JOIN LATERAL (SELECT avg(a.hit - b.hit) AS d, stddev_samp(a.hit - b.hit) / sqrt(count(*)) AS se
                           FROM eval.hits a JOIN eval.hits b ON b.customer_id = a.customer_id
                           WHERE a.seq = m.seq AND b.seq = h.seq) d ON true
        WHERE m.grp LIKE %L AND (%L::date IS NULL OR m.cut = %L::date)
        ORDER BY m.seq $q$, grp_like, cut, cut));
$f$;

-- HR@10 of two metrics rows on the same customers (main cut): the difference, its paired
-- standard error, and how many customers only A or only B hits. Rows are named by label
-- and setting.
CREATE FUNCTION eval.paired(a_label text, a_setting text, b_label text, b_setting text, why text)
RETURNS TABLE ("A" text, "B" text, "what it isolates" text, "HR A" text, "HR B" text, "ΔHR (A - B) ± se" text,
               "customers hit by A only / B only" text)
LANGUAGE sql AS $f$
    WITH a AS (SELECT * FROM eval.metrics m WHERE m.label = a_label AND m.setting = a_setting ORDER BY m.seq LIMIT 1),
         b AS (SELECT * FROM eval.metrics m WHERE m.label = b_label AND m.setting = b_setting ORDER BY m.seq LIMIT 1)
    SELECT concat_ws(' ', a.label, nullif(a.setting, '')), concat_ws(' ', b.label, nullif(b.setting, '')), why,
           to_char(a.hr10, '0.000'), to_char(b.hr10, '0.000'),
           to_char(avg(x.hit - y.hit), 'S0.000') || ' ± ' || to_char(stddev_samp(x.hit - y.hit) / sqrt(count(*)), '0.000'),
           count(*) FILTER (WHERE x.hit > y.hit) || ' / ' || count(*) FILTER (WHERE x.hit < y.hit)
    FROM a, b, eval.hits x JOIN eval.hits y ON y.customer_id = x.customer_id
    WHERE x.seq = a.seq AND y.seq = b.seq
    GROUP BY a.label, a.setting, b.label, b.setting, a.hr10, b.hr10;
$f$;

-- recommend()'s scoring in SQL, for every test customer at once, into eval.emu
-- (customer_id, rank, product_id, score). With the knobs after `fill` left NULL it follows
-- src/recommend.c at the commit measured, step by step:
--   history  the hist_n products of highest w = weight * 0.5^(age / hl) (hl 0: no decay),
--            ties by product_id, computed with the very expression recommend() uses
--   cooc     per candidate, the sum over the history products of w * score / the list's best
--            score, over the first nbrs entries of each list; divided by max_cooc, the largest
--            sum among ALL candidates (products the customer bought included)
--   pop      every product of personalize.popular (the list recommend() reads as one row of
--            personalize.popular_scores, whatever k; purchases are dropped with the others
--            below): 0.5 + 0.5 * share for the window's products, 0.5 * share for the all-time ones
--   score    w > 0: (1 - w) * cooc + w * pop over all candidates; w = 0: 1 + cooc for the
--            co-occurrence candidates and, if fill, pop for the others
--   list     the k best by score, then product_id, among active products the customer has
--            not bought
-- The knobs change one step each: wexpr replaces the history weight (an expression over
-- customer_items `ci` and `age` in days), pop_limit reads only the first pop_limit products the
-- customer has not bought (the scoring before 4411722 read 2k + 20), popexpr the pop term (an
-- expression over popular `p`), max_shown takes max_cooc over the products that can be shown.
-- There are no campaigns in this data, so campaign boosts are not emulated.
CREATE FUNCTION eval.emulate(k int, measure text, hist_n int, nbrs int, hl float8, w float8, fill boolean,
                             wexpr text DEFAULT NULL, pop_limit int DEFAULT NULL, popexpr text DEFAULT NULL,
                             max_shown boolean DEFAULT false)
RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz := clock_timestamp();
    now_ timestamptz := current_setting('personalize.as_of')::timestamptz;
    built_w text := format($w$ci.weight * CASE WHEN %1$s::float8 > 0 THEN power(0.5, greatest(date_part('epoch', %2$L::timestamptz - ci.last_at), 0) / 86400 / %1$s::float8) ELSE 1 END$w$,
                           hl, now_);
BEGIN
    DROP TABLE IF EXISTS eval.emu;
    EXECUTE format($q$
    CREATE TABLE eval.emu AS
    WITH h AS (
        SELECT customer_id, product_id, hw FROM (
            SELECT ci.customer_id, ci.product_id, x.hw,
                   row_number() OVER (PARTITION BY ci.customer_id ORDER BY x.hw DESC, ci.product_id) AS rn
            FROM personalize.customer_items ci JOIN eval.t t ON t.customer_id = ci.customer_id,
                 LATERAL (SELECT date_part('epoch', %1$L::timestamptz - ci.last_at) / 86400 AS age) a,
                 LATERAL (SELECT (%2$s)::float8 AS hw) x) y
        WHERE rn <= %3$s),
    nl AS (
        SELECT n.product_id, u.neighbor_id, u.j, u.score, n.scores[1] AS top
        FROM personalize.neighbors n, unnest(n.neighbor_ids, n.scores) WITH ORDINALITY u(neighbor_id, score, j)
        WHERE n.measure = %4$L AND u.j <= %5$s),
    c AS (
        SELECT h.customer_id, nl.neighbor_id AS product_id,
               sum(h.hw * (CASE WHEN nl.top > 0 THEN nl.score / nl.top ELSE 0 END) ORDER BY h.product_id, nl.j) AS cooc
        FROM h JOIN nl ON nl.product_id = h.product_id
        GROUP BY 1, 2),
    shown AS (
        SELECT c.customer_id, c.product_id FROM c JOIN personalize.products p ON p.product_id = c.product_id AND p.active
        WHERE NOT EXISTS (SELECT FROM personalize.customer_items b WHERE b.customer_id = c.customer_id
                          AND b.product_id = c.product_id AND b.purchases > 0)),
    mx AS (
        SELECT c.customer_id, max(c.cooc) AS m FROM c
        WHERE NOT %6$L::boolean
           OR EXISTS (SELECT FROM shown s WHERE s.customer_id = c.customer_id AND s.product_id = c.product_id)
        GROUP BY 1),
    cn AS (
        SELECT c.customer_id, c.product_id, CASE WHEN c.cooc > 0 AND mx.m > 0 THEN c.cooc / mx.m ELSE 0 END AS cn
        FROM c JOIN mx USING (customer_id)),
    pop AS (
        SELECT t.customer_id, p.product_id, (%7$s)::float8 AS pop
        FROM eval.t t CROSS JOIN LATERAL (
            SELECT p.* FROM personalize.popular p
            WHERE NOT EXISTS (SELECT FROM personalize.customer_items b WHERE b.customer_id = t.customer_id
                              AND b.product_id = p.product_id AND b.purchases > 0)
            ORDER BY p.rank LIMIT %8$s) p
        WHERE %11$L::boolean OR %9$L::float8 > 0),
    cand AS (
        SELECT coalesce(cn.customer_id, pop.customer_id) AS customer_id, coalesce(cn.product_id, pop.product_id) AS product_id,
               coalesce(cn.cn, 0) AS cn, coalesce(pop.pop, 0) AS pop
        FROM cn FULL JOIN pop ON pop.customer_id = cn.customer_id AND pop.product_id = cn.product_id),
    scored AS (
        SELECT customer_id, product_id,
               CASE WHEN %9$L::float8 > 0 AND (cn > 0 OR pop > 0) THEN (1.0::float8 - %9$L::float8) * cn + %9$L::float8 * pop
                    WHEN cn > 0 THEN 1.0::float8 + cn
                    WHEN pop > 0 AND %11$L::boolean THEN pop END AS score
        FROM cand)
    SELECT customer_id, rank, product_id, score FROM (
        SELECT s.customer_id, s.product_id, s.score,
               row_number() OVER (PARTITION BY s.customer_id ORDER BY s.score DESC, s.product_id)::int AS rank
        FROM scored s JOIN personalize.products p ON p.product_id = s.product_id AND p.active
        WHERE s.score IS NOT NULL
          AND NOT EXISTS (SELECT FROM personalize.customer_items b WHERE b.customer_id = s.customer_id
                          AND b.product_id = s.product_id AND b.purchases > 0)) z
    WHERE rank <= %10$s $q$,
        now_, coalesce(wexpr, built_w), hist_n, measure, nbrs, max_shown,
        coalesce(popexpr, $p$CASE WHEN p.source = 'window' THEN 0.5 + 0.5 * p.share ELSE 0.5 * p.share END$p$),
        coalesce(pop_limit::text, 'ALL'), w, k, fill);
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $f$;

CREATE FUNCTION eval.emu_run(grp text, label text, setting text, k int, measure text, hist_n int, nbrs int, hl float8,
                             w float8, fill boolean, wexpr text DEFAULT NULL, pop_limit int DEFAULT NULL,
                             popexpr text DEFAULT NULL, max_shown boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    secs float8 := eval.emulate(k, measure, hist_n, nbrs, hl, w, fill, wexpr, pop_limit, popexpr, max_shown);
BEGIN
    PERFORM eval.score(grp, label, NULL, setting, 'eval.emu'::regclass, secs);
END $f$;

-- The emulation against recommend() itself: every (customer, rank) slot of
-- recommend(customer, variant, k) and of the emulation with the variant's parameters.
-- recommend() sums a candidate's contributions in the order the neighbour lists come back
-- from its query, which depends on the plan (index scan: product_id order; bitmap heap
-- scan: physical order), so the last bits of a sum can differ from the emulation's
-- (product_id order). A slot therefore matches if the product is the same and the scores
-- agree to 1e-12 (relative); a different product with an equal score (a tie broken by that
-- rounding) is counted apart. Anything else is a mismatch.
CREATE TABLE eval.emu_check (cut date, variant text, k int, slots bigint, product_differs bigint, tie_swaps bigint,
                             score_differs bigint, last_bits_differ bigint, max_abs_score_diff float8);
CREATE FUNCTION eval.check_emulation(variant text, k int, measure text, hist_n int, nbrs int, hl float8, w float8, fill boolean)
RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
    bad bigint;
BEGIN
    PERFORM eval.fetch(variant, k);
    PERFORM eval.emulate(k, measure, hist_n, nbrs, hl, w, fill);
    INSERT INTO eval.emu_check
    SELECT (current_setting('personalize.as_of')::timestamptz AT TIME ZONE 'Europe/London')::date, variant, k,
           count(*),
           count(*) FILTER (WHERE e.product_id IS DISTINCT FROM r.product_id AND NOT eq),
           count(*) FILTER (WHERE e.product_id IS DISTINCT FROM r.product_id AND eq),
           count(*) FILTER (WHERE NOT eq),
           count(*) FILTER (WHERE e.score IS DISTINCT FROM r.score),
           coalesce(max(abs(e.score - r.score)), 0)
    FROM eval.recs r FULL JOIN eval.emu e USING (customer_id, rank),
         LATERAL (SELECT coalesce(abs(e.score - r.score) <= 1e-12 * abs(r.score), false) AS eq) x
    RETURNING product_differs + score_differs INTO bad;
    RETURN bad = 0;
END $f$;

-- Is recommend(customer, variant, 10) the first 10 of recommend(customer, variant, 20)?
CREATE TABLE eval.k_check (cut date, variant text, customers bigint, customers_differ bigint,
                           slots_differ bigint, products_not_in_k20_top10 bigint);
CREATE FUNCTION eval.check_k(variant text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM eval.fetch(variant, 20);
    DROP TABLE IF EXISTS pg_temp.k20;
    CREATE TEMP TABLE k20 AS SELECT * FROM eval.recs WHERE rank <= 10;
    PERFORM eval.fetch(variant, 10);
    INSERT INTO eval.k_check
    SELECT (current_setting('personalize.as_of')::timestamptz AT TIME ZONE 'Europe/London')::date, variant,
           count(DISTINCT coalesce(a.customer_id, b.customer_id)),
           count(DISTINCT coalesce(a.customer_id, b.customer_id)) FILTER (WHERE a.product_id IS DISTINCT FROM b.product_id),
           count(*) FILTER (WHERE a.product_id IS DISTINCT FROM b.product_id),
           (SELECT count(*) FROM (SELECT customer_id, product_id FROM eval.recs
                                  EXCEPT SELECT customer_id, product_id FROM pg_temp.k20) x)
    FROM eval.recs a FULL JOIN pg_temp.k20 b USING (customer_id, rank);
END $f$;

-- Not a recommender: the 10 products bought by most customers AFTER the cut, minus each
-- customer's purchases. What a perfectly foreseen non-personal list would reach.
CREATE FUNCTION eval.oracle() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    DROP TABLE IF EXISTS eval.orc;
    CREATE TABLE eval.orc AS
    SELECT customer_id, rank, product_id FROM (
        SELECT t.customer_id, p.product_id,
               row_number() OVER (PARTITION BY t.customer_id ORDER BY p.n DESC, p.product_id)::int AS rank
        FROM eval.t t CROSS JOIN (SELECT product_id, count(*) AS n FROM eval.after GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 300) p
        WHERE NOT EXISTS (SELECT FROM eval.before b WHERE b.customer_id = t.customer_id AND b.product_id = p.product_id)) z
    WHERE rank <= 10;
END $f$;
SQL

# variants: one per similarity measure (the built-in cooccurrence and hybrid use llr);
# created before the rebuild, which computes the neighbour lists of every measure in use
psql_q <<'SQL'
SELECT eval.variant('cooc_' || m, 'cooccurrence', jsonb_build_object('measure', m))
FROM unnest(ARRAY['count', 'jaccard', 'cosine', 'lift']) m;
SELECT eval.variant('h_' || m, 'hybrid', jsonb_build_object('measure', m))
FROM unnest(ARRAY['jaccard', 'cosine']) m;
SQL

# ---- personalize.evaluate() on the whole file, at the same cut ------------------------
# The live model holds every event (rebuilt with the same cap as eval.setup); evaluate()
# builds the model as of the cut in temporary tables and scores the same variants. Its
# figures must equal this script's main table (checked after it).
main_variants="popular cooccurrence cooc_count cooc_jaccard cooc_cosine cooc_lift hybrid ease"
t0=$(date +%s)
psql_q -c 'ALTER TABLE personalize.interactions ENABLE TRIGGER USER' \
       -c 'SELECT personalize.rebuild(max_items_per_customer => 100)' \
       -c "CREATE TABLE eval.evaluated AS SELECT * FROM personalize.evaluate('$cut 00:00 Europe/London',
             string_to_array('$main_variants', ' '), 10)" \
       -c "CREATE TABLE eval.evaluate_cost AS
             SELECT extract(epoch FROM finished_at - started_at) AS seconds FROM personalize.maintenance_runs
             WHERE job = 'evaluate' ORDER BY run_id DESC LIMIT 1"
say "evaluate() on the whole file in $(( $(date +%s) - t0 )) s"

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
# the EASE lists of the training model (rebuild() keeps the 'ease' lists; none exist yet)
psql_q -c 'CALL personalize.refresh_ease()'
say "set up cut $cut"

# ---- main table -------------------------------------------------------------------
# each psql session sets personalize.as_of itself (eval.setup's set_config is per session)
asof() { echo "SET personalize.as_of = '${1:-$cut} 00:00 Europe/London'"; }
run() {   # run GROUP LABEL VARIANT [SETTING]
  psql_q -c "$(asof)" -c "SELECT eval.run('$1', '$2', '$3', '${4:-}')"
}
for v in $main_variants; do
  run main "$v" "$v"
done
echo
echo "## Variants (cut $cut, k = 10)"
echo
md -c "SELECT eval.table('main')"
say "main table"

# ---- personalize.evaluate() must give the main table's figures ----------------------
echo
echo "## personalize.evaluate() against this script (cut $cut, k = 10)"
echo
echo "evaluate('$cut 00:00 Europe/London', ...) on the database holding every event, against the"
echo "main table above (a model rebuilt from the events before the cut). Largest absolute"
echo "difference of each metric over the variants; customers must be equal."
echo
md -c "SELECT eval.md(\$q\$
    SELECT count(*) AS variants, bool_and(e.customers = m.customers) AS \"same customers\",
           max(abs(e.hit_rate - m.hr10)) AS \"max Δ HR\", max(abs(e.precision - m.p10)) AS \"max Δ P\",
           max(abs(e.recall - m.r10)) AS \"max Δ R\", max(abs(e.ndcg - m.ndcg10)) AS \"max Δ NDCG\",
           max(abs(e.coverage - m.coverage)) AS \"max Δ coverage\",
           (SELECT round(seconds::numeric, 1) FROM eval.evaluate_cost) AS \"evaluate() seconds\"
    FROM eval.evaluated e JOIN eval.metrics m ON m.grp = 'main' AND m.variant = e.variant \$q\$)"
eval_ok=$(md -c "SELECT count(*) = $(wc -w <<< "$main_variants") AND bool_and(e.customers = m.customers
                   AND abs(e.hit_rate - m.hr10) <= 1e-9 AND abs(e.precision - m.p10) <= 1e-9
                   AND abs(e.recall - m.r10) <= 1e-9 AND abs(e.ndcg - m.ndcg10) <= 1e-9
                   AND abs(e.coverage - m.coverage) <= 1e-9)
                 FROM eval.evaluated e JOIN eval.metrics m ON m.grp = 'main' AND m.variant = e.variant")
say "evaluate() agrees with the main table: $eval_ok"
if [ "$eval_ok" != t ]; then
  echo "quality: evaluate() differs from this script's figures" >&2
  exit 3
fi

if [ "$quick" = 1 ]; then
  echo; echo "(QUICK=1: tuning skipped; total $(( $(date +%s) - started )) s)"; exit 0
fi

# ---- the emulation must reproduce recommend() before it is used ---------------------
# (k, measure, history_items, neighbors, half_life_days (0: none), popularity_weight, popular_fill)
psql_q -c "$(asof)" -f - <<'SQL'
SELECT eval.variant('t_best', 'hybrid', '{"history_items": 1000, "half_life_days": 365}');
SELECT eval.check_emulation('cooccurrence', 20, 'llr', 50, 1000, 90, 0, true);
SELECT eval.check_emulation('cooccurrence', 10, 'llr', 50, 1000, 90, 0, true);
SELECT eval.check_emulation('hybrid', 10, 'llr', 50, 1000, 90, 0.2, true);
SELECT eval.check_emulation('hybrid', 20, 'llr', 50, 1000, 90, 0.2, true);
SELECT eval.check_emulation('t_best', 10, 'llr', 1000, 1000, 365, 0.2, true);
-- ... and is recommend(.., 10) the top 10 of recommend(.., 20)?
SELECT eval.check_k('cooccurrence');
SELECT eval.check_k('hybrid');
SQL
emu_ok=$(md -c "SELECT bool_and(product_differs = 0 AND score_differs = 0) FROM eval.emu_check")
say "emulation checked: $emu_ok"

# ---- tuning through variant parameters ---------------------------------------------
psql_q <<'SQL'
SELECT eval.variant(n, a, p::jsonb) FROM (VALUES
    ('c_hl_7',      'cooccurrence', '{"half_life_days": 7}'),
    ('c_hl_30',     'cooccurrence', '{"half_life_days": 30}'),
    ('c_hl_365',    'cooccurrence', '{"half_life_days": 365}'),
    ('c_hl_none',   'cooccurrence', '{"half_life_days": null}'),
    ('c_hist_10',   'cooccurrence', '{"history_items": 10}'),
    ('c_hist_20',   'cooccurrence', '{"history_items": 20}'),
    ('c_hist_200',  'cooccurrence', '{"history_items": 200}'),
    ('c_hist_1000', 'cooccurrence', '{"history_items": 1000}'),
    ('c_nb_10',     'cooccurrence', '{"neighbors": 10}'),
    ('c_nb_20',     'cooccurrence', '{"neighbors": 20}'),
    ('c_no_fill',   'cooccurrence', '{"popular_fill": false}'),
    ('h_hl_7',      'hybrid',       '{"half_life_days": 7}'),
    ('h_hl_30',     'hybrid',       '{"half_life_days": 30}'),
    ('h_hl_365',    'hybrid',       '{"half_life_days": 365}'),
    ('h_hl_none',   'hybrid',       '{"half_life_days": null}'),
    ('h_hist_10',   'hybrid',       '{"history_items": 10}'),
    ('h_hist_20',   'hybrid',       '{"history_items": 20}'),
    ('h_hist_200',  'hybrid',       '{"history_items": 200}'),
    ('h_hist_1000', 'hybrid',       '{"history_items": 1000}'),
    ('h_nb_10',     'hybrid',       '{"neighbors": 10}'),
    ('h_nb_20',     'hybrid',       '{"neighbors": 20}'),
    ('h_pw_005',    'hybrid',       '{"popularity_weight": 0.05}'),
    ('h_pw_01',     'hybrid',       '{"popularity_weight": 0.1}'),
    ('h_pw_03',     'hybrid',       '{"popularity_weight": 0.3}'),
    ('h_pw_04',     'hybrid',       '{"popularity_weight": 0.4}'),
    ('h_pw_05',     'hybrid',       '{"popularity_weight": 0.5}'),
    ('h_pw_10',     'hybrid',       '{"popularity_weight": 1.0}'),
    ('t_best_200',  'hybrid',       '{"history_items": 200, "half_life_days": 365}'),
    ('t_best_nodecay', 'hybrid',    '{"history_items": 1000, "half_life_days": null}'),
    ('t_best_pw_01', 'hybrid',      '{"history_items": 1000, "half_life_days": 365, "popularity_weight": 0.1}'),
    ('t_best_pw_03', 'hybrid',      '{"history_items": 1000, "half_life_days": 365, "popularity_weight": 0.3}'),
    ('t_best_nb_20', 'hybrid',      '{"history_items": 1000, "half_life_days": 365, "neighbors": 20}'),
    ('t_best_jac',  'hybrid',       '{"measure": "jaccard", "history_items": 1000, "half_life_days": 365}')) v(n, a, p);
SQL
for v in c_hl_7 c_hl_30 c_hl_365 c_hl_none c_hist_10 c_hist_20 c_hist_200 c_hist_1000 c_nb_10 c_nb_20 c_no_fill \
         h_jaccard h_cosine h_hl_7 h_hl_30 h_hl_365 h_hl_none h_hist_10 h_hist_20 h_hist_200 h_hist_1000 h_nb_10 h_nb_20 \
         h_pw_005 h_pw_01 h_pw_03 h_pw_04 h_pw_05 h_pw_10 \
         t_best t_best_200 t_best_nodecay t_best_pw_01 t_best_pw_03 t_best_nb_20 t_best_jac; do
  run params "$v" "$v"
done

echo
echo "## Tuning (cut $cut): variant parameters"
echo
md -c "SELECT eval.table('params')"
say "variant parameters"

# ---- the popularity window: is the 7-day list the strongest baseline? ---------------
for w in "1 day" "14 days" "30 days" "90 days"; do
  psql_q -c "$(asof)" -c "SELECT personalize.refresh_popular(window_length => '$w')"
  run popwin popular popular "popularity window $w"
  run popwin hybrid hybrid "popularity window $w"
done
psql_q -c "$(asof)" -c "SELECT personalize.refresh_popular()"

echo
echo "## The popularity window (refresh_popular(window_length => ...); the default is 7 days)"
echo
md -c "SELECT eval.table('popwin')"
say "popularity windows"

# ---- the emulation check, and scoring changes measured with it -----------------------
echo
echo "## SQL emulation of recommend(): check against recommend() itself"
echo
md -c "SELECT eval.md('SELECT cut, variant, k, slots AS \"(customer, rank) slots\",
                              product_differs AS \"other product\", tie_swaps AS \"other product, equal score (tie)\",
                              score_differs AS \"score differs > 1e-12\", last_bits_differ AS \"score differs in the last bits\",
                              max_abs_score_diff AS \"largest score difference\"
                       FROM eval.emu_check ORDER BY cut, variant, k')"
echo
echo "### Is recommend(c, v, 10) the top 10 of recommend(c, v, 20)?"
echo
md -c "SELECT eval.md('SELECT cut, variant, customers, customers_differ AS \"customers whose top 10 differ\",
                              slots_differ AS \"(customer, rank) slots that differ\",
                              products_not_in_k20_top10 AS \"k = 10 products missing from the k = 20 top 10\"
                       FROM eval.k_check ORDER BY cut, variant')"

if [ "$emu_ok" != t ]; then
  echo
  echo "**The emulation does not reproduce recommend() at this commit (table above): its rows are not printed.**"
else
  psql_q -c "$(asof)" -f - <<'SQL'
-- args: k, measure, history_items, neighbors, half_life_days (0 none), popularity_weight, fill,
--       [history weight expr, popularity rows read, popularity term expr, max_cooc over shown only]
SELECT eval.emu_run('emu', 'E0 hybrid as built (emulated)', 'SQL', 10, 'llr', 50, 1000, 90, 0.2, true);
SELECT eval.emu_run('emu', 'F1 undone: popularity term only for the first 2k + 20 unbought products (as at 03d20c7)', 'SQL pop rows 40', 10, 'llr', 50, 1000, 90, 0.2, true,
                    NULL, 40);
SELECT eval.emu_run('emu', 'F2 max_cooc over the products that can be shown', 'SQL', 10, 'llr', 50, 1000, 90, 0.2, true,
                    NULL, NULL, NULL, true);
SELECT eval.emu_run('emu', 'F3 popularity term = window share, 0 for all-time', 'SQL w=0.2', 10, 'llr', 50, 1000, 90, 0.2, true,
                    NULL, NULL, $$CASE WHEN p.source = 'window' THEN p.share ELSE 0 END$$);
SELECT eval.emu_run('emu', 'F3 popularity term = window share, 0 for all-time', 'SQL w=0.3', 10, 'llr', 50, 1000, 90, 0.3, true,
                    NULL, NULL, $$CASE WHEN p.source = 'window' THEN p.share ELSE 0 END$$);
SELECT eval.emu_run('emu', 'F4 history weight 1 per product, whole history, no decay (cooccurrence)', 'SQL w=0', 10, 'llr', 1000, 1000, 0, 0, true,
                    '1');
SELECT eval.emu_run('emu', 'F4 history weight 1 per product, whole history, no decay', 'SQL w=0.2', 10, 'llr', 1000, 1000, 0, 0.2, true,
                    '1');
SELECT eval.emu_run('emu', 'F5 history weight ln(1 + weight), whole history, no decay', 'SQL w=0.2', 10, 'llr', 1000, 1000, 0, 0.2, true,
                    'ln(1 + ci.weight)');
SELECT eval.emu_run('emu', 'F6 = F2 + F4 (F1 is built)', 'SQL w=0.1', 10, 'llr', 1000, 1000, 0, 0.1, true, '1', NULL, NULL, true);
SELECT eval.emu_run('emu', 'F6 = F2 + F4 (F1 is built)', 'SQL w=0.2', 10, 'llr', 1000, 1000, 0, 0.2, true, '1', NULL, NULL, true);
SELECT eval.emu_run('emu', 'F6 = F2 + F4 (F1 is built)', 'SQL w=0.3', 10, 'llr', 1000, 1000, 0, 0.3, true, '1', NULL, NULL, true);
SELECT eval.oracle();
SELECT eval.score('emu', 'O1 not a recommender: top 10 of the test period itself', NULL, 'hindsight', 'eval.orc', 0);
SQL
  echo
  echo "### Scoring changes, emulated (cut $cut; seconds = the whole SQL query, not per call)"
  echo
  md -c "SELECT eval.table('emu')"
  echo
  echo "### Paired differences (cut $cut, same test customers)"
  echo
  md -c "SELECT eval.md(\$q\$
    SELECT * FROM eval.paired('t_best', '', 'hybrid', '', 'history_items 1000 + half_life_days 365 vs the defaults 50 + 90')
    UNION ALL SELECT * FROM eval.paired('t_best_200', '', 'hybrid', '', 'history_items 200 + half_life_days 365 vs the defaults')
    UNION ALL SELECT * FROM eval.paired('E0 hybrid as built (emulated)', 'SQL',
                                        'F1 undone: popularity term only for the first 2k + 20 unbought products (as at 03d20c7)', 'SQL pop rows 40',
                                        'Finding 7 fixed: popularity term for the whole list vs the first 2k + 20 (k = 10)')
    UNION ALL SELECT * FROM eval.paired('F2 max_cooc over the products that can be shown', 'SQL',
                                        'E0 hybrid as built (emulated)', 'SQL', 'Finding 5: max_cooc without bought products')
    UNION ALL SELECT * FROM eval.paired('F4 history weight 1 per product, whole history, no decay', 'SQL w=0.2',
                                        't_best_nodecay', '', 'Finding 8: weight 1 vs the sum of event weights (same history, no decay)')
    UNION ALL SELECT * FROM eval.paired('F5 history weight ln(1 + weight), whole history, no decay', 'SQL w=0.2',
                                        't_best_nodecay', '', 'Finding 8: ln(1 + weight) vs the sum of event weights')
    UNION ALL SELECT * FROM eval.paired('O1 not a recommender: top 10 of the test period itself', 'hindsight',
                                        'popular', '', 'the 7-day list vs the test period''s own bestsellers')
    \$q\$)"
fi
say "emulation"

# ---- tuning through model settings (neighbour lists, cap) --------------------------
model_runs() {  # SETTING [more variants]
  for v in cooccurrence hybrid t_best ${2:-}; do run model "$v" "$v" "$1"; done
}
for s in "neighbors_k=20" "neighbors_k=100" "neighbors_min_count=1" "neighbors_min_count=5" "neighbors_min_count=10"; do
  g=${s%%=*}; val=${s#*=}
  psql_q -c "SET personalize.$g = $val" -c "SELECT personalize.refresh_neighbors(all_products => true)"
  case $g in neighbors_min_count) model_runs "$s" cooc_lift ;; *) model_runs "$s" ;; esac
done
for cap in 25 50 300 1000; do
  # with personalize.as_of set, rebuild() refreshes the popularity list as of the cut
  psql_q -c "$(asof)" -c "SELECT personalize.rebuild(max_items_per_customer => $cap)"
  model_runs "max_items_per_customer=$cap"
done
# (eval.setup() rebuilds the next model with the default cap again)

echo
echo "## Tuning: model settings (lists refreshed / model rebuilt for each row)"
echo
md -c "SELECT eval.table('model')"
say "model settings"

# ---- other cuts: built-ins, t_best, the emulated F6 ---------------------------------
for c in $sens; do
  echo
  echo "## Cut $c"
  echo
  md -c "SELECT eval.md('SELECT * FROM eval.setup(''$c'')')"
  for v in popular cooccurrence hybrid t_best; do
    psql_q -c "$(asof "$c")" -c "SELECT eval.run('cut', '$v', '$v', 'cut $c')"
  done
  psql_q -c "$(asof "$c")" -f - <<SQL
SELECT eval.check_emulation('cooccurrence', 10, 'llr', 50, 1000, 90, 0, true);
SELECT eval.check_emulation('hybrid', 10, 'llr', 50, 1000, 90, 0.2, true);
SQL
  ok=$(md -c "SELECT bool_and(product_differs = 0 AND score_differs = 0) FROM eval.emu_check WHERE cut = '$c'")
  echo
  md -c "SELECT format('Emulation check at this cut (cooccurrence and hybrid, k = 10): %s of %s (customer, rank) slots hold another product or a score that differs by more than 1e-12 (%s ties swapped; %s scores differ in the last bits, at most %s).',
                       sum(product_differs + score_differs), sum(slots), sum(tie_swaps), sum(last_bits_differ), max(max_abs_score_diff))
       FROM eval.emu_check WHERE cut = '$c'"
  if [ "$ok" = t ] && [ "$emu_ok" = t ]; then
    psql_q -c "$(asof "$c")" -f - <<SQL
SELECT eval.emu_run('cut', 'F6 = F2 + F4 (emulated; F1 is built)', 'cut $c w=0.2', 10, 'llr', 1000, 1000, 0, 0.2, true, '1', NULL, NULL, true);
SELECT eval.oracle();
SELECT eval.score('cut', 'O1 not a recommender: top 10 of the test period itself', NULL, 'cut $c hindsight', 'eval.orc', 0);
SQL
  else
    emu_ok=f
  fi
  echo
  md -c "SELECT eval.table('cut', '$c')"
  say "cut $c"
done

echo
echo "(total $(( $(date +%s) - started )) s inside the cluster)"
[ "$emu_ok" = t ] || { echo "quality: the SQL emulation does not reproduce recommend(); see the check table" >&2; exit 3; }
