#include "cache/jsonb_text.h"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace syncconfig::internal {
namespace {

using json = nlohmann::json;
using Member = json::object_t::value_type;

// PostgreSQL's escape_json (plus \u0000, which jsonb never holds).
void append_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // Start of the bytes not yet copied.
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
        break;
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

// What numeric_in followed by numeric_out makes of a JSON number text: the same value in plain
// decimal with the text's display scale (digits after the point, less the exponent, at least 0).
void append_numeric(std::string& out, std::string_view text) {
  std::size_t i = 0;
  const bool negative = i < text.size() && text[i] == '-';
  if (negative) ++i;
  std::string digits;  // Integer and fraction digits, without the point.
  long int_len = 0;
  long frac_len = 0;
  auto is_digit = [&] { return i < text.size() && text[i] >= '0' && text[i] <= '9'; };
  for (; is_digit(); ++i, ++int_len) digits += text[i];
  if (i < text.size() && text[i] == '.') {
    for (++i; is_digit(); ++i, ++frac_len) digits += text[i];
  }
  long exponent = 0;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    const bool exp_negative = i < text.size() && text[i] == '-';
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    // Only dump()'s texts come here (|exponent| <= 324); the bound keeps a forged one finite.
    for (; is_digit(); ++i) exponent = std::min(exponent * 10 + (text[i] - '0'), 100000L);
    if (exp_negative) exponent = -exponent;
  }
  const long point = int_len + exponent;  // Digits before the decimal point.
  const long scale = std::max(0L, frac_len - exponent);
  const long n = static_cast<long>(digits.size());
  auto digit = [&](long k) { return k >= 0 && k < n ? digits[k] : '0'; };

  if (negative && digits.find_first_not_of('0') != std::string::npos) out += '-';
  long first = 0;  // Skip the integer part's leading zeros, keeping one digit.
  while (first < point - 1 && digit(first) == '0') ++first;
  if (point <= 0) {
    out += '0';
  } else {
    for (long k = first; k < point; ++k) out += digit(k);
  }
  if (scale > 0) {
    out += '.';
    for (long k = point; k < point + scale; ++k) out += digit(k);
  }
}

void append_scalar(std::string& out, const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      out += "null";
      break;
    case json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case json::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case json::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case json::value_t::number_float:
      // dump() gives "null" for NaN and infinities, which append_numeric must not see.
      if (std::string t = v.dump(); t == "null") {
        out += t;
      } else {
        append_numeric(out, t);
      }
      break;
    case json::value_t::string:
      append_string(out, v.get_ref<const std::string&>());
      break;
    default:  // binary and discarded: not JSON values; what dump() would make of them is moot.
      out += "null";
      break;
  }
}

// One object or array being printed.
struct Frame {
  const json* value;
  std::vector<const Member*> members;  // An object's members in jsonb's key order.
  std::size_t next = 0;
  std::size_t size() const { return value->is_object() ? members.size() : value->size(); }
};

bool jsonb_key_less(const Member* a, const Member* b) {
  const std::string& x = a->first;
  const std::string& y = b->first;
  if (x.size() != y.size()) return x.size() < y.size();
  return std::memcmp(x.data(), y.data(), x.size()) < 0;
}

}  // namespace

void append_jsonb_text(std::string& out, const json& value) {
  // Iterative: PostgreSQL accepts values nested as deep as its stack allows, far deeper than
  // recursion here should go.
  std::vector<Frame> stack;
  auto open = [&](const json& v) {
    if (v.is_object()) {
      if (v.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      Frame f{&v, {}, 0};
      f.members.reserve(v.size());
      for (const Member& m : v.get_ref<const json::object_t&>()) f.members.push_back(&m);
      std::sort(f.members.begin(), f.members.end(), jsonb_key_less);
      stack.push_back(std::move(f));
    } else if (v.is_array()) {
      if (v.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      stack.push_back(Frame{&v, {}, 0});
    } else {
      append_scalar(out, v);
    }
  };
  open(value);
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next == f.size()) {
      out += f.value->is_object() ? '}' : ']';
      stack.pop_back();
      continue;
    }
    if (f.next > 0) out += ", ";
    const json* child;
    if (f.value->is_object()) {
      const Member* m = f.members[f.next];
      append_string(out, m->first);
      out += ": ";
      child = &m->second;
    } else {
      child = &(*f.value)[f.next];
    }
    ++f.next;
    open(*child);  // May push a frame, so `f` is not used after this.
  }
}

std::string jsonb_text(const json& value) {
  std::string out;
  append_jsonb_text(out, value);
  return out;
}

}  // namespace syncconfig::internal
