#include "http/url.h"

#include <cctype>
#include <charconv>

#include "syncconfig/error.h"

namespace syncconfig::http {
namespace {

bool is_unreserved(unsigned char c) {
  return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~';
}

bool is_hex(unsigned char c) { return std::isxdigit(c) != 0; }

// A path character of RFC 3986 (pchar, plus '/'), with '%' checked separately.
bool is_path_char(unsigned char c) {
  static constexpr std::string_view kSubDelims = "!$&'()*+,;=";
  return is_unreserved(c) || kSubDelims.find(static_cast<char>(c)) != std::string_view::npos ||
         c == ':' || c == '@' || c == '/';
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// How an error message names the text: quoted, unless it may carry a password or a token.
std::string shown(std::string_view text) {
  if (text.find_first_of("@?") != std::string_view::npos) return "the server URL";
  return "server URL \"" + std::string(text) + "\"";
}

Error bad(std::string_view text, const std::string& why) {
  return Error(ErrorCode::kInvalidArgument, shown(text) + ": " + why);
}

}  // namespace

std::string Url::host_and_port() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string Url::to_string() const {
  return (tls ? "https://" : "http://") + host_and_port() + base_path;
}

Url parse_url(std::string_view text) {
  const bool tls = starts_with_ignoring_case(text, "https://");
  if (!tls && !starts_with_ignoring_case(text, "http://")) {
    throw bad(text,
              "expected http://HOST[:PORT][/PATH] or https://HOST[:PORT][/PATH], e.g. "
              "http://127.0.0.1:8080");
  }
  std::string_view rest = text.substr(tls ? 8 : 7);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    throw bad(text, "a query or fragment is not allowed (only http://HOST[:PORT][/PATH])");
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    throw bad(text,
              "credentials in the URL are not supported; pass a token with --token or "
              "SYNCCONFIG_TOKEN");
  }
  if (authority.empty()) throw bad(text, "no host");

  Url url;
  url.tls = tls;
  url.port = tls ? 443 : 80;
  std::string_view port_text;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad(text, "'[' without ']' around an IPv6 address");
    std::string_view v6 = authority.substr(1, close - 1);
    if (v6.empty() || v6.find(':') == std::string_view::npos) {
      throw bad(text, "brackets must hold an IPv6 address");
    }
    for (unsigned char c : v6) {
      if (!is_hex(c) && c != ':' && c != '.') {
        throw bad(text, "brackets must hold an IPv6 address (hex digits, ':' and '.')");
      }
    }
    url.host = std::string(v6);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw bad(text, "expected ':PORT' after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) throw bad(text, "empty port after ':'");
    }
  } else {
    const std::size_t colon = authority.find(':');
    std::string_view host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.find(':') != std::string_view::npos) {
        throw bad(text, "an IPv6 address needs brackets: http://[::1]:8080");
      }
      if (port_text.empty()) throw bad(text, "empty port after ':'");
    }
    if (host.empty()) throw bad(text, "no host");
    for (unsigned char c : host) {
      if (!is_unreserved(c) || c == '~') {
        throw bad(text, "the host may hold letters, digits, '-', '.' and '_' only");
      }
    }
    url.host = std::string(host);
  }
  if (!port_text.empty()) {
    unsigned int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      throw bad(text, "the port must be a number from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(port);
  }

  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == '%') {
      if (i + 2 >= path.size() || !is_hex(path[i + 1]) || !is_hex(path[i + 2])) {
        throw bad(text, "a '%' in the path must start a %XX escape");
      }
      i += 2;
    } else if (!is_path_char(c)) {
      throw bad(text, "the path may not hold spaces or control characters (percent-encode them)");
    }
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  url.base_path = std::string(path);
  return url;
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (is_unreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

}  // namespace syncconfig::http
