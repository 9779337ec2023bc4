// jsonb_text (src/cache/jsonb_text.h) against a real PostgreSQL: the text it rebuilds must be
// byte for byte what the server prints, and where a round trip through nlohmann::json cannot
// give it back, exactly the cases the header names.
#include "cache/jsonb_text.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "test_support.h"

namespace syncconfig::internal {
namespace {

using nlohmann::json;

// Asks the server for `text::jsonb::text`.
class Server {
 public:
  Server() : conn_(PQconnectdb(syncconfig::testing::dsn().c_str())) {
    EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
  }
  ~Server() { PQfinish(conn_); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The server's text of one JSON text; "<error: ...>" if it refuses it.
  std::string jsonb(const std::string& text) {
    std::vector<std::string> out = query("SELECT $1::jsonb::text", text);
    return out.size() == 1 ? out[0] : "<error>";
  }
  // The server's text of each element of a JSON array text, in order.
  std::vector<std::string> elements(const std::string& array_text) {
    return query(
        "SELECT e::text FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(e, i) "
        "ORDER BY i",
        array_text);
  }

 private:
  std::vector<std::string> query(const char* sql, const std::string& param) {
    const char* values[] = {param.c_str()};
    const int lengths[] = {static_cast<int>(param.size())};
    PGresult* r = PQexecParams(conn_, sql, 1, nullptr, values, lengths, nullptr, 0);
    std::vector<std::string> out;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      ADD_FAILURE() << "the server refused " << param.substr(0, 200) << ": "
                    << PQresultErrorMessage(r);
    } else {
      for (int i = 0; i < PQntuples(r); ++i) {
        out.emplace_back(PQgetvalue(r, i, 0), PQgetlength(r, i, 0));
      }
    }
    PQclear(r);
    return out;
  }

  PGconn* conn_;
};

struct Case {
  std::string input;  // Any JSON text the server accepts.
  bool round_trips;   // Whether jsonb_text(parse(server's text)) gives the server's text back.
};

std::vector<Case> cases() {
  const std::string deep = std::string(1000, '[') + "{\"k\": 1.0}" + std::string(1000, ']');
  return {
      // Containers and key order.
      {"{}", true},
      {"[]", true},
      {R"({"a": {}, "b": [], "c": [{}, []]})", true},
      {R"({"ccc": 3, "bb": 2, "a": 1, "ab": 4, "B": 5, "": 0})", true},
      {R"({"outer": {"zz": [1, {"yy": null, "x": true}], "a": false}, "b": {"c": {"d": {}}}})",
       true},
      {R"({"\\": 1, "\"": 2, "\n": 3, "\u0001": 4, " ": 5})", true},
      {R"({"é": 1, "zz": 2, "~~": 3, "\u007f\u007f": 4})", true},
      // Duplicate-looking keys: the same key twice (the last wins in both), the same key
      // spelled with an escape, keys differing only in case or a trailing space.
      {R"({"a": 1, "a": 2})", true},
      {R"({"é": 1, "\u00e9": 2, "e\u0301": 3})", true},
      {R"({"a": 1, "A": 2, "a ": 3, " a": 4})", true},
      {deep, true},
      {R"([1, "a", null, true, false, [], {}, 1.5, -0.25])", true},
      // Strings.
      {R"("")", true},
      {R"("héllo wörld ✓ 日本語 😀")", true},
      {R"("\ud83d\ude00 \u00e9 \u20ac")", true},
      {R"("\b\f\n\r\t\"\\\/")", true},
      {R"("\u0001\u0002\u000b\u001b\u001f\u007f \u0080")", true},
      {R"("</script> & 'quotes'")", true},
      {R"({"k\u0007ey": "v\u001fal"})", true},
      // Literals.
      {"true", true},
      {"false", true},
      {"null", true},
      // Integers.
      {"0", true},
      {"-0", true},
      {"1", true},
      {"-1", true},
      {"9223372036854775807", true},
      {"-9223372036854775808", true},
      {"9223372036854775808", true},  // beyond int64: unsigned
      {"18446744073709551615", true},
      {"18446744073709551616", false},  // beyond uint64: a double
      {"-9223372036854775809", false},
      {"100000000000000000000", true},  // a double whose digits are zeros after "1"
      {"1e20", true},
      {"1E+2", true},
      {"1.0e2", true},
      // Decimals.
      {"0.1", true},
      {"1.0", true},
      {"-1.0", true},
      {"100.0", true},
      {"0.0", true},
      {"-0.0", true},
      {"3.141592653589793", true},
      {"123456789012345.0", true},
      {"1000000000000000.0", false},  // 1e15: dump() prints 1e+15, no ".0"
      {"1.5e-7", true},
      {"1.50e-7", false},
      {"0.00001", true},
      {"2.5e20", true},
      {"1e300", true},
      {"-1e300", true},
      {"1e-300", true},
      {"1.7976931348623157e308", true},
      {"2.2250738585072014e-308", true},
      {"5e-324", true},
      {"2.50", false},
      {"1.00", false},
      {"0.10", false},
      {"0.10000000000000001", false},  // more than 17 significant digits' worth
      {"0.12345678901234567890", false},
      {"0.46628", false},  // dump() prints 0.46627999999999997
      {"5e22", false},     // dump() prints 4.9999999999999996e+22
      {R"({"n": [0.1, 1.0, -0.0, 1e20, 1.5e-7, 9223372036854775807]})", true},
      {R"({"n": [2.50]})", false},
  };
}

TEST(JsonbTextServer, a_round_trip_through_nlohmann_gives_the_servers_text_back_where_promised) {
  Server server;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.input.substr(0, 120));
    const std::string text = server.jsonb(c.input);
    const json parsed = json::parse(text);
    const std::string rebuilt = jsonb_text(parsed);
    if (c.round_trips) {
      EXPECT_EQ(rebuilt, text);
    } else {
      EXPECT_NE(rebuilt, text);
      // Still the same value, and text the server prints unchanged.
      EXPECT_EQ(json::parse(rebuilt), parsed);
      EXPECT_EQ(server.jsonb(rebuilt), rebuilt);
    }
  }
}

