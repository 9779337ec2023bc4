\set k random(1, 1000)
WITH u AS (INSERT INTO raw_t AS t (key, value) VALUES ('k' || :k, ('{"n": ' || :k || '}')::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING t.key) SELECT pg_notify('raw_ch', key) FROM u;
