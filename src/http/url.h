// The address of a syncconfig server as a user gives it (--server, SYNCCONFIG_SERVER,
// server.json), and the percent-encoding of what goes into a request's path or query.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace syncconfig::http {

// http://HOST[:PORT][/BASE-PATH] or https://... (TLS, verified: see ClientOptions::ca_file).
// HOST is a name, an IPv4 address or an IPv6 address in brackets; PORT defaults to 80 (443 for
// https); BASE-PATH (e.g. "/syncconfig" behind a reverse proxy) is put in
// front of every request target.
struct Url {
  std::string host;       // Without brackets: "127.0.0.1", "::1", "config.internal".
  uint16_t port = 80;     // 1..65535.
  bool tls = false;       // https://: TLS, the server's certificate verified against `host`.
  std::string base_path;  // "" or "/a/b": no trailing '/', already percent-encoded.

  // "http://[::1]:8080/a" ("https://..." with tls): the port is always shown.
  std::string to_string() const;
  // The Host header's value: "[::1]:8080".
  std::string host_and_port() const;
};

// Parses `text`. Throws syncconfig::Error(kInvalidArgument) saying what is wrong: neither
// http:// nor https://, user:password@ (never echoed: use a token), a
// query or fragment, an IPv6 address without brackets, a port out of range. The text is quoted
// in the message unless it may hold a secret ('@' or '?' in it).
Url parse_url(std::string_view text);

// Percent-encodes every byte outside RFC 3986's unreserved set (A-Z a-z 0-9 - . _ ~), '/'
// included, so that a key becomes one path segment (or one query value) that the server decodes
// back to exactly the key. Uppercase hex digits: "a/b c" -> "a%2Fb%20c".
std::string percent_encode(std::string_view s);

}  // namespace syncconfig::http
