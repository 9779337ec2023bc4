// Named tokens (docs/access-control.md): a secret "sct_<43 base64url characters>" (32 random
// bytes) is shown once; only its SHA-256 (hex) is stored, in the table syncconfig_tokens (a
// syncconfig store of its own: key = the token's name, value = {"hash", "rules", "created_at",
// "revoked_at"}), in the schema of the first served store. Servers follow that table like any
// store (LISTEN/NOTIFY, heartbeat every kTokenHeartbeat as the backstop), so a token created or
// revoked anywhere takes effect on every server without a restart.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth/access.h"
#include "syncconfig/config.h"
#include "syncconfig/options.h"
#include "util/mutex.h"

namespace syncconfig::auth {

// The table, channel and heartbeat of the token store. A revoked token stops working on every
// server within kTokenHeartbeat even when the notification is lost (normally: milliseconds).
inline constexpr const char* kTokenTable = "syncconfig_tokens";
inline constexpr std::chrono::seconds kTokenHeartbeat{5};
Options token_store_options(const std::string& schema);

// A fresh secret: "sct_" + 32 random bytes (OpenSSL RAND_bytes) in base64url without padding.
std::string new_secret();
// SHA-256 of `secret`, lowercase hex.
std::string hash_secret(std::string_view secret);

struct TokenRecord {
  std::string name;
  std::string hash;  // hash_secret(secret)
  std::vector<Rule> rules;
  std::string created_at;  // ISO 8601 UTC
  std::string revoked_at;  // Empty: active.
  bool revoked() const { return !revoked_at.empty(); }
};
nlohmann::json to_json(const TokenRecord& r);
// Throws Error(kInvalidArgument) naming the token and what is wrong.
TokenRecord record_from_json(const std::string& name, const nlohmann::json& j);

// An authenticated caller: the token's name and its rules.
struct Token {
  std::string name;
  Rules rules;
};

// Management, on the token store (the CLI with --dsn, and the server's /tokens routes).
// create: throws Error(kInvalidArgument) for a bad name or rules, or when an active token has
// that name (a revoked one is replaced). Returns the secret (never stored).
std::string create_token(Config& store, const std::string& name, std::vector<Rule> rules);
// Returns false when no active token has that name.
bool revoke_token(Config& store, const std::string& name);
std::vector<TokenRecord> list_tokens(const Config& store);

// The active tokens of a token store, kept current by a subscription (every change rebuilds the
// index: the table is small). authenticate() is one SHA-256, one hash-map lookup and a
// constant-time compare. Safe for concurrent access from multiple threads without external
// synchronization. Unsubscribes in its destructor (the store must outlive it).
class TokenRegistry {
 public:
  explicit TokenRegistry(Config& store);
  ~TokenRegistry();
  TokenRegistry(const TokenRegistry&) = delete;
  TokenRegistry& operator=(const TokenRegistry&) = delete;

  // The token whose secret is `secret`, or nullptr (unknown or revoked).
  std::shared_ptr<const Token> authenticate(std::string_view secret) const;
  // Whether the token `token` (from authenticate) is still active (not revoked or replaced).
  bool active(const std::shared_ptr<const Token>& token) const;
  Config& store() const { return store_; }

 private:
  void reload();

  Config& store_;
  SubscriptionId subscription_ = 0;
  std::mutex reload_mu_;
  mutable internal::Mutex mu_;
  // Replaced whole on every reload (readers copy the pointer).
  std::shared_ptr<const std::unordered_map<std::string, std::shared_ptr<const Token>>> by_hash_
      SC_GUARDED_BY(mu_);
};

}  // namespace syncconfig::auth
