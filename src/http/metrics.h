// Prometheus text exposition (format 0.0.4) of the served stores: Store::stats() counters and
// gauges plus the notification lag histogram, one series per store labelled store="<name>".
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/store_feed.h"

namespace syncconfig::service::detail {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_metrics(const std::vector<std::unique_ptr<StoreFeed>>& feeds);

// A label value escaped for the text format (backslash, double quote, newline).
std::string escape_label_value(std::string_view value);

}  // namespace syncconfig::service::detail
