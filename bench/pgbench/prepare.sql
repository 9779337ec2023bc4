-- Shared by run.sh and commit_lock/run.sh: the raw baseline's table, and the 1,000 keys of
-- bench_t written once through T_sc_put, so that every variant updates existing rows.
CREATE TABLE IF NOT EXISTS raw_t (key varchar(255) PRIMARY KEY, value jsonb NOT NULL);
INSERT INTO raw_t SELECT 'k' || g, '{"n": 0}' FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;
SELECT count(*) FROM (SELECT bench_t_sc_put('k' || g, '{"n": 0}'::jsonb, NULL, 0, '', '')
                      FROM generate_series(1, 1000) g) x;
