// Figures 11 and 12: a transaction of 1,000 sets, and set_if() next to set().
#include "latency/common.h"
#include "latency/figures.h"

namespace latency {
namespace {

// A PostgreSQL array literal of text elements: {"a","b\"c"}.
std::string pg_text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// Waits (untimed) until the store's listener has consumed the echoes of its own writes up to
// `revision`, so that its work does not spill into the next series' timing. Gives up after 10 s.
void wait_for_echoes(const syncconfig::Store& store, int64_t revision) {
  for (auto t0 = Clock::now(); store.stats().revision < revision;) {
    if (Clock::now() - t0 > 10s) {
      std::printf("   WARNING: the store's listener did not reach revision %lld in 10 s\n",
                  static_cast<long long>(revision));
      return;
    }
    std::this_thread::sleep_for(200us);
  }
}

}  // namespace

// ---- 11. a transaction of 1,000 sets ----------------------------------------------------------

// Each round writes the same `txn_ops` keys (all existing after the warm-up round, so every
// write is an update) with new values, four ways, each timed until it returns:
//   - Store::commit of one Transaction with txn_ops sets (one call of the table's txn function);
//   - txn_ops Store::set calls, one after the other (txn_ops commits);
//   - raw: one prepared statement, `WITH u AS (INSERT INTO raw_txn SELECT k, v::jsonb FROM
//     unnest($1::text[], $2::text[]) ON CONFLICT (key) DO UPDATE ... RETURNING key) SELECT
//     count(pg_notify(channel, key)) FROM u`: one round trip, one transaction, one notification
//     per row (payload: the key, as figure 1's baseline), on a two-column table without triggers
//     or log; a raw LISTEN connection on that channel receives them, as the store's own listener
//     receives the echoes of its writes;
//   - diagnostic: the same transaction document sent to the txn function through plain libpq on
//     a table of its own with no listening instance (the database side alone).
// Between series, untimed, the listeners drain (the store's reaches the commit's revision, the
// raw listener has received every notification).
std::vector<Row> bench_txn(const std::string& dsn, PgConn& admin, const Config& cfg, bool profile) {
  const int n = cfg.txn_ops;
  create_raw_table(admin, "raw_txn", 0);
  FanIn raw_fan(1);
  RawListener raw_listener(dsn, "raw_txn_ch", [&raw_fan] { raw_fan.arrive(0); });
  PgConn raw(dsn);
  raw.prepare("bulk",
              "WITH u AS (INSERT INTO raw_txn (key, value) SELECT k, v::jsonb FROM "
              "unnest($1::text[], $2::text[]) AS u(k, v) ON CONFLICT (key) DO UPDATE SET value = "
              "EXCLUDED.value RETURNING key) SELECT count(pg_notify('raw_txn_ch', key)) FROM u",
              2);
  auto store = syncconfig::Store::open(dsn, store_options("bench_txn"));
  {
    syncconfig::Options o = store_options("bench_txn_sql");
    o.enable_notification = false;
    syncconfig::Store::open(dsn, o).reset();  // Creates the table, log and functions.
  }
  PgConn sql(dsn);
  sql.prepare("txn_fn",
              "SELECT kind, idx, k, rev, val FROM \"public\".\"bench_txn_sql_sc_txn\"($1::jsonb, "
              "'', '')",
              1);

  std::vector<std::string> keys;
  for (int i = 0; i < n; ++i) keys.push_back("t-" + std::to_string(i));
  SqlProfile prof(dsn, profile, "11. transaction of " + std::to_string(n) + " sets");
  std::vector<double> commit_us, singles_us, raw_us, fn_us;
  for (int round = 0; round < cfg.txn_rounds + 1; ++round) {  // Round 0 warms up.
    auto value = [&](int i) { return (round * n + i) % 1000000; };
    syncconfig::Transaction txn;
    std::vector<std::string> values;
    std::string doc = "{\"guards\":[],\"operations\":[";
    for (int i = 0; i < n; ++i) {
      txn.set(keys[i], nlohmann::json(value_string(value(i))));
      values.push_back(value_json_text(value(i)));
      doc += (i > 0 ? ",{\"key\":\"" : "{\"key\":\"") + keys[i] + "\",\"value\":" + values[i] + "}";
    }
    doc += "]}";
    const std::string key_array = pg_text_array(keys), value_array = pg_text_array(values);

    auto t0 = Clock::now();
    syncconfig::TxnResult r = store->commit(txn);
    auto t1 = Clock::now();
    if (!r) bench::die("txn: the transaction did not commit: " + r.reason);
    wait_for_echoes(*store, r.revision);

    raw_fan.expect(static_cast<uint64_t>(n));
    auto r0 = Clock::now();
    raw.exec_prepared("bulk", {key_array, value_array});
    auto r1 = Clock::now();
    raw_fan.wait_last();

    auto f0 = Clock::now();
    sql.exec_prepared("txn_fn", {doc});
    auto f1 = Clock::now();

    // The singles write the next values, so that each is a change too.
    int64_t last = 0;
    auto s0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      last = store->set(keys[i], nlohmann::json(value_string(value(i) + 1)));
    }
    auto s1 = Clock::now();
    wait_for_echoes(*store, last);
    if (round > 0) {
      commit_us.push_back(micros(t1 - t0));
      raw_us.push_back(micros(r1 - r0));
      fn_us.push_back(micros(f1 - f0));
      singles_us.push_back(micros(s1 - s0));
    }
  }
  store->shutdown();
  prof.report();

