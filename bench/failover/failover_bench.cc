// failover_bench: write unavailability, time to promotion and lost acknowledged writes when
// the primary of a 3-instance cluster fails, measured as issue 8 prescribes so the numbers
// compare with Patroni's and stolon's.
//
// For each replication mode (async, sync) one cluster is created (see ha_cluster.h: real
// kube-apiserver, `petrel controller` process, instances as local processes, the leader
// Service as a loopback proxy) and kept across runs. Each run:
//   1. a FailoverWriter writes sequential ids into a fresh table through the leader endpoint
//      (autocommit, reconnect every 50 ms, 1 s client-side bound on connect and statement);
//   2. after --steady-seconds of writes the fault hits the current primary:
//      freeze     every process of the instance SIGSTOPped (node loss); thawed with SIGCONT
//                 once writes have resumed, then it must be fenced and rejoin;
//      crash      its `petrel instance` and postmaster SIGKILLed (restart or failover, both
//                 count);
//      switchover status.targetPrimary set to the lowest-named replica (planned);
//   3. measured: unavailability = the longest time without an acknowledged write, from the
//      last acknowledgement before the fault until the cluster has converged again (for a
//      kill this is "first success after - last success before"; a planned switchover keeps
//      writing for a while after it is requested, so its pause comes later);
//      promotion = fault -> first moment an instance other than the old primary answers
//      pg_is_in_recovery() = false on its own address (polled every 50 ms); for a crash that
//      ends with the old primary back in place, the moment it answers again;
//      endpoint = fault -> the leader Service's proxy forwards to a primary again (moved to
//      another Pod, or emptied and refilled);
//      lost = acknowledged ids absent from the table once the cluster has converged again;
//      fenced = after the thaw, the old primary never accepted a write on its own address
//      while it was not the current primary (checked every 200 ms until convergence).
// Output: one line per run on stderr, then a Markdown table on stdout.
//
// Flags: --runs=N (5) --modes=async,sync --faults=freeze,crash,switchover --steady-seconds=S
// (5) --recovery-timeout=S (60) --petrel=PATH --source-dir=DIR (default from PETREL_BINARY,
// PETREL_SOURCE_DIR) --keep (keep the work directory).
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bench/failover/ha_cluster.h"
#include "bench/failover/writer.h"
#include "core/log.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  int runs = 5;
  std::vector<std::string> modes = {"async", "sync"};
  std::vector<std::string> faults = {"freeze", "crash", "switchover"};
  int steady_seconds = 5;
  int recovery_timeout = 60;
  std::string petrel;
  std::string source_dir;
  bool keep = false;
};

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  if (const char* p = std::getenv("PETREL_BINARY")) a.petrel = p;
  if (const char* s = std::getenv("PETREL_SOURCE_DIR")) a.source_dir = s;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    std::string key = arg.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (key == "--runs")
      a.runs = std::stoi(value);
    else if (key == "--modes")
      a.modes = SplitComma(value);
    else if (key == "--faults")
      a.faults = SplitComma(value);
    else if (key == "--steady-seconds")
      a.steady_seconds = std::stoi(value);
    else if (key == "--recovery-timeout")
      a.recovery_timeout = std::stoi(value);
    else if (key == "--petrel")
      a.petrel = value;
    else if (key == "--source-dir")
      a.source_dir = value;
    else if (key == "--keep")
      a.keep = true;
    else {
      std::fprintf(stderr,
                   "failover_bench: unknown flag %s (see the header of "
                   "bench/failover/failover_bench.cc)\n",
                   arg.c_str());
      std::exit(2);
    }
  }
  for (const auto& m : a.modes) {
    if (m != "async" && m != "sync") {
      std::fprintf(stderr, "failover_bench: --modes takes async and/or sync, not %s\n", m.c_str());
      std::exit(2);
    }
  }
  for (const auto& f : a.faults) {
    if (f != "freeze" && f != "crash" && f != "switchover") {
      std::fprintf(stderr, "failover_bench: --faults takes freeze, crash, switchover; not %s\n",
                   f.c_str());
      std::exit(2);
    }
  }
  return a;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct RunResult {
  std::string mode;
  std::string fault;
  int run = 0;
  bool recovered = false;
  double unavailability_s = -1;
  double promotion_s = -1;
  std::string old_primary;
  std::string new_primary;
  int64_t acknowledged = 0;
  int64_t lost = 0;
  bool fenced_checked = false;
  bool fenced = true;        // the old primary never accepted a write after the thaw
  bool converged = false;    // all three back, the old primary rejoined
  int64_t reported_ms = -1;  // status.lastFailover.durationMilliseconds of this run's failover
  double endpoint_s = -1;    // fault -> the leader endpoint serves a primary again
  std::string note;
};

