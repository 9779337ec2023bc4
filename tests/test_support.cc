#include "test_support.h"

#include <poll.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

namespace syncconfig::testing {

EmbeddedPostgres& cluster() {
  // Stopped by its destructor at exit, after every test (and its stores) has finished.
  static EmbeddedPostgres pg;
  static std::once_flag once;
  std::call_once(once, [] { pg.start(); });
  return pg;
}

std::string unique_name(const std::string& stem) {
  static std::atomic<int> counter{0};
  return stem + "_" + std::to_string(counter.fetch_add(1));
}

Options test_options(const std::string& table) {
  Options o;
  o.table_name = table;
  o.channel = table + "_ch";
  o.heartbeat_interval = std::chrono::seconds(30);
  o.reconnect_interval = std::chrono::milliseconds(200);
  o.db_timeout = std::chrono::seconds(5);
  return o;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return condition();
}

Sql::Sql(const std::string& dsn) : conn_(PQconnectdb(dsn.c_str())) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    ADD_FAILURE() << "connecting failed: " << PQerrorMessage(conn_);
  }
}

Sql::~Sql() { PQfinish(conn_); }

std::string Sql::try_exec(const std::string& sql) {
  PGresult* r = PQexec(conn_, sql.c_str());
  std::string error;
  auto status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    error = PQresultErrorMessage(r);
    if (error.empty()) error = PQerrorMessage(conn_);
  }
  PQclear(r);
  return error;
}

void Sql::exec(const std::string& sql) {
  std::string error = try_exec(sql);
  EXPECT_EQ(error, "") << "SQL: " << sql;
}

std::string Sql::scalar(const std::string& sql) {
  PGresult* r = PQexec(conn_, sql.c_str());
  std::string out = "<none>";
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    ADD_FAILURE() << "SQL failed: " << sql << ": " << PQresultErrorMessage(r);
  } else if (PQntuples(r) > 0) {
    out = PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0);
  }
  PQclear(r);
  return out;
}

int Sql::backend_pid() { return PQbackendPID(conn_); }

std::vector<std::string> Sql::notifications(std::chrono::milliseconds timeout) {
  std::vector<std::string> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    PQconsumeInput(conn_);
    while (PGnotify* n = PQnotifies(conn_)) {
      out.emplace_back(n->extra);
      PQfreemem(n);
    }
    if (!out.empty() || std::chrono::steady_clock::now() >= deadline) return out;
    pollfd p{PQsocket(conn_), POLLIN, 0};
    ::poll(&p, 1, 10);
  }
}

std::map<std::string, nlohmann::json> table_content(const std::string& dsn,
                                                    const std::string& table) {
  Sql sql(dsn);
  auto parsed = nlohmann::json::parse(
      sql.scalar("SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM " + table));
  std::map<std::string, nlohmann::json> out;
  for (auto& [k, v] : parsed.items()) out.emplace(k, v);
  return out;
}

std::string role_requiring_password(const std::string& role, const std::string& password) {
  static std::mutex mu;
  static std::set<std::string> done;
  const std::string uri =
      "postgresql://" + role + "@127.0.0.1:" + std::to_string(cluster().port()) + "/postgres";
  std::lock_guard lock(mu);
  if (done.count(role) != 0) return uri;
  Sql admin(dsn());
  admin.exec("CREATE ROLE " + role + " LOGIN SUPERUSER PASSWORD '" + password + "'");
  // pg_hba.conf: the first matching line wins.
  const std::filesystem::path hba = cluster().data_dir() / "pg_hba.conf";
  std::stringstream old;
  old << std::ifstream(hba).rdbuf();
  std::ofstream(hba, std::ios::trunc) << "host all " << role << " 127.0.0.1/32 scram-sha-256\n"
                                      << old.str();
  admin.exec("SELECT pg_reload_conf()");
  // The reload is asynchronous: wait until a connection without the password is refused.
  bool enforced = wait_until([&] {
    PGconn* c = PQconnectdb(uri.c_str());
    bool refused = PQstatus(c) != CONNECTION_OK;
    PQfinish(c);
    return refused;
  });
  EXPECT_TRUE(enforced) << "the server never required a password from " << role;
  done.insert(role);
  return uri;
}

}  // namespace syncconfig::testing
