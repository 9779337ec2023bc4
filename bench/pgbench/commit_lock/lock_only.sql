\set k random(1, 1000)
INSERT INTO cl_raw AS t (key, value) VALUES ('k' || :k, ('{"n": ' || :k || '}')::jsonb) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
