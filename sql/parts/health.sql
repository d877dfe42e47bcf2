------------------------------------------------------------------------------
-- Health (issue 11): one row per check, for monitoring. The view reads the tables with
-- its owner's rights; what its reader could not see otherwise (pg_cron's jobs, behind
-- row-level security and maybe in another database) comes from _health_cron_jobs(),
-- which answers only roles that may read the view. Cheap enough to scrape every 15 s:
-- no count(*) of a big table (the backlog is counted up to 100001, the pair store is
-- read from the statistics), the run tables through the indexes below.
------------------------------------------------------------------------------
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- the last run (and the last failed one) of each job, newest first
CREATE INDEX maintenance_runs_job_idx ON @extschema@.maintenance_runs (job, run_id);
CREATE INDEX maintenance_runs_failed_idx ON @extschema@.maintenance_runs (run_id)
    WHERE status OPERATOR(pg_catalog.<>) 'succeeded';
CREATE INDEX llm_runs_kind_idx ON @extschema@.llm_runs (kind, run_id);
CREATE INDEX llm_runs_failed_idx ON @extschema@.llm_runs (run_id)
    WHERE status OPERATOR(pg_catalog.<>) ALL (ARRAY['running', 'completed']);

-- the thresholds (personalize.health_*), validated by the library
CREATE FUNCTION @extschema@._health_settings() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'personalize_health_settings';
COMMENT ON FUNCTION @extschema@._health_settings() IS
    'The thresholds of personalize.health (seconds, products; 0 = off) and the pg_cron jobs it expects.';

-- this database's personalize-* pg_cron jobs and their last runs, read as the view's owner
CREATE FUNCTION @extschema@._health_cron_jobs() RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'personalize_health_cron_jobs';
COMMENT ON FUNCTION @extschema@._health_cron_jobs() IS
    'This database''s personalize-* pg_cron jobs and the last finished run of each, read as the owner of personalize.health (pg_cron shows a role its own jobs only); only for roles that may read personalize.health.';

