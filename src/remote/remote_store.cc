// RemoteStore: the cache of Store, fed by a syncconfig server instead of the table.
//
// The follower thread takes nothing for granted about the server it follows: it resumes by the
// cache's watermark (every change at or below it is applied), and the cache applies a change only
// if it is newer than the key's entry. So moving to another server, or receiving a change twice
// (a write's own answer, then its event), never rolls a key back or skips one.
#include "syncconfig/remote_store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "cache/cache.h"
#include "cache/jsonb_text.h"
#include "cache/snapshot_writer.h"
#include "http/http_client.h"
#include "http/safe_json.h"
#include "http/url.h"
#include "sync/counters.h"
#include "sync/dispatcher.h"
#include "sync/store_state.h"
#include "util/backoff.h"
#include "util/mutex.h"
#include "util/validation.h"

namespace syncconfig {

using json = nlohmann::json;
using internal::AppliedBy;
using internal::Backoff;
using std::chrono::steady_clock;

namespace {

// The first pause after every server failed in a row; it doubles up to retry_interval.
constexpr std::chrono::milliseconds kFirstRetryDelay(50);

// An HTTP status of a syncconfig server as the Error code a Store would have thrown.
ErrorCode code_for_status(int status) {
  switch (status) {
    case 503:
      return ErrorCode::kUnavailable;
    case 504:
      return ErrorCode::kTimeout;
    case 500:
      return ErrorCode::kDatabase;
    case 410:
      return ErrorCode::kOutOfRange;
    default:
      return status >= 400 && status < 500 ? ErrorCode::kInvalidArgument : ErrorCode::kInternal;
  }
}

// The server's {"error": "..."}, or the start of whatever it sent.
std::string server_error(const http::Response& r) {
  try {
    json body = json::parse(r.body);
    if (body.is_object() && body.contains("error") && body["error"].is_string()) {
      return body["error"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  return r.body.substr(0, 200);
}

using internal::quote_for_message;

json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kInternal,
                fmt::format("{}: the answer is not JSON: {}", what, e.what()));
  }
}

int64_t revision_of(const json& j, const std::string& what) {
  if (!j.is_object() || !j.contains("revision") || !j["revision"].is_number_integer()) {
    throw Error(ErrorCode::kInternal, fmt::format("{}: no \"revision\" in the answer", what));
  }
  return j["revision"].get<int64_t>();
}

// A value from the server, made into a cache entry as Store makes one from the table's text.
std::optional<internal::ParsedValue> to_entry(std::string_view key, const json& value) {
  return internal::parse_value(key, internal::jsonb_text(value));
}

// Rows of a {key: value} object, all at the snapshot's revision: the answer says the whole
// object is complete to it, not when each key last changed.
std::vector<internal::Row> rows_of(const json& settings, int64_t revision, std::string_view prefix,
                                   const std::string& what) {
  if (!settings.is_object()) {
    throw Error(ErrorCode::kInternal, fmt::format("{}: the settings are not a JSON object", what));
  }
  std::vector<internal::Row> rows;
  rows.reserve(settings.size());
  for (const auto& [key, value] : settings.items()) {
    if (!std::string_view(key).starts_with(prefix)) continue;
    if (auto entry = to_entry(key, value))
      rows.push_back(internal::Row{std::move(*entry), revision});
  }
  return rows;
}

}  // namespace

class RemoteStore::Impl {
 public:
  Impl(std::vector<http::Url> urls, RemoteOptions options)
      : options_(std::move(options)),
        logger_(options_.logger ? options_.logger : spdlog::default_logger()),
        urls_(std::move(urls)),
        base_(options_.store.empty() ? "" : "/stores/" + http::percent_encode(options_.store)),
        dispatcher_(logger_, counters_),
        cache_(dispatcher_) {
    http::ClientOptions request_options;
    request_options.token = options_.token;
    request_options.ca_file = options_.ca_file;
    request_options.connect_timeout = options_.connect_timeout;
    request_options.request_timeout = options_.request_timeout;
    http::ClientOptions load_options = request_options;
    load_options.request_timeout = options_.load_timeout;
    for (const http::Url& url : urls_) {
      requesters_.push_back(std::make_unique<http::HttpClient>(url, request_options));
      loaders_.push_back(std::make_unique<http::HttpClient>(url, load_options));
    }
    open_from_a_server_or_file();
    if (!options_.snapshot_file.empty()) {
      writer_ = internal::start_snapshot_writer(cache_, counters_, options_.snapshot_file,
                                                options_.snapshot_interval, source(), logger_,
                                                [this] { return saved_resume_id(); });
    }
    follower_ = std::thread([this] { follow(); });
  }

  ~Impl() { shutdown(); }

  // --- Writes -------------------------------------------------------------------------------

  // The headers a write carries: its condition, comment and actor.
  static http::Headers write_headers(const WriteOptions& options, std::optional<int64_t> expected) {
    http::Headers h;
    if (expected) {
      if (*expected == 0) {
        h.emplace_back("If-None-Match", "*");
      } else {
        h.emplace_back("If-Match", "\"" + std::to_string(*expected) + "\"");
      }
    }
    if (!options.comment.empty()) {
      h.emplace_back("X-Syncconfig-Comment", http::percent_encode(options.comment));
    }
    if (!options.actor.empty()) h.emplace_back("X-Syncconfig-Actor", options.actor);
    return h;
  }

  static CasResult conflict_of(const http::Response& r, const std::string& what) {
    json body = parse_json(r.body, what);
    CasResult out;
    out.revision = body.value("revision", int64_t{0});
    if (auto v = body.find("value"); v != body.end() && out.revision != 0) out.value = *v;
    return out;
  }

