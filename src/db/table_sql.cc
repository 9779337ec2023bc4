#include "db/table_sql.h"

#include <fmt/format.h>

#include "db/connection.h"

namespace syncconfig::internal {
namespace {

// Advisory lock class ids ('sync' and 'sync'+1). The writer lock's second key is the table's oid,
// so tables do not serialize each other.
constexpr long kWriterLockClass = 1937337955;
constexpr long kSetupLockClass = 1937337956;

}  // namespace

TableSql::TableSql(const std::string& schema, const std::string& table,
                   const std::string& channel) {
  const std::string s = quote_ident(schema);
  const std::string t = s + "." + quote_ident(table);
  const std::string seq = s + "." + quote_ident(table + "_revision_seq");
  const std::string tomb = s + "." + quote_ident(table + "_tombstones");
  const std::string fn_lock = s + "." + quote_ident(table + "_sc_lock");
  const std::string fn_stamp = s + "." + quote_ident(table + "_sc_stamp");
  const std::string fn_notify = s + "." + quote_ident(table + "_sc_notify");
  const std::string fn_truncate = s + "." + quote_ident(table + "_sc_truncate");
  const std::string fn_delete = s + "." + quote_ident(table + "_sc_delete");
  // Names are validated to [a-z0-9_], so they are also safe inside single quotes.
  const std::string seq_literal = "'" + seq + "'";
  const std::string lock =
      fmt::format("PERFORM pg_advisory_xact_lock({}, TG_RELID::integer);", kWriterLockClass);

  qualified_table = t;
  setup_lock = fmt::format("SELECT pg_advisory_xact_lock({}, 0)", kSetupLockClass);

  setup = fmt::format(R"SQL(
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
CREATE TABLE IF NOT EXISTS {tomb} (
  revision BIGINT PRIMARY KEY,
  key VARCHAR(255),
  kind CHAR(1) NOT NULL CHECK (kind IN ('d', 't', 'c')),
  deleted_at TIMESTAMPTZ NOT NULL DEFAULT now());

-- Every writing statement takes the table's writer lock before it touches a row, and every row
-- draws its revision under it, so revisions follow commit order (a plain sequence alone would
-- not: see docs/protocol.md). Taking it before any row lock keeps the lock order the same for
-- all writers, so writers queue instead of deadlocking.
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

-- A notification is a small wake-up: revision, transaction, key, and the value only when the
-- payload stays under NOTIFY's 8000-byte limit. Deletions are recorded as tombstones.
CREATE OR REPLACE FUNCTION {fn_notify}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  payload text;
  rev bigint;
  xid bigint := txid_current();
  -- When the change was made (for lag metrics); the commit follows within the transaction.
  now_us bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000);
BEGIN
  IF TG_OP <> 'DELETE' THEN
    payload := json_build_object('sc', 1, 'op', 'u', 'r', NEW.revision, 'x', xid, 't', now_us,
                                 'k', NEW.key, 'val', NEW.value::text)::text;
    IF octet_length(payload) >= 8000 THEN
      payload := json_build_object('sc', 1, 'op', 'u', 'r', NEW.revision, 'x', xid, 't', now_us,
                                   'k', NEW.key)::text;
    END IF;
    PERFORM pg_notify(TG_ARGV[0], payload);
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.key <> NEW.key) THEN
    {lock}
    rev := nextval({seq_literal});
    INSERT INTO {tomb} (revision, key, kind) VALUES (rev, OLD.key, 'd');
    PERFORM pg_notify(TG_ARGV[0], json_build_object('sc', 1, 'op', 'd', 'r', rev, 'x', xid, 't', now_us,
                                                    'k', OLD.key)::text);
  END IF;
  RETURN NULL;
END $fn$;

CREATE OR REPLACE FUNCTION {fn_truncate}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  rev bigint;
  now_us bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000);
BEGIN
  {lock}
  rev := nextval({seq_literal});
  INSERT INTO {tomb} (revision, key, kind) VALUES (rev, NULL, 't');
  PERFORM pg_notify(TG_ARGV[0], json_build_object('sc', 1, 'op', 't', 'r', rev,
                                                  'x', txid_current(), 't', now_us)::text);
  RETURN NULL;
END $fn$;

-- remove() in one round trip: the deletion's revision is drawn by the AFTER trigger, which has
-- fired by the time DELETE returns inside this function.
CREATE OR REPLACE FUNCTION {fn_delete}(k text) RETURNS bigint LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM {t} WHERE key = k;
  IF FOUND THEN
    RETURN currval({seq_literal});
  END IF;
  RETURN NULL;