CREATE VIEW @extschema@.health AS
WITH s AS MATERIALIZED (
    SELECT (h ->> 'refresh_warn')::numeric AS r_warn, (h ->> 'refresh_critical')::numeric AS r_crit,
           (h ->> 'backlog_warn')::numeric AS b_warn, (h ->> 'backlog_critical')::numeric AS b_crit,
           (h ->> 'llm_warn')::numeric AS l_warn, (h ->> 'llm_critical')::numeric AS l_crit,
           ARRAY(SELECT DISTINCT pg_catalog.lower(pg_catalog.btrim(x))
                 FROM pg_catalog.unnest(pg_catalog.string_to_array(h ->> 'expected_jobs', ',')) x
                 WHERE pg_catalog.btrim(x) OPERATOR(pg_catalog.<>) '') AS expected,
           EXISTS (SELECT FROM @extschema@.item_counts_base LIMIT 1)
               OR EXISTS (SELECT FROM @extschema@.model_deltas LIMIT 1) AS has_model
    FROM (SELECT @extschema@._health_settings() AS h) z
), refresh AS (
    -- the last successful refresh() or rebuild()
    SELECT max(x.finished_at) AS t FROM (
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'refresh' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)
        UNION ALL
        (SELECT m.finished_at FROM @extschema@.maintenance_runs m
         WHERE m.job = 'rebuild' AND m.status = 'succeeded' ORDER BY m.run_id DESC LIMIT 1)) x
), failure AS (
    -- the newest failed run of any job, and whether a later run of that job went well
    SELECT f.*, f.run_id = (SELECT m.run_id FROM @extschema@.maintenance_runs m WHERE m.job = f.job
                            ORDER BY m.run_id DESC LIMIT 1) AS is_current
    FROM (SELECT 'maintenance_runs' AS tbl, m.run_id, m.job, m.job AS kind, m.finished_at, m.error
          FROM @extschema@.maintenance_runs m WHERE m.status <> 'succeeded' ORDER BY m.run_id DESC LIMIT 1) f
    UNION ALL
    SELECT f.*, f.run_id = (SELECT r.run_id FROM @extschema@.llm_runs r WHERE r.kind = f.kind
                            ORDER BY r.run_id DESC LIMIT 1)
    FROM (SELECT 'llm_runs' AS tbl, r.run_id, 'llm_' || r.kind AS job, r.kind, coalesce(r.finished_at, r.started_at) AS finished_at,
                 r.status || ': ' || coalesce(r.error, 'no error recorded') AS error
          FROM @extschema@.llm_runs r WHERE r.status <> ALL (ARRAY['running', 'completed'])
          ORDER BY r.run_id DESC LIMIT 1) f
), backlog AS (
    SELECT (SELECT count(*) FROM (SELECT FROM @extschema@.dirty_products LIMIT 100001) d) AS n_dirty,
           -- changes not folded yet: their products are not in dirty_products until the refresh
           -- folds them (a heap scan of model_deltas, no array read)
           (SELECT coalesce(sum(m.entries), 0) FROM @extschema@.model_deltas m) AS n_pending,
           -- a pending change (not folded yet) is backlog too
           (SELECT least(min(d.since), (SELECT min(m.at) FROM @extschema@.model_deltas m))
            FROM @extschema@.dirty_products d) AS oldest
), llm AS (
    SELECT k.kind, r.*
    FROM unnest(ARRAY['refresh', 'batch_submit', 'batch_poll', 'embed']) AS k(kind),
         LATERAL (SELECT x.run_id, x.status, x.started_at, x.finished_at, x.error FROM @extschema@.llm_runs x
                  WHERE x.kind = k.kind ORDER BY x.run_id DESC LIMIT 1) r
), cron AS (
    SELECT @extschema@._health_cron_jobs() AS c
), jobs AS (
    -- each expected job and each personalize job of this database that exists
    SELECT w.what, w.what = ANY (s.expected) AS expected, j.job
    FROM s, cron,
         LATERAL (SELECT e AS what FROM unnest(s.expected) e
                  UNION
                  SELECT substring(x ->> 'job' FROM '^personalize-(.*)@[^@]*$')
                  FROM jsonb_array_elements(cron.c -> 'jobs') x) w
         LEFT JOIN LATERAL (SELECT x AS job FROM jsonb_array_elements(cron.c -> 'jobs') x
                            WHERE x ->> 'job' = 'personalize-' || w.what || '@' || current_database()) j ON true
    WHERE cron.c ->> 'state' = 'ok' AND w.what IS NOT NULL
), srm AS (
    -- experiment_results' sample-ratio check for the running experiment, from its
    -- exposures only (each customer in the arm of their first exposure, as there)
    SELECT e.name, p.p
    FROM @extschema@.experiments e,
         LATERAL (
             SELECT @extschema@._chisq_sf(least(sum((a.n - a.n_total * a.weight::numeric / a.w_total) ^ 2
                        / nullif(a.n_total * a.weight::numeric / a.w_total, 0)), 1e300)::float8, count(*) - 1) AS p
             FROM (SELECT ea.arm, ea.weight, coalesce(c.n, 0) AS n,
                          sum(coalesce(c.n, 0)) OVER () AS n_total, sum(ea.weight::numeric) OVER () AS w_total
                   FROM @extschema@.experiment_arms ea
                   LEFT JOIN (SELECT pc.arm, count(*) AS n
                              FROM (SELECT min(x.arm) AS arm FROM @extschema@.exposures x
                                    WHERE x.experiment_id = e.experiment_id AND x.arm IS NOT NULL
                                    GROUP BY x.customer_id) pc
                              GROUP BY pc.arm) c ON c.arm = ea.arm
                   WHERE ea.experiment_id = e.experiment_id) a
             HAVING min(a.n_total) > 0) p
    WHERE e.status = 'running'
)
SELECT c."check", c.status, c.value, c.detail FROM (
    SELECT 1 AS ord, 'refresh_age' AS "check",
           CASE WHEN r.t IS NULL THEN CASE WHEN s.has_model THEN 'critical' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END AS status,
           a.v AS value,
           CASE WHEN r.t IS NULL AND s.has_model THEN 'no successful refresh() recorded: the neighbour lists are not refreshed'
                WHEN r.t IS NULL THEN 'no successful refresh() recorded yet (no events either)'
                ELSE format('the last successful refresh() or rebuild() finished at %s', r.t) END AS detail
    FROM s, refresh r, LATERAL (SELECT round(extract(epoch FROM now() - r.t), 1) AS v) a
    UNION ALL
    SELECT 2, 'last_job_error',
           CASE WHEN f.run_id IS NULL OR NOT f.is_current THEN 'ok' ELSE 'warn' END,
           round(extract(epoch FROM now() - f.finished_at), 1),
           CASE WHEN f.run_id IS NULL THEN 'no failed run recorded'
                ELSE format('%s run %s (%s) at %s: %s%s', f.job, f.run_id, f.tbl, f.finished_at, f.error,
                            CASE WHEN f.is_current THEN '' ELSE '; a later run of that job succeeded' END) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT * FROM failure ORDER BY finished_at DESC LIMIT 1) f ON true
    UNION ALL
    SELECT 3, 'neighbor_backlog',
           CASE WHEN s.b_crit > 0 AND b.n >= s.b_crit THEN 'critical'
                WHEN s.b_warn > 0 AND b.n >= s.b_warn THEN 'warn' ELSE 'ok' END,
           b.n,
           format('%s%s products wait for their neighbour lists to be refreshed, and %s count changes to be folded',
                  CASE WHEN b.n_dirty > 100000 THEN 'more than ' ELSE '' END, least(b.n_dirty, 100000), b.n_pending)
    FROM s, (SELECT x.*, x.n_dirty + x.n_pending AS n FROM backlog x) b
    UNION ALL
    SELECT 4, 'neighbor_backlog_age',
           CASE WHEN b.oldest IS NULL THEN 'ok'
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           coalesce(a.v, 0),
           CASE WHEN b.oldest IS NULL THEN 'no product waits'
                ELSE format('the oldest dirty product waits since %s', b.oldest) END
    FROM s, backlog b, LATERAL (SELECT round(extract(epoch FROM now() - b.oldest), 1) AS v) a
    UNION ALL
    SELECT 5, 'popular_age',
           CASE WHEN p.t IS NULL THEN CASE WHEN s.has_model THEN 'warn' ELSE 'ok' END
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           CASE WHEN p.t IS NULL THEN 'no popularity list computed yet (recommend() serves the all-time bestsellers live)'
                ELSE format('the popularity list was computed at %s', p.t) END
    FROM s,
         LATERAL (SELECT max(m.finished_at) AS t FROM (SELECT m.finished_at FROM @extschema@.maintenance_runs m
                  WHERE m.job = 'refresh_popular' ORDER BY m.run_id DESC LIMIT 1) m) p,
         LATERAL (SELECT round(extract(epoch FROM now() - p.t), 1) AS v) a
    -- a shard's popularity list is the model server's (check global_model)
    WHERE NOT EXISTS (SELECT FROM @extschema@.node_settings n WHERE n.role = 'shard')
    UNION ALL
    SELECT 6, 'llm_' || l.kind,
           CASE WHEN l.status = 'running' THEN 'ok'
                WHEN l.status <> 'completed' THEN 'warn'
                WHEN l.kind = 'batch_poll' THEN 'ok'
                WHEN s.l_crit > 0 AND a.v >= s.l_crit THEN 'critical'
                WHEN s.l_warn > 0 AND a.v >= s.l_warn THEN 'warn' ELSE 'ok' END,
           a.v,
           format('the last %s run (%s) %s at %s%s', l.kind, l.run_id,
                  CASE l.status WHEN 'running' THEN 'started' ELSE l.status END,
                  coalesce(l.finished_at, l.started_at), ': ' || l.error)
    FROM s, llm l, LATERAL (SELECT round(extract(epoch FROM now() - coalesce(l.finished_at, l.started_at)), 1) AS v) a
    UNION ALL
    SELECT 7, 'cron',
           CASE WHEN cron.c ->> 'state' = 'error' THEN 'critical'
                WHEN cardinality(s.expected) = 0 THEN 'ok' ELSE 'critical' END,
           NULL,
           CASE cron.c ->> 'state'
               WHEN 'not_loaded' THEN 'pg_cron is not loaded (cron.database_name is not set)'
               WHEN 'not_installed' THEN format('pg_cron is not installed in database %s', cron.c ->> 'cron_database')
               ELSE format('cannot read the pg_cron jobs in database %s: %s', cron.c ->> 'cron_database', cron.c ->> 'error') END
               || CASE WHEN cardinality(s.expected) > 0
                       THEN format('; expected jobs: %s (personalize.health_expected_jobs)', array_to_string(s.expected, ', '))
                       ELSE '' END
    FROM s, cron WHERE cron.c ->> 'state' <> 'ok'
    UNION ALL
    SELECT 8, 'cron_job:' || j.what,
           CASE WHEN j.job IS NULL OR NOT (j.job ->> 'active')::boolean
                THEN CASE WHEN j.expected THEN 'critical' ELSE 'warn' END
                WHEN j.job ->> 'status' = 'failed' THEN 'warn' ELSE 'ok' END,
           round(extract(epoch FROM now() - (j.job ->> 'end_time')::timestamptz), 1),
           format('job personalize-%s@%s ', j.what, current_database())
           || CASE WHEN j.job IS NULL THEN 'does not exist (expected by personalize.health_expected_jobs)'
                   ELSE format('(%s, scheduled by %s) is %s; its last run %s', j.job ->> 'schedule', j.job ->> 'username',
                               CASE WHEN (j.job ->> 'active')::boolean THEN 'active' ELSE 'NOT active' END,
                               CASE WHEN j.job ->> 'status' IS NULL THEN 'has not finished yet (none recorded)'
                                    ELSE format('%s at %s%s', j.job ->> 'status', j.job ->> 'end_time',
                                                CASE WHEN j.job ->> 'status' = 'failed'
                                                     THEN ': ' || (j.job ->> 'message') ELSE '' END) END) END
    FROM jobs j
    UNION ALL
    SELECT 9, 'variants',
           CASE WHEN v.n > 0 THEN 'critical' ELSE 'ok' END,
           v.n,
           CASE WHEN v.n = 0 THEN 'every variant is valid'
                ELSE format('invalid variants (skipped by the refresh, refused by recommend()): %s', v.names) END
    FROM (SELECT count(*) AS n, string_agg(format('%s (%s)', x.name, x.problem), '; ' ORDER BY x.name) AS names
          FROM (SELECT v.name, @extschema@._variant_problem(v.name, v.algorithm, v.params) AS problem
                FROM @extschema@.variants v) x
          WHERE x.problem IS NOT NULL) v
    UNION ALL
    SELECT 10, 'experiment_srm',
           CASE WHEN x.p < 0.001 THEN 'warn' ELSE 'ok' END,
           round(x.p::numeric, 6),
           CASE WHEN x.name IS NULL THEN 'no experiment is running'
                WHEN x.p IS NULL THEN format('experiment %s: no exposure yet', x.name)
                WHEN x.p < 0.001 THEN format('experiment %s: sample ratio mismatch (p = %s < 0.001): the arms do not get the traffic their weights say; see experiment_results', x.name, round(x.p::numeric, 6))
                ELSE format('experiment %s: the arms'' traffic matches their weights (p = %s)', x.name, round(x.p::numeric, 6)) END
    FROM (SELECT 1) one
    LEFT JOIN (SELECT e.name, m.p FROM @extschema@.experiments e LEFT JOIN srm m ON m.name = e.name
               WHERE e.status = 'running') x ON true
    UNION ALL
    SELECT 11, 'pair_store', 'ok',
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::numeric END,
           CASE WHEN c.reltuples >= 0 THEN format('%s pairs in pair_counts (estimate from pg_class.reltuples)', c.reltuples::bigint)
                ELSE 'pair_counts is not analyzed yet (no estimate)' END
           || format(', %s on disk with its indexes', pg_size_pretty(pg_total_relation_size(c.oid)))
    FROM pg_class c WHERE c.oid = '@extschema@.pair_counts_base'::regclass
    UNION ALL
    -- a sharded layout (issue 15): the age of the model server's last global round as this
    -- shard (or the model server) has it, and on a shard the subscription that brings it
    SELECT 12, 'global_model',
           CASE WHEN g.refreshed_at IS NULL THEN 'critical'
                WHEN s.r_crit > 0 AND a.v >= s.r_crit THEN 'critical'
                WHEN s.r_warn > 0 AND a.v >= s.r_warn THEN 'warn'
                WHEN n.role = 'shard' AND (sub.n = 0 OR sub.running < sub.n) THEN 'warn' ELSE 'ok' END,
           a.v,
           CASE WHEN g.refreshed_at IS NULL THEN format('no global round of the model server has reached this %s yet',
                                                        CASE n.role WHEN 'shard' THEN 'shard' ELSE 'model server' END)
                ELSE format('the model server''s last global round finished at %s (%s shards, %s dirty products summed, %s lists)',
                            g.refreshed_at, g.shards, g.products, g.lists) END
           || CASE WHEN n.role <> 'shard' THEN ''
                   WHEN sub.n = 0 THEN '; this shard has no personalize_global subscription'
                   WHEN sub.running < sub.n THEN '; the personalize_global subscription''s worker is not running (the model server is unreachable?)'
                   ELSE '; the personalize_global subscription''s worker is running' END
    FROM s, @extschema@.node_settings n
         LEFT JOIN @extschema@.global_model_state g ON true,
         LATERAL (SELECT round(extract(epoch FROM now() - g.refreshed_at), 1) AS v) a,
         LATERAL (SELECT count(*) AS n, count(st.pid) AS running
                  FROM pg_subscription sb
                  LEFT JOIN pg_stat_subscription st ON st.subid = sb.oid AND st.relid IS NULL
                  WHERE sb.subdbid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                    AND sb.subname LIKE 'personalize\_global%') sub
    WHERE n.role <> 'single'
) c
ORDER BY c.ord, c."check";
COMMENT ON VIEW @extschema@.health IS
    'One row per health check (refresh age, last job error, neighbour-list backlog and its age, popularity list age, OpenAI runs, pg_cron jobs, invalid variants, sample-ratio mismatch, pair store size, and in a sharded layout the global model''s age): status ok, warn or critical. Granted to nobody by default; see docs/reference.md, "Health".';
COMMENT ON COLUMN @extschema@.health."check" IS 'What is checked (refresh_age, last_job_error, neighbor_backlog, neighbor_backlog_age, popular_age, llm_<kind>, cron, cron_job:<job>, variants, experiment_srm, pair_store, global_model).';
COMMENT ON COLUMN @extschema@.health.status IS 'ok, warn or critical, against the personalize.health_* settings.';
COMMENT ON COLUMN @extschema@.health.value IS 'The measured number: seconds for ages, products for the backlog, a count, a p-value or pairs; NULL when there is none.';
COMMENT ON COLUMN @extschema@.health.detail IS 'The finding in words, naming what is at fault.';
SELECT pg_catalog.set_config('search_path', '@extschema@, pg_temp', true);
