// The SQL of the sync protocol for one table, built once from validated names.
//
// Objects, for table T in schema S (docs/protocol.md explains each):
//   S.T                    key VARCHAR(255) PK, value JSONB, updated_at TIMESTAMP (the
//                          reference's schema) + revision BIGINT
//   S.T_revision_seq       revisions, drawn under a per-table advisory lock so that they follow
//                          commit order
//   S.T_changes            the change log: every change with its value before and after, actor,
//                          comment; the history, and the deletions a catch-up reads
//   S.T_leases, S.T_lease_keys   leases and the keys attached to them
//   S.T_sc_key             the key that signs the library's payloads (readable by granted roles)
//   triggers syncconfig_lock / _stamp / _notify / _truncate, for foreign (plain SQL) writes
//   functions S.T_sc_put / _sc_del / _sc_txn: the library's own writes, in one round trip
#pragma once

#include <string>

namespace syncconfig::internal {

// Recorded as the comment of the syncconfig_notify trigger. An instance finding its own version
// there skips the setup entirely (no DDL, so roles without ownership of the table can run it).
// Change it whenever the setup SQL changes, so that existing installations are upgraded.
inline constexpr const char* kProtocolVersion = "syncconfig protocol 2";

struct TableSql {
  TableSql(const std::string& schema, const std::string& table, const std::string& channel);

  std::string qualified_table;  // "schema"."table", for messages too.
  std::string setup;            // Idempotent DDL; run in a transaction with setup_lock first.
  std::string setup_lock;       // SELECT pg_advisory_xact_lock(...) serializing setups.
  std::string installed;        // $1 = qualified table: channel, protocol version (no row if none)
  std::string create_triggers;  // Drops and creates the triggers for `channel`.
  // Payload signing, added to protocol 2 without a version change (old instances ignore "m").
  std::string signing_installed;  // -> whether the key table exists, whether this role may read it
  std::string insert_key;         // $1 ipad hex, $2 opad hex (kept if a key exists)
  std::string select_key;         // -> ipad hex, opad hex (no row: no key)

  std::string put;  // $1 key, $2 json text, $3 expected revision or NULL, $4 lease (0 none),
                    // $5 actor, $6 comment -> status, rev, val (see the function)
  std::string del;  // $1 key, $2 expected or NULL, $3 actor, $4 comment, $5 'delete'|'expire'
  std::string txn;  // $1 jsonb document, $2 actor, $3 comment -> kind, idx, k, rev, val
  std::string select_all;        // -> key, value::text, revision
  std::string select_since;      // $1 revision -> key, value::text, revision
  std::string select_one;        // $1 key -> value::text, revision
  std::string select_entry;      // $1 key -> value::text, revision, updated_at µs, lease
  std::string tombstones_since;  // $1 revision -> revision, key, kind ('d', 'x' or 't')
  std::string compacted;         // -> revision through which the log was pruned (0 if none)
  std::string txids_since;       // $1 revision -> revision, txid of the log's records after it
  std::string records_at;        // $1 bigint[] revisions -> revision, key, op, value::text of the
                                 // log's records there (what a notification is verified against)
  std::string changes_at;      // $1 bigint[] revisions -> revision, key, op, md5 prefix (op 'set'):
                               // the log's record at each (key NULL where it has none)
  std::string history;         // $1 key, $2 before (0: none), $3 limit -> a HistoryRecord
  std::string history_prefix;  // $1 prefix, $2 before, $3 limit
  std::string state_at;        // $1 revision, $2 prefix -> key, value::text, revision
  std::string leases_grant;    // $1 ttl s -> id, ttl, expires_at µs
  std::string leases_keep_alive;    // $1 id -> id, ttl, expires_at µs (no row: expired/unknown)
  std::string leases_delete;        // $1 id -> id
  std::string lease_keys_of;        // $1 id -> key
  std::string leases_expire;        // Deletes expired leases -> id
  std::string orphan_keys;          // -> key, revision, lease: keys whose lease is gone
  std::string sweep_mark;           // -> seconds since the previous sweep (NULL: first)
  std::string leases_grace;         // $1 grace s: no lease expires before now + grace
  std::string sweeper_lock;         // -> whether this session is the sweeper
  std::string db_now_us;            // -> the database's clock
  std::string lock_table_for_read;  // ACCESS SHARE NOWAIT: keeps TRUNCATE out of a snapshot read.
  std::string snapshot_lock;        // Session-level writer lock: no revision is in flight under it.
  std::string snapshot_unlock;
  std::string snapshot_xact_lock;  // The same lock, held to the end of the transaction.
  std::string snapshot_revision;   // -> the last revision drawn (0 if none)
  std::string table_digest;        // -> count, sum of md5 prefixes (as text)
  std::string prune;              // $1 retention s, $2 min versions, $3 batch -> max pruned or NULL
  std::string record_compaction;  // $1 revision: the log is complete above it
};

}  // namespace syncconfig::internal
