-- Hardening (issue 10, defect 13, the smaller ones): similarity() on counts near the int64
-- limit, the statistics for very large degrees of freedom, and a personalize.as_of that
-- the setting accepts but recommend() could not use.
\set VERBOSITY terse

-- Jaccard stays in [0, 1] where a + b - ab overflows bigint (0.1.0 returned a negative
-- score); LLR and lift on huge counts are finite
SELECT personalize.similarity('jaccard', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9000000000000000000) AS jaccard_huge,
       personalize.similarity('jaccard', 2, 4, 3, 6) AS jaccard_small,
       personalize.similarity('llr', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9223372036854775807) >= 0 AS llr_finite,
       personalize.similarity('lift', 9000000000000000000, 9000000000000000000, 9000000000000000000, 9000000000000000000) AS lift_huge;

-- P(T <= 1.96) and P(X > df + 1.645 sqrt(2 df)) approach 0.975 and 0.05 as df grows; in
-- 0.1.0 they left [0, 1] (1.42 at 1e15) or became NaN (1e300). At 1e300 the 1.645 sqrt(2 df)
-- offset is lost in float8 (x = df), so 0.5 is the right answer there
SELECT df,
       round(personalize._t_cdf(1.96, df)::numeric, 4) AS t_cdf,
       round(personalize._chisq_sf(df + sqrt(2 * df) * 1.645, df)::numeric, 3) AS chisq_sf,
       personalize._t_cdf(1.96, df) BETWEEN 0 AND 1 AND personalize._chisq_sf(df, df) BETWEEN 0 AND 1 AS in_range
FROM unnest(ARRAY[1e6, 1e8, 1e15, 1e300]::float8[]) AS df ORDER BY df;

-- personalize.as_of: a date timestamptz cannot hold is refused when it is set
SET personalize.as_of = '294277-01-01';
\echo SQLSTATE :SQLSTATE
SET personalize.as_of = '2011-12-10 00:00+00';
SHOW personalize.as_of;
SELECT count(*) >= 0 AS recommend_answers FROM personalize.recommend(0);
RESET personalize.as_of;