  // PUT, conditional when `expected` is set. std::nullopt: the condition failed (in *conflict).
  std::optional<WriteResult> put_impl(std::string_view key, const json& value,
                                      const WriteOptions& options, std::optional<int64_t> expected,
                                      CasResult* conflict) {
    check_writable(key);
    PendingWrite pending(*this, key);
    std::string text = internal::serialize_value(key, value, options_.max_value_bytes);
    const std::string what = fmt::format("set({})", quote_for_message(key));
    std::string target = base_ + "/settings/" + http::percent_encode(key);
    if (options.lease != 0) target += "?lease=" + std::to_string(options.lease);
    http::Response r =
        send("PUT", target, text, what, std::nullopt, nullptr, write_headers(options, expected));
    if (r.status == 412 && conflict != nullptr) {
      *conflict = conflict_of(r, what);
      return std::nullopt;
    }
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    json body = parse_json(r.body, what);
    WriteResult out;
    out.revision = revision_of(body, what);
    out.value = body.value("value", json(nullptr));
    if (auto entry = to_entry(key, *out.value)) {
      cache_.upsert(std::move(*entry), out.revision, ChangeOrigin::kLocal, AppliedBy::kWriter);
    }
    counters_.writes.fetch_add(1);
    return out;
  }

  WriteResult put(std::string_view key, const json& value, const WriteOptions& options) {
    return *put_impl(key, value, options, std::nullopt, nullptr);
  }

  CasResult set_if(std::string_view key, const json& value, int64_t expected,
                   const WriteOptions& options) {
    if (expected < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("set_if({}): invalid expected revision {}", quote_for_message(key),
                              expected));
    }
    CasResult conflict;
    std::optional<WriteResult> w = put_impl(key, value, options, expected, &conflict);
    if (!w) return conflict;
    return CasResult{true, w->revision, w->value};
  }

  std::optional<WriteResult> erase_impl(std::string_view key, const WriteOptions& options,
                                        std::optional<int64_t> expected, CasResult* conflict) {
    check_writable(key);
    PendingWrite pending(*this, key);
    const std::string what = fmt::format("remove({})", quote_for_message(key));
    http::Response r = send("DELETE", base_ + "/settings/" + http::percent_encode(key), {}, what,
                            std::nullopt, nullptr, write_headers(options, expected));
    if (r.status == 412 && conflict != nullptr) {
      *conflict = conflict_of(r, what);
      return std::nullopt;
    }
    if (r.status == 404) return WriteResult{};
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    WriteResult out;
    out.revision = revision_of(parse_json(r.body, what), what);
    cache_.remove(key, out.revision, ChangeOrigin::kLocal, AppliedBy::kWriter);
    counters_.deletes.fetch_add(1);
    return out;
  }

  WriteResult erase(std::string_view key, const WriteOptions& options) {
    return *erase_impl(key, options, std::nullopt, nullptr);
  }

