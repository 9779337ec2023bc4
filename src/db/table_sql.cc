#include "db/table_sql.h"

#include <fmt/format.h>

#include "db/connection.h"

namespace syncconfig::internal {
namespace {

// Advisory lock class ids ('sync' and 'sync'+1). The writer lock's second key is the table's oid,
// so tables do not serialize each other.
constexpr long kWriterLockClass = 1937337955;
constexpr long kSetupLockClass = 1937337956;
constexpr long kSweeperLockClass = 1937337957;

}  // namespace

TableSql::TableSql(const std::string& schema, const std::string& table,
                   const std::string& channel) {
  const std::string s = quote_ident(schema);
  const std::string t = s + "." + quote_ident(table);
  const std::string seq = s + "." + quote_ident(table + "_revision_seq");
  const std::string fn_lock = s + "." + quote_ident(table + "_sc_lock");
  const std::string fn_stamp = s + "." + quote_ident(table + "_sc_stamp");
  const std::string fn_notify = s + "." + quote_ident(table + "_sc_notify");
  const std::string fn_truncate = s + "." + quote_ident(table + "_sc_truncate");
  // Names are validated to [a-z0-9_], so they are also safe inside single quotes.
  const std::string seq_literal = "'" + seq + "'";
  const std::string lock =
      fmt::format("PERFORM pg_advisory_xact_lock({}, TG_RELID::integer);", kWriterLockClass);

  qualified_table = t;
  setup_lock = fmt::format("SELECT pg_advisory_xact_lock({}, 0)", kSetupLockClass);

  // The change log's name: the tombstones table of protocol 1 is left alone (an instance of the
  // old version may still read it during a rolling upgrade); the log starts at the upgrade.
  const std::string log = s + "." + quote_ident(table + "_changes");
  const std::string leases = s + "." + quote_ident(table + "_leases");
  const std::string lease_keys = s + "." + quote_ident(table + "_lease_keys");
  const std::string sweeps = s + "." + quote_ident(table + "_lease_sweeps");
  const std::string fn_put = s + "." + quote_ident(table + "_sc_put");
  const std::string fn_del = s + "." + quote_ident(table + "_sc_del");
  const std::string fn_txn = s + "." + quote_ident(table + "_sc_txn");
  const std::string keys = s + "." + quote_ident(table + "_sc_key");
  // The library's functions sign their payloads when the key table exists and the calling role
  // may read it (docs/protocol.md, "Signed payloads"); otherwise they notify unsigned, and every
  // instance verifies those by a read.
  const std::string read_key = fmt::format(
      "IF to_regclass('{0}') IS NOT NULL THEN\n"
      "    IF has_table_privilege(to_regclass('{0}'), 'SELECT') THEN\n"
      "      SELECT sk.ipad, sk.opad INTO sc_ipad, sc_opad FROM {0} sk WHERE sk.id = 1;\n"
      "    END IF;\n"
      "  END IF;",
      keys);
  // HMAC-SHA-256 of the payload's text (ipad/opad: the key XOR 0x36/0x5c, 64 bytes each),
  // truncated to 128 bits, appended as the payload's last field "m".
  const auto sign = [](const std::string& p) {
    return fmt::format(
        "CASE WHEN sc_ipad IS NULL THEN {0} ELSE left({0}, -1) || ', \"m\" : \"' || "
        "left(encode(sha256(sc_opad || sha256(sc_ipad || convert_to({0}, 'UTF8'))), 'hex'), 32) "
        "|| '\"}}' END",
        p);
  };
  const std::string own_lock = fmt::format(
      "PERFORM pg_advisory_xact_lock({}, '{}'::regclass::oid::integer);", kWriterLockClass, t);
  // Who a foreign write is recorded as: SET syncconfig.actor, else application_name/user.
  const std::string foreign_actor =
      "coalesce(nullif(current_setting('syncconfig.actor', true), ''), "
      "concat_ws('/', nullif(current_setting('application_name'), ''), current_user))";
  const std::string own_actor =
      "coalesce(nullif(who, ''), concat_ws('/', nullif(current_setting('application_name'), ''), "
      "current_user))";
  const std::string now_us = "floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

  setup = fmt::format(
      R"SQL(
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {t} (
  key VARCHAR(255) PRIMARY KEY,
  value JSONB NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
  revision BIGINT NOT NULL DEFAULT 0);
ALTER TABLE {t} ADD COLUMN IF NOT EXISTS revision BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {idx_updated} ON {t} (updated_at);
CREATE INDEX IF NOT EXISTS {idx_revision} ON {t} (revision);
CREATE SEQUENCE IF NOT EXISTS {seq};

-- The change log: every change with the value before and after it, who made it and why. It is
-- the history, and catch-ups read their deletions from it. 'compact' marks the highest revision
-- pruned: the log is complete above it. A new log starts complete above the current revision.
CREATE TABLE IF NOT EXISTS {log} (
  revision BIGINT PRIMARY KEY,
  key VARCHAR(255),
  op TEXT NOT NULL,  -- set, delete, expire, truncate, compact (no CHECK: it cost ~30 us a write)
  value JSONB,
  prev_value JSONB,
  prev_revision BIGINT,
  changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  actor TEXT NOT NULL DEFAULT '',
  comment TEXT NOT NULL DEFAULT '',
  txid BIGINT);
CREATE INDEX IF NOT EXISTS {idx_log_key} ON {log} (key, revision);
CREATE INDEX IF NOT EXISTS {idx_log_compact} ON {log} (revision) WHERE op = 'compact';
INSERT INTO {log} (revision, op)
  SELECT last_value, 'compact' FROM {seq}
  WHERE is_called AND NOT EXISTS (SELECT 1 FROM {log});

-- Leases: keys attached to a lease are deleted when it expires (by the database's clock).
CREATE TABLE IF NOT EXISTS {leases} (
  id BIGSERIAL PRIMARY KEY,
  ttl_seconds BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS {lease_keys} (
  key VARCHAR(255) PRIMARY KEY,
  lease BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS {idx_lease_keys} ON {lease_keys} (lease);
CREATE TABLE IF NOT EXISTS {sweeps} (
  id INT PRIMARY KEY CHECK (id = 1),
  swept_at TIMESTAMPTZ NOT NULL);

-- The key that signs the library's payloads (HMAC-SHA-256; ipad/opad: the key XOR 0x36/0x5c).
-- Only roles granted SELECT may read it: a session that cannot read it cannot forge a payload
-- that an instance applies without checking it against the change log.
CREATE TABLE IF NOT EXISTS {keys} (
  id INT PRIMARY KEY CHECK (id = 1),
  ipad BYTEA NOT NULL,
  opad BYTEA NOT NULL);
REVOKE ALL ON {keys} FROM PUBLIC;

-- Every foreign writing statement (plain SQL) takes the table's writer lock before it touches a
-- row, and every row draws its revision under it, so revisions follow commit order (a plain
-- sequence alone would not: see docs/protocol.md). Taking it before any row lock keeps the lock
-- order the same for all writers, so writers queue instead of deadlocking. The library's own
-- writes (the functions below) take it themselves and skip these triggers.
CREATE OR REPLACE FUNCTION {fn_lock}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  {lock}
  RETURN NULL;
END $fn$;

CREATE OR REPLACE FUNCTION {fn_stamp}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  {lock}
  NEW.revision := nextval({seq_literal});
  NEW.updated_at := localtimestamp;
  RETURN NEW;
END $fn$;

-- A foreign row change: logged, and notified as a small wake-up (revision, transaction, key, and
-- the value only when the payload stays under NOTIFY's 8000-byte limit).
CREATE OR REPLACE FUNCTION {fn_notify}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  payload text;
  rev bigint;
  xid bigint := txid_current();
  who text := {foreign_actor};
  note text := coalesce(current_setting('syncconfig.comment', true), '');
  -- When the change was made (for lag metrics); the commit follows within the transaction.
  now_us bigint := {now_us};
BEGIN
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.key <> NEW.key) THEN
    {lock}
    rev := nextval({seq_literal});
    INSERT INTO {log} (revision, key, op, prev_value, prev_revision, actor, comment, txid)
      VALUES (rev, OLD.key, 'delete', OLD.value, OLD.revision, who, note, xid);
    DELETE FROM {lease_keys} WHERE key = OLD.key;
    PERFORM pg_notify(TG_ARGV[0], json_build_object('sc', 1, 'op', 'd', 'r', rev, 'x', xid, 't', now_us,
                                                    'k', OLD.key)::text);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO {log} (revision, key, op, value, prev_value, prev_revision, actor, comment, txid)
      VALUES (NEW.revision, NEW.key, 'set', NEW.value,
              CASE WHEN TG_OP = 'UPDATE' AND OLD.key = NEW.key THEN OLD.value END,
              CASE WHEN TG_OP = 'UPDATE' AND OLD.key = NEW.key THEN OLD.revision END,
              who, note, xid);
    payload := json_build_object('sc', 1, 'op', 'u', 'r', NEW.revision, 'x', xid, 't', now_us,
                                 'k', NEW.key, 'val', NEW.value::text)::text;
    IF octet_length(payload) >= 8000 THEN
      payload := json_build_object('sc', 1, 'op', 'u', 'r', NEW.revision, 'x', xid, 't', now_us,
                                   'k', NEW.key)::text;
    END IF;
    PERFORM pg_notify(TG_ARGV[0], payload);
  END IF;
  RETURN NULL;
END $fn$;

-- TRUNCATE (runs before it, while the rows are still readable): every key is logged as removed,
-- with its value, then a mark with key NULL, whose revision is notified: every instance drops
-- all entries older than it.
CREATE OR REPLACE FUNCTION {fn_truncate}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  rev bigint;
  xid bigint := txid_current();
  who text := {foreign_actor};
  note text := coalesce(current_setting('syncconfig.comment', true), '');
BEGIN
  {lock}
  INSERT INTO {log} (revision, key, op, prev_value, prev_revision, actor, comment, txid)
    SELECT nextval({seq_literal}), key, 'truncate', value, revision, who, note, xid
    FROM (SELECT key, value, revision FROM {t} ORDER BY key) k;
  rev := nextval({seq_literal});
  INSERT INTO {log} (revision, key, op, actor, comment, txid) VALUES (rev, NULL, 'truncate', who, note, xid);
  DELETE FROM {lease_keys};
  PERFORM pg_notify(TG_ARGV[0], json_build_object('sc', 1, 'op', 't', 'r', rev,
                                                  'x', xid, 't', {now_us})::text);
  RETURN NULL;
END $fn$;

-- The library's own single-key write: takes the writer lock, checks `expected` (NULL: none; 0:
-- the key must be absent), draws the revision, writes the row and the log, attaches or detaches
-- the lease, and notifies (marked as the end of its transaction), in one round trip. status:
-- 'ok', 'conflict' (rev/val: the key's current state; rev 0: absent), 'no_lease'.
CREATE OR REPLACE FUNCTION {fn_put}(k text, v jsonb, expected bigint, lease_id bigint, who text,
                                    note text)
RETURNS TABLE (status text, rev bigint, val text) LANGUAGE plpgsql AS $fn$
DECLARE
  old_rev bigint;
  old_val jsonb;
  has_old boolean;
  xid bigint := txid_current();
  payload text;
  sc_ipad bytea;
  sc_opad bytea;
BEGIN
  PERFORM set_config('syncconfig.own', 'on', true);
  {own_lock}
  -- FOR UPDATE: a write that skips the triggers (session_replication_role = replica) takes no
  -- writer lock. Holding the row keeps such a write from deleting it between this read and the
  -- UPDATE (which would then change nothing, and the write would report a value it never stored).
  SELECT t.revision, t.value INTO old_rev, old_val FROM {t} t WHERE t.key = k FOR UPDATE;
  has_old := FOUND;
  IF expected IS NOT NULL AND
     (CASE WHEN expected = 0 THEN has_old ELSE NOT has_old OR old_rev <> expected END) THEN
    RETURN QUERY SELECT 'conflict'::text, coalesce(old_rev, 0), old_val::text;
    RETURN;
  END IF;
  IF lease_id <> 0 AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.id = lease_id) THEN
    RETURN QUERY SELECT 'no_lease'::text, 0::bigint, NULL::text;
    RETURN;
  END IF;
  rev := nextval({seq_literal});
  IF has_old THEN
    UPDATE {t} t SET value = v, revision = rev, updated_at = localtimestamp WHERE t.key = k
      RETURNING t.value::text INTO val;
  ELSE
    -- ON CONFLICT: likewise, a trigger-less INSERT of the key may have committed since the read.
    INSERT INTO {t} AS t (key, value, revision, updated_at) VALUES (k, v, rev, localtimestamp)
      ON CONFLICT (key) DO UPDATE
        SET value = EXCLUDED.value, revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at
      RETURNING t.value::text INTO val;
  END IF;
  IF lease_id <> 0 THEN
    INSERT INTO {lease_keys} AS lk (key, lease) VALUES (k, lease_id)
      ON CONFLICT (key) DO UPDATE SET lease = EXCLUDED.lease;
  ELSE
    DELETE FROM {lease_keys} lk WHERE lk.key = k;
  END IF;
  INSERT INTO {log} (revision, key, op, value, prev_value, prev_revision, actor, comment, txid)
    VALUES (rev, k, 'set', v, old_val, old_rev, {own_actor}, note, xid);
  payload := json_build_object('sc', 1, 'op', 'u', 'r', rev, 'x', xid, 't', {now_us}, 'e', 1,
                               'k', k, 'val', val)::text;
  -- 8000 bytes is NOTIFY's limit; the signature adds 43.
  IF octet_length(payload) >= 7950 THEN
    payload := json_build_object('sc', 1, 'op', 'u', 'r', rev, 'x', xid, 't', {now_us}, 'e', 1,
                                 'k', k)::text;
  END IF;
  {read_key}
  PERFORM pg_notify('{channel}', {sign_payload});
  status := 'ok';
  RETURN NEXT;
END $fn$;

-- The library's own deletion (`why`: 'delete', or 'expire' for a lease). status: 'ok' (rev: the
-- deletion's), 'absent', 'conflict' (rev/val: the current state).
CREATE OR REPLACE FUNCTION {fn_del}(k text, expected bigint, who text, note text, why text)
RETURNS TABLE (status text, rev bigint, val text) LANGUAGE plpgsql AS $fn$
DECLARE
  old_rev bigint;
  old_val jsonb;
  xid bigint := txid_current();
  payload text;
  sc_ipad bytea;
  sc_opad bytea;
BEGIN
  PERFORM set_config('syncconfig.own', 'on', true);
  {own_lock}
  SELECT t.revision, t.value INTO old_rev, old_val FROM {t} t WHERE t.key = k FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT CASE WHEN expected IS NULL THEN 'absent' ELSE 'conflict' END,
                        0::bigint, NULL::text;
    RETURN;
  END IF;
  IF expected IS NOT NULL AND old_rev <> expected THEN
    RETURN QUERY SELECT 'conflict'::text, old_rev, old_val::text;
    RETURN;
  END IF;
  rev := nextval({seq_literal});
  DELETE FROM {t} t WHERE t.key = k;
  DELETE FROM {lease_keys} lk WHERE lk.key = k;
  INSERT INTO {log} (revision, key, op, prev_value, prev_revision, actor, comment, txid)
    VALUES (rev, k, why, old_val, old_rev, {own_actor}, note, xid);
  payload := json_build_object(
    'sc', 1, 'op', CASE WHEN why = 'expire' THEN 'x' ELSE 'd' END, 'r', rev, 'x', xid,
    't', {now_us}, 'e', 1, 'k', k)::text;
  {read_key}
  PERFORM pg_notify('{channel}', {sign_payload});
  status := 'ok';
  RETURN NEXT;
END $fn$;

-- A transaction: doc = {{"guards": [{{"key", "revision"}} | {{"prefix", "since"}}],
-- "operations": [{{"key", "value"?}}]}} (no "value": delete). Under the writer lock: the guards
-- in order (the first that fails ends it: a 'failed' row with its index and reason, then
-- 'current' rows), then every operation, set-based, revisions consecutive in operation order,
-- then the notifications (the last marked as the end of the transaction). Rows: kind 'op' with the
-- operation's index, key, revision (0: a deletion of an absent key) and stored value text.
CREATE OR REPLACE FUNCTION {fn_txn}(doc jsonb, who text, note text)
RETURNS TABLE (kind text, idx int, k text, rev bigint, val text) LANGUAGE plpgsql AS $fn$
DECLARE
  g record;
  since bigint;
  compacted bigint;
  cur_rev bigint;
  cur_val jsonb;
  n int;
  first_rev bigint;
  xid bigint := txid_current();
  actor text := {own_actor};
  now_us bigint := {now_us};
  ks text[];
  vs jsonb[];
  sets boolean[];
  olds jsonb[];
  old_revs bigint[];
  idxs int[];
  sc_ipad bytea;
  sc_opad bytea;
BEGIN
  PERFORM set_config('syncconfig.own', 'on', true);
  {own_lock}
  FOR g IN SELECT (e.ordinality - 1)::int AS i, e.value AS v
           FROM jsonb_array_elements(doc->'guards') WITH ORDINALITY e LOOP
    IF g.v ? 'prefix' THEN
      since := (g.v->>'since')::bigint;
      SELECT coalesce(max(l.revision), 0) INTO compacted FROM {log} l WHERE l.op = 'compact';
      IF since < compacted THEN
        RETURN QUERY SELECT 'failed'::text, g.i, g.v->>'prefix', compacted,
          'pruned'::text;
        RETURN;
      END IF;
      IF EXISTS (SELECT 1 FROM {log} l WHERE l.revision > since AND l.op <> 'compact'
                 AND (l.key IS NULL OR starts_with(l.key, g.v->>'prefix'))) THEN
        RETURN QUERY SELECT 'failed'::text, g.i, g.v->>'prefix', since, 'changed'::text;
        RETURN QUERY SELECT 'current'::text, g.i, c.key::text, coalesce(t.revision, 0), t.value::text
          FROM (SELECT DISTINCT l.key FROM {log} l WHERE l.revision > since AND l.key IS NOT NULL
                AND starts_with(l.key, g.v->>'prefix') ORDER BY l.key LIMIT 100) c
          LEFT JOIN {t} t ON t.key = c.key;
        RETURN;
      END IF;
    ELSE
      SELECT t.revision, t.value INTO cur_rev, cur_val FROM {t} t WHERE t.key = g.v->>'key';
      IF (CASE WHEN (g.v->>'revision')::bigint = 0 THEN FOUND
               ELSE NOT FOUND OR cur_rev <> (g.v->>'revision')::bigint END) THEN
        RETURN QUERY SELECT 'failed'::text, g.i, g.v->>'key', (g.v->>'revision')::bigint,
          CASE WHEN FOUND THEN 'revision' ELSE 'absent' END;
        RETURN QUERY SELECT 'current'::text, g.i, g.v->>'key',
          CASE WHEN FOUND THEN cur_rev ELSE 0 END, CASE WHEN FOUND THEN cur_val::text END;
        RETURN;
      END IF;
    END IF;
  END LOOP;

  -- The operations that change something (a deletion of an absent key does not), in order, with
  -- the state they replace.
  SELECT array_agg(o.i ORDER BY o.i), array_agg(o.key ORDER BY o.i),
         array_agg(o.v ORDER BY o.i), array_agg(o.is_set ORDER BY o.i),
         array_agg(t.value ORDER BY o.i), array_agg(t.revision ORDER BY o.i)
    INTO idxs, ks, vs, sets, olds, old_revs
    FROM (SELECT (e.ordinality - 1)::int AS i, e.value->>'key' AS key, e.value->'value' AS v,
                 e.value ? 'value' AS is_set
          FROM jsonb_array_elements(doc->'operations') WITH ORDINALITY e) o
    LEFT JOIN {t} t ON t.key = o.key
    WHERE o.is_set OR t.key IS NOT NULL;
  n := coalesce(array_length(idxs, 1), 0);
  IF n > 0 THEN
    -- A block of consecutive revisions: nobody else draws while we hold the writer lock.
    first_rev := nextval({seq_literal});
    IF n > 1 THEN PERFORM setval({seq_literal}, first_rev + n - 1); END IF;
    INSERT INTO {t} AS t (key, value, revision, updated_at)
      SELECT u.k, u.v, first_rev + u.ord - 1, localtimestamp
      FROM unnest(ks, vs, sets) WITH ORDINALITY u(k, v, s, ord) WHERE u.s
      ON CONFLICT (key) DO UPDATE
        SET value = EXCLUDED.value, revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at;
    DELETE FROM {t} t USING unnest(ks, sets) u(k, s) WHERE NOT u.s AND t.key = u.k;
    DELETE FROM {lease_keys} lk USING unnest(ks) u(k) WHERE lk.key = u.k;
    INSERT INTO {log} (revision, key, op, value, prev_value, prev_revision, actor, comment, txid)
      SELECT first_rev + u.ord - 1, u.k, CASE WHEN u.s THEN 'set' ELSE 'delete' END,
             CASE WHEN u.s THEN u.v END, u.o, u.r, actor, note, xid
      FROM unnest(ks, vs, sets, olds, old_revs) WITH ORDINALITY u(k, v, s, o, r, ord);
    {read_key}
    -- The payloads are concatenated rather than built with json_build_object (twice per row,
    -- for the full and the short form): that was a third of this statement's time at 1,000 rows.
    -- Same text as json_build_object's, spacing included; a deletion carries no "val".
    PERFORM pg_notify('{channel}', {sign_txn_payload})
      FROM (SELECT p.head || CASE WHEN p.val IS NOT NULL AND
                                       octet_length(p.head) + octet_length(p.val) + 11 < 7950
                                  THEN ', "val" : ' || p.val ELSE '' END || '}}' AS payload
      FROM (SELECT '{{"sc" : 1, "op" : "' || CASE WHEN u.s THEN 'u' ELSE 'd' END ||
                     '", "r" : ' || (first_rev + u.ord - 1) || ', "x" : ' || xid ||
                     ', "t" : ' || now_us || ', "e" : ' || CASE WHEN u.ord = n THEN 1 ELSE 0 END ||
                     ', "k" : ' || to_json(u.k)::text AS head,
                   CASE WHEN u.s THEN to_json(u.v::text)::text END AS val
            FROM unnest(ks, vs, sets) WITH ORDINALITY u(k, v, s, ord) ORDER BY u.ord) p) q;
  END IF;
  RETURN QUERY
    SELECT 'op'::text, u.i, u.k, first_rev + u.ord - 1, CASE WHEN u.s THEN u.v::text END
    FROM unnest(idxs, ks, vs, sets) WITH ORDINALITY u(i, k, v, s, ord);
END $fn$;
)SQL",
      fmt::arg("s", s), fmt::arg("t", t),
      fmt::arg("idx_updated", quote_ident("idx_" + table + "_updated_at")),
      fmt::arg("idx_revision", quote_ident("idx_" + table + "_revision")),
      fmt::arg("idx_log_key", quote_ident("idx_" + table + "_changes_key")),
      fmt::arg("idx_log_compact", quote_ident("idx_" + table + "_changes_compact")),
      fmt::arg("idx_lease_keys", quote_ident("idx_" + table + "_lease_keys")), fmt::arg("seq", seq),
      fmt::arg("log", log), fmt::arg("leases", leases), fmt::arg("lease_keys", lease_keys),
      fmt::arg("sweeps", sweeps), fmt::arg("fn_lock", fn_lock), fmt::arg("fn_stamp", fn_stamp),
      fmt::arg("fn_notify", fn_notify), fmt::arg("fn_truncate", fn_truncate),
      fmt::arg("fn_put", fn_put), fmt::arg("fn_del", fn_del), fmt::arg("fn_txn", fn_txn),
      fmt::arg("lock", lock), fmt::arg("own_lock", own_lock), fmt::arg("seq_literal", seq_literal),
      fmt::arg("channel", channel), fmt::arg("foreign_actor", foreign_actor),
      fmt::arg("own_actor", own_actor), fmt::arg("now_us", now_us), fmt::arg("keys", keys),
      fmt::arg("read_key", read_key), fmt::arg("sign_payload", sign("payload")),
      fmt::arg("sign_txn_payload", sign("q.payload")));

  insert_key = fmt::format(
      "INSERT INTO {} (id, ipad, opad) VALUES (1, decode($1, 'hex'), decode($2, 'hex')) "
      "ON CONFLICT (id) DO NOTHING",
      keys);
  select_key =
      fmt::format("SELECT encode(ipad, 'hex'), encode(opad, 'hex') FROM {} WHERE id = 1", keys);
  signing_installed = fmt::format(
      "SELECT to_regclass('{0}') IS NOT NULL, "
      "coalesce(has_table_privilege(to_regclass('{0}'), 'SELECT'), false)",
      keys);

  installed =
      "SELECT split_part(encode(t.tgargs, 'escape'), '\\000', 1), "
      "coalesce(obj_description(t.oid, 'pg_trigger'), '') FROM pg_trigger t "
      "WHERE t.tgrelid = to_regclass($1) AND t.tgname = 'syncconfig_notify'";
  // The triggers act only for foreign writes: the library's functions set syncconfig.own for
  // their transaction and do the same work themselves.
  create_triggers = fmt::format(
      R"SQL(
DROP TRIGGER IF EXISTS syncconfig_lock ON {t};
CREATE TRIGGER syncconfig_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
  FOR EACH STATEMENT WHEN ({foreign}) EXECUTE FUNCTION {fn_lock}();
DROP TRIGGER IF EXISTS syncconfig_stamp ON {t};
CREATE TRIGGER syncconfig_stamp BEFORE INSERT OR UPDATE ON {t}
  FOR EACH ROW WHEN ({foreign}) EXECUTE FUNCTION {fn_stamp}();
DROP TRIGGER IF EXISTS syncconfig_notify ON {t};
CREATE TRIGGER syncconfig_notify AFTER INSERT OR UPDATE OR DELETE ON {t}
  FOR EACH ROW WHEN ({foreign}) EXECUTE FUNCTION {fn_notify}('{channel}');
DROP TRIGGER IF EXISTS syncconfig_truncate ON {t};
CREATE TRIGGER syncconfig_truncate BEFORE TRUNCATE ON {t}
  FOR EACH STATEMENT EXECUTE FUNCTION {fn_truncate}('{channel}');
COMMENT ON TRIGGER syncconfig_notify ON {t} IS '{version}';
)SQL",
      fmt::arg("t", t), fmt::arg("fn_lock", fn_lock), fmt::arg("fn_stamp", fn_stamp),
      fmt::arg("fn_notify", fn_notify), fmt::arg("fn_truncate", fn_truncate),
      fmt::arg("channel", channel), fmt::arg("version", kProtocolVersion),
      fmt::arg("foreign", "current_setting('syncconfig.own', true) IS DISTINCT FROM 'on'"));

  put = fmt::format(
      "SELECT status, rev, val FROM {}($1, $2::jsonb, $3::bigint, $4::bigint, $5, $6)", fn_put);
  del = fmt::format("SELECT status, rev, val FROM {}($1, $2::bigint, $3, $4, $5)", fn_del);
  txn = fmt::format("SELECT kind, idx, k, rev, val FROM {}($1::jsonb, $2, $3)", fn_txn);
  select_all = fmt::format("SELECT key, value::text, revision FROM {}", t);
  select_since = fmt::format("SELECT key, value::text, revision FROM {} WHERE revision > $1", t);
  select_one = fmt::format("SELECT value::text, revision FROM {} WHERE key = $1", t);
  select_entry = fmt::format(
      "SELECT t.value::text, t.revision, "
      "floor(extract(epoch FROM coalesce(l.changed_at, t.updated_at::timestamptz)) * 1000000)"
      "::bigint, coalesce(lk.lease, 0) FROM {t} t LEFT JOIN {log} l ON l.revision = t.revision "
      "LEFT JOIN {lk} lk ON lk.key = t.key WHERE t.key = $1",
      fmt::arg("t", t), fmt::arg("log", log), fmt::arg("lk", lease_keys));
  // Deletions after a revision: 'd' for a key (deleted, expired, or removed by a TRUNCATE), 't'
  // for a TRUNCATE's mark (every older entry goes).
  // Deletions after a revision: 'd' deleted, 'x' expired, 't' a TRUNCATE's mark (every older
  // entry goes), 'T' a key that TRUNCATE removed, reported at its mark's revision (the nearest
  // mark after it in its transaction), where the listener applies the truncation too.
  tombstones_since = fmt::format(
      "SELECT r, k, kind FROM (SELECT CASE WHEN op = 'truncate' AND key IS NOT NULL "
      "THEN min(revision) FILTER (WHERE op = 'truncate' AND key IS NULL) "
      "OVER (PARTITION BY txid ORDER BY revision DESC) ELSE revision END AS r, "
      "coalesce(key, '') AS k, CASE WHEN key IS NULL THEN 't' WHEN op = 'expire' THEN 'x' "
      "WHEN op = 'truncate' THEN 'T' ELSE 'd' END AS kind, revision FROM {} "
      "WHERE revision > $1 AND op IN ('delete', 'expire', 'truncate')) d ORDER BY r, revision",
      log);
  compacted = fmt::format("SELECT coalesce(max(revision), 0) FROM {} WHERE op = 'compact'", log);
  records_at = fmt::format(
      "SELECT revision, key, op, value::text FROM {} WHERE revision = ANY($1::bigint[])", log);
  // The md5 prefix is the one the heartbeat sums (EntryHash::md5): key, NUL, the value's text.
  changes_at = fmt::format(
      "SELECT r.rev, c.key, c.op, CASE WHEN c.op = 'set' THEN ('x' || substr(md5(convert_to(c.key, "
      "'UTF8') || '\\x00'::bytea || convert_to(c.value::text, 'UTF8')), 1, 8))::bit(32)::bigint "
      "END FROM unnest($1::bigint[]) AS r(rev) LEFT JOIN {} c ON c.revision = r.rev",
      log);
  txids_since = fmt::format(
      "SELECT revision, coalesce(txid, 0) FROM {} WHERE revision > $1 AND op <> 'compact'", log);
  // One key's records, or those of every key under a prefix; newest first, below $2 unless 0.
  const auto history_where = [&](const char* which) {
    return fmt::format(
        "SELECT revision, key, op, value::text, prev_value::text, coalesce(prev_revision, 0), "
        "floor(extract(epoch FROM changed_at) * 1000000)::bigint, actor, comment FROM {} "
        "WHERE {} AND ($2::bigint = 0 OR revision < $2::bigint) ORDER BY revision DESC "
        "LIMIT $3::bigint",
        log, which);
  };
  history = history_where("key = $1");
  history_prefix = history_where("key IS NOT NULL AND starts_with(key, $1)");
  // The state right after revision $1: today's rows, with every key changed after $1 taken back
  // to the value its first later change replaced (absent if it had none). Needs the log to be
  // complete above $1 (the caller checks the compaction mark).
  state_at = fmt::format(
      "WITH undo AS (SELECT DISTINCT ON (key) key, prev_value, prev_revision FROM {log} "
      "  WHERE revision > $1::bigint AND key IS NOT NULL AND starts_with(key, $2) "
      "  ORDER BY key, revision) "
      "SELECT t.key, t.value::text, t.revision FROM {t} t "
      "  WHERE starts_with(t.key, $2) AND NOT EXISTS (SELECT 1 FROM undo u WHERE u.key = t.key) "
      "UNION ALL SELECT key, prev_value::text, coalesce(prev_revision, 0) FROM undo "
      "  WHERE prev_value IS NOT NULL",
      fmt::arg("log", log), fmt::arg("t", t));
  leases_grant = fmt::format(
      "INSERT INTO {} (ttl_seconds, expires_at) VALUES ($1::bigint, now() + make_interval(secs "
      "=> $1::bigint)) RETURNING id, ttl_seconds, floor(extract(epoch FROM expires_at) * "
      "1000000)::bigint",
      leases);
  leases_keep_alive = fmt::format(
      "UPDATE {} SET expires_at = now() + make_interval(secs => ttl_seconds) WHERE id = $1::bigint "
      "AND expires_at > now() RETURNING id, ttl_seconds, floor(extract(epoch FROM expires_at) * "
      "1000000)::bigint",
      leases);
  leases_delete = fmt::format("DELETE FROM {} WHERE id = $1::bigint RETURNING id", leases);
  lease_keys_of =
      fmt::format("SELECT key FROM {} WHERE lease = $1::bigint ORDER BY key", lease_keys);
  leases_expire = fmt::format(
      "DELETE FROM {l} WHERE id IN (SELECT id FROM {l} WHERE expires_at <= now() "
      "ORDER BY expires_at LIMIT 1000) RETURNING id",
      fmt::arg("l", leases));
  orphan_keys = fmt::format(
      "SELECT lk.key, t.revision, lk.lease FROM {lk} lk JOIN {t} t ON t.key = lk.key "
      "WHERE NOT EXISTS (SELECT 1 FROM {l} l WHERE l.id = lk.lease) ORDER BY lk.lease LIMIT 1000",
      fmt::arg("lk", lease_keys), fmt::arg("t", t), fmt::arg("l", leases));
  // Seconds since the previous sweep (NULL for the first ever), and now records this one.
  sweep_mark = fmt::format(
      "INSERT INTO {s} AS s (id, swept_at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE "
      "SET swept_at = now() RETURNING (SELECT extract(epoch FROM now() - p.swept_at)::float8 "
      "FROM {s} p WHERE p.id = 1)",
      fmt::arg("s", sweeps));
  // After a pause of the sweeper longer than the grace (an outage), every lease gets the grace
  // from now instead of expiring at once: its owner could not keep it alive meanwhile.
  leases_grace = fmt::format(
      "UPDATE {} SET expires_at = greatest(expires_at, now() + make_interval(secs => "
      "$1::float8))",
      leases);
  sweeper_lock = fmt::format("SELECT pg_try_advisory_lock({}, '{}'::regclass::oid::integer)",
                             kSweeperLockClass, t);
  db_now_us = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";
  const std::string writer_key =
      fmt::format("{}, '{}'::regclass::oid::integer", kWriterLockClass, t);
  lock_table_for_read = fmt::format("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT", t);
  snapshot_lock = fmt::format("SELECT pg_advisory_lock({})", writer_key);
  snapshot_unlock = fmt::format("SELECT pg_advisory_unlock({})", writer_key);
  snapshot_xact_lock = fmt::format("SELECT pg_advisory_xact_lock({})", writer_key);
  snapshot_revision =
      fmt::format("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}", seq);
  table_digest = fmt::format(
      "SELECT count(*), coalesce(sum(('x' || substr(md5(convert_to(key, 'UTF8') || "
      "'\\x00'::bytea || convert_to(value::text, 'UTF8')), 1, 8))::bit(32)::bigint), 0)::text "
      "FROM {}",
      t);
  // Pruning the log: records older than the retention, except each key's newest
  // `min_versions` (the keys' own history stays readable); at most $3 per call, so that pruning
  // runs in short transactions beside the writers (it takes no writer lock). Returns the highest
  // pruned revision, recorded as the compaction mark in the same transaction.
  prune = fmt::format(
      "WITH gone AS (DELETE FROM {log} WHERE revision IN ("
      "  SELECT l.revision FROM {log} l WHERE l.op <> 'compact' "
      "  AND l.changed_at < now() - make_interval(secs => $1::float8) "
      "  AND (l.key IS NULL OR (SELECT count(*) FROM {log} n WHERE n.key = l.key "
      "       AND n.revision > l.revision) >= $2::bigint) "
      "  ORDER BY l.revision LIMIT $3::bigint) RETURNING revision) "
      "SELECT max(revision) FROM gone",
      fmt::arg("log", log));
  record_compaction = fmt::format(
      "WITH older AS (DELETE FROM {} WHERE op = 'compact' AND revision < $1::bigint) "
      "INSERT INTO {} (revision, key, op) SELECT $1::bigint, NULL, 'compact' "
      "WHERE $1::bigint > (SELECT coalesce(max(revision), 0) FROM {} WHERE op = 'compact') "
      "ON CONFLICT (revision) DO NOTHING",
      log, log, log);
}

}  // namespace syncconfig::internal