// The definition in jsonb_text.h: the server's text of dump().
TEST(JsonbTextServer, equals_the_servers_text_of_nlohmanns_dump_for_every_case) {
  Server server;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.input.substr(0, 120));
    const json parsed = json::parse(c.input);
    EXPECT_EQ(jsonb_text(parsed), server.jsonb(parsed.dump()));
  }
}

TEST(JsonbTextServer, the_special_numbers_print_as_the_server_prints_them) {
  Server server;
  EXPECT_EQ(server.jsonb("-0.0"), "0.0");
  EXPECT_EQ(server.jsonb("-0"), "0");
  EXPECT_EQ(server.jsonb("1e20"), "100000000000000000000");
  EXPECT_EQ(server.jsonb("1.5e-7"), "0.00000015");
  EXPECT_EQ(server.jsonb("2.50"), "2.50");
  EXPECT_EQ(jsonb_text(json::parse(server.jsonb("18446744073709551616"))), "18446744073709552000");
  EXPECT_EQ(jsonb_text(json::parse(server.jsonb("5e22"))), "49999999999999996000000");
}

// Random values of every kind, one query for all of them.
json random_value(std::mt19937_64& rng, int depth) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto random_string = [&] {
    static const std::vector<std::string> kPieces = {
        "a",  "Z",    "0",    " ",    "\"", "\\", "/", "\b", "\f", "\n",  "\r",
        "\t", "\x01", "\x1f", "\x7f", "é",  "€",  "😀", "日", "ab", "key", "\xc2\x80"};
    std::string s;
    for (uint64_t n = pick(6); n > 0; --n) s += kPieces[pick(kPieces.size())];
    return s;
  };
  switch (pick(depth > 3 ? 6 : 8)) {
    case 0:
      return nullptr;
    case 1:
      return pick(2) == 0;
    case 2: {
      const uint64_t bits = rng();
      return pick(2) == 0 ? json(static_cast<int64_t>(bits >> pick(64))) : json(bits);
    }
    case 3: {
      double d;
      const uint64_t bits = rng();
      std::memcpy(&d, &bits, sizeof d);
      if (!std::isfinite(d)) d = 0.5;
      return d;
    }
    case 4: {  // short decimals, the usual configuration values
      const double d = static_cast<double>(static_cast<int64_t>(pick(2000001)) - 1000000) /
                       std::pow(10.0, static_cast<double>(pick(12)));
      return d;
    }
    case 5:
      return random_string();
    case 6: {
      json a = json::array();
      for (uint64_t n = pick(5); n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (uint64_t n = pick(6); n > 0; --n) o[random_string()] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(JsonbTextServer, random_values_print_as_the_server_prints_their_dump) {
  Server server;
  std::mt19937_64 rng(20240611);
  std::vector<json> values;
  for (int i = 0; i < 20000; ++i) values.push_back(random_value(rng, 0));
  const std::vector<std::string> texts = server.elements(json(values).dump());
  ASSERT_EQ(texts.size(), values.size());
  int mismatches = 0;
  for (std::size_t i = 0; i < values.size() && mismatches < 10; ++i) {
    const std::string mine = jsonb_text(values[i]);
    if (mine != texts[i]) {
      ++mismatches;
      ADD_FAILURE() << "value " << values[i].dump() << "\n  jsonb_text: " << mine
                    << "\n  server:     " << texts[i];
    }
    // Values written through the library (dump()) come back exactly.
    if (jsonb_text(json::parse(texts[i])) != texts[i]) {
      ++mismatches;
      ADD_FAILURE() << "no round trip for " << texts[i];
    }
  }
}

}  // namespace
}  // namespace syncconfig::internal
