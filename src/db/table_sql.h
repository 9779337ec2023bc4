// The SQL of the sync protocol for one table, built once from validated names.
//
// Objects, for table T in schema S (docs/protocol.md explains each):
//   S.T                    key VARCHAR(255) PK, value JSONB, updated_at TIMESTAMP (the
//                          reference's schema) + revision BIGINT
//   S.T_revision_seq       revisions, drawn under a per-table advisory lock so that they follow
//                          commit order
//   S.T_tombstones         deletions and truncations by revision, for catching up
//   triggers syncconfig_stamp / syncconfig_notify / syncconfig_truncate
//   function S.T_sc_delete(key) -> revision of the deletion (NULL if the key was absent)
#pragma once

#include <string>

namespace syncconfig::internal {

// Recorded as the comment of the syncconfig_notify trigger. An instance finding its own version
// there skips the setup entirely (no DDL, so roles without ownership of the table can run it).
// Change it whenever the setup SQL changes, so that existing installations are upgraded.
inline constexpr const char* kProtocolVersion = "syncconfig protocol 1";

struct TableSql {
  TableSql(const std::string& schema, const std::string& table, const std::string& channel);

  std::string qualified_table;  // "schema"."table", for messages too.
  std::string setup;            // Idempotent DDL; run in a transaction with setup_lock first.
  std::string setup_lock;       // SELECT pg_advisory_xact_lock(...) serializing setups.
  std::string installed;        // $1 = qualified table: channel, protocol version (no row if none)
  std::string create_triggers;  // Drops and creates the triggers for `channel`.

  std::string update;            // $1 key, $2 json text -> revision, value::text (0 rows: absent)
  std::string upsert;            // $1 key, $2 json text -> revision, value::text
  std::string remove;            // $1 key -> revision or NULL
  std::string select_all;        // -> key, value::text, revision
  std::string select_since;      // $1 revision -> key, value::text, revision
  std::string select_one;        // $1 key -> value::text, revision
  std::string tombstones_since;  // $1 revision -> revision, key, kind ('d' or 't')
  std::string compacted;         // -> revision through which tombstones were pruned (0 if none)
  std::string lock_table_for_read;  // ACCESS SHARE NOWAIT: keeps TRUNCATE out of a snapshot read.
  std::string snapshot_lock;        // Session-level writer lock: no revision is in flight under it.
  std::string snapshot_unlock;
  std::string snapshot_revision;  // -> the last revision drawn (0 if none)
  std::string table_digest;       // -> count, sum of md5 prefixes (as text)
  std::string prune_candidates;   // $1 retention seconds -> max prunable revision or NULL
  std::string prune;              // $1 revision: delete tombstones <= $1 ...
  std::string record_compaction;  // $1 revision: ... and record that they are gone
};

}  // namespace syncconfig::internal
