// Figure 3: set() at 1k, 100k and 1M keys, next to the reference service's CRC recompute.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {
namespace {

// The reference service's checksum, recomputed after every write: sort all keys, concatenate
// key + value text, CRC32 over the whole buffer.
uint32_t reference_crc(const std::unordered_map<std::string, std::string>& data) {
  std::vector<const std::string*> keys;
  keys.reserve(data.size());
  for (const auto& [k, v] : data) keys.push_back(&k);
  std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
  std::string buf;
  for (const std::string* k : keys) {
    buf += *k;
    buf += data.at(*k);
  }
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(buf.size())));
}

Summary time_reference_crc(int entries, int runs) {
  std::unordered_map<std::string, std::string> data;
  for (int i = 1; i <= entries; ++i) {
    std::string key = "k";
    key += std::to_string(i);
    data.emplace(std::move(key), std::to_string(i));
  }
  volatile uint32_t sink = 0;
  std::vector<double> t;
  const int warm = runs >= 10 ? 3 : 1;  // At 1M a run takes ~1 s: one warm-up is enough.
  for (int i = 0; i < runs + warm; ++i) {
    data["k1"] = std::to_string(i);  // The write that triggers the recompute.
    auto t0 = Clock::now();
    sink = sink + reference_crc(data);
    auto t1 = Clock::now();
    if (i >= warm) t.push_back(micros(t1 - t0));
  }
  return summarize(t);
}

}  // namespace

// One store per table size (the tables filled before any figure) and one raw connection per
// size on a raw table of the same rows; each sample writes a random existing key of every size,
// the store and the raw upsert back to back.
std::vector<Row> bench_set_scaling(const std::string& dsn, PgConn& admin, const Config& cfg,
                                   const std::map<int, FilledTable>& filled) {
  struct Series {
    int keys = 0;
    std::unique_ptr<syncconfig::Store> store;
    std::unique_ptr<PgConn> raw;  // Its own backend, like each store's pooled connection.
    std::vector<double> mine, base;
  };
  std::vector<Series> series;
  for (int n : {cfg.small_keys, cfg.mid_keys, cfg.large_keys}) {
    Series s;
    s.keys = n;
    s.store = syncconfig::Store::open(dsn, store_options(filled.at(n).table));
    if (s.store->size() != static_cast<std::size_t>(n)) bench::die("pre-fill not loaded");
    const std::string raw_table = table_for("raw_keys_", n);
    create_raw_table(admin, raw_table, n);
    s.raw = std::make_unique<PgConn>(dsn);
    s.raw->prepare("upsert", raw_upsert_sql(raw_table, "raw_keys_ch"), 2);
    series.push_back(std::move(s));
  }

  std::mt19937 rng(42);
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    for (Series& s : series) {
      const std::string key = "k" + std::to_string(1 + rng() % s.keys);
      auto t0 = Clock::now();
      s.store->set(key, nlohmann::json(value_string(i)));
      auto t1 = Clock::now();
      s.raw->exec_prepared("upsert", {key, value_json_text(i)});
      auto t2 = Clock::now();
      if (i >= cfg.warmup) {
        s.mine.push_back(micros(t1 - t0));
        s.base.push_back(micros(t2 - t1));
      }
    }
  }
  for (Series& s : series) s.store->shutdown();

  const Series& small = series[0];
  const Series& mid = series[1];
  const Series& large = series[2];
  const std::string ls = count_label(small.keys), lm = count_label(mid.keys),
                    ll = count_label(large.keys);
  Row set_large{"set @" + ll + " keys vs @" + ls + " keys", summarize(large.mine),
                summarize(small.mine)};
  ratio_target(set_large, 1.3, 0);
  Row set_mid{"  set @" + lm + " keys vs @" + ls + " keys", summarize(mid.mine),
              summarize(small.mine)};
  Row raw_large{"  raw upsert+notify @" + ll + " vs @" + ls + " rows", summarize(large.base),
                summarize(small.base)};
  Summary crc_small = time_reference_crc(small.keys, cfg.crc_runs_small);
  Summary crc_large = time_reference_crc(large.keys, cfg.crc_runs_large);
  Row crc{"  reference CRC per write @" + ll + " vs @" + ls, crc_large, crc_small};

  print_pair(("3. set at " + ll + " vs " + ls + " keys").c_str(), set_large.mine,
             ("syncconfig set @" + ll).c_str(), set_large.base, ("syncconfig set @" + ls).c_str());
  print_pair("", set_mid.mine, ("syncconfig set @" + lm).c_str(), set_mid.base,
             ("syncconfig set @" + ls).c_str());
  print_pair("   raw upsert", raw_large.mine, ("raw upsert+notify @" + ll).c_str(), raw_large.base,
             ("raw upsert+notify @" + ls).c_str());
  for (const Series& s : series) {
    std::printf("   set vs raw upsert+notify @%s: p50 %.2fx\n", count_label(s.keys).c_str(),
                summarize(s.mine).p50 / summarize(s.base).p50);
  }
  print_pair("   reference CRC recompute per write", crc.mine, ("sort+concat+crc32 @" + ll).c_str(),
             crc.base, ("sort+concat+crc32 @" + ls).c_str());
  std::printf("   syncconfig set @%s p50 %.1f us vs reference CRC alone @%s p50 %.1f us\n",
              ll.c_str(), set_large.mine.p50, ll.c_str(), crc_large.p50);
  std::fflush(stdout);
  return {set_large, set_mid, raw_large, crc};
}

}  // namespace latency
