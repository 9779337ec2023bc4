#include "cache/snapshot_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "syncconfig/error.h"
#include "util/validation.h"

namespace syncconfig::internal {
namespace {

constexpr std::string_view kMagic{"SYNCCONFIG-SNAPSHOT\0", 20};
constexpr std::string_view kEndMagic{"SNAPEND\0", 8};
constexpr uint32_t kVersion = 3;
constexpr uint32_t kOldestReadable = 2;  // Version 2 lacks the resume id.
constexpr std::size_t kTrailerBytes = 8 + 4 + kEndMagic.size();
// The table's key column holds 255 characters, up to 4 bytes each (see sync/payload.cc).
constexpr std::size_t kMaxKeyFileBytes = 4 * kMaxKeyBytes;
constexpr std::size_t kFlushBytes = 1 << 20;

std::string errno_text(int error) { return std::strerror(error); }

// Call right after the failed call: errno is read before anything can change it (the arguments
// are views, so building them allocates nothing).
Error write_error(std::string_view path, std::string_view action, std::string_view object,
                  std::string_view tail = {}) {
  const int error = errno;
  return Error(ErrorCode::kInternal, fmt::format("writing snapshot file {}: {} {}{}: {}", path,
                                                 action, object, tail, errno_text(error)));
}

void put_u32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}

void put_u64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

int64_t to_micros(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The temporary file while it is written: removed unless committed.
class TempFile {
 public:
  TempFile(const std::string& path, const std::string& tmp_path) : path_(path), tmp_(tmp_path) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw write_error(path_, "creating", tmp_);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  // Body bytes are appended here and written in chunks of about kFlushBytes.
  std::string& buffer() { return buffer_; }
  void maybe_flush() {
    if (buffer_.size() >= kFlushBytes) flush_body();
  }

  // Writes the trailer, fsyncs, closes and renames over the path.
  void commit() {
    flush_body();
    put_u64(buffer_, body_bytes_);
    put_u32(buffer_, static_cast<uint32_t>(crc_));
    buffer_.append(kEndMagic);
    write_all();
    if (::fsync(fd_) != 0) throw write_error(path_, "fsync of", tmp_);
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) throw write_error(path_, "closing", tmp_);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      throw write_error(path_, "renaming", tmp_, " over it");
    }
    committed_ = true;
  }

 private:
  void flush_body() {
    crc_ = crc32_z(crc_, reinterpret_cast<const Bytef*>(buffer_.data()), buffer_.size());
    body_bytes_ += buffer_.size();
    write_all();
  }
  void write_all() {
    std::size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw write_error(path_, "writing", tmp_);
      }
      done += static_cast<std::size_t>(n);
    }
    buffer_.clear();
  }

  const std::string& path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::string buffer_;
  uLong crc_ = crc32_z(0L, Z_NULL, 0);
  uint64_t body_bytes_ = 0;
};

void fsync_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw write_error(path, "opening its directory", dir);
  if (::fsync(fd) != 0) {
    Error e = write_error(path, "fsync of its directory", dir);
    ::close(fd);
    throw e;
  }
  ::close(fd);
}

// Appends a u32 length and the bytes; false if they do not fit a u32.
bool put_sized(std::string& out, std::string_view bytes) {
  if (bytes.size() > std::numeric_limits<uint32_t>::max()) return false;
  put_u32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes);
  return true;
}

// Reads the whole file with as few read() calls as the kernel allows.
std::unique_ptr<char[]> read_all(const std::string& path, std::size_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      throw Error(ErrorCode::kInternal, fmt::format("snapshot file {} is missing", path));
    }
    throw Error(ErrorCode::kInternal,
                fmt::format("cannot open snapshot file {}: {}", path, errno_text(error)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    throw Error(ErrorCode::kInternal,
                fmt::format("cannot read snapshot file {}: {}", path, errno_text(error)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kInternal,
                fmt::format("cannot read snapshot file {}: not a regular file", path));
  }
  size = static_cast<std::size_t>(st.st_size);
  auto buffer = std::make_unique_for_overwrite<char[]>(size == 0 ? 1 : size);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, buffer.get() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      throw Error(ErrorCode::kInternal,
                  fmt::format("cannot read snapshot file {}: {}", path, errno_text(error)));
    }
    if (n == 0) break;  // Shrunk since fstat: what was read is checked as it is.
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  size = done;
  return buffer;
}

