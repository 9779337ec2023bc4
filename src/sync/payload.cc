#include "sync/payload.h"

#include <nlohmann/json.hpp>

#include "util/validation.h"

namespace syncconfig::internal {

std::optional<Notice> parse_notice(std::string_view payload, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<Notice> {
    *why = reason;
    return std::nullopt;
  };
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return fail("not a JSON object");
  auto sc = j.find("sc");
  if (sc == j.end() || !sc->is_number_integer() || sc->get<int64_t>() != 1) {
    return fail("not a syncconfig payload (no \"sc\": 1)");
  }
  auto op = j.find("op");
  auto r = j.find("r");
  auto x = j.find("x");
  if (op == j.end() || !op->is_string()) return fail("missing \"op\"");
  if (r == j.end() || !r->is_number_integer() || r->get<int64_t>() <= 0) {
    return fail("missing or invalid revision \"r\"");
  }
  if (x == j.end() || !x->is_number_integer()) return fail("missing transaction id \"x\"");
  Notice n;
  n.revision = r->get<int64_t>();
  n.txid = x->get<int64_t>();
  if (auto t = j.find("t"); t != j.end() && t->is_number_integer()) {
    n.written_at_us = t->get<int64_t>();
  }
  if (auto e = j.find("e"); e != j.end() && e->is_number_integer()) {
    n.ends_transaction = e->get<int64_t>() == 1;
  }
  if (j.contains("m")) n.signature = split_signature(payload);
  const auto& o = op->get_ref<const std::string&>();
  if (o == "t") {
    n.op = Notice::Op::kTruncate;
    return n;
  }
  if (o == "u") {
    n.op = Notice::Op::kUpsert;
  } else if (o == "d" || o == "x") {
    n.op = Notice::Op::kDelete;
    n.expired = o == "x";
  } else {
    return fail("unknown \"op\"");
  }
  auto k = j.find("k");
  if (k == j.end() || !k->is_string()) return fail("missing key \"k\"");
  n.key = k->get<std::string>();
  // The column holds up to 255 characters (up to 4 bytes each); set() is stricter (255 bytes),
  // but rows written with plain SQL may use the column's whole width.
  if (n.key.empty() || n.key.size() > 4 * kMaxKeyBytes || n.key.find('\0') != std::string::npos) {
    return fail("invalid key");
  }
  if (n.op == Notice::Op::kUpsert) {
    auto v = j.find("val");
    if (v != j.end()) {
      if (!v->is_string()) return fail("\"val\" is not a string");
      n.value_text = v->get<std::string>();
      // Anyone who can connect may NOTIFY the channel. A value nested deeper than set() ever
      // writes is not taken from the payload (copying and printing it recurse per level); the
      // instance reads the key from the table instead, as for a value too large to be inline.
      const int limit = static_cast<int>(kMaxValueDepth);
      if (json_text_depth(*n.value_text, limit) > limit) n.value_text.reset();
    }
  }
  return n;
}

}  // namespace syncconfig::internal
