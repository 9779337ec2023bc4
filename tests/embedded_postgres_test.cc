#include "syncconfig/embedded_postgres.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "syncconfig/error.h"

namespace syncconfig {
namespace {

namespace fs = std::filesystem;

using Connection = std::unique_ptr<PGconn, decltype(&PQfinish)>;

Connection connect(const EmbeddedPostgres& pg) {
  return Connection(PQconnectdb(pg.dsn().c_str()), &PQfinish);
}

// Runs a statement and returns the first column of the first row ("" if there is none).
std::string query(PGconn* conn, const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(conn, sql.c_str()), &PQclear);
  ExecStatusType status = PQresultStatus(result.get());
  EXPECT_TRUE(status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
      << sql << ": " << PQerrorMessage(conn);
  if (status != PGRES_TUPLES_OK || PQntuples(result.get()) == 0) return "";
  return PQgetvalue(result.get(), 0, 0);
}

// A directory created for one test and removed with everything in it afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "embedded-pg-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    // mkdtemp makes it 0700; when the tests run as root the server runs as postgres, which must
    // be able to traverse it.
    fs::permissions(path_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(EmbeddedPostgres, started_server_answers_queries_with_configured_settings) {
  EmbeddedPostgres pg;
  pg.start();
  ASSERT_TRUE(pg.running());
  EXPECT_GT(pg.port(), 0);
  EXPECT_EQ(pg.dsn(), "postgresql://postgres@127.0.0.1:" + std::to_string(pg.port()) + "/postgres");

  Connection conn = connect(pg);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(query(conn.get(), "SELECT 1"), "1");
  EXPECT_EQ(query(conn.get(), "SHOW max_connections"), "300");
}

TEST(EmbeddedPostgres, start_and_stop_are_idempotent) {
  EmbeddedPostgres pg;
  pg.start();
  const int port = pg.port();
  pg.start();
  EXPECT_EQ(pg.port(), port);
  pg.stop();
  EXPECT_FALSE(pg.running());
  pg.stop();
  EXPECT_FALSE(pg.running());
}

TEST(EmbeddedPostgres, restart_keeps_data_and_port) {
  EmbeddedPostgres pg;
  pg.start();
  const int port = pg.port();
  {
    Connection conn = connect(pg);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    query(conn.get(), "CREATE TABLE t (v text)");
    query(conn.get(), "INSERT INTO t VALUES ('kept')");
  }
  pg.restart();
  ASSERT_TRUE(pg.running());
  EXPECT_EQ(pg.port(), port);
  Connection conn = connect(pg);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(query(conn.get(), "SELECT v FROM t"), "kept");
}

// errno of binding a plain socket (no SO_REUSEADDR) to 127.0.0.1:port; 0 when it binds.
int bind_error(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int error = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
  close(fd);
  return error;
}

TEST(EmbeddedPostgres, a_stopped_server_keeps_its_picked_port_from_other_programs) {
  // Otherwise another cluster starting during a restart() could be handed the port.
  EmbeddedPostgres pg;
  pg.start();
  const int port = pg.port();
  pg.stop();
  EXPECT_EQ(bind_error(port), EADDRINUSE);
  pg.start();
  EXPECT_EQ(pg.port(), port);
  EXPECT_EQ(PQstatus(connect(pg).get()), CONNECTION_OK);
}

TEST(EmbeddedPostgres, given_data_dir_survives_destruction_and_is_reused) {
  ScratchDir scratch;
  const fs::path data_dir = scratch.path() / "data";
  {
    EmbeddedPostgres pg({.data_dir = data_dir});
    pg.start();
    Connection conn = connect(pg);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    query(conn.get(), "CREATE TABLE t (v text)");
    query(conn.get(), "INSERT INTO t VALUES ('persisted')");
  }
  ASSERT_TRUE(fs::exists(data_dir / "PG_VERSION"));

  EmbeddedPostgres pg({.data_dir = data_dir});
  pg.start();
  Connection conn = connect(pg);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(query(conn.get(), "SELECT v FROM t"), "persisted");
}

TEST(EmbeddedPostgres, start_after_kill_recovers_committed_data) {
  EmbeddedPostgres pg;
  pg.start();
  {
    Connection conn = connect(pg);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    query(conn.get(), "CREATE TABLE t (v text)");
    query(conn.get(), "INSERT INTO t VALUES ('committed')");
  }
  pg.kill();
  EXPECT_FALSE(pg.running());
  EXPECT_NE(PQstatus(connect(pg).get()), CONNECTION_OK);

  pg.start();
  ASSERT_TRUE(pg.running());
  Connection conn = connect(pg);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(query(conn.get(), "SELECT v FROM t"), "committed");
}

TEST(EmbeddedPostgres, promote_turns_a_standby_into_a_primary_that_accepts_writes) {
  EmbeddedPostgres pg;
  pg.start();
  {
    Connection conn = connect(pg);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    query(conn.get(), "CREATE TABLE t (v text)");
    query(conn.get(), "INSERT INTO t VALUES ('before')");
  }
  // A primary cannot be promoted.
  EXPECT_THROW(pg.promote(), Error);
  // standby.signal makes the next start a standby (one with no primary to follow: enough here;
  // tests/replica_set.h builds streaming ones).
  pg.stop();
  { std::ofstream(pg.data_dir() / "standby.signal"); }
  pg.start();
  {
    Connection conn = connect(pg);
    ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
    ASSERT_EQ(query(conn.get(), "SELECT pg_is_in_recovery()"), "t");
    std::unique_ptr<PGresult, decltype(&PQclear)> refused(
        PQexec(conn.get(), "INSERT INTO t VALUES ('refused')"), &PQclear);
    EXPECT_EQ(PQresultStatus(refused.get()), PGRES_FATAL_ERROR) << "a standby accepted a write";
  }

  pg.promote();
  // Returned once promoted: at once a primary, without waiting.
  Connection conn = connect(pg);
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  EXPECT_EQ(query(conn.get(), "SELECT pg_is_in_recovery()"), "f");
  query(conn.get(), "INSERT INTO t VALUES ('after')");
  EXPECT_EQ(query(conn.get(), "SELECT string_agg(v, ',' ORDER BY v) FROM t"), "after,before");
  EXPECT_FALSE(fs::exists(pg.data_dir() / "standby.signal"));
}

TEST(EmbeddedPostgres, temporary_data_dir_is_removed_after_destruction) {
  fs::path data_dir;
  {
    EmbeddedPostgres pg;
    pg.start();
    data_dir = pg.data_dir();
    ASSERT_FALSE(data_dir.empty());
    EXPECT_TRUE(fs::exists(data_dir / "PG_VERSION"));
  }
  EXPECT_FALSE(fs::exists(data_dir));
}

TEST(EmbeddedPostgres, settings_with_unsafe_characters_are_refused) {
  for (const auto& settings : std::vector<std::map<std::string, std::string>>{
           {{"work_mem", "4MB; touch /tmp/pwned"}},
           {{"work mem", "4MB"}},
           {{"", "1"}},
       }) {
    EmbeddedPostgres pg({.settings = settings});
    try {
      pg.start();
      FAIL() << "start() accepted " << settings.begin()->first << "=" << settings.begin()->second;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(settings.begin()->first), std::string::npos) << e.what();
    }
    EXPECT_FALSE(pg.running());
  }
}

TEST(EmbeddedPostgres, missing_bin_dir_is_reported) {
  EmbeddedPostgres pg({.bin_dir = "/nonexistent/postgres/bin"});
  try {
    pg.start();
    FAIL() << "start() succeeded without binaries";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("install postgresql"), std::string::npos) << e.what();
  }
}

TEST(EmbeddedPostgres, start_failure_quotes_the_server_log) {
  EmbeddedPostgres pg({.settings = {{"no_such_setting", "1"}}});
  try {
    pg.start();
    FAIL() << "start() succeeded with an unknown setting";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("no_such_setting"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(pg.running());
}

}  // namespace
}  // namespace syncconfig