// Consumes the body; every read is checked against what remains.
class Cursor {
 public:
  Cursor(const char* p, std::size_t n) : p_(p), left_(n) {}
  std::size_t left() const { return left_; }
  bool u32(uint32_t& v) {
    if (left_ < 4) return false;
    v = get_u32(p_);
    skip(4);
    return true;
  }
  bool u8(uint8_t& v) {
    if (left_ < 1) return false;
    v = static_cast<uint8_t>(*p_);
    skip(1);
    return true;
  }
  bool u64(uint64_t& v) {
    if (left_ < 8) return false;
    v = get_u64(p_);
    skip(8);
    return true;
  }
  // A u32 length, then that many bytes.
  bool sized(std::string_view& out) {
    uint32_t n;
    if (!u32(n) || n > left_) return false;
    out = {p_, n};
    skip(n);
    return true;
  }

 private:
  void skip(std::size_t n) {
    p_ += n;
    left_ -= n;
  }
  const char* p_;
  std::size_t left_;
};

}  // namespace

bool is_json_text(std::string_view t) {
  auto slow = [&] { return nlohmann::json::accept(t); };
  if (t.empty()) return false;
  if (t[0] == '"') {
    if (t.size() < 2 || t.back() != '"') return slow();
    const std::string_view body = t.substr(1, t.size() - 2);
    for (char c : body) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return slow();
    }
    return is_valid_utf8(body);
  }
  if (t == "true" || t == "false" || t == "null") return true;
  // -?(0|[1-9][0-9]*)(\.[0-9]+)? without an exponent, short enough to be far inside a double's
  // range; anything else (exponents, whitespace, containers, errors) goes to the parser.
  std::size_t i = t[0] == '-' ? 1 : 0;
  auto digits = [&] {
    const std::size_t start = i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
    return i - start;
  };
  const std::size_t int_start = i;
  const std::size_t int_digits = digits();
  if (int_digits == 0 || (int_digits > 1 && t[int_start] == '0')) return slow();
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (digits() == 0) return slow();
  }
  if (i != t.size() || t.size() > 300) return slow();
  return true;
}

void write_snapshot_file(const std::string& path, const SnapshotFileData& data) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter++);
  TempFile file(path, tmp);
  std::string& out = file.buffer();
  out.reserve(kFlushBytes + 4096);
  out.append(kMagic);
  put_u32(out, kVersion);
  auto too_long = [&](std::string_view what) {
    return Error(
        ErrorCode::kInternal,
        fmt::format("writing snapshot file {}: {} is longer than the format's 4 GiB", path, what));
  };
  if (!put_sized(out, data.source)) throw too_long("the source");
  put_u64(out, static_cast<uint64_t>(data.revision));
  put_u64(out, static_cast<uint64_t>(data.newest_revision));
  if (!put_sized(out, data.resume_id)) throw too_long("the resume id");
  put_u32(out, static_cast<uint32_t>(data.anchors.size()));
  for (const Anchor& a : data.anchors) {
    put_u64(out, static_cast<uint64_t>(a.revision));
    out.push_back(a.deleted ? '\1' : '\0');
    put_u32(out, a.md5);
    if (!put_sized(out, a.key)) throw too_long("an anchor's key");
  }
  put_u64(out, static_cast<uint64_t>(to_micros(data.written_at)));
  put_u64(out, data.entries.size());
  for (const auto& [key, text] : data.entries) {
    if (!put_sized(out, key)) throw too_long("a key");
    if (!put_sized(out, text)) throw too_long("the value of key " + quote_for_message(key));
    file.maybe_flush();
  }
  file.commit();
  fsync_directory(path);
}