  CasResult remove_if(std::string_view key, int64_t expected, const WriteOptions& options) {
    if (expected <= 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("remove_if({}): invalid expected revision {}", quote_for_message(key),
                              expected));
    }
    CasResult conflict;
    std::optional<WriteResult> w = erase_impl(key, options, expected, &conflict);
    if (!w) return conflict;
    return CasResult{true, w->revision, std::nullopt};
  }

  // POST /txn and /rollback: 200 committed, 409 a failed guard; applied here as one unit from
  // the request itself when committed (its events follow, changing nothing).
  TxnResult post_txn(const std::string& route, const json& body, const std::string& what,
                     const http::Headers& headers = {}) {
    check_not_stale();
    http::Response r =
        send("POST", base_ + route, body.dump(), what, std::nullopt, nullptr, headers);
    if (r.status != 200 && r.status != 409) {
      throw Error(code_for_status(r.status), what + ": " + server_error(r));
    }
    TxnResult result = http_json::txn_result_from_json(parse_json(r.body, what));
    if (result.committed && result.revision > 0) await_revision(result.revision);
    return result;
  }

  // Read-your-writes for a transaction: its answer carries only its revision, so wait (at most
  // request_timeout) until the stream has brought this store to it; the transaction's events
  // are then applied here, as one unit. Returns early if the store is shut down.
  void await_revision(int64_t revision) {
    const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
    auto pause = std::chrono::microseconds(200);
    while (cache_.watermark() < revision && !closed_.load() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(5000));
    }
  }

  TxnResult commit(const Transaction& txn) {
    if (txn.operations.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "commit: a transaction needs at least one operation");
    }
    for (const Operation& op : txn.operations) {
      // Validated here as a Store does (the server would say the same with a 400).
      check_writable(op.key);
      if (op.value) internal::serialize_value(op.key, *op.value, options_.max_value_bytes);
    }
    json body = http_json::to_json(txn);
    TxnResult r = post_txn("/txn", body, "commit");
    if (r.committed) counters_.writes.fetch_add(1);
    return r;
  }

  TxnResult rollback(std::string_view target, bool prefix, int64_t revision,
                     const WriteOptions& options) {
    json body = {{prefix ? "prefix" : "key", std::string(target)}, {"to", revision}};
    if (!options.comment.empty()) body["comment"] = options.comment;
    http::Headers headers;
    if (!options.actor.empty()) headers.emplace_back("X-Syncconfig-Actor", options.actor);
    return post_txn("/rollback", body, fmt::format("rollback to {}", revision), headers);
  }

  // A GET of the source; 404 gives std::nullopt.
  std::optional<json> get_json(const std::string& target, const std::string& what) {
    check_open();
    http::Response r = send("GET", base_ + target, {}, what);
    if (r.status == 404) return std::nullopt;
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    return parse_json(r.body, what);
  }

  std::optional<KeyEntry> get_entry(std::string_view key) {
    internal::validate_key(key);
    auto body = get_json("/entries/" + http::percent_encode(key),
                         fmt::format("get_entry({})", quote_for_message(key)));
    if (!body) return std::nullopt;
    return http_json::key_entry_from_json(*body);
  }

  std::vector<HistoryRecord> history(const Config::HistoryQuery& q) {
    std::string target = q.prefix ? "/history?prefix=" + http::percent_encode(q.key) + "&"
                                  : "/history/" + http::percent_encode(q.key) + "?";
    target += fmt::format("limit={}", q.limit);
    if (q.before > 0) target += fmt::format("&before={}", q.before);
    auto body = get_json(target, fmt::format("history({})", quote_for_message(q.key)));
    std::vector<HistoryRecord> out;
    if (!body) return out;
    for (const json& h : body->value("history", json::array())) {
      out.push_back(http_json::history_record_from_json(h));
    }
    return out;
  }

  Snapshot snapshot_at(int64_t revision, std::string_view prefix) {
    std::string target = fmt::format("/settings?at={}", revision);
    if (!prefix.empty()) target += "&prefix=" + http::percent_encode(prefix);
    const std::string what = fmt::format("snapshot_at({})", revision);
    auto body = get_json(target, what);
    if (!body || !body->is_object()) throw Error(ErrorCode::kInternal, what + ": no settings");
    Snapshot out;
    out.revision = revision;
    for (auto& [k, v] : body->items()) out.values.emplace(k, v);
    return out;
  }

  Lease grant_lease(std::chrono::seconds ttl) {
    check_not_stale();
    const std::string what = "grant_lease";
    http::Response r = send("POST", base_ + "/leases", json{{"ttl", ttl.count()}}.dump(), what);
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    return http_json::lease_from_json(parse_json(r.body, what));
  }

  std::optional<Lease> keep_alive(int64_t lease) {
    check_not_stale();
    const std::string what = fmt::format("keep_alive({})", lease);
    http::Response r = send("POST", base_ + fmt::format("/leases/{}/keepalive", lease), {}, what);
    if (r.status == 404) return std::nullopt;
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    return http_json::lease_from_json(parse_json(r.body, what));
  }

  bool revoke_lease(int64_t lease) {
    check_not_stale();
    const std::string what = fmt::format("revoke_lease({})", lease);
    http::Response r = send("DELETE", base_ + fmt::format("/leases/{}", lease), {}, what);
    if (r.status == 404) return false;
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    return true;
  }

  // --- Reads from the source ----------------------------------------------------------------

  void sync() {
    check_open();
    std::string what = "sync()";
    std::size_t changed =
        load(take_snapshot(current_index(), what), internal::ReplaceMode::kResync);
    counters_.resyncs.fetch_add(1);
    logger_->debug("syncconfig: remote sync() changed {} keys", changed);
  }

  ChangesSince changes_since(int64_t revision, std::string_view prefix) {
    check_open();
    if (revision < 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("changes_since({}): a revision is not negative", revision));
    }
    // This store holds only options_.prefix: ask for the narrower of the two.
    std::string_view mine = options_.prefix;
    std::string_view narrow;
    if (prefix.starts_with(mine)) {
      narrow = prefix;
    } else if (mine.starts_with(prefix)) {
      narrow = mine;
    } else {
      return ChangesSince{true, {}, cache_.watermark(), {}};
    }
    return fetch_changes(current_index(), std::to_string(revision), narrow);
  }

  // --- Lifecycle ----------------------------------------------------------------------------

  void shutdown() {
    std::lock_guard lock(shutdown_mu_);
    if (closed_.exchange(true)) return;
    {
      internal::MutexLock l(mu_);
      stopping_ = true;
      if (watcher_) watcher_->stop();
    }
    cv_.notify_all();
    {
      internal::MutexLock l(pending_mu_);  // closed_ is set: a waiting follower must see it.
    }
    pending_cv_.notify_all();
    for (auto& r : requesters_) r->stop();
    for (auto& r : loaders_) r->stop();
    if (follower_.joinable()) follower_.join();
    counters_.connected.store(false);
    if (writer_) writer_->stop();  // Writes the final state.
    dispatcher_.stop();
  }

  Stats stats() const { return internal::read_stats(cache_, counters_); }

  std::string current_server() const {
    if (!counters_.connected.load()) return {};
    return urls_[current_index()].to_string();
  }

  // What a snapshot file of this store is a snapshot of: files of another store or prefix are
  // refused.
  std::string source() const {
    return fmt::format("remote store '{}' prefix {}", options_.store,
                       quote_for_message(options_.prefix));
  }

  // Declaration order is construction order: the dispatcher outlives the cache that feeds it.
  const RemoteOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  const std::vector<http::Url> urls_;
  const std::string base_;  // "" or "/stores/{name}".
  internal::Counters counters_;
  internal::Dispatcher dispatcher_;
  internal::Cache cache_;

 private:
  void check_open() const {
    if (closed_.load()) throw Error(ErrorCode::kShutdown, "the store is shut down");
  }

  void check_writable(std::string_view key) const {
    check_open();
    internal::validate_key(key);
    if (!key.starts_with(options_.prefix)) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("key {} is outside this store's prefix {}", quote_for_message(key),
                              quote_for_message(options_.prefix)));
    }
    check_not_stale();
  }

  // Writes that name no single key (transactions, leases).
  void check_not_stale() const {
    check_open();
    if (counters_.stale.load()) {
      throw Error(ErrorCode::kUnavailable,
                  "the store is stale (opened from its snapshot file; no server has answered "
                  "since)");
    }
  }

  std::size_t current_index() const { return index_.load(); }

  // A write of this store in flight, by key. Its event can reach the follower before its answer
  // reaches the writing thread; the follower then waits (briefly) for the answer, so that the
  // write is applied, and reported to subscribers, as kLocal like a Store's own write, and the
  // event after it is ignored as not newer.
  class PendingWrite {
   public:
    PendingWrite(Impl& impl, std::string_view key) : impl_(impl), key_(key) {
      internal::MutexLock lock(impl_.pending_mu_);
      ++impl_.pending_[key_];
    }
    ~PendingWrite() {
      {
        internal::MutexLock lock(impl_.pending_mu_);
        if (--impl_.pending_[key_] == 0) impl_.pending_.erase(key_);
      }
      impl_.pending_cv_.notify_all();
    }
    PendingWrite(const PendingWrite&) = delete;
    PendingWrite& operator=(const PendingWrite&) = delete;

   private:
    Impl& impl_;
    std::string key_;
  };

  // Waits until no write of `key` by this store is in flight, for at most kPendingWriteWait.
  void wait_for_own_write(const std::string& key) {
    internal::MutexLock lock(pending_mu_);
    const auto until = std::chrono::steady_clock::now() + kPendingWriteWait;
    while (!closed_.load() && pending_.contains(key) && pending_cv_.wait_until(lock, until)) {
    }
  }

  bool stopping() {
    internal::MutexLock lock(mu_);
    return stopping_;
  }

  // Waits `d` unless shutdown() comes first; returns false then.
  bool pause(std::chrono::milliseconds d) {
    internal::MutexLock lock(mu_);
    const auto until = std::chrono::steady_clock::now() + d;
    while (!stopping_ && cv_.wait_until(lock, until)) {
    }
    return !stopping_;
  }

  // Sends a request to the server followed now; when it cannot be reached (or answers 503),
  // to each other server in turn. A write re-sent this way is harmless: PUT is idempotent, and a
  // DELETE re-sent reports what it then finds, as Store's re-run remove() does.
  // `answered` (if given) is set to the index of the server that answered.
  // `answer_by`: see HttpClient::request (open() bounds each server's answer by its budget).
  http::Response send(std::string_view method, const std::string& target, std::string_view body,
                      const std::string& what, std::optional<std::size_t> start = std::nullopt,
                      std::size_t* answered = nullptr, const http::Headers& headers = {},
                      std::optional<steady_clock::time_point> answer_by = std::nullopt) {
    const std::size_t first = start.value_or(current_index());
    std::optional<Error> last;
    for (std::size_t i = 0; i < urls_.size(); ++i) {
      const std::size_t idx = (first + i) % urls_.size();
      try {
        // Reads (snapshots, changes_since) are bounded by load_timeout, writes by
        // request_timeout.
        auto& client = method == "GET" ? loaders_[idx] : requesters_[idx];
        http::Response r = client->request(method, target, body, headers, answer_by);
        if (r.status == 503 && i + 1 < urls_.size()) {
          last =
              Error(ErrorCode::kUnavailable, fmt::format("{}: {} answered 503: {}", what,
                                                         urls_[idx].to_string(), server_error(r)));
          continue;
        }
        if (answered != nullptr) *answered = idx;
        return r;
      } catch (const Error& e) {
        if (e.code() == ErrorCode::kShutdown) {
          throw Error(ErrorCode::kShutdown, what + ": the store is shut down");
        }
        if (e.code() != ErrorCode::kUnavailable) throw Error(e.code(), what + ": " + e.message());
        last = Error(e.code(), what + ": " + e.message());
      }
    }
    throw *last;
  }

  // GET /settings from server `first` (then the others). Returns the rows and their revision;
  // `answered` (if given) is set to the server that answered.
  struct ServerSnapshot {
    std::vector<internal::Row> rows;
    int64_t revision = 0;
    int64_t newest = 0;  // X-Syncconfig-Newest-Revision (see Cache::note_applied).
    // X-Syncconfig-Resume-Id: the server's event id at (or below) `revision`, whose anchor lets
    // a resume from it be checked (docs/protocol.md, "Resume tokens"). Empty: none.
    std::string resume_id;
  };
  ServerSnapshot take_snapshot(std::size_t first, const std::string& what,
                               std::size_t* answered = nullptr,
                               std::optional<steady_clock::time_point> answer_by = std::nullopt) {
    std::string target = base_ + "/settings";
    if (!options_.prefix.empty()) target += "?prefix=" + http::percent_encode(options_.prefix);
    http::Response r = send("GET", target, {}, what, first, answered, {}, answer_by);
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    auto header_value = [&](const char* name) -> int64_t {
      std::optional<std::string> header = r.header(name);
      if (!header) return -1;
      try {
        return std::stoll(*header);
      } catch (const std::exception&) {
        return -1;
      }
    };
    ServerSnapshot out;
    out.revision = header_value("X-Syncconfig-Revision");
    if (out.revision < 0) {
      throw Error(ErrorCode::kInternal,
                  what + ": the answer has no X-Syncconfig-Revision: not a syncconfig server");
    }
    out.newest = std::max(out.revision, header_value("X-Syncconfig-Newest-Revision"));
    out.resume_id = resume_id_of(r, out.revision);
    out.rows = rows_of(parse_json(r.body, what), out.revision, options_.prefix, what);
    return out;
  }

  // Makes the cache equal to `snap` (see ReplaceMode); returns how many keys changed.
  std::size_t load(ServerSnapshot snap, internal::ReplaceMode mode) {
    const int64_t revision = snap.revision;
    std::size_t changed = cache_.replace_all(std::move(snap.rows), revision, mode);
    cache_.note_applied(snap.newest);
    set_resume(revision, std::move(snap.resume_id), mode == internal::ReplaceMode::kReset);
    return changed;
  }

  // `since`: a revision, or an event id whose anchor the server checks first (then
  // `history_reset`, if given, says whether it found another history).
  // `resume_id`, when given, receives the answer's X-Syncconfig-Resume-Id (a checked point at or
  // below its revision; empty: none).
  ChangesSince fetch_changes(std::size_t first, const std::string& since, std::string_view prefix,
                             bool* history_reset = nullptr, std::string* resume_id = nullptr) {
    const std::string what = fmt::format("changes_since({})", since);
    std::string target = fmt::format("{}/changes?since={}", base_, since);
    if (!prefix.empty()) target += "&prefix=" + http::percent_encode(prefix);
    http::Response r = send("GET", target, {}, what, first);
    if (r.status != 200) throw Error(code_for_status(r.status), what + ": " + server_error(r));
    json body = parse_json(r.body, what);
    ChangesSince out;
    try {
      out.complete = body.at("complete").get<bool>();
      out.reason = body.value("reason", std::string());
      out.revision = body.at("revision").get<int64_t>();
      if (history_reset != nullptr) *history_reset = body.value("history_reset", false);
      if (resume_id != nullptr) *resume_id = out.complete ? resume_id_of(r, out.revision) : "";
      for (const json& c : body.at("changes")) {
        Change ch;
        ch.key = c.at("key").get<std::string>();
        ch.revision = c.at("revision").get<int64_t>();
        ch.origin = ChangeOrigin::kResync;
        if (!c.value("deleted", false)) ch.value = c.at("value");
        out.changes.push_back(std::move(ch));
      }
    } catch (const json::exception& e) {
      throw Error(ErrorCode::kInternal, fmt::format("{}: malformed answer: {}", what, e.what()));
    }
    return out;
  }

  // open(): a snapshot from any server, trying them in turn until open_timeout; else the
  // snapshot file; else the last error.
  void open_from_a_server_or_file() {
    const auto deadline = steady_clock::now() + options_.open_timeout;
    Backoff backoff(kFirstRetryDelay, options_.retry_interval);
    std::optional<Error> last;
    while (steady_clock::now() < deadline) {
      try {
        std::size_t answered = 0;
        // A server must begin its answer within open_timeout (one that accepts and never
        // answers must not hold open() for load_timeout); the snapshot's body may take
        // load_timeout.
        ServerSnapshot snap = take_snapshot(0, "RemoteStore::open", &answered, deadline);
        const int64_t revision = snap.revision;
        index_.store(answered);
        load(std::move(snap), internal::ReplaceMode::kInitial);
        logger_->info("syncconfig: remote store opened from {} ({} keys, revision {})",
                      urls_[answered].to_string(), cache_.size(), revision);
        return;
      } catch (const Error& e) {
        if (!e.retryable()) throw;  // 401, a bad prefix, not a syncconfig server.
        last = e;
      }
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
          backoff.next(),
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now())));
    }
    if (!last) last = Error(ErrorCode::kUnavailable, "no server answered");
    if (!options_.snapshot_file.empty() && open_from_file(*last)) return;
    throw Error(ErrorCode::kUnavailable,
                fmt::format("RemoteStore::open: no server answered within {} ms (last: {})",
                            options_.open_timeout.count(), last->message()));
  }

  bool open_from_file(const Error& why) {
    int64_t revision = 0;
    std::string resume_id;
    try {
      revision = internal::open_stale_from_file(cache_, counters_, options_.snapshot_file, source(),
                                                &resume_id);
    } catch (const Error& e) {
      logger_->error("syncconfig: no server answered and the snapshot file is refused: {}",
                     e.message());
      return false;
    }
    logger_->warn(
        "syncconfig: no server answered ({}); serving the snapshot file {} (revision {}, {} "
        "keys), stale: writes are refused until a server answers",
        why.message(), options_.snapshot_file, revision, cache_.size());
    // The catch-up resumes from it, so that the first server checks the file is of its history.
    const std::optional<int64_t> at = revision_of_id(resume_id);
    set_resume(revision, at && *at <= revision ? std::move(resume_id) : std::string(), true);
    return true;
  }

  // The follower thread: keeps one event stream open, moving through the URLs.
  void follow() {
    std::size_t failed_in_a_row = 0;
    Backoff backoff(kFirstRetryDelay, options_.retry_interval);
    uint64_t logged = 0;
    while (!stopping()) {
      const std::size_t idx = current_index();
      bool delivered = false;
      try {
        if (counters_.stale.load()) catch_up_from_stale(idx);
        delivered = stream_from(idx);
      } catch (const Error& e) {
        if (!stopping() && logged++ % 10 == 0) {
          logger_->warn("syncconfig: remote store: {} failed: {}; moving on",
                        urls_[idx].to_string(), e.message());
        }
      }
      counters_.connected.store(false);
      if (stopping()) break;
      failed_in_a_row = delivered ? 0 : failed_in_a_row + 1;
      if (delivered) backoff.reset();
      index_.store((idx + 1) % urls_.size());
      if (failed_in_a_row >= urls_.size()) {
        failed_in_a_row = 0;
        if (!pause(backoff.next())) break;
      }
    }
  }

  // The stale store's first server: what changed since the file's revision (or a snapshot),
  // applied before the store says it is current.
  void catch_up_from_stale(std::size_t idx) {
    index_.store(idx);
    const int64_t since = cache_.watermark();
    bool history_reset = false;
    std::string resume_id;
    ChangesSince c =
        fetch_changes(idx, resume_id_for(since), options_.prefix, &history_reset, &resume_id);
    std::size_t changed = 0;
    if (c.complete) {
      // One snapshot of the table: applied as one unit.
      std::vector<internal::CacheChange> unit;
      for (Change& ch : c.changes) {
        internal::CacheChange cc;
        cc.revision = ch.revision;
        if (ch.value) {
          auto e = to_entry(ch.key, *ch.value);
          if (!e) continue;
          cc.value = std::move(*e);
        } else {
          cc.kind = internal::CacheChange::Kind::kRemove;
          cc.key = ch.key;
        }
        unit.push_back(std::move(cc));
      }
      changed = cache_.apply(std::move(unit), ChangeOrigin::kResync, AppliedBy::kFeed);
      cache_.advance_watermark(c.revision);
      // The stream resumes from the server's checked id, not from a bare number: a failover
      // between this answer and the stream is then still detected.
      set_resume(c.revision, std::move(resume_id), /*force=*/false);
      counters_.catch_ups.fetch_add(1);
    } else {
      ServerSnapshot snap = take_snapshot(idx, "catching up");
      // Another history (the file's last change is not this server's), or a table that is
      // behind the file: trust only the server.
      const bool backwards = history_reset || snap.revision < since;
      changed = load(std::move(snap),
                     backwards ? internal::ReplaceMode::kReset : internal::ReplaceMode::kResync);
      counters_.resyncs.fetch_add(1);
      if (backwards) counters_.history_resets.fetch_add(1);
    }
    counters_.stale.store(false);
    logger_->info("syncconfig: remote store caught up from {} ({} keys changed); no longer stale",
                  urls_[idx].to_string(), changed);
  }

  // Follows server `idx` from the cache's watermark until the stream ends. Returns whether the
  // server accepted the stream.
  bool stream_from(std::size_t idx) {
    http::ClientOptions o;
    o.token = options_.token;
    o.ca_file = options_.ca_file;
    o.connect_timeout = options_.connect_timeout;
    o.request_timeout = options_.request_timeout;
    o.watch_idle_timeout = options_.idle_timeout;
    auto client = std::make_shared<http::HttpClient>(urls_[idx], o);
    {
      internal::MutexLock lock(mu_);
      if (stopping_) return false;
      watcher_ = client;
    }
    std::string target = base_ + "/watch";
    if (!options_.prefix.empty()) target += "?prefix=" + http::percent_encode(options_.prefix);
    // The id of the event that brought the cache to its watermark carries an anchor (a
    // fingerprint of the last change the server had released): the server checks it, so a
    // history that diverged (a failover) resets this store even once it has passed this number.
    const int64_t watermark = cache_.watermark();
    const http::Headers headers = {{"Last-Event-ID", resume_id_for(watermark)}};
    unit_.clear();
    unit_events_ = 0;
    bool ready = false;
    http::WatchResult r;
    try {
      r = client->watch(target, headers, [&](const http::SseEvent& e) {
        on_event(e, idx, ready);
        return true;
      });
    } catch (...) {
      internal::MutexLock lock(mu_);
      watcher_.reset();
      if (!ready) throw;
      // A broken stream after it delivered: move on without a warning per break.
      return true;
    }
    {
      internal::MutexLock lock(mu_);
      watcher_.reset();
    }
    if (r.end == http::WatchResult::End::kRefused) {
      throw Error(
          code_for_status(r.response.status),
          fmt::format("/watch refused ({}): {}", r.response.status, server_error(r.response)));
    }
    return ready;
  }

  void on_event(const http::SseEvent& e, std::size_t idx, bool& ready) {
    if (e.type != "ready" && e.type != "change" && e.type != "progress" && e.type != "reset") {
      return;  // A later server's event kinds are not ours to interpret.
    }
    const std::string what = "event from " + urls_[idx].to_string();
    json data = parse_json(e.data, what);
    const int64_t revision = revision_of(data, what);
    if (!ready) {
      ready = true;
      counters_.connected.store(true);
      if (ever_connected_.exchange(true)) counters_.reconnects.fetch_add(1);
      logger_->debug("syncconfig: remote store following {} from revision {}",
                     urls_[idx].to_string(), cache_.watermark());
    }
    if (e.type == "change") {
      std::string key;
      try {
        key = data.at("key").get<std::string>();
      } catch (const json::exception&) {
        throw Error(ErrorCode::kInternal, what + ": a change without a key");
      }
      // A transaction's events come consecutively, all but its last with "more": collected,
      // then applied as one unit (no reader sees half of it), as a Store applies notifications.
      if (std::string_view(key).starts_with(options_.prefix)) {
        wait_for_own_write(key);
        internal::CacheChange c;
        c.revision = revision;
        if (data.value("deleted", false)) {
          c.kind = internal::CacheChange::Kind::kRemove;
          c.key = key;
          c.expired = data.value("expired", false);
          unit_.push_back(std::move(c));
        } else if (auto entry = to_entry(key, data.value("value", json(nullptr)))) {
          c.value = std::move(*entry);
          unit_.push_back(std::move(c));
        }
      }
      ++unit_events_;
      if (data.value("more", false)) return;
      apply_unit();
      // The stream is in revision order: everything up to this event has come.
      cache_.advance_watermark(revision);
      note_resume_point(e, revision);
    } else if (e.type == "reset") {
      // The server could not resume exactly: its settings replace ours (and any unit begun).
      unit_.clear();
      unit_events_ = 0;
      const int64_t before = cache_.watermark();
      auto rows = rows_of(data.value("settings", json::object()), revision, options_.prefix, what);
      // A history reset: revisions held from before name nothing now, so nothing newer than the
      // server's settings may be kept.
      const bool history_reset = revision < before || data.value("history_reset", false);
      std::size_t changed = cache_.replace_all(
          std::move(rows), revision,
          history_reset ? internal::ReplaceMode::kReset : internal::ReplaceMode::kResync);
      // The settings can hold changes after `revision` (their events follow, changing nothing
      // here): see Cache::note_applied.
      if (data.contains("newest") && data["newest"].is_number_integer()) {
        cache_.note_applied(data["newest"].get<int64_t>());
      }
      note_resume_point(e, revision);
      counters_.resyncs.fetch_add(1);
      if (history_reset) counters_.history_resets.fetch_add(1);
      logger_->info("syncconfig: remote store reset by {} at revision {} ({}); {} keys changed",
                    urls_[idx].to_string(), revision, data.value("reason", std::string()), changed);
    } else {
      // ready, progress. A stream with a prefix may have filtered out a unit's last event: the
      // position moving on ends the unit.
      apply_unit();
      cache_.advance_watermark(revision);
      note_resume_point(e, revision);
    }
  }

  // Remembers the id of the event that brought the cache to `revision`, to resume with.
  void note_resume_point(const http::SseEvent& e, int64_t revision) {
    if (cache_.watermark() != revision) return;
    // An id of this service: the revision, then optionally ".anchor" (never anything else).
    const std::string number = std::to_string(revision);
    const bool ours =
        e.id.starts_with(number) && (e.id.size() == number.size() || e.id[number.size()] == '.');
    set_resume(revision, ours ? e.id : number, /*force=*/true);
  }

  // An answer's X-Syncconfig-Resume-Id when it names a point at or below `revision`; else empty.
  static std::string resume_id_of(const http::Response& r, int64_t revision) {
    std::optional<std::string> id = r.header("X-Syncconfig-Resume-Id");
    if (!id) return {};
    const std::optional<int64_t> at = revision_of_id(*id);
    return at && *at <= revision ? std::move(*id) : std::string();
  }

  // The revision an event id of this service names (its number before any '.').
  static std::optional<int64_t> revision_of_id(std::string_view id) {
    const std::string_view number = id.substr(0, id.find('.'));
    int64_t v = 0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
    if (number.empty() || ec != std::errc() || end != number.data() + number.size() || v < 0) {
      return std::nullopt;
    }
    return v;
  }

  // Records `id` (empty: none) as the point to resume from while the watermark is `watermark`.
  // A load that is not `force`d does not replace a point recorded for a higher watermark (sync()
  // runs beside the follower).
  void set_resume(int64_t watermark, std::string id, bool force) {
    internal::MutexLock lock(resume_mu_);
    if (!force && watermark < resume_watermark_) return;
    resume_watermark_ = watermark;
    resume_id_ = std::move(id);
  }
  // What to resume from at `watermark`: the recorded id when it was recorded there (its anchor
  // is then checked by the server), else the bare revision.
  std::string resume_id_for(int64_t watermark) const {
    internal::MutexLock lock(resume_mu_);
    if (resume_watermark_ == watermark && !resume_id_.empty()) return resume_id_;
    return std::to_string(watermark);
  }
  // For the snapshot file (writer thread). set_resume runs after the cache moved to its
  // watermark, so the id names no revision above the cache exported next, but for a reset that
  // lowered it: open_from_file drops an id above the file's revision.
  std::string saved_resume_id() const {
    internal::MutexLock lock(resume_mu_);
    return resume_id_;
  }

  void apply_unit() {
    if (unit_events_ == 0) return;
    const std::size_t events = std::exchange(unit_events_, 0);
    const std::size_t applied =
        cache_.apply(std::exchange(unit_, {}), ChangeOrigin::kRemote, AppliedBy::kFeed);
    counters_.notifications_applied.fetch_add(applied);
    counters_.notifications_ignored.fetch_add(events - std::min(events, applied));
  }

  // The transaction being received on the stream (follower thread only); dropped when the
  // stream breaks (resuming from the watermark sends it again).
  std::vector<internal::CacheChange> unit_;
  std::size_t unit_events_ = 0;
  // The point to resume from and the watermark it was recorded at (set_resume).
  mutable internal::Mutex resume_mu_;
  int64_t resume_watermark_ SC_GUARDED_BY(resume_mu_) = -1;
  std::string resume_id_ SC_GUARDED_BY(resume_mu_);

  static constexpr std::chrono::milliseconds kPendingWriteWait{1000};
  internal::Mutex pending_mu_;
  internal::CondVar pending_cv_;
  // Writes in flight per key (PendingWrite).
  std::unordered_map<std::string, int> pending_ SC_GUARDED_BY(pending_mu_);

  std::vector<std::unique_ptr<http::HttpClient>> requesters_;  // One per URL, for writes.
  std::vector<std::unique_ptr<http::HttpClient>> loaders_;     // One per URL, for snapshots.
  std::atomic<std::size_t> index_{0};                          // The server followed now.
  std::atomic<bool> ever_connected_{false};
  std::unique_ptr<internal::SnapshotWriter> writer_;

  mutable internal::Mutex mu_;
  internal::CondVar cv_;
  bool stopping_ SC_GUARDED_BY(mu_) = false;
  // The open stream's client, to stop it.
  std::shared_ptr<http::HttpClient> watcher_ SC_GUARDED_BY(mu_);

  std::mutex shutdown_mu_;
  std::atomic<bool> closed_{false};
  std::thread follower_;
};

