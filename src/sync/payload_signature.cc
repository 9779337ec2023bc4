#include "sync/payload_signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>

#include "syncconfig/error.h"

namespace syncconfig::internal {
namespace {

constexpr std::size_t kBlock = 64;  // SHA-256's block size: HMAC pads the key to it.
constexpr std::size_t kSignatureHex = 32;
// How the database appends the field (json_build_object's spacing): , "m" : "<32 hex>"}
constexpr std::string_view kFieldStart = ", \"m\" : \"";
constexpr std::string_view kFieldEnd = "\"}";

std::array<unsigned char, 32> sha256(std::string_view a, std::string_view b) {
  std::array<unsigned char, 32> out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                  EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) throw Error(ErrorCode::kInternal, "SHA-256 failed (OpenSSL)");
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

PayloadKey payload_key_from_secret(std::string_view secret) {
  if (secret.size() > kBlock) {
    throw Error(ErrorCode::kInvalidArgument, "a payload key's secret is at most 64 bytes");
  }
  PayloadKey key;
  key.ipad.assign(kBlock, '\x36');
  key.opad.assign(kBlock, '\x5c');
  for (std::size_t i = 0; i < secret.size(); ++i) {
    key.ipad[i] = static_cast<char>(static_cast<unsigned char>(secret[i]) ^ 0x36);
    key.opad[i] = static_cast<char>(static_cast<unsigned char>(secret[i]) ^ 0x5c);
  }
  return key;
}

PayloadKey make_payload_key() {
  std::array<unsigned char, 32> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    throw Error(ErrorCode::kInternal, "no randomness for the payload key (OpenSSL RAND_bytes)");
  }
  PayloadKey key =
      payload_key_from_secret(std::string_view(reinterpret_cast<const char*>(raw.data()), 32));
  OPENSSL_cleanse(raw.data(), raw.size());
  return key;
}

std::optional<PayloadKey> payload_key_from_hex(std::string_view ipad_hex,
                                               std::string_view opad_hex) {
  std::optional<std::string> ipad = from_hex(ipad_hex), opad = from_hex(opad_hex);
  if (!ipad || !opad || ipad->size() != kBlock || opad->size() != kBlock) return std::nullopt;
  return PayloadKey{std::move(*ipad), std::move(*opad)};
}

std::string payload_signature(const PayloadKey& key, std::string_view text) {
  const std::array<unsigned char, 32> inner = sha256(key.ipad, text);
  const std::array<unsigned char, 32> outer =
      sha256(key.opad, std::string_view(reinterpret_cast<const char*>(inner.data()), inner.size()));
  return to_hex(std::string_view(reinterpret_cast<const char*>(outer.data()), kSignatureHex / 2));
}

std::optional<SignedPayload> split_signature(std::string_view payload) {
  const std::size_t field = kFieldStart.size() + kSignatureHex + kFieldEnd.size();
  if (payload.size() <= field || !payload.ends_with(kFieldEnd)) return std::nullopt;
  const std::size_t start = payload.size() - field;
  if (payload.substr(start, kFieldStart.size()) != kFieldStart) return std::nullopt;
  std::string_view sig = payload.substr(start + kFieldStart.size(), kSignatureHex);
  for (char c : sig) {
    if (hex_value(c) < 0) return std::nullopt;
  }
  SignedPayload out;
  out.signed_text.reserve(start + 1);
  out.signed_text.append(payload.substr(0, start));
  out.signed_text.push_back('}');
  out.signature = std::string(sig);
  return out;
}

bool signature_matches(const PayloadKey& key, std::string_view text, std::string_view sig) {
  if (sig.size() != kSignatureHex) return false;
  std::string expected = payload_signature(key, text);
  std::string given(sig);
  for (char& c : given) c = static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  return CRYPTO_memcmp(expected.data(), given.data(), kSignatureHex) == 0;
}

}  // namespace syncconfig::internal
