\set k random(1, 1000)
SELECT status, rev, val FROM bench_t_sc_put('k' || :k, ('{"n": ' || :k || '}')::jsonb, NULL::bigint, 0::bigint, '', '');