// --- RemoteStore ------------------------------------------------------------------------------

std::unique_ptr<RemoteStore> RemoteStore::open(std::vector<std::string> urls,
                                               RemoteOptions options) {
  if (urls.empty()) throw Error(ErrorCode::kInvalidArgument, "RemoteStore::open: no server URL");
  std::vector<http::Url> parsed;
  for (const std::string& u : urls) parsed.push_back(http::parse_url(u));
  if (!options.prefix.empty()) {
    try {
      internal::validate_key(options.prefix);
    } catch (const Error& e) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid prefix: no key can start with it ({})", e.message()));
    }
  }
  auto positive = [](const char* field, std::chrono::milliseconds d) {
    if (d.count() <= 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("invalid {}: {} ms, it must be positive", field, d.count()));
    }
  };
  positive("connect_timeout", options.connect_timeout);
  positive("request_timeout", options.request_timeout);
  positive("load_timeout", options.load_timeout);
  positive("open_timeout", options.open_timeout);
  positive("retry_interval", options.retry_interval);
  positive("idle_timeout", options.idle_timeout);
  positive("snapshot_interval", options.snapshot_interval);
  if (options.store.find('/') != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("invalid store name {}: it contains '/'",
                                                         quote_for_message(options.store)));
  }
  return std::unique_ptr<RemoteStore>(
      new RemoteStore(std::make_unique<Impl>(std::move(parsed), std::move(options))));
}

