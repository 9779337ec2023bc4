// Figures 2 and 6: propagation to one store and fan-out to 50, next to raw LISTEN connections.
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {
namespace {

// set() on a writer store until the callbacks of `readers` other stores (one listener thread and
// one dispatcher thread each) have all run, vs a prepared upsert + pg_notify on a raw connection
// until `readers` raw LISTEN connections (one thread each) have all received it. One reader is
// the propagation figure; 50 the fan-out figure. Both sides' listeners are connected for the
// whole run, so every NOTIFY wakes the same number of listening backends on either side.
Row bench_fanout(const std::string& dsn, PgConn& admin, const std::string& name, int readers,
                 int samples, int warmup) {
  const std::string table = "bench_" + name;
  const std::string raw_table = "raw_" + name;
  const std::string raw_channel = raw_table + "_ch";
  constexpr const char* kKey = "fan";
  create_raw_table(admin, raw_table, 0);
  PgConn raw_writer(dsn);
  raw_writer.prepare("upsert", raw_upsert_sql(raw_table, raw_channel), 2);
  FanIn raw_fan(readers);  // Declared before what calls it, so it is destroyed after.
  std::vector<std::unique_ptr<RawListener>> raw_listeners;
  for (int i = 0; i < readers; ++i) {
    raw_listeners.push_back(
        std::make_unique<RawListener>(dsn, raw_channel, [&raw_fan, i] { raw_fan.arrive(i); }));
  }

  auto writer = syncconfig::Store::open(dsn, store_options(table));
  syncconfig::Options reader_options = store_options(table);
  reader_options.pool_size = 1;  // Readers never write: no pooled connection is ever opened.
  FanIn fan(readers);
  std::vector<std::unique_ptr<syncconfig::Store>> stores;
  for (int i = 0; i < readers; ++i) {
    stores.push_back(syncconfig::Store::open(dsn, reader_options));
    stores.back()->subscribe([&fan, i](const syncconfig::Change& c) {
      if (c.key == kKey) fan.arrive(i);
    });
  }

  std::vector<double> mine, base;
  for (int i = 0; i < warmup + samples; ++i) {
    fan.expect();
    auto t0 = Clock::now();
    writer->set(kKey, nlohmann::json(value_string(i)));  // A new value every time: one change.
    auto t1 = fan.wait_last();

    raw_fan.expect();
    auto r0 = Clock::now();
    raw_writer.exec_prepared("upsert", {kKey, value_json_text(i)});
    auto r1 = raw_fan.wait_last();
    if (i >= warmup) {
      mine.push_back(micros(t1 - t0));
      base.push_back(micros(r1 - r0));
    }
  }
  // Stores first: their dispatcher threads call `fan` until they are shut down.
  for (auto& s : stores) s->shutdown();
  stores.clear();
  writer->shutdown();
  raw_listeners.clear();
  return Row{"", summarize(mine), summarize(base)};
}

}  // namespace

Row bench_propagation(const std::string& dsn, PgConn& admin, const Config& cfg) {
  Row row = bench_fanout(dsn, admin, "prop", 1, cfg.samples, cfg.warmup);
  row.figure = "propagation A.set -> B callback";
  ratio_target(row, 1.2, 1.3);
  print_pair("2. propagation", row.mine, "set on A -> callback on B", row.base,
             "upsert+notify A -> LISTEN B");
  return row;
}

Row bench_fanout_figure(const std::string& dsn, PgConn& admin, const Config& cfg) {
  Row row =
      bench_fanout(dsn, admin, "fan", cfg.fanout_readers, cfg.fanout_samples, cfg.fanout_warmup);
  const std::string n = std::to_string(cfg.fanout_readers);
  row.figure = "fan-out: set -> last of " + n + " callbacks";
  ratio_target(row, 0, 1.3);
  print_pair(("6. fan-out, " + n + " instances").c_str(), row.mine,
             ("set -> last of " + n + " callbacks").c_str(), row.base,
             ("upsert+notify -> last of " + n + " LISTEN").c_str());
  return row;
}

}  // namespace latency
