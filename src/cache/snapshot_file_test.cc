#include "cache/snapshot_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "syncconfig/error.h"

namespace syncconfig::internal {
namespace {

namespace fs = std::filesystem;
using std::chrono::system_clock;

constexpr std::string_view kSource = "table public.sync_config";
constexpr std::size_t kTrailerBytes = 20;

system_clock::time_point some_time() {
  return system_clock::time_point(std::chrono::microseconds(1'700'000'000'123'456));
}

SnapshotFileData small_data() {
  SnapshotFileData d;
  d.source = std::string(kSource);
  d.revision = 42;
  d.newest_revision = 44;
  d.resume_id = "42.40.deadbeef";
  d.anchors = {{40, "rate", false, 0x1234abcd}, {42, "gone", true, 0}};
  d.written_at = some_time();
  d.entries = {{"feature:new_ui", "true"},
               {"rate", R"({"a": 1, "bb": [1.5, "x"]})"},
               {"name", R"("héllo \"w\"")"}};
  return d;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void put_le(std::string& bytes, std::size_t at, uint64_t v, int width) {
  for (int i = 0; i < width; ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
}

// Recomputes the trailer of `bytes` so that it passes the checksum: for testing the checks
// behind it.
void reseal(std::string& bytes) {
  if (bytes.size() < kTrailerBytes) return;
  const std::size_t body = bytes.size() - kTrailerBytes;
  put_le(bytes, body, body, 8);
  put_le(bytes, body + 8,
         crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), body), 4);
}

// The Error of reading `path`, or a failure if it was not refused.
Error refusal(const std::string& path, std::string_view source = kSource) {
  try {
    SnapshotFileData d = read_snapshot_file(path, source);
    ADD_FAILURE() << "accepted, " << d.entries.size() << " entries";
  } catch (const Error& e) {
    return e;
  }
  return Error(ErrorCode::kInternal, "<accepted>");
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

void expect_same(const SnapshotFileData& a, const SnapshotFileData& b) {
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.newest_revision, b.newest_revision);
  EXPECT_EQ(a.resume_id, b.resume_id);
  EXPECT_EQ(a.anchors, b.anchors);
  EXPECT_EQ(a.written_at, b.written_at);
  EXPECT_EQ(a.entries, b.entries);
}

class SnapshotFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "snapshot_file_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (fs::path(dir_) / "snapshot").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    return names;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SnapshotFile, what_is_written_is_read_back) {
  write_snapshot_file(path_, small_data());
  expect_same(read_snapshot_file(path_, kSource), small_data());
}

TEST_F(SnapshotFile, an_empty_store_round_trips) {
  SnapshotFileData d;
  d.source = std::string(kSource);
  write_snapshot_file(path_, d);
  expect_same(read_snapshot_file(path_, kSource), d);
}

TEST_F(SnapshotFile, keys_and_values_are_kept_byte_for_byte) {
  SnapshotFileData d = small_data();
  d.revision = -1;  // Not the file's business.
  d.written_at = system_clock::time_point(std::chrono::microseconds(-5));
  d.entries = {{"日本語:キー", R"("😀 \u0000 \n \\ é")"},
               {"k\x01\x7f\xff", R"(["\u001f", {"": null}])"},
               {std::string(1020, 'k'), "0." + std::string(998, '7')},
               {"big", "\"" + std::string(3 << 20, 'x') + "\""}};
  write_snapshot_file(path_, d);
  expect_same(read_snapshot_file(path_, kSource), d);
}

TEST_F(SnapshotFile, a_hundred_thousand_entries_round_trip) {
  SnapshotFileData d = small_data();
  d.entries.clear();
  for (int i = 0; i < 100000; ++i) {
    d.entries.emplace_back("key:" + std::to_string(i), R"({"i": )" + std::to_string(i) + "}");
  }
  write_snapshot_file(path_, d);
  expect_same(read_snapshot_file(path_, kSource), d);
}

TEST_F(SnapshotFile, the_file_is_private_to_its_owner) {
  write_snapshot_file(path_, small_data());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(SnapshotFile, writing_leaves_no_temporary_file_behind) {
  write_snapshot_file(path_, small_data());
  write_snapshot_file(path_, SnapshotFileData{std::string(kSource), 43, 43, some_time(), {}});
  EXPECT_EQ(files(), std::vector<std::string>{"snapshot"});
  EXPECT_EQ(read_snapshot_file(path_, kSource).revision, 43);
}

TEST_F(SnapshotFile, a_failed_write_removes_its_temporary_file_and_keeps_the_old_one) {
  // A directory in the way of the rename.
  const std::string blocked = (fs::path(dir_) / "blocked").string();
  fs::create_directory(blocked);
  fs::create_directory(fs::path(blocked) / "child");
  try {
    write_snapshot_file(blocked, small_data());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_TRUE(contains(e.message(), blocked)) << e.message();
    EXPECT_TRUE(contains(e.message(), "renaming")) << e.message();
  }
  EXPECT_EQ(files(), std::vector<std::string>{"blocked"});
  EXPECT_TRUE(fs::is_directory(fs::path(blocked) / "child"));
}

TEST_F(SnapshotFile, writing_into_a_missing_directory_names_the_path) {
  const std::string path = (fs::path(dir_) / "no" / "such" / "snapshot").string();
  try {
    write_snapshot_file(path, small_data());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_TRUE(contains(e.message(), path)) << e.message();
    EXPECT_TRUE(contains(e.message(), "No such file or directory")) << e.message();
  }
}

TEST_F(SnapshotFile, a_missing_file_is_refused_and_says_so) {
  const Error e = refusal(path_);
  EXPECT_EQ(e.code(), ErrorCode::kInternal);
  EXPECT_TRUE(contains(e.message(), "missing")) << e.message();
  EXPECT_TRUE(contains(e.message(), path_)) << e.message();
}

TEST_F(SnapshotFile, a_file_of_something_else_is_not_a_syncconfig_snapshot) {
  std::mt19937 rng(7);
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  write_bytes(path_, garbage);
  EXPECT_TRUE(contains(refusal(path_).message(), "not a syncconfig snapshot"));
  write_bytes(path_, "{\"key\": \"value\"}\n");
  EXPECT_TRUE(contains(refusal(path_).message(), "not a syncconfig snapshot"));
}

TEST_F(SnapshotFile, a_directory_is_refused) {
  fs::create_directory(path_);
  EXPECT_TRUE(contains(refusal(path_).message(), "not a regular file"));
}

TEST_F(SnapshotFile, another_format_version_is_refused_and_named) {
  write_snapshot_file(path_, small_data());
  std::string bytes = read_bytes(path_);
  put_le(bytes, 20, 1, 4);  // Version 1 (no newest revision) was never released, yet refused.
  reseal(bytes);
  write_bytes(path_, bytes);
  const std::string message = refusal(path_).message();
  EXPECT_TRUE(contains(message, "unsupported format version 1")) << message;
}

TEST_F(SnapshotFile, a_version_2_file_is_read_without_a_resume_id) {
  // What the previous release wrote: version 2 has no resume id after the newest revision.
  SnapshotFileData d = small_data();
  d.resume_id.clear();
  d.anchors.clear();
  write_snapshot_file(path_, d);
  std::string bytes = read_bytes(path_);
  const std::size_t resume_id_length = 20 + 4 + 4 + kSource.size() + 8 + 8;
  ASSERT_EQ(bytes.substr(resume_id_length, 8), std::string(8, '\0'));  // No id, no anchors.
  bytes.erase(resume_id_length, 8);
  put_le(bytes, 20, 2, 4);
  reseal(bytes);
  write_bytes(path_, bytes);
  expect_same(read_snapshot_file(path_, kSource), d);
  put_le(bytes, 20, 4, 4);  // A later version is not guessed at.
  reseal(bytes);
  write_bytes(path_, bytes);
  const std::string message = refusal(path_).message();
  EXPECT_TRUE(contains(message, "unsupported format version 4")) << message;
}

TEST_F(SnapshotFile, a_file_truncated_at_any_byte_is_refused_and_says_so) {
  write_snapshot_file(path_, small_data());
  const std::string bytes = read_bytes(path_);
  const std::string cut = path_ + ".cut";
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(cut, std::string_view(bytes).substr(0, n));
    const std::string message = refusal(cut).message();
    EXPECT_TRUE(contains(message, "truncated") || contains(message, "corrupt"))
        << "at " << n << ": " << message;
  }
}

TEST_F(SnapshotFile, a_changed_byte_anywhere_is_refused) {
  write_snapshot_file(path_, small_data());
  const std::string bytes = read_bytes(path_);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      std::string changed = bytes;
      changed[i] = static_cast<char>(changed[i] ^ flip);
      write_bytes(path_, changed);
      SCOPED_TRACE(testing::Message() << "byte " << i << " ^ " << int{flip});
      EXPECT_EQ(refusal(path_).code(), ErrorCode::kInternal);
    }
  }
}

TEST_F(SnapshotFile, a_damaged_body_is_called_corrupt) {
  write_snapshot_file(path_, small_data());
  std::string bytes = read_bytes(path_);
  bytes[40] = static_cast<char>(bytes[40] ^ 0x10);
  write_bytes(path_, bytes);
  const std::string message = refusal(path_).message();
  EXPECT_TRUE(contains(message, "corrupt (checksum mismatch")) << message;
}

TEST_F(SnapshotFile, a_snapshot_of_another_source_is_refused_naming_both) {
  write_snapshot_file(path_, small_data());
  const std::string message = refusal(path_, "remote /stores/x prefix=app:").message();
  EXPECT_TRUE(contains(message, "foreign")) << message;
  EXPECT_TRUE(contains(message, "\"table public.sync_config\"")) << message;
  EXPECT_TRUE(contains(message, "\"remote /stores/x prefix=app:\"")) << message;
}

TEST_F(SnapshotFile, lengths_beyond_the_file_are_refused_without_allocating_them) {
  write_snapshot_file(path_, small_data());
  const std::string good = read_bytes(path_);
  const std::size_t source_at = 24;
  const std::size_t resume_id_at = source_at + 4 + kSource.size() + 16;  // revision, newest
  const std::size_t anchors_at = resume_id_at + 4 + small_data().resume_id.size();
  std::size_t anchor_bytes = 4;
  for (const Anchor& a : small_data().anchors) anchor_bytes += 8 + 1 + 4 + 4 + a.key.size();
  const std::size_t first_anchor_key_at = anchors_at + 4 + 8 + 1 + 4;
  const std::size_t count_at = anchors_at + anchor_bytes + 8;  // written_at
  const std::size_t first_key_at = count_at + 8;
  struct Damage {
    std::size_t at;
    uint64_t value;
    int width;
  };
  for (const Damage& d :
       {Damage{source_at, 0xffffffff, 4}, Damage{resume_id_at, 0xffffff00, 4},
        Damage{anchors_at, 0x10000000, 4}, Damage{anchors_at, 3, 4},
        Damage{anchors_at + 4 + 8, 2, 1},  // "deleted" is 0 or 1.
        Damage{first_anchor_key_at, 0xfffffff0, 4}, Damage{count_at, uint64_t{1} << 60, 8},
        Damage{count_at, ~uint64_t{0}, 8}, Damage{count_at, 4, 8},
        Damage{first_key_at, 0xfffffff0, 4}, Damage{count_at, 2, 8}}) {
    std::string bytes = good;
    put_le(bytes, d.at, d.value, d.width);
    reseal(bytes);
    write_bytes(path_, bytes);
    const std::string message = refusal(path_).message();
    EXPECT_TRUE(contains(message, "corrupt")) << message;
  }
}

TEST_F(SnapshotFile, an_entry_the_cache_could_not_hold_is_refused) {
  struct Bad {
    std::string key;
    std::string text;
    std::string_view says;
  };
  for (const Bad& bad :
       {Bad{"", "1", "invalid key"}, Bad{std::string(1021, 'k'), "1", "invalid key"},
        Bad{std::string("a\0b", 3), "1", "invalid key"}, Bad{"k", "{\"a\": ", "is not JSON"},
        Bad{"k", "", "is not JSON"}, Bad{"k", "1 2", "is not JSON"}}) {
    SnapshotFileData d = small_data();
    d.entries.emplace_back(bad.key, bad.text);
    write_snapshot_file(path_, d);
    const std::string message = refusal(path_).message();
    EXPECT_TRUE(contains(message, bad.says)) << message;
  }
}

TEST(IsJsonText, answers_as_nlohmanns_accept_does) {
  const std::vector<std::string> fixed = {"",
                                          "0",
                                          "-0",
                                          "00",
                                          "01",
                                          "-",
                                          "1.",
                                          ".5",
                                          "1.5",
                                          "-1.50",
                                          "1e5",
                                          "1E+5",
                                          "1e",
                                          " 1",
                                          "1 ",
                                          "true",
                                          "tru",
                                          "truee",
                                          "null",
                                          "false",
                                          "\"\"",
                                          "\"",
                                          "\"a",
                                          "\"a\\\"\"",
                                          "\"\x01\"",
                                          "\"\xc3\xa9\"",
                                          "\"\xc3\"",
                                          "\"\xed\xa0\x80\"",
                                          "\"\xf4\x90\x80\x80\"",
                                          "\"\xc0\xaf\"",
                                          "\xef\xbb\xbf"
                                          "1",
                                          "[1]",
                                          "{}",
                                          "{\"a\":1}",
                                          "[",
                                          std::string(300, '7'),
                                          std::string(301, '7'),
                                          "0." + std::string(400, '1'),
                                          std::string(400, '9') + ".5"};
  for (const std::string& t : fixed) {
    EXPECT_EQ(is_json_text(t), nlohmann::json::accept(t)) << t;
  }
  const std::vector<std::string> pieces = {"0",
                                           "1",
                                           "9",
                                           "-",
                                           ".",
                                           "e",
                                           "E",
                                           "+",
                                           "\"",
                                           "\\",
                                           "a",
                                           "t",
                                           "true",
                                           "false",
                                           "null",
                                           "n",
                                           " ",
                                           "\n",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           ":",
                                           ",",
                                           "\x01",
                                           "\x7f",
                                           "\xc3",
                                           "\xa9",
                                           "\xed\xa0\x80",
                                           "\xf4\x90\x80\x80",
                                           "\"ab\"",
                                           "12.5",
                                           "1e5",
                                           "00",
                                           "-0",
                                           "0.0",
                                           "\\u00e9"};
  std::mt19937 rng(99);
  for (int i = 0; i < 200000; ++i) {
    std::string t;
    for (int n = 1 + static_cast<int>(rng() % 6); n > 0; --n) t += pieces[rng() % pieces.size()];
    if (rng() % 3 == 0) t = "\"" + t + "\"";
    ASSERT_EQ(is_json_text(t), nlohmann::json::accept(t)) << t;
  }
}

// Random damage never crashes the reader (run it under ASan) and never gets data out of a file
// that changed. Resealed damage passes the checksum and reaches the parser: whatever it accepts
// must be exactly what the bytes say.
TEST_F(SnapshotFile, random_damage_never_crashes_and_never_yields_changed_data) {
  SnapshotFileData original = small_data();
  original.entries.emplace_back("n", "[1, 2.5, null]");
  write_snapshot_file(path_, original);
  const std::string good = read_bytes(path_);
  const std::string written = path_ + ".again";
  std::mt19937 rng(12345);
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::string bytes = good;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      const std::size_t at = bytes.empty() ? 0 : rng() % bytes.size();
      switch (rng() % 5) {
        case 0:
          if (!bytes.empty()) bytes[at] = static_cast<char>(bytes[at] ^ (1u << (rng() % 8)));
          break;
        case 1:
          if (!bytes.empty()) bytes[at] = static_cast<char>(rng());
          break;
        case 2:
          bytes.resize(at);
          break;
        case 3:
          bytes.insert(at, 1 + rng() % 8, static_cast<char>(rng()));
          break;
        default:
          bytes.erase(at, 1 + rng() % 8);
          break;
      }
    }
    const bool resealed = rng() % 2 == 0;
    if (resealed) reseal(bytes);
    write_bytes(path_, bytes);
    try {
      SnapshotFileData d = read_snapshot_file(path_, kSource);
      if (bytes == good) {
        expect_same(d, original);
      } else {
        ASSERT_TRUE(resealed) << "data from damaged bytes, iteration " << iteration;
        write_snapshot_file(written, d);
        ASSERT_EQ(read_bytes(written), bytes) << "iteration " << iteration;
      }
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kInternal);
      ASSERT_NE(bytes, good) << e.message();
    }
  }
}

// Not run by default: prints how long a million entries take.
TEST_F(SnapshotFile, DISABLED_a_million_entries_take_this_long) {
  SnapshotFileData d = small_data();
  for (int i = 0; i < 1000000; ++i) {
    d.entries.emplace_back("config:key:" + std::to_string(i),
                           i % 2 == 0 ? std::to_string(i) : R"({"enabled": true, "n": 12})");
  }
  auto t0 = std::chrono::steady_clock::now();
  write_snapshot_file(path_, d);
  auto t1 = std::chrono::steady_clock::now();
  SnapshotFileData back = read_snapshot_file(path_, kSource);
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_EQ(back.entries.size(), d.entries.size());
  auto ms = [](auto a, auto b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
  };
  std::printf("1,000,000 entries, %ju bytes: write %lld ms, read %lld ms\n",
              static_cast<uintmax_t>(fs::file_size(path_)), static_cast<long long>(ms(t0, t1)),
              static_cast<long long>(ms(t1, t2)));
}

}  // namespace
}  // namespace syncconfig::internal
