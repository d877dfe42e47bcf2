-- Hardening (issue 10, defect 13): an error message repeats at most 64 characters of a
-- name the caller supplied; a longer one is cut to its first 60 characters and "...",
-- at a character boundary. In 0.1.0 every one of these echoed the whole 5,000 or
-- 10,000 characters.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- C side: recommend(), assigned_variant(), similarity(), the variant validator
SELECT * FROM personalize.recommend(1, repeat('v', 10000));
SELECT personalize.assigned_variant(repeat('e', 5000), 1);
SELECT personalize.similarity(repeat('m', 5000), 1, 1, 1, 1);
SELECT personalize.create_variant('long_algorithm', repeat('a', 5000));
SELECT personalize.create_variant('long_key', 'cooccurrence', jsonb_build_object(repeat('k', 5000), 1));
SELECT personalize.create_variant('long_value', 'cooccurrence', jsonb_build_object('measure', repeat('x', 5000)));
-- a name of exactly 64 characters is echoed whole, 65 is cut
SELECT * FROM personalize.recommend(1, repeat('w', 64));
SELECT * FROM personalize.recommend(1, repeat('w', 65));
-- multibyte: cut after 60 characters, not inside one
SELECT * FROM personalize.recommend(1, repeat('é', 100));

-- SQL side: create_variant(), drop_variant(), create_experiment(), start/stop, flags
SELECT personalize.create_variant(repeat('N', 5000), 'popular');
SELECT personalize.drop_variant(repeat('d', 5000));
SELECT personalize.create_experiment(repeat('X', 5000), ARRAY['hybrid', 'popular']);
SELECT personalize.create_experiment('dup_arms', ARRAY[repeat('p', 3000), repeat('p', 3000)]);
SELECT personalize.create_experiment('missing_arms', ARRAY['hybrid', repeat('q', 5000)]);
SELECT personalize.start_experiment(repeat('s', 5000));
SELECT personalize.stop_experiment(repeat('t', 5000));
SELECT personalize.flag_enabled(repeat('f', 5000), 1);

-- the rule itself, and nothing was created by the failures above
SELECT length(personalize._echo(repeat('z', 64))) AS whole_64,
       personalize._echo(repeat('z', 65)) = repeat('z', 60) || '...' AS cut_65,
       personalize._echo(NULL) IS NULL AS null_in_null_out;
SELECT (SELECT count(*) FROM personalize.variants WHERE NOT builtin) AS user_variants,
       (SELECT count(*) FROM personalize.experiments) AS experiments;
