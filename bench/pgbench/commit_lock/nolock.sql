\set k random(1, 1000)
\startpipeline
BEGIN;
SELECT cl_n_put('k' || :k, ('{"n": ' || :k || '}')::jsonb);
COMMIT;
SELECT current_setting('syncconfig.rev', true);
\endpipeline