END $fn$;
)SQL",
                      fmt::arg("s", s), fmt::arg("t", t),
                      fmt::arg("idx_updated", quote_ident("idx_" + table + "_updated_at")),
                      fmt::arg("idx_revision", quote_ident("idx_" + table + "_revision")),
                      fmt::arg("seq", seq), fmt::arg("tomb", tomb), fmt::arg("fn_lock", fn_lock),
                      fmt::arg("fn_stamp", fn_stamp), fmt::arg("fn_notify", fn_notify),
                      fmt::arg("fn_truncate", fn_truncate), fmt::arg("fn_delete", fn_delete),
                      fmt::arg("lock", lock), fmt::arg("seq_literal", seq_literal));

  installed =
      "SELECT split_part(encode(t.tgargs, 'escape'), '\\000', 1), "
      "coalesce(obj_description(t.oid, 'pg_trigger'), '') FROM pg_trigger t "
      "WHERE t.tgrelid = to_regclass($1) AND t.tgname = 'syncconfig_notify'";
  create_triggers =
      fmt::format(R"SQL(
DROP TRIGGER IF EXISTS syncconfig_lock ON {t};
CREATE TRIGGER syncconfig_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
  FOR EACH STATEMENT EXECUTE FUNCTION {fn_lock}();
DROP TRIGGER IF EXISTS syncconfig_stamp ON {t};
CREATE TRIGGER syncconfig_stamp BEFORE INSERT OR UPDATE ON {t}
  FOR EACH ROW EXECUTE FUNCTION {fn_stamp}();
DROP TRIGGER IF EXISTS syncconfig_notify ON {t};
CREATE TRIGGER syncconfig_notify AFTER INSERT OR UPDATE OR DELETE ON {t}
  FOR EACH ROW EXECUTE FUNCTION {fn_notify}('{channel}');
DROP TRIGGER IF EXISTS syncconfig_truncate ON {t};
CREATE TRIGGER syncconfig_truncate AFTER TRUNCATE ON {t}
  FOR EACH STATEMENT EXECUTE FUNCTION {fn_truncate}('{channel}');
COMMENT ON TRIGGER syncconfig_notify ON {t} IS '{version}';
)SQL",
                  fmt::arg("t", t), fmt::arg("fn_lock", fn_lock), fmt::arg("fn_stamp", fn_stamp),
                  fmt::arg("fn_notify", fn_notify), fmt::arg("fn_truncate", fn_truncate),
                  fmt::arg("channel", channel), fmt::arg("version", kProtocolVersion));

  update =
      fmt::format("UPDATE {t} SET value = $2::jsonb WHERE key = $1 RETURNING revision, value::text",
                  fmt::arg("t", t));
  upsert = fmt::format(
      "INSERT INTO {t} (key, value) VALUES ($1, $2::jsonb) "
      "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING revision, value::text",
      fmt::arg("t", t));
  remove = fmt::format("SELECT {}($1)", fn_delete);
  select_all = fmt::format("SELECT key, value::text, revision FROM {}", t);
  select_since = fmt::format("SELECT key, value::text, revision FROM {} WHERE revision > $1", t);
  select_one = fmt::format("SELECT value::text, revision FROM {} WHERE key = $1", t);
  tombstones_since = fmt::format(
      "SELECT revision, coalesce(key, ''), kind FROM {} WHERE revision > $1 AND kind <> 'c' "
      "ORDER BY revision",
      tomb);
  compacted = fmt::format("SELECT coalesce(max(revision), 0) FROM {} WHERE kind = 'c'", tomb);
  const std::string writer_key =
      fmt::format("{}, '{}'::regclass::oid::integer", kWriterLockClass, t);
  lock_table_for_read = fmt::format("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT", t);
  snapshot_lock = fmt::format("SELECT pg_advisory_lock({})", writer_key);
  snapshot_unlock = fmt::format("SELECT pg_advisory_unlock({})", writer_key);
  snapshot_revision =
      fmt::format("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}", seq);
  table_digest = fmt::format(
      "SELECT count(*), coalesce(sum(('x' || substr(md5(convert_to(key, 'UTF8') || "
      "'\\x00'::bytea || convert_to(value::text, 'UTF8')), 1, 8))::bit(32)::bigint), 0)::text "
      "FROM {}",
      t);
  prune_candidates = fmt::format(
      "SELECT max(revision) FROM {} WHERE kind <> 'c' "
      "AND deleted_at < now() - make_interval(secs => $1::float8)",
      tomb);
  prune = fmt::format("DELETE FROM {} WHERE revision <= $1::bigint", tomb);
  record_compaction = fmt::format(
      "INSERT INTO {} (revision, key, kind) VALUES ($1::bigint, NULL, 'c') "
      "ON CONFLICT (revision) DO UPDATE SET kind = 'c', key = NULL",
      tomb);
}

}  // namespace syncconfig::internal
