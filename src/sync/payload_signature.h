// Signed payloads: the library's write functions append "m", an HMAC-SHA-256 (truncated to 128
// bits) of the payload's text under a per-table key that only granted roles can read
// (db/table_sql.cc, docs/protocol.md "Signed payloads"). A listener holding the key applies a
// payload whose signature checks without reading the change log; any other payload (unsigned:
// plain SQL, an older instance, a role without the key; or a signature that does not check) is
// verified by the read, as before. A signature is a shortcut, never a reason to reject.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace syncconfig::internal {

// The key as stored: the 32 random bytes padded to 64 and XORed with 0x36 (ipad) and 0x5c (opad),
// as HMAC's definition prepares them.
struct PayloadKey {
  std::string ipad;  // 64 bytes
  std::string opad;  // 64 bytes
};

// A new random key of 32 bytes (OpenSSL's RAND_bytes). Throws Error(kInternal) if no randomness
// is available.
PayloadKey make_payload_key();
// The key prepared from a secret of at most 64 bytes (tests use the RFC 4231 vectors).
PayloadKey payload_key_from_secret(std::string_view secret);

// From the stored hex form; std::nullopt unless both are 64 bytes of valid hex.
std::optional<PayloadKey> payload_key_from_hex(std::string_view ipad_hex,
                                               std::string_view opad_hex);
std::string to_hex(std::string_view bytes);

// The signature of `text` as it appears in a payload: 32 lowercase hex digits.
std::string payload_signature(const PayloadKey& key, std::string_view text);

// A payload that ends in the signature field: the text that was signed (the payload without the
// field) and the signature. std::nullopt for a payload without one.
struct SignedPayload {
  std::string signed_text;
  std::string signature;
};
std::optional<SignedPayload> split_signature(std::string_view payload);

// Whether `sig` is the signature of `text` under `key` (compared in constant time).
bool signature_matches(const PayloadKey& key, std::string_view text, std::string_view sig);

}  // namespace syncconfig::internal
