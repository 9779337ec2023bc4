// <data-dir>/server.json: how `serve` on its embedded PostgreSQL tells the operator commands
// where it listens, so that `syncconfig list` in another terminal of the same directory finds it
// without being told (see target.h). Contents: {"url": "http://127.0.0.1:PORT", "pid": N}.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace syncconfig::cli {

inline constexpr const char* kServerFileName = "server.json";

struct ServerFile {
  std::string url;
  pid_t pid = 0;
};

// What read_server_file() found: the file, or why there is none to use.
struct ServerFileRead {
  std::optional<ServerFile> file;
  std::string problem;  // When `file` is nullopt: "does not exist", "is not readable (...)", ...
};

// Reads and checks `path`. Never throws.
ServerFileRead read_server_file(const std::filesystem::path& path);

// Whether a process with that id exists (it may belong to another user).
bool process_running(pid_t pid);

// Writes <dir>/server.json for this process on construction, atomically (a temporary file in
// `dir`, mode 0600, renamed over the old one: a reader sees the old file or the whole new one),
// and removes it on destruction if it still names this process. Throws syncconfig::Error
// (kInternal) naming the file and the reason if it cannot be written.
class PublishedServerFile {
 public:
  PublishedServerFile(const std::filesystem::path& dir, const std::string& url);
  ~PublishedServerFile();
  PublishedServerFile(const PublishedServerFile&) = delete;
  PublishedServerFile& operator=(const PublishedServerFile&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace syncconfig::cli