SnapshotFileData read_snapshot_file(const std::string& path, std::string_view expected_source) {
  std::size_t size = 0;
  const std::unique_ptr<char[]> buffer = read_all(path, size);
  const char* bytes = buffer.get();
  auto refuse = [&](const std::string& why) {
    return Error(ErrorCode::kInternal, fmt::format("snapshot file {} refused: {}", path, why));
  };

  // What the file is, before what it says.
  const std::string_view head(bytes, std::min(size, kMagic.size()));
  if (head != kMagic.substr(0, head.size())) {
    throw refuse("not a syncconfig snapshot (bad magic)");
  }
  if (size < kMagic.size() + 4) {
    throw refuse(fmt::format("truncated (only {} bytes, the header is cut short)", size));
  }
  const uint32_t version = get_u32(bytes + kMagic.size());
  if (version < kOldestReadable || version > kVersion) {
    throw refuse(fmt::format("unsupported format version {} (this build reads versions {} to {})",
                             version, kOldestReadable, kVersion));
  }
  if (size < kMagic.size() + 4 + kTrailerBytes ||
      std::string_view(bytes + size - kEndMagic.size(), kEndMagic.size()) != kEndMagic) {
    throw refuse(fmt::format("truncated (no end marker after its {} bytes)", size));
  }
  const std::size_t body_size = size - kTrailerBytes;
  const uint64_t stated_size = get_u64(bytes + body_size);
  if (stated_size != body_size) {
    throw refuse(
        fmt::format("truncated or corrupt (its trailer counts {} bytes before it, there "
                    "are {})",
                    stated_size, body_size));
  }
  const uint32_t stated_crc = get_u32(bytes + body_size + 8);
  const uint32_t crc = static_cast<uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes), body_size));
  if (crc != stated_crc) {
    throw refuse(fmt::format("corrupt (checksum mismatch: stored {:08x}, computed {:08x})",
                             stated_crc, crc));
  }

  // The checksum holds, so what follows is what a writer wrote; still, trust no length.
  Cursor in(bytes + kMagic.size() + 4, body_size - kMagic.size() - 4);
  SnapshotFileData data;
  std::string_view source;
  uint64_t revision = 0;
  uint64_t newest = 0;
  std::string_view resume_id;
  std::vector<Anchor> anchors;
  uint64_t micros = 0;
  uint64_t count = 0;
  auto read_anchors = [&] {
    uint32_t n = 0;
    if (!in.u32(n) || n > in.left() / 17) return false;  // Each takes at least 17 bytes.
    anchors.resize(n);
    for (Anchor& a : anchors) {
      uint64_t rev = 0;
      uint8_t deleted = 0;
      std::string_view key;
      if (!in.u64(rev) || !in.u8(deleted) || deleted > 1 || !in.u32(a.md5) || !in.sized(key)) {
        return false;
      }
      a.revision = static_cast<int64_t>(rev);
      a.deleted = deleted == 1;
      a.key = std::string(key);
    }
    return true;
  };
  if (!in.sized(source) || !in.u64(revision) || !in.u64(newest) ||
      (version >= 3 && (!in.sized(resume_id) || !read_anchors())) || !in.u64(micros) ||
      !in.u64(count)) {
    throw refuse("corrupt (the header is inconsistent)");
  }
  if (source != expected_source) {
    throw refuse(fmt::format("foreign (its source is {}, expected {})", quote_for_message(source),
                             quote_for_message(expected_source)));
  }
  // Nanosecond time points overflow beyond about 292 years from the epoch.
  constexpr int64_t kMaxMicros = std::numeric_limits<int64_t>::max() / 1000;
  const auto signed_micros = static_cast<int64_t>(micros);
  if (signed_micros > kMaxMicros || signed_micros < -kMaxMicros) {
    throw refuse(fmt::format("corrupt (written_at {} is out of range)", signed_micros));
  }
  // Every entry takes at least its two lengths: a count beyond that is no reason to allocate.
  if (count > in.left() / 8) {
    throw refuse(
        fmt::format("corrupt ({} entries cannot fit in the {} bytes left)", count, in.left()));
  }
  data.source = std::string(source);
  data.revision = static_cast<int64_t>(revision);
  data.newest_revision = static_cast<int64_t>(newest);
  data.resume_id = std::string(resume_id);
  data.anchors = std::move(anchors);
  data.written_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds(signed_micros)));
  data.entries.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view key;
    std::string_view text;
    if (!in.sized(key) || !in.sized(text)) {
      throw refuse(fmt::format("corrupt (entry {} of {} runs past the end)", i, count));
    }
    if (key.empty() || key.size() > kMaxKeyFileBytes || key.find('\0') != std::string_view::npos) {
      throw refuse(
          fmt::format("entry {} has an invalid key {} ({} bytes; a key is 1 to {} bytes "
                      "without NUL)",
                      i, quote_for_message(key.substr(0, 100)), key.size(), kMaxKeyFileBytes));
    }
    if (!is_json_text(text)) {
      throw refuse(fmt::format("the value of key {} is not JSON", quote_for_message(key)));
    }
    data.entries.emplace_back(key, text);
  }
  if (in.left() != 0) {
    throw refuse(fmt::format("corrupt ({} bytes after the last entry)", in.left()));
  }
  return data;
}

}  // namespace syncconfig::internal
