// libFuzzer target: NOTIFY payloads (src/sync/payload.h). Anything may arrive on the channel
// (plain SQL can NOTIFY it), so parse_notice must never throw or crash, and what it accepts must
// be usable as it is.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sync/payload.h"
#include "util/validation.h"

using syncconfig::internal::Notice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  std::string why;
  std::optional<Notice> n = syncconfig::internal::parse_notice(payload, &why);  // Must not throw.
  if (!n) {
    if (why.empty()) std::abort();  // A refusal always says why.
    return 0;
  }
  if (n->revision <= 0) std::abort();
  // A signature found is 32 hex digits, and what it signs is the payload before it, closed.
  if (n->signature) {
    if (n->signature->signature.size() != 32 || !n->signature->signed_text.ends_with('}') ||
        n->signature->signed_text.size() >= payload.size()) {
      std::abort();
    }
  }
  if (n->op == Notice::Op::kTruncate) return 0;
  if (n->key.empty() || n->key.size() > 4 * syncconfig::internal::kMaxKeyBytes ||
      n->key.find('\0') != std::string::npos) {
    std::abort();
  }
  if (n->op == Notice::Op::kDelete && n->value_text) std::abort();
  const int limit = static_cast<int>(syncconfig::internal::kMaxValueDepth);
  if (n->value_text && syncconfig::internal::json_text_depth(*n->value_text, limit) > limit) {
    std::abort();
  }
  return 0;
}
