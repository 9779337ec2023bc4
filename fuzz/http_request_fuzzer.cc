// libFuzzer target: what the HTTP service does with a request before it touches a store
// (src/http/request.h): httplib's percent-decoding of the path (the very function the server
// runs), key route and key extraction, key validation, the PUT body's size limit, depth check,
// JSON parsing and value checks, and /watch event ids.
//
// Input: "<request target>\n<body>", e.g. "/stores/a/settings/feature%3Anew_ui?since=5\ntrue".
#include <httplib.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http/request.h"
#include "syncconfig/error.h"
#include "util/validation.h"

namespace detail = syncconfig::service::detail;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxBody = 64 * 1024;

int depth_of(const json& value) {
  int deepest = 0;
  std::vector<std::pair<const json*, int>> stack{{&value, 0}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (v->is_structured()) {
      deepest = std::max(deepest, d + 1);
      for (const auto& child : *v) stack.emplace_back(&child, d + 1);
    }
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t nl = input.find('\n');
  std::string_view target = input.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

  std::size_t q = target.find('?');
  std::string path = httplib::detail::decode_url(std::string(target.substr(0, q)), false);
  if (q != std::string_view::npos) {
    std::string query = httplib::detail::decode_url(std::string(target.substr(q + 1)), true);
    if (auto id = detail::parse_event_id(query)) {
      if (std::to_string(*id) != query && !query.starts_with('0')) std::abort();
    }
  }

  std::optional<detail::KeyPath> route = detail::parse_key_path(path);
  if (!route) return 0;
  if (route->key.empty() || route->store.find('/') != std::string::npos) std::abort();
  // The key is the rest of the path: putting the parts back together gives the path.
  std::string rebuilt =
      (route->store.empty() ? "" : "/stores/" + route->store) + "/settings/" + route->key;
  if (rebuilt != path) std::abort();

  if (auto refused = detail::check_key(route->key)) {
    if (refused->status != 400 || refused->message.empty()) std::abort();
    return 0;
  }
  auto parsed = detail::parse_put_body(route->key, body, kMaxBody);
  if (auto* refused = std::get_if<detail::Refusal>(&parsed)) {
    if ((refused->status != 400 && refused->status != 413) || refused->message.empty()) {
      std::abort();
    }
    (void)detail::quoted(refused->message);  // Must be printable as JSON.
    return 0;
  }
  // Accepted: within the limits, and nothing that Store::set would refuse for its value.
  const json& value = std::get<json>(parsed);
  if (body.size() > kMaxBody || depth_of(value) > detail::kMaxBodyDepth) std::abort();
  try {
    (void)syncconfig::internal::serialize_value(route->key, value,
                                                std::numeric_limits<std::size_t>::max());
  } catch (const syncconfig::Error&) {
    std::abort();
  }
  return 0;
}
