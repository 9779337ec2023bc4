#include "cli/target.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "cli/server_file.h"
#include "syncconfig/error.h"

namespace syncconfig::cli {
namespace {

// The server of `serve` started in this directory, else the default local server.
ServerTarget discover() {
  const std::filesystem::path file = std::filesystem::path(".syncconfig") / kServerFileName;
  const std::string shown = "./" + file.string();
  ServerTarget target;
  target.discovered = true;
  ServerFileRead read = read_server_file(file);
  std::string why_default;
  if (read.file && process_running(read.file->pid)) {
    try {
      target.url = http::parse_url(read.file->url);
      target.origin = shown + ", pid " + std::to_string(read.file->pid);
      return target;
    } catch (const Error& e) {
      why_default = shown + " " + "holds an unusable URL (" + e.message() + ")";
    }
  } else if (read.file) {
    why_default = shown + " names pid " + std::to_string(read.file->pid) + ", which is not running";
  } else {
    why_default = shown + " " + read.problem;
  }
  if (read.file || read.problem != "does not exist") spdlog::warn("{}", why_default);
  target.url = http::parse_url(kDefaultServerUrl);
  target.origin = "the default local server; " + why_default;
  return target;
}

}  // namespace

std::optional<ServerTarget> choose_server(const ConnectionArgs& a) {
  const bool database_flags = !a.dsn.empty() || !a.config.empty();
  if (!a.server.empty() && database_flags) {
    throw UsageError(
        "--server cannot be used with --dsn or --config: a command goes either to a server or to "
        "a database");
  }
  std::optional<std::string> url_text;
  std::string origin;
  if (!a.server.empty()) {
    url_text = a.server;
    origin = "--server";
  } else if (!database_flags) {
    const bool env_dsn = env("SYNCCONFIG_DSN").has_value();
    std::optional<std::string> env_server = env("SYNCCONFIG_SERVER");
    if (env_dsn && env_server) {
      throw UsageError(
          "SYNCCONFIG_DSN and SYNCCONFIG_SERVER are both set: choose with --dsn DSN or --server "
          "URL");
    }
    if (env_server) {
      url_text = env_server;
      origin = "SYNCCONFIG_SERVER";
    } else if (!env_dsn) {
      origin = "discovery";
    }
  }
  if (origin.empty()) {  // The database.
    if (!a.token.empty()) {
      throw UsageError(
          "--token applies to --server (a database takes its credentials from the DSN)");
    }
    return std::nullopt;
  }
  if (!a.table.empty() || !a.channel.empty()) {
    throw UsageError(
        "--table and --channel apply to a database (--dsn DSN or SYNCCONFIG_DSN); a server "
        "serves the stores it was started with (choose one with --store NAME)");
  }
  ServerTarget target;
  if (url_text) {
    try {
      target.url = http::parse_url(*url_text);
    } catch (const Error& e) {
      throw UsageError(origin + ": " + e.message());
    }
    target.origin = origin;
  } else {
    target = discover();
  }
  target.token = !a.token.empty() ? a.token : env("SYNCCONFIG_TOKEN").value_or("");
  target.ca_file = !a.ca_file.empty() ? a.ca_file : env("SYNCCONFIG_CA_FILE").value_or("");
  target.store = a.store;
  return target;
}

}  // namespace syncconfig::cli