RemoteStore::RemoteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteStore::~RemoteStore() { shutdown(); }

WriteResult RemoteStore::put(std::string_view key, const json& value, const WriteOptions& options) {
  return impl_->put(key, value, options);
}
WriteResult RemoteStore::erase(std::string_view key, const WriteOptions& options) {
  return impl_->erase(key, options);
}
std::optional<KeyEntry> RemoteStore::get_entry(std::string_view key) const {
  return impl_->get_entry(key);
}
std::optional<Config::Versioned> RemoteStore::get_versioned(std::string_view key) const {
  // Keys loaded from a snapshot carry the snapshot's revision, not their own: an ETag from a
  // RemoteStore (a relay) may be older than the key's, and a write conditional on it then fails
  // with the key's real revision, which is safe.
  std::optional<Versioned> out;
  impl_->cache_.read(key, [&](const internal::Entry& e) {
    out = Versioned{e.to_json(), e.revision};
  });
  return out;
}
CasResult RemoteStore::set_if(std::string_view key, const json& value, int64_t expected_revision,
                              const WriteOptions& options) {
  return impl_->set_if(key, value, expected_revision, options);
}
CasResult RemoteStore::remove_if(std::string_view key, int64_t expected_revision,
                                 const WriteOptions& options) {
  return impl_->remove_if(key, expected_revision, options);
}
TxnResult RemoteStore::commit(const Transaction& txn) { return impl_->commit(txn); }
std::vector<HistoryRecord> RemoteStore::history(const HistoryQuery& query) const {
  return impl_->history(query);
}
Snapshot RemoteStore::snapshot_at(int64_t revision, std::string_view prefix) const {
  return impl_->snapshot_at(revision, prefix);
}
TxnResult RemoteStore::rollback(std::string_view target, bool prefix, int64_t revision,
                                const WriteOptions& options) {
  return impl_->rollback(target, prefix, revision, options);
}
Lease RemoteStore::grant_lease(std::chrono::seconds ttl) { return impl_->grant_lease(ttl); }
std::optional<Lease> RemoteStore::keep_alive(int64_t lease) { return impl_->keep_alive(lease); }
bool RemoteStore::revoke_lease(int64_t lease) { return impl_->revoke_lease(lease); }

