\set k random(1, 1000)
WITH lck AS MATERIALIZED (SELECT set_config('syncconfig.own', 'on', true) AS own, pg_advisory_xact_lock(1937337955, '"public"."bench_t"'::regclass::oid::integer) AS l),
o AS (SELECT t.revision, t.value FROM bench_t t WHERE t.key = 'k' || :k FOR UPDATE),
r AS (SELECT (SELECT own FROM lck) AS own, (SELECT revision FROM o) AS orev, (SELECT value FROM o) AS oval, nextval('bench_t_revision_seq') AS rev, txid_current() AS xid, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us),
u AS (INSERT INTO bench_t AS t (key, value, revision, updated_at) SELECT 'k' || :k, ('{"n": ' || :k || '}')::jsonb, r.rev, localtimestamp FROM r ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at RETURNING t.value::text AS val, t.revision AS rev),
lk AS (DELETE FROM bench_t_lease_keys lk WHERE lk.key = 'k' || :k),
lg AS (INSERT INTO bench_t_changes (revision, key, op, value, prev_value, prev_revision, actor, comment, txid) SELECT r.rev, 'k' || :k, 'set', ('{"n": ' || :k || '}')::jsonb, r.oval, r.orev, concat_ws('/', nullif(current_setting('application_name'), ''), current_user), '', r.xid FROM r),
p AS (SELECT u.rev, u.val, json_build_object('sc', 1, 'op', 'u', 'r', u.rev, 'x', r.xid, 't', r.now_us, 'e', 1, 'k', 'k' || :k, 'val', u.val)::text AS payload FROM u, r),
sk AS (SELECT ipad, opad FROM bench_t_sc_key WHERE id = 1)
SELECT 'ok', p.rev, p.val, pg_notify('config_changes', CASE WHEN sk.ipad IS NULL THEN p.payload ELSE left(p.payload, -1) || ', "m" : "' || left(encode(sha256(sk.opad || sha256(sk.ipad || convert_to(p.payload, 'UTF8'))), 'hex'), 32) || '"}' END) FROM p LEFT JOIN sk ON true;
