#include "auth/tokens.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <ctime>

#include "syncconfig/error.h"
#include "syncconfig/transaction.h"

namespace syncconfig::auth {
namespace {

using nlohmann::json;

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string base64url(const unsigned char* data, std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    acc = (acc << 8) | data[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

}  // namespace

Options token_store_options(const std::string& schema) {
  Options o;
  o.table_name = kTokenTable;
  o.channel = kTokenTable;
  o.schema = schema;
  o.heartbeat_interval = kTokenHeartbeat;
  o.actor = "syncconfig-tokens";
  return o;
}

std::string new_secret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    throw Error(ErrorCode::kInternal, "cannot generate a token secret (RAND_bytes failed)");
  }
  return "sct_" + base64url(bytes, sizeof bytes);
}

std::string hash_secret(std::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &n, EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorCode::kInternal, "SHA-256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned int i = 0; i < n; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

json to_json(const TokenRecord& r) {
  json j = {{"hash", r.hash}, {"rules", rules_to_json(r.rules)}, {"created_at", r.created_at}};
  j["revoked_at"] = r.revoked_at.empty() ? json(nullptr) : json(r.revoked_at);
  return j;
}

TokenRecord record_from_json(const std::string& name, const json& j) {
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("token '{}': {}", name, what));
  };
  if (!j.is_object()) throw bad("the record is not an object");
  TokenRecord r;
  r.name = name;
  auto hash = j.find("hash");
  if (hash == j.end() || !hash->is_string() || hash->get<std::string>().size() != 64) {
    throw bad("\"hash\" is not a SHA-256 in hex");
  }
  r.hash = hash->get<std::string>();
  auto rules = j.find("rules");
  if (rules == j.end()) throw bad("no \"rules\"");
  try {
    r.rules = rules_from_json(*rules);
  } catch (const Error& e) {
    throw bad(e.what());
  }
  r.created_at = j.value("created_at", std::string());
  if (auto rev = j.find("revoked_at"); rev != j.end() && rev->is_string()) {
    r.revoked_at = rev->get<std::string>();
  }
  return r;
}

std::string create_token(Config& store, const std::string& name, std::vector<Rule> rules) {
  validate_token_name(name);
  if (rules.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("token '{}': no rule (give at least one --allow PREFIX=ACCESS)", name));
  }
  std::optional<KeyEntry> existing = store.get_entry(name);
  if (existing && !record_from_json(name, existing->value).revoked()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("token '{}' exists (revoke it first to replace it)", name));
  }
  std::string secret = new_secret();
  TokenRecord r{name, hash_secret(secret), std::move(rules), now_utc(), {}};
  WriteOptions w;
  w.comment = "token created";
  CasResult result = store.set_if(name, to_json(r), existing ? existing->revision : 0, w);
  if (!result) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("token '{}' was created or changed meanwhile; try again", name));
  }
  return secret;
}

bool revoke_token(Config& store, const std::string& name) {
  validate_token_name(name);
  for (;;) {
    std::optional<KeyEntry> existing = store.get_entry(name);
    if (!existing) return false;
    TokenRecord r = record_from_json(name, existing->value);
    if (r.revoked()) return false;
    r.revoked_at = now_utc();
    WriteOptions w;
    w.comment = "token revoked";
    if (store.set_if(name, to_json(r), existing->revision, w)) return true;
  }
}

std::vector<TokenRecord> list_tokens(const Config& store) {
  std::vector<TokenRecord> out;
  for (const auto& [name, value] : store.snapshot().values) {
    try {
      out.push_back(record_from_json(name, value));
    } catch (const Error& e) {
      spdlog::warn("{} (skipped)", e.what());
    }
  }
  return out;
}

TokenRegistry::TokenRegistry(Config& store) : store_(store) {
  subscription_ = store_.subscribe([this](const Change&) { reload(); });
  reload();
}

TokenRegistry::~TokenRegistry() { store_.unsubscribe(subscription_); }

void TokenRegistry::reload() {
  std::lock_guard reloading(reload_mu_);  // One at a time: the last one read the newest state.
  std::shared_ptr<const std::unordered_map<std::string, std::shared_ptr<const Token>>> old;
  {
    internal::MutexLock lock(mu_);
    old = by_hash_;
  }
  auto index = std::make_shared<std::unordered_map<std::string, std::shared_ptr<const Token>>>();
  for (const TokenRecord& r : list_tokens(store_)) {
    if (r.revoked()) continue;
    Rules rules(r.rules);
    // An unchanged token keeps its object: active() of an open stream compares pointers.
    if (old) {
      auto it = old->find(r.hash);
      if (it != old->end() && it->second->name == r.name &&
          it->second->rules.rules() == rules.rules()) {
        index->emplace(r.hash, it->second);
        continue;
      }
    }
    index->emplace(r.hash, std::make_shared<const Token>(Token{r.name, std::move(rules)}));
  }
  internal::MutexLock lock(mu_);
  by_hash_ = std::move(index);
}

std::shared_ptr<const Token> TokenRegistry::authenticate(std::string_view secret) const {
  if (!secret.starts_with("sct_")) return nullptr;
  const std::string hash = hash_secret(secret);
  std::shared_ptr<const std::unordered_map<std::string, std::shared_ptr<const Token>>> index;
  {
    internal::MutexLock lock(mu_);
    index = by_hash_;
  }
  if (!index) return nullptr;
  auto it = index->find(hash);
  if (it == index->end()) return nullptr;
  // The lookup matched on the hash; compare it again in constant time all the same.
  if (CRYPTO_memcmp(it->first.data(), hash.data(), hash.size()) != 0) return nullptr;
  return it->second;
}

bool TokenRegistry::active(const std::shared_ptr<const Token>& token) const {
  internal::MutexLock lock(mu_);
  if (!by_hash_) return false;
  for (const auto& [hash, t] : *by_hash_) {
    if (t == token) return true;
  }
  return false;
}

}  // namespace syncconfig::auth
