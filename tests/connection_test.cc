// Connection (src/db/connection.h) against the test cluster: what the table reader relies on.
#include "db/connection.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"

namespace syncconfig::internal {
namespace {

using syncconfig::testing::dsn;

Connection connect() {
  return Connection(dsn(), deadline_after(std::chrono::seconds(10)), "connection_test");
}

TEST(Connection, exec_rows_hands_over_every_row_in_order) {
  Connection conn = connect();
  std::vector<std::string> seen;
  conn.exec_rows("SELECT i::text, 'v' || i FROM generate_series(1, 40000) i",
                 deadline_after(std::chrono::seconds(10)), [&](const Result& row) {
                   ASSERT_EQ(row.rows(), 1);
                   seen.emplace_back(row.text(0, 0));
                 });
  ASSERT_EQ(seen.size(), 40000u);
  EXPECT_EQ(seen.front(), "1");
  EXPECT_EQ(seen.back(), "40000");
  // The connection is ready for the next statement.
  EXPECT_EQ(conn.exec("SELECT 7", {}, deadline_after(std::chrono::seconds(5))).int64(0, 0), 7);
}

TEST(Connection, exec_rows_of_an_empty_result_calls_nothing) {
  Connection conn = connect();
  int calls = 0;
  conn.exec_rows("SELECT 1 WHERE false", deadline_after(std::chrono::seconds(5)),
                 [&](const Result&) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(conn.ok());
}

TEST(Connection, exec_rows_reports_an_error_raised_mid_stream_and_stays_usable) {
  Connection conn = connect();
  int rows = 0;
  try {
    // Division by zero at i = 30000, after rows have been sent.
    conn.exec_rows("SELECT 1 / (30000 - i) FROM generate_series(1, 40000) i",
                   deadline_after(std::chrono::seconds(10)), [&](const Result&) { ++rows; });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDatabase) << e.what();
    EXPECT_NE(std::string(e.what()).find("division by zero"), std::string::npos) << e.what();
  }
  EXPECT_LT(rows, 30000);
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(conn.exec("SELECT 7", {}, deadline_after(std::chrono::seconds(5))).int64(0, 0), 7);
}

}  // namespace
}  // namespace syncconfig::internal