std::optional<json> RemoteStore::get(std::string_view key) const { return impl_->cache_.get(key); }
bool RemoteStore::contains(std::string_view key) const {
  return impl_->cache_.read(key, [](const internal::Entry&) {});
}
std::size_t RemoteStore::size() const { return impl_->cache_.size(); }
std::map<std::string, json> RemoteStore::get_all(std::string_view prefix) const {
  return impl_->cache_.get_all(prefix);
}
Snapshot RemoteStore::snapshot(std::string_view prefix) const {
  return impl_->cache_.snapshot(prefix);
}
std::string RemoteStore::get_string(std::string_view key, std::string default_value) const {
  return internal::read_string(impl_->cache_, key, std::move(default_value));
}
int64_t RemoteStore::get_int(std::string_view key, int64_t default_value) const {
  return internal::read_int(impl_->cache_, key, default_value);
}
double RemoteStore::get_double(std::string_view key, double default_value) const {
  return internal::read_double(impl_->cache_, key, default_value);
}
bool RemoteStore::get_bool(std::string_view key, bool default_value) const {
  return internal::read_bool(impl_->cache_, key, default_value);
}
SubscriptionId RemoteStore::subscribe(Callback callback) {
  return impl_->dispatcher_.subscribe(std::move(callback));
}
SubscriptionId RemoteStore::subscribe(Callback callback, ProgressCallback on_progress) {
  return impl_->dispatcher_.subscribe(std::move(callback), std::move(on_progress));
}
void RemoteStore::unsubscribe(SubscriptionId id) { impl_->dispatcher_.unsubscribe(id); }
uint32_t RemoteStore::get_crc() const { return impl_->cache_.crc(); }
void RemoteStore::sync() { impl_->sync(); }
Stats RemoteStore::stats() const { return impl_->stats(); }
ChangesSince RemoteStore::changes_since(int64_t revision, std::string_view prefix) const {
  return impl_->changes_since(revision, prefix);
}
bool RemoteStore::is_stale() const { return impl_->counters_.stale.load(); }
void RemoteStore::shutdown() { impl_->shutdown(); }
std::string RemoteStore::current_server() const { return impl_->current_server(); }

}  // namespace syncconfig
