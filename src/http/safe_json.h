// The JSON of the safe-changes routes (docs/safe-changes-http.md), shared by the server (which
// writes answers and reads requests) and RemoteStore (which writes requests and reads answers),
// so both sides use one definition of the wire format.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "syncconfig/history.h"
#include "syncconfig/transaction.h"

namespace syncconfig::http_json {

// RFC 3339 in UTC with microseconds ("2026-12-02T14:39:25.338123Z"), and back (std::nullopt if
// it is not that form).
std::string format_time(std::chrono::system_clock::time_point t);
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view s);

// POST /txn bodies. from_json throws Error(kInvalidArgument) naming what is wrong (the guard or
// operation index).
nlohmann::json to_json(const Transaction& txn);
Transaction transaction_from_json(const nlohmann::json& body);

// 200/409 answers of /txn and /rollback.
nlohmann::json to_json(const TxnResult& r);
TxnResult txn_result_from_json(const nlohmann::json& body);

nlohmann::json to_json(const HistoryRecord& h);
HistoryRecord history_record_from_json(const nlohmann::json& j);

nlohmann::json to_json(const Lease& lease);
Lease lease_from_json(const nlohmann::json& j);

nlohmann::json to_json(const std::string& key, const KeyEntry& e);
KeyEntry key_entry_from_json(const nlohmann::json& j);

}  // namespace syncconfig::http_json