  // Keys per second, per round: the median in the p50 slot, the slowest round in the p99 slot.
  auto keys_per_second = [n](const std::vector<double>& us) {
    std::vector<double> v;
    for (double t : us) v.push_back(n * 1e6 / t);
    Summary s = summarize(v);
    s.p99 = *std::min_element(v.begin(), v.end());
    return s;
  };
  const std::string c = count_label(n);
  Row vs_singles{"txn of " + c + " sets (commit) vs " + c + " set calls, keys/s",
                 keys_per_second(commit_us), keys_per_second(singles_us), Unit::kOpsPerSecond};
  vs_singles.target = "median >= 20x";
  vs_singles.met = bench::met_text(vs_singles.mine.p50 >= 20 * vs_singles.base.p50);
  // Time per transaction (rounds: "p99" is the slowest of them when there are fewer than 100).
  Row vs_raw{"txn of " + c + " sets vs raw unnest upsert+notify", summarize(commit_us),
             summarize(raw_us)};
  ratio_target(vs_raw, 1.5, 0);
  Row fn{"  syncconfig's txn function via libpq vs raw", summarize(fn_us), vs_raw.base};
  Row client{"  Store::commit vs its txn function via libpq", vs_raw.mine, fn.mine};
  std::printf("11. transaction of %s sets, %d rounds (time per round; keys/s = %d / time)\n",
              c.c_str(), cfg.txn_rounds, n);
  print_pair("   commit vs raw", vs_raw.mine, "Store::commit", vs_raw.base,
             "raw unnest upsert+notify");
  print_pair("   commit vs set calls", vs_raw.mine, "Store::commit", summarize(singles_us),
             (c + " x Store::set").c_str());
  print_pair("   txn function (DB side)", fn.mine, "txn function via libpq", fn.base,
             "raw unnest upsert+notify");
  std::printf(
      "   keys/s (median / slowest round): commit %.0f / %.0f, set calls %.0f / %.0f, "
      "raw %.0f / %.0f; commit vs set calls %.1fx\n",
      vs_singles.mine.p50, vs_singles.mine.p99, vs_singles.base.p50, vs_singles.base.p99,
      keys_per_second(raw_us).p50, keys_per_second(raw_us).p99,
      vs_singles.mine.p50 / vs_singles.base.p50);
  std::fflush(stdout);
  return {vs_singles, vs_raw, fn, client};
}

// ---- 12. set_if vs set ------------------------------------------------------------------------

// One store, 100 rotating keys for set() and 100 others for set_if(), each set_if naming the
// revision its key's previous write returned (so every one succeeds: the figure is the cost of
// the check, not of a conflict). Sample by sample, alternating which of the two goes first.
Row bench_set_if(const std::string& dsn, const Config& cfg, bool profile) {
  auto store = syncconfig::Store::open(dsn, store_options("bench_setif"));
  constexpr int kKeys = 100;
  std::vector<std::string> plain, cas;
  std::vector<int64_t> revision(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    plain.push_back("s-" + std::to_string(k));
    cas.push_back("c-" + std::to_string(k));
    store->set(plain[k], nlohmann::json(value_string(0)));
    revision[k] = store->set(cas[k], nlohmann::json(value_string(0)));
  }
  SqlProfile prof(dsn, profile, "12. set_if vs set");
  std::vector<double> mine, base;
  for (int i = 0; i < cfg.warmup + cfg.samples; ++i) {
    const int k = i % kKeys;
    const nlohmann::json v(value_string(i + 1));
    double set_us = 0, cas_us = 0;
    auto do_set = [&] {
      auto t0 = Clock::now();
      store->set(plain[k], v);
      set_us = micros(Clock::now() - t0);
    };
    auto do_cas = [&] {
      auto t0 = Clock::now();
      syncconfig::CasResult r = store->set_if(cas[k], v, revision[k]);
      cas_us = micros(Clock::now() - t0);
      if (!r) bench::die("setif: an unexpected conflict on " + cas[k]);
      revision[k] = r.revision;
    };
    if (i % 2 == 0) {
      do_set();
      do_cas();
    } else {
      do_cas();
      do_set();
    }
    if (i >= cfg.warmup) {
      mine.push_back(cas_us);
      base.push_back(set_us);
    }
  }
  store->shutdown();
  prof.report();
  Row row{"set_if (CAS, succeeds) vs set", summarize(mine), summarize(base)};
  ratio_target(row, 1.1, 0);
  print_pair("12. set_if vs set", row.mine, "Store::set_if (succeeds)", row.base, "Store::set");
  return row;
}

}  // namespace latency