// Polls pg_is_in_recovery() on each candidate's own address every 50 ms and records the
// first moment one answers false.
class PromotionWatch {
 public:
  explicit PromotionWatch(std::vector<std::pair<std::string, PgTarget>> candidates) {
    for (auto& [name, target] : candidates) {
      threads_.emplace_back([this, name, target] { Watch(name, target); });
    }
  }
  ~PromotionWatch() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  std::optional<std::pair<std::string, SteadyTime>> First() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_;
  }

 private:
  void Watch(const std::string& name, const PgTarget& t) {
    DeadlineConnOptions o;
    o.connect_timeout = std::chrono::milliseconds(500);
    o.statement_timeout = std::chrono::milliseconds(500);
    o.application_name = "petrel-bench-watch";
    std::optional<DeadlineConn> conn;
    while (!stop_) {
      if (!conn || !conn->ok()) {
        conn.reset();
        auto c = DeadlineConn::Connect(t.host, t.port, t.user, t.password, t.dbname, o);
        if (c.ok()) conn.emplace(std::move(c).value());
      }
      if (conn) {
        auto r = conn->Exec("SELECT pg_is_in_recovery()");
        if (r.ok() && r->GetOr(0, 0) == "f") {
          std::lock_guard<std::mutex> lock(mu_);
          if (!first_) first_ = std::make_pair(name, Clock::now());
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::optional<std::pair<std::string, SteadyTime>> first_;
};

// The longest time without an acknowledged write, from the last acknowledgement at or before
// `fault_at` to the last one recorded; nullopt when nothing was acknowledged after `fault_at`.
std::optional<double> LongestGap(const std::vector<WriteAttempt>& attempts, SteadyTime fault_at) {
  std::vector<SteadyTime> acks;
  for (const WriteAttempt& a : attempts) {
    if (a.acknowledged) acks.push_back(a.at);
  }
  std::sort(acks.begin(), acks.end());
  auto first_after = std::upper_bound(acks.begin(), acks.end(), fault_at);
  if (first_after == acks.end() || first_after == acks.begin()) return std::nullopt;
  double longest = 0;
  for (auto it = first_after; it != acks.end(); ++it) {
    longest = std::max(longest, Seconds(*it - *(it - 1)));
  }
  return longest;
}

// Polls the leader Service's backends (as the in-process proxy serves them) every 10 ms and
// records when they are non-empty again after having changed: moved to another Pod, or, after
// a crash, emptied and then refilled.
class EndpointWatch {
 public:
  EndpointWatch(HaCluster& cluster, std::vector<std::string> before)
      : thread_([this, &cluster, before] {
          bool changed = false;
          while (!stop_) {
            auto now = cluster.LeaderBackends();
            if (now != before) changed = true;
            if (changed && !now.empty()) {
              std::lock_guard<std::mutex> lock(mu_);
              at_ = Clock::now();
              return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
        }) {}
  ~EndpointWatch() {
    stop_ = true;
    thread_.join();
  }
  std::optional<SteadyTime> At() {
    std::lock_guard<std::mutex> lock(mu_);
    return at_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::optional<SteadyTime> at_;
  std::thread thread_;  // last: it starts in the constructor
};

RunResult RunOnce(HaCluster& cluster, const Args& args, const std::string& fault, int run) {
  RunResult r;
  r.mode = ReplicationModeName(cluster.options().mode);
  r.fault = fault;
  r.run = run;
  r.old_primary = cluster.CurrentPrimary();
  auto leader = cluster.LeaderTarget();
  if (!leader.ok()) {
    r.note = leader.status().ToString();
    return r;
  }
  WriterOptions wo;
  wo.target = *leader;
  wo.table = "writes_" + fault + "_" + std::to_string(run);
  Status created = CreateWritesTable(wo.target, wo.table);
  if (!created.ok()) {
    r.note = "creating the table: " + created.ToString();
    return r;
  }
  FailoverWriter writer(wo);
  writer.Start();
  std::this_thread::sleep_for(std::chrono::seconds(args.steady_seconds));
  if (writer.acknowledged_count() == 0) {
    r.note = "no write succeeded before the fault: " + writer.LastError();
    return r;
  }

  // Who may end the outage: every other instance, and for a crash the old primary too
  // (restarting it in place is a valid recovery).
  std::vector<std::pair<std::string, PgTarget>> candidates;
  std::string switchover_target;
  for (const InstanceView& i : cluster.Instances()) {
    if (i.name != r.old_primary && switchover_target.empty()) switchover_target = i.name;
    if (i.name == r.old_primary && fault != "crash") continue;
    auto t = cluster.PodTarget(i.name);
    if (t.ok()) candidates.emplace_back(i.name, *t);
  }

  EndpointWatch endpoint(cluster, cluster.LeaderBackends());
  const int64_t failovers_before =
      cluster.Cluster().value("status", Json::object()).value("failovers", int64_t{0});
  SteadyTime fault_at = Clock::now();
  Status injected;
  if (fault == "freeze") {
    injected = cluster.Freeze(r.old_primary);
    fault_at = Clock::now();  // from the moment the instance is entirely stopped
  } else if (fault == "crash") {
    injected = cluster.Crash(r.old_primary);
    fault_at = Clock::now();
  } else {
    injected = cluster.RequestSwitchover(switchover_target);
  }
  if (!injected.ok()) {
    r.note = "injecting the fault: " + injected.ToString();
    cluster.Thaw();
    return r;
  }
  std::optional<PromotionWatch> watch(std::in_place, candidates);

  // 1. A primary again: promoted elsewhere (or, after a crash, back in place).
  auto deadline = fault_at + std::chrono::seconds(args.recovery_timeout);
  while (Clock::now() < deadline && !watch->First()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (auto p = watch->First()) {
    r.promotion_s = Seconds(p->second - fault_at);
    r.new_primary = p->first;
  }
  watch.reset();
  // 2. Writes through the leader endpoint resume.
  while (Clock::now() < deadline && !writer.FirstSuccessAfter(fault_at)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.recovered = r.promotion_s >= 0 && writer.FirstSuccessAfter(fault_at).has_value();
  if (!r.recovered) {
    r.note = r.promotion_s < 0
                 ? "no primary within " + std::to_string(args.recovery_timeout) + " s"
                 : "writes did not resume within " + std::to_string(args.recovery_timeout) + " s";
    r.note += "; last write error: " + writer.LastError();
  }
  // 3. Writes continue through the thaw and the rejoin: acknowledged ids must survive those
  // too, and any later pause counts as unavailability.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  if (fault == "freeze") {
    cluster.Thaw();
    r.fenced_checked = true;
  }
  auto old_target = cluster.PodTarget(r.old_primary);
  auto converge_deadline = Clock::now() + std::chrono::seconds(args.recovery_timeout * 2);
  while (r.recovered && Clock::now() < converge_deadline) {
    if (r.fenced_checked && old_target.ok() && cluster.CurrentPrimary() != r.old_primary &&
        cluster.AcceptsWrites(*old_target)) {
      r.fenced = false;
    }
    if (cluster.WaitConverged(std::chrono::seconds(1)).ok()) {
      r.converged = true;
      break;
    }
  }
  cluster.Thaw();  // whatever happened, nothing stays stopped
  writer.Stop();
  if (r.recovered && !r.converged) {
    Status s = cluster.WaitConverged(std::chrono::seconds(1));
    r.note += (r.note.empty() ? "" : "; ") + s.message();
  }
  if (auto gap = LongestGap(writer.Attempts(), fault_at)) r.unavailability_s = *gap;
  if (auto at = endpoint.At()) r.endpoint_s = Seconds(*at - fault_at);
  // The controller's own account of a failover it completed during this run.
  Json status = cluster.Cluster().value("status", Json::object());
  if (status.value("failovers", int64_t{0}) > failovers_before) {
    r.reported_ms =
        status.value("lastFailover", Json::object()).value("durationMilliseconds", int64_t{-1});
  }
  r.acknowledged = writer.acknowledged_count();
  auto now_leader = cluster.LeaderTarget();
  Result<std::vector<int64_t>> present = now_leader.ok()
                                             ? ReadWrittenIds(*now_leader, wo.table)
                                             : Result<std::vector<int64_t>>(now_leader.status());
  if (!present.ok()) {
    r.lost = -1;
    r.note +=
        (r.note.empty() ? "" : "; ") + std::string("reading back: ") + present.status().ToString();
  } else {
    r.lost = static_cast<int64_t>(LostIds(writer.Acknowledged(), *present).size());
  }
  return r;
}

std::string Stats(std::vector<double> v) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  double median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%.2f / %.2f / %.2f", v.front(), median, v.back());
  return buf;
}

std::string Machine() {
  utsname u{};
  ::uname(&u);
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  char buf[256];
  std::snprintf(buf, sizeof(buf), "nproc %ld; CPU %s; memory %.0f GiB; kernel %s",
                ::sysconf(_SC_NPROCESSORS_ONLN), cpu.c_str(),
                static_cast<double>(pages) * page / (1024.0 * 1024 * 1024), u.release);
  return buf;
}

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  if (args.petrel.empty() || args.source_dir.empty()) {
    std::fprintf(stderr,
                 "failover_bench: set --petrel and --source-dir (or PETREL_BINARY and "
                 "PETREL_SOURCE_DIR); `make bench-failover` does\n");
    return 2;
  }
  InitLogging(LogFormat::kText, "warn", "bench");
  auto env = Envtest::Shared();
  if (!env.ok()) {
    std::fprintf(stderr, "failover_bench: envtest: %s\n", env.status().ToString().c_str());
    return 1;
  }
  std::random_device rd;
  fs::path work = fs::temp_directory_path() / ("petrel-failover-bench-" + std::to_string(rd()));
  fs::create_directories(work);
  std::fprintf(stderr, "failover_bench: logs and volumes in %s\n", work.c_str());

  std::vector<RunResult> results;
  bool all_ok = true;
  for (const std::string& mode : args.modes) {
    HaClusterOptions o;
    o.petrel_binary = args.petrel;
    o.source_dir = args.source_dir;
    o.work_dir = work / mode;
    fs::create_directories(o.work_dir);
    o.mode = mode == "sync" ? ReplicationMode::kSync : ReplicationMode::kAsync;
    o.address_block =
        "127." + std::to_string(100 + rd() % 150) + "." + std::to_string(1 + rd() % 250) + ".0/24";
    auto cluster = HaCluster::Start(**env, o);
    if (!cluster.ok()) {
      std::fprintf(stderr, "failover_bench: %s cluster: %s\n", mode.c_str(),
                   cluster.status().ToString().c_str());
      return 1;
    }
    Status up = (*cluster)->WaitConverged(std::chrono::seconds(240));
    if (!up.ok()) {
      std::fprintf(stderr, "failover_bench: %s\n%s\n", up.ToString().c_str(),
                   (*cluster)->Describe().c_str());
      return 1;
    }
    for (const std::string& fault : args.faults) {
      for (int run = 1; run <= args.runs; ++run) {
        RunResult r = RunOnce(**cluster, args, fault, run);
        std::fprintf(stderr,
                     "%-5s %-10s run %d: %s -> %s  unavailable %.2f s  promoted %.2f s  "
                     "endpoint %.2f s  (controller: %lld ms)  acked %lld  lost %lld  %s%s %s\n",
                     r.mode.c_str(), r.fault.c_str(), r.run, r.old_primary.c_str(),
                     r.new_primary.c_str(), r.unavailability_s, r.promotion_s, r.endpoint_s,
                     static_cast<long long>(r.reported_ms), static_cast<long long>(r.acknowledged),
                     static_cast<long long>(r.lost),
                     r.fenced_checked ? (r.fenced ? "fenced" : "NOT-FENCED") : "",
                     r.converged ? " rejoined" : " NOT-CONVERGED", r.note.c_str());
        results.push_back(r);
        if (!r.recovered || !r.converged) {
          all_ok = false;
          std::fprintf(stderr, "%s\n", (*cluster)->Describe().c_str());
          break;  // the next run would start from a broken cluster
        }
      }
    }
  }

  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("### %s\n\nMachine: %s\n\n", date, Machine().c_str());
  std::printf(
      "| mode | fault | runs (recovered) | write unavailability s (min / median / max) | "
      "promotion s (min / median / max) | leader endpoint moved s (min / median / max) | "
      "failover duration in status s (min / median / max) | acked writes | lost acked "
      "writes (runs with loss) | old primary fenced & rejoined |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& mode : args.modes) {
    for (const std::string& fault : args.faults) {
      std::vector<double> unavailable, promotion, reported, endpoint;
      int runs = 0, recovered = 0, runs_with_loss = 0, fenced = 0, fence_checked = 0, converged = 0;
      int64_t acked = 0, lost = 0;
      for (const RunResult& r : results) {
        if (r.mode != mode || r.fault != fault) continue;
        ++runs;
        if (r.recovered) {
          ++recovered;
          unavailable.push_back(r.unavailability_s);
        }
        if (r.promotion_s >= 0) promotion.push_back(r.promotion_s);
        if (r.reported_ms >= 0) reported.push_back(r.reported_ms / 1000.0);
        if (r.endpoint_s >= 0) endpoint.push_back(r.endpoint_s);
        acked += r.acknowledged;
        if (r.lost != 0) ++runs_with_loss;
        lost += std::max<int64_t>(r.lost, 0);
        fence_checked += r.fenced_checked ? 1 : 0;
        fenced += r.fenced_checked && r.fenced ? 1 : 0;
        converged += r.converged ? 1 : 0;
      }
      if (runs == 0) continue;
      std::string fencing =
          fault == "freeze"
              ? std::to_string(fenced) + "/" + std::to_string(fence_checked) + " fenced, " +
                    std::to_string(converged) + "/" + std::to_string(runs) + " rejoined"
              : std::to_string(converged) + "/" + std::to_string(runs) + " converged";
      std::printf("| %s | %s | %d (%d) | %s | %s | %s | %s | %lld | %lld (%d) | %s |\n",
                  mode.c_str(), fault.c_str(), runs, recovered, Stats(unavailable).c_str(),
                  Stats(promotion).c_str(), Stats(endpoint).c_str(), Stats(reported).c_str(),
                  static_cast<long long>(acked), static_cast<long long>(lost), runs_with_loss,
                  fencing.c_str());
    }
  }
  std::fflush(stdout);
  if (!args.keep) {
    std::error_code ec;
    fs::remove_all(work, ec);
  }
  return all_ok ? 0 : 1;
}

}  // namespace
}  // namespace petrel

int main(int argc, char** argv) { return petrel::Main(argc, argv); }
