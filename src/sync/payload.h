// The NOTIFY payload written by the table's triggers (see db/table_sql.cc):
//   {"sc": 1, "op": "u"|"d"|"x"|"t", "r": revision, "x": txid, "t": unix time in microseconds,
//    "e": 0|1, "k": key, "val": "<jsonb text>"}
// "val" is present on upserts whose payload fits NOTIFY's 8000-byte limit. The library's own
// functions append "m", the payload's signature (sync/payload_signature.h). "x" is a deletion by
// lease expiry. "e": 1 marks the last change of its transaction (the library's own writes; plain
// SQL writes carry no "e", and their transaction's end is found by the listener).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sync/payload_signature.h"

namespace syncconfig::internal {

struct Notice {
  enum class Op { kUpsert, kDelete, kTruncate };
  Op op = Op::kUpsert;
  int64_t revision = 0;
  int64_t txid = 0;
  std::string key;                         // Empty for kTruncate.
  std::optional<std::string> value_text;   // kUpsert only, when it fit.
  std::optional<int64_t> written_at_us;    // When the trigger ran (unix microseconds).
  bool expired = false;                    // kDelete by lease expiry.
  bool ends_transaction = false;           // "e": 1.
  std::optional<SignedPayload> signature;  // "m", last: the library's functions sign.
};

// Parses a payload. Anything else (foreign or malformed) gives std::nullopt and a reason in
// *why; it must never throw or crash, whatever the input.
std::optional<Notice> parse_notice(std::string_view payload, std::string* why);

}  // namespace syncconfig::internal
