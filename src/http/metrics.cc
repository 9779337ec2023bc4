#include "http/metrics.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>

namespace syncconfig::service::detail {

namespace {

struct Sample {
  std::string label;  // store="name", escaped.
  Stats stats;
  LagHistogram::Snapshot lag;
  std::size_t streams = 0;
  uint64_t dropped_slow = 0;
  uint64_t resets = 0;
  uint64_t backfills = 0;
};

struct Family {
  const char* name;
  const char* type;
  const char* help;
  std::function<int64_t(const Sample&)> value;  // Every series is integral.
};

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string render_metrics(const std::vector<std::unique_ptr<StoreFeed>>& feeds) {
  std::vector<Sample> samples;
  samples.reserve(feeds.size());
  for (const auto& feed : feeds) {
    Sample s;
    s.label = fmt::format("store=\"{}\"", escape_label_value(feed->name()));
    s.stats = feed->store().stats();
    s.lag = feed->lag().snapshot();
    s.streams = feed->open_streams.load();
    s.dropped_slow = feed->streams_dropped_slow.load();
    s.resets = feed->resets_sent.load();
    s.backfills = feed->backfills.load();
    samples.push_back(std::move(s));
  }

  auto u = [](uint64_t v) { return static_cast<int64_t>(v); };
  const std::vector<Family> families = {
      {"syncconfig_writes_total", "counter", "Successful writes (set) through this instance.",
       [&](const Sample& s) { return u(s.stats.writes); }},
      {"syncconfig_deletes_total", "counter", "Deletes (remove) that deleted a key.",
       [&](const Sample& s) { return u(s.stats.deletes); }},
      {"syncconfig_notifications_applied_total", "counter", "Notifications applied to the cache.",
       [&](const Sample& s) { return u(s.stats.notifications_applied); }},
      {"syncconfig_notifications_ignored_total", "counter",
       "Notifications ignored (duplicates, stale echoes, malformed payloads).",
       [&](const Sample& s) { return u(s.stats.notifications_ignored); }},
      {"syncconfig_resyncs_total", "counter", "Full reloads from the table.",
       [&](const Sample& s) { return u(s.stats.resyncs); }},
      {"syncconfig_catch_ups_total", "counter",
       "Incremental catch-ups by revision (after a reconnect, a heartbeat).",
       [&](const Sample& s) { return u(s.stats.catch_ups); }},
      {"syncconfig_crc_mismatches_total", "counter",
       "Heartbeats that found the cache different from the table.",
       [&](const Sample& s) { return u(s.stats.crc_mismatches); }},
      {"syncconfig_reconnects_total", "counter", "Reconnections of the listener.",
       [&](const Sample& s) { return u(s.stats.reconnects); }},
      {"syncconfig_notifications_forged_total", "counter",
       "Notifications dropped because no commit made them (not in the change log).",
       [&](const Sample& s) { return u(s.stats.notifications_forged); }},
      {"syncconfig_notifications_signed_total", "counter",
       "Notifications applied on their valid signature, without a read of the change log.",
       [&](const Sample& s) { return u(s.stats.notifications_signed); }},
      {"syncconfig_history_resets_total", "counter",
       "Reset reloads: the source's history was not the one followed (a failover that lost "
       "commits, a recreated table).",
       [&](const Sample& s) { return u(s.stats.history_resets); }},
      {"syncconfig_callback_errors_total", "counter", "Change callbacks that threw.",
       [&](const Sample& s) { return u(s.stats.callback_errors); }},
      {"syncconfig_callback_queue_depth", "gauge",
       "Changes waiting for the change callbacks (not bounded: rises while a callback is slow).",
       [&](const Sample& s) { return u(s.stats.callback_queue_depth); }},
      {"syncconfig_callback_queue_peak", "gauge",
       "The most changes that have waited for the change callbacks at once since open.",
       [&](const Sample& s) { return u(s.stats.callback_queue_peak); }},
      {"syncconfig_keys", "gauge", "Keys in the cache.",
       [&](const Sample& s) { return u(s.stats.keys); }},
      {"syncconfig_connected", "gauge", "1 when the listener holds a live connection, else 0.",
       [&](const Sample& s) { return int64_t{s.stats.connected ? 1 : 0}; }},
      {"syncconfig_crc", "gauge", "Checksum of the cache (equal on instances in sync).",
       [&](const Sample& s) { return u(s.stats.crc); }},
      {"syncconfig_revision", "gauge", "Highest revision this instance is complete to.",
       [&](const Sample& s) { return s.stats.revision; }},
      {"syncconfig_stale", "gauge",
       "1 while the store serves its snapshot file (no source answered since start-up), else 0.",
       [&](const Sample& s) { return int64_t{s.stats.stale ? 1 : 0}; }},
      {"syncconfig_snapshot_age_seconds", "gauge",
       "While stale: age of the snapshot file served, in seconds; else 0.",
       [&](const Sample& s) -> int64_t {
         if (!s.stats.stale || !s.stats.stale_as_of) return 0;
         return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                                 *s.stats.stale_as_of)
             .count();
       }},
      {"syncconfig_watch_streams", "gauge", "Open /watch streams.",
       [&](const Sample& s) { return u(s.streams); }},
      {"syncconfig_watch_slow_disconnects_total", "counter",
       "/watch streams closed because the client fell too far behind or stalled a write.",
       [&](const Sample& s) { return u(s.dropped_slow); }},
      {"syncconfig_watch_resets_total", "counter",
       "/watch resets sent (the changes after a client's id could not be given exactly).",
       [&](const Sample& s) { return u(s.resets); }},
      {"syncconfig_watch_backfills_total", "counter",
       "Reads of the table to resume /watch streams older than the in-memory history.",
       [&](const Sample& s) { return u(s.backfills); }},
  };

  std::string out;
  auto it = std::back_inserter(out);
  for (const auto& f : families) {
    fmt::format_to(it, "# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
    for (const auto& s : samples) fmt::format_to(it, "{}{{{}}} {}\n", f.name, s.label, f.value(s));
  }

  const char* lag = "syncconfig_notification_lag_seconds";
  fmt::format_to(it,
                 "# HELP {0} Time from the writing transaction to the change being applied here "
                 "(changes that came through a notification).\n# TYPE {0} histogram\n",
                 lag);
  for (const auto& s : samples) {
    for (std::size_t i = 0; i < LagHistogram::kBounds.size(); ++i) {
      fmt::format_to(it, "{}_bucket{{{},le=\"{}\"}} {}\n", lag, s.label, LagHistogram::kBounds[i],
                     s.lag.cumulative[i]);
    }
    fmt::format_to(it, "{}_bucket{{{},le=\"+Inf\"}} {}\n", lag, s.label, s.lag.count);
    fmt::format_to(it, "{}_sum{{{}}} {}\n", lag, s.label, s.lag.sum);
    fmt::format_to(it, "{}_count{{{}}} {}\n", lag, s.label, s.lag.count);
  }
  return out;
}

}  // namespace syncconfig::service::detail
