#include "cli/server_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "syncconfig/error.h"

namespace syncconfig::cli {

namespace fs = std::filesystem;

ServerFileRead read_server_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return {std::nullopt, "does not exist"};
    return {std::nullopt, std::string("is not readable (") + std::strerror(err) + ")"};
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("url") || !j["url"].is_string() || !j.contains("pid") ||
      !j["pid"].is_number_integer() || j["pid"].get<int64_t>() <= 0) {
    return {std::nullopt, "is not valid (expected {\"url\": \"http://...\", \"pid\": N})"};
  }
  return {ServerFile{j["url"].get<std::string>(), static_cast<pid_t>(j["pid"].get<int64_t>())}, ""};
}

bool process_running(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

PublishedServerFile::PublishedServerFile(const fs::path& dir, const std::string& url)
    : path_(dir / kServerFileName) {
  const std::string text =
      nlohmann::json{{"url", url}, {"pid", static_cast<int64_t>(::getpid())}}.dump() + "\n";
  const fs::path temp = dir / (std::string(kServerFileName) + ".tmp." + std::to_string(::getpid()));
  auto fail = [&](const char* step) {
    const int err = errno;
    ::unlink(temp.c_str());
    return Error(ErrorCode::kInternal,
                 "cannot write " + path_.string() + " (" + step + ": " + std::strerror(err) + ")");
  };
  // O_EXCL: a leftover from a process of the same id is replaced below, never written through
  // (it could be a link planted by someone else).
  ::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw fail("open");
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (!written || ::fsync(fd) != 0) {
    ::close(fd);
    throw fail("write");
  }
  if (::close(fd) != 0) throw fail("close");
  if (::rename(temp.c_str(), path_.c_str()) != 0) throw fail("rename");
}

PublishedServerFile::~PublishedServerFile() {
  // Another serve may have replaced it since (it then removes its own).
  ServerFileRead current = read_server_file(path_);
  if (current.file && current.file->pid == ::getpid()) ::unlink(path_.c_str());
}

}  // namespace syncconfig::cli
