// A snapshot of a store's content in a local file, so that a process can start from it instead
// of an empty cache.
//
// The file is written atomically (a temporary file, fsync, rename, fsync of the directory), so
// the path holds either the previous snapshot or the new one, never a mix. It is read whole and
// checked before anything is returned: a file that is missing, of another format or version,
// cut short, damaged, of another source, or holding an entry the cache could not have held is
// refused with an Error(kInternal) saying which.
//
// Format (version 3; version 2 is read too, without the resume id), integers little-endian:
//   "SYNCCONFIG-SNAPSHOT\0"   20 bytes, magic
//   u32 format version        3
//   u32 source length, then the source's bytes
//   i64 revision
//   i64 newest revision
//   u32 resume id length, then the resume id's bytes (version 3)
//   u32 anchor count, per anchor: i64 revision, u8 deleted, u32 md5, u32 key length, key
//                             (version 3)
//   i64 written_at            microseconds since the Unix epoch
//   u64 entry count
//   per entry: u32 key length, key, u32 text length, text (the value's jsonb text)
//   trailer (20 bytes):
//     u64 number of bytes before the trailer
//     u32 CRC-32 (zlib's crc32) of those bytes
//     "SNAPEND\0"             8 bytes, end magic
// A reader checks the magic, the version, the end magic, the length and the checksum before it
// looks at the content, and every length against the bytes that remain, so a damaged length can
// neither allocate nor read past the buffer.
//
// Thread safety: the functions share no state but a counter for temporary names; any thread may
// call them. Two writers of the same path each write their own temporary file and the last
// rename wins.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace syncconfig::internal {

// A change this instance applied from a notification or its own write, as the database's change
// log must still have it: after a reconnect, a log without it (or with another change at its
// revision) means the database's history diverged from what this instance saw — a failover to a
// standby that lacked commits — and only a reset reload is exact (docs/protocol.md). Kept in the
// snapshot file, so that a store that starts from it checks the same on its first connection.
struct Anchor {
  int64_t revision = 0;
  std::string key;
  bool deleted = false;
  uint32_t md5 = 0;  // EntryHash::md5 of the value (set only).

  bool operator==(const Anchor&) const = default;
};

struct SnapshotFileData {
  // What this is a snapshot of, e.g. "table public.sync_config" or "remote /stores/x
  // prefix=app:"; a file of another source is foreign.
  std::string source;
  int64_t revision = 0;  // The revision the data is complete to.
  // The highest revision of anything in the data (at least `revision`): a change applied early,
  // before older ones had arrived, can be newer. A store opened from the file starts its
  // numbered history (StoreFeed) above it; see Cache::note_applied.
  int64_t newest_revision = 0;
  // Kept to the microsecond.
  std::chrono::system_clock::time_point written_at;
  std::vector<std::pair<std::string, std::string>> entries;  // key, jsonb text of the value
  // Where a client of a server resumes from, as that server's event id (R, R.hhhhhhhh or
  // R.A.hhhhhhhh, with R <= revision): its anchor lets the server check that the data is of its
  // history. Empty: none (a Store's own file, or no id known).
  std::string resume_id;
  // The cache's anchors (Cache::anchors), oldest first (version 3).
  std::vector<Anchor> anchors;
};

// Writes `data` to `path`: <path>.tmp.<pid>.<counter> created with mode 0600 (O_EXCL), the
// whole content, fsync, rename over `path`, fsync of the directory. On any failure the temporary
// file is removed and Error(kInternal) names the path and the system's error text; `path` then
// still holds what it held before (unless only the directory's fsync failed, after the rename).
// Does not check the entries: write what the cache holds.
void write_snapshot_file(const std::string& path, const SnapshotFileData& data);

// Reads and checks the whole file. Throws Error(kInternal) saying why it is refused: missing,
// not a syncconfig snapshot, unsupported format version, truncated, corrupt (checksum or an
// inconsistent length), foreign (its source is not `expected_source`), an entry whose key is
// empty, longer than 1020 bytes (255 characters of UTF-8, what the table's VARCHAR(255) holds)
// or holds a NUL byte, or whose text is not JSON. Never returns partial data.
SnapshotFileData read_snapshot_file(const std::string& path, std::string_view expected_source);

// Whether `text` is one JSON value: nlohmann::json::accept's answer, without the parser for the
// common scalars (it was most of the time spent reading a million entries).
bool is_json_text(std::string_view text);

}  // namespace syncconfig::internal
