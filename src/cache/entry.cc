#include "cache/entry.h"

#include <cstring>
#include <functional>
#include <new>

namespace syncconfig::internal {

void EntryDeleter::operator()(Entry* e) const noexcept {
  if (e == nullptr) return;
  if (e->kind_ == ValueKind::kContainer) {
    reinterpret_cast<nlohmann::json*>(e + 1)->~basic_json();
  }
  e->~Entry();
  ::operator delete(static_cast<void*>(e));
}

uint32_t Entry::hash_key(std::string_view key) {
  const std::size_t h = std::hash<std::string_view>{}(key);
  return static_cast<uint32_t>(h ^ (h >> 32));
}

namespace {
// Whether `t` (starting at its opening quote) is one JSON string. The common case, no escapes,
// is a scan; anything with a backslash goes through the parser.
bool valid_string_text(std::string_view t) {
  if (t.size() < 2 || t.back() != '"') return false;
  std::string_view body = t.substr(1, t.size() - 2);
  bool simple = true;
  for (char c : body) {
    if (c == '\\' || c == '"' || static_cast<unsigned char>(c) < 0x20) {
      simple = false;
      break;
    }
  }
  if (simple) return true;
  nlohmann::json parsed = nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false);
  return !parsed.is_discarded() && parsed.is_string();
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Whether `t` is one JSON number, true, false or null, with JSON whitespace around it: the same
// answer as nlohmann's parser (entry_test and validation_fuzzer compare the two) but a leading
// byte order mark, which the parser skips and PostgreSQL never sends. Mostly without the parser,
// whose cost was the largest part of loading a million numbers.
bool valid_scalar_text(std::string_view t) {
  constexpr std::string_view kSpace = " \t\r\n";
  const std::size_t first = t.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return false;
  t = t.substr(first, t.find_last_not_of(kSpace) - first + 1);
  if (t == "true" || t == "false" || t == "null") return true;
  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  std::size_t i = 0;
  auto digits = [&] {
    const std::size_t start = i;
    while (i < t.size() && is_digit(t[i])) ++i;
    return i > start;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  bool exponent = false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    exponent = true;
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digits()) return false;
  }
  if (i != t.size()) return false;
  // Without an exponent and this short, the number is far inside a double's range. Otherwise ask
  // the parser, which refuses a number that overflows a double (1e999).
  if (!exponent && t.size() <= 300) return true;
  return !nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false).is_discarded();
}
}  // namespace

EntryPtr Entry::allocate(std::string_view key, std::string_view stored_text, ValueKind kind,
                         int64_t revision) {
  if (key.size() > UINT16_MAX || stored_text.size() > UINT32_MAX) return nullptr;
  const std::size_t extra = kind == ValueKind::kContainer ? sizeof(nlohmann::json) : 0;
  void* block = ::operator new(sizeof(Entry) + extra + key.size() + stored_text.size());
  EntryPtr e(new (block) Entry(revision, hash_key(key), static_cast<uint16_t>(key.size()),
                               static_cast<uint32_t>(stored_text.size()), kind));
  if (extra != 0) new (static_cast<void*>(e.get() + 1)) nlohmann::json();
  char* data = e->data();
  if (!key.empty()) std::memcpy(data, key.data(), key.size());
  if (!stored_text.empty()) std::memcpy(data + key.size(), stored_text.data(), stored_text.size());
  return e;
}

EntryPtr Entry::make(std::string_view key, std::string_view text, int64_t revision) {
  // Skip the whitespace JSON allows; PostgreSQL's jsonb text has none at the edges.
  std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return nullptr;
  ValueKind kind;
  switch (text[first]) {
    case '{':
    case '[':
      kind = ValueKind::kContainer;
      break;
    case '"':
      kind = ValueKind::kString;
      break;
    case 't':
    case 'f':
      kind = ValueKind::kBool;
      break;
    case 'n':
      kind = ValueKind::kNull;
      break;
    default:
      kind = ValueKind::kNumber;
      break;
  }
  if (kind == ValueKind::kContainer) {
    nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return nullptr;
    EntryPtr e = allocate(key, {}, kind, revision);
    if (!e) return nullptr;
    *reinterpret_cast<nlohmann::json*>(e.get() + 1) = std::move(parsed);
    e->hash = hash_entry(key, text);
    return e;
  }
  if (kind != ValueKind::kString) {
    // Numbers, booleans and null are short: check them now, so that every stored scalar but a
    // string parses (strings are checked when read; jsonb's always are valid).
    if (!valid_scalar_text(text)) return nullptr;
  } else if (!valid_string_text(text.substr(first))) {
    return nullptr;
  }
  EntryPtr e = allocate(key, text, kind, revision);
  if (e) e->hash = hash_entry(key, text);
  return e;
}

EntryPtr Entry::make_tombstone(std::string_view key, int64_t revision) {
  return allocate(key, {}, ValueKind::kTombstone, revision);
}

nlohmann::json Entry::to_json() const {
  switch (kind_) {
    case ValueKind::kTombstone:
    case ValueKind::kNull:
      return nullptr;
    case ValueKind::kContainer:
      return *container();
    case ValueKind::kString: {
      std::string_view t = text();
      std::size_t first = t.find('"');
      std::string_view body = t.substr(first + 1, t.size() - first - 2);
      // Without escapes the text between the quotes is the string itself.
      if (body.find_first_of("\\\"") == std::string_view::npos) return std::string(body);
      break;
    }
    default:
      break;
  }
  nlohmann::json v = nlohmann::json::parse(text(), nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? nlohmann::json() : v;
}

}  // namespace syncconfig::internal
