// Issue 8 end to end: a real 3-instance PostgresCluster (real kube-apiserver, the real
// `petrel controller` as its own process, instances and Services as local processes; see
// bench/failover/ha_cluster.h) survives the faults the issue names, and each test asserts the
// outcome, never a duration:
// - a crash of the primary (SIGKILL of every process): one writable primary again, writes
//   through the leader endpoint resume, replicas stream from it, replicated rows are kept;
// - node loss (SIGSTOP of every process), then thaw: a replica is promoted; after the thaw the
//   old primary commits nothing through any endpoint (leader, its own Service, its Pod IP, a
//   session the leader endpoint held), and it rejoins as a replica of the new primary on the
//   same volume;
// - synchronous mode: every write acknowledged to any of several concurrent writers is
//   present after a failover;
// - a switchover requested through status.targetPrimary moves the primary with no loss;
// - the controller killed in the middle of a failover and started again: exactly one
//   writable primary, the others streaming from it.
// All through the fault, a sampler asks every instance on its Pod IP whether it is a writable
// primary: at no sample may two answer yes.
//
// One async cluster is shared by the async tests (each starts by waiting until it has
// converged) and one sync cluster by the sync test: a cluster takes most of a minute to
// create here, and the tests stay within a few minutes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "bench/failover/ha_cluster.h"
#include "bench/failover/writer.h"
#include "tests/local/local_test_util.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using namespace std::chrono_literals;
using testing::WaitFor;

constexpr auto kConverge = std::chrono::seconds(150);
constexpr auto kRecovery = std::chrono::seconds(60);

// One SQL statement on `target`, bounded by 2 s.
Result<PgRows> Sql(const PgTarget& target, const std::string& sql,
                   const std::vector<std::string>& params = {}) {
  DeadlineConnOptions o;
  o.connect_timeout = 2s;
  o.statement_timeout = 2s;
  o.application_name = "petrel-ha-test";
  PETREL_ASSIGN_OR_RETURN(
      DeadlineConn c, DeadlineConn::Connect(target.host, target.port, target.user, target.password,
                                            target.dbname, o));
  return c.Exec(sql, params);
}

// Asks every instance, on its Pod IP and every ~200 ms, whether it is a writable primary
// (pg_is_in_recovery() = false), and keeps every answer with the interval it was asked in.
// Sampling cannot prove that two primaries never overlapped, but it can prove that they did:
// B answered "primary" while A answered "primary" both in its sample just before B's and in
// the one just after (A was never seen stepping down in between).
class PrimarySampler {
 public:
  explicit PrimarySampler(HaCluster& cluster) {
    for (const InstanceView& i : cluster.Instances()) {
      auto t = cluster.PodTarget(i.name);
      if (!t.ok()) continue;
      threads_.emplace_back([this, name = i.name, target = *t] { Sample(name, target); });
    }
  }
  ~PrimarySampler() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // "" when no overlap was proven; else what was seen.
  std::string Violation() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [b, b_samples] : samples_) {
      for (const Answer& mid : b_samples) {
        if (!mid.primary) continue;
        for (const auto& [a, a_samples] : samples_) {
          if (a == b) continue;
          for (size_t i = 0; i + 1 < a_samples.size(); ++i) {
            const Answer& before = a_samples[i];
            const Answer& after = a_samples[i + 1];
            if (before.primary && after.primary && before.end < mid.start &&
                after.start > mid.end) {
              return b + " answered as a writable primary while " + a + " did so before and after";
            }
          }
        }
      }
    }
    return "";
  }

 private:
  struct Answer {
    std::chrono::steady_clock::time_point start, end;
    bool primary = false;
  };
  void Sample(const std::string& name, const PgTarget& target) {
    while (!stop_) {
      auto start = std::chrono::steady_clock::now();
      auto r = Sql(target, "SELECT pg_is_in_recovery()");
      Answer answer{start, std::chrono::steady_clock::now(), r.ok() && r->GetOr(0, 0) == "f"};
      {
        std::lock_guard<std::mutex> lock(mu_);
        samples_[name].push_back(answer);
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, std::vector<Answer>> samples_;  // guarded by mu_
};

class HaE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto env = Envtest::Shared();
    ASSERT_TRUE(env.ok()) << env.status().ToString();
    env_ = *env;
  }
  static void TearDownTestSuite() {
    clusters_.clear();
    dirs_.clear();
  }

  // The shared cluster of `mode`, created on first use; null if it could not be started.
  HaCluster* Cluster(ReplicationMode mode) {
    auto it = clusters_.find(mode);
    if (it != clusters_.end()) return it->second.get();
    const char* binary = std::getenv("PETREL_BINARY");
    const char* source = std::getenv("PETREL_SOURCE_DIR");
    EXPECT_TRUE(binary && source) << "PETREL_BINARY and PETREL_SOURCE_DIR must be set (ctest does)";
    auto dir = std::make_unique<testing::TempDir>("petrel-ha-e2e");
    HaClusterOptions o;
    o.petrel_binary = binary ? binary : "";
    o.source_dir = source ? source : "";
    o.work_dir = dir->path();
    o.mode = mode;
    o.address_block = testing::RandomLoopbackBlock();
    auto cluster = HaCluster::Start(*env_, o);
    EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
    dirs_.push_back(std::move(dir));
    if (!cluster.ok()) return nullptr;
    return clusters_.emplace(mode, std::move(cluster).value()).first->second.get();
  }

  // Waits until `cluster` has converged; the failure message tells its story.
  static ::testing::AssertionResult Converged(HaCluster& cluster,
                                              std::chrono::seconds timeout = kConverge) {
    Status s = cluster.WaitConverged(timeout);
    if (s.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << s.ToString() << "\n" << cluster.Describe();
  }

  // The replica answers on its Pod IP that it streams WAL from `primary`'s Pod IP.
  static bool StreamsFrom(HaCluster& cluster, const std::string& replica,
                          const std::string& primary) {
    auto r = cluster.PodTarget(replica);
    auto p = cluster.Instance(primary);
    if (!r.ok() || !p) return false;
    auto rows = Sql(*r, "SELECT status, sender_host FROM pg_stat_wal_receiver");
    return rows.ok() && rows->GetOr(0, 0) == "streaming" && rows->GetOr(0, 1) == p->pod_ip;
  }

  // Every instance but `primary` streams from it.
  static void ExpectReplicasStreamFrom(HaCluster& cluster, const std::string& primary) {
    for (const InstanceView& i : cluster.Instances()) {
      if (i.name == primary) continue;
      EXPECT_TRUE(StreamsFrom(cluster, i.name, primary)) << i.name;
    }
  }

  // An Event with `reason` whose note names every one of `names`.
  static ::testing::AssertionResult EventTells(HaCluster& cluster, const std::string& reason,
                                               const std::vector<std::string>& names) {
    for (const Json& e : cluster.Events()) {
      if (e.value("reason", "") != reason) continue;
      std::string note = e.value("note", "");
      bool all = true;
      for (const std::string& n : names) all = all && note.find(n) != std::string::npos;
      if (all) return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "no " << reason << " event naming the instances\n"
                                         << cluster.Describe();
  }

  static std::string PvcUid(HaCluster& cluster, const std::string& instance) {
    auto pvc = cluster.client().Get(resources::kPersistentVolumeClaim, {cluster.ns(), instance});
    return pvc.ok() ? meta::Uid(*pvc) : "";
  }

  // A writer through the leader endpoint into a fresh table named `table`.
  static std::unique_ptr<FailoverWriter> StartWriter(HaCluster& cluster, const std::string& table,
                                                     int64_t first_id = 1, int64_t step = 1) {
    auto leader = cluster.LeaderTarget();
    EXPECT_TRUE(leader.ok()) << leader.status().ToString();
    if (!leader.ok()) return nullptr;
    Status created = CreateWritesTable(*leader, table);
    EXPECT_TRUE(created.ok()) << created.ToString();
    WriterOptions o;
    o.target = *leader;
    o.table = table;
    o.first_id = first_id;
    o.id_step = step;
    auto w = std::make_unique<FailoverWriter>(o);
    w->Start();
    return w;
  }

  // Every acknowledged id of `writers` is in `table`, read on the current leader.
  static ::testing::AssertionResult NoAcknowledgedWriteLost(
      HaCluster& cluster, const std::string& table,
      const std::vector<const FailoverWriter*>& writers) {
    auto leader = cluster.LeaderTarget();
    if (!leader.ok()) return ::testing::AssertionFailure() << leader.status().ToString();
    Result<std::vector<int64_t>> present = Status(UnavailableError("not read"));
    WaitFor([&] { return (present = ReadWrittenIds(*leader, table)).ok(); }, 20s);
    if (!present.ok()) return ::testing::AssertionFailure() << present.status().ToString();
    std::vector<int64_t> acked;
    for (const FailoverWriter* w : writers) {
      auto a = w->Acknowledged();
      acked.insert(acked.end(), a.begin(), a.end());
    }
    auto lost = LostIds(acked, *present);
    if (lost.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << lost.size() << " of " << acked.size()
                                         << " acknowledged ids are missing, first " << lost[0];
  }

  static Envtest* env_;
  static std::map<ReplicationMode, std::unique_ptr<HaCluster>> clusters_;
  static std::vector<std::unique_ptr<testing::TempDir>> dirs_;
};

Envtest* HaE2e::env_ = nullptr;
std::map<ReplicationMode, std::unique_ptr<HaCluster>> HaE2e::clusters_;
std::vector<std::unique_ptr<testing::TempDir>> HaE2e::dirs_;

TEST_F(HaE2e, SwitchoverThroughTargetPrimaryMovesThePrimaryWithoutLosingWrites) {
  HaCluster* started = Cluster(ReplicationMode::kAsync);
  ASSERT_NE(started, nullptr);
  HaCluster& cluster = *started;
  ASSERT_TRUE(Converged(cluster));
  const std::string old_primary = cluster.CurrentPrimary();
  std::string target;
  for (const InstanceView& i : cluster.Instances()) {
    if (i.name != old_primary) target = i.name;
  }
  auto writer = StartWriter(cluster, "switchover_writes");
  ASSERT_TRUE(writer);
  ASSERT_TRUE(WaitFor([&] { return writer->acknowledged_count() > 0; }, 20s))
      << writer->LastError();
  PrimarySampler sampler(cluster);

  ASSERT_TRUE(cluster.RequestSwitchover(target).ok());
  ASSERT_TRUE(WaitFor([&] { return cluster.CurrentPrimary() == target; }, kRecovery))
      << cluster.Describe();
  ASSERT_TRUE(Converged(cluster));
  const int64_t before = writer->acknowledged_count();
  EXPECT_TRUE(WaitFor([&] { return writer->acknowledged_count() > before; }, 20s))
      << "writes through the leader endpoint did not resume: " << writer->LastError();
  writer->Stop();
  sampler.Stop();

  EXPECT_EQ(cluster.WritablePrimaries(), std::vector<std::string>{target});
  EXPECT_TRUE(StreamsFrom(cluster, old_primary, target)) << cluster.Describe();
  EXPECT_TRUE(EventTells(cluster, "SwitchoverCompleted", {old_primary, target}));
  EXPECT_TRUE(NoAcknowledgedWriteLost(cluster, "switchover_writes", {writer.get()}));
  EXPECT_EQ(sampler.Violation(), "");
}

TEST_F(HaE2e, CrashOfThePrimaryEndsWithOneWritablePrimaryAndItsReplicatedRows) {
  HaCluster* started = Cluster(ReplicationMode::kAsync);
  ASSERT_NE(started, nullptr);
  HaCluster& cluster = *started;
  ASSERT_TRUE(Converged(cluster));
  const std::string old_primary = cluster.CurrentPrimary();
  auto leader = cluster.LeaderTarget();
  ASSERT_TRUE(leader.ok());
  // A row every replica has before the crash: no failover may lose it, async or not.
  ASSERT_TRUE(Sql(*leader, "CREATE TABLE IF NOT EXISTS crash_kept (v text)").ok());
  ASSERT_TRUE(Sql(*leader, "INSERT INTO crash_kept VALUES ('before the crash')").ok());
  for (const InstanceView& i : cluster.Instances()) {
    if (i.name == old_primary) continue;
    ASSERT_TRUE(WaitFor(
        [&] {
          auto t = cluster.PodTarget(i.name);
          auto r = t.ok() ? Sql(*t, "SELECT count(*) FROM crash_kept") : Result<PgRows>(t.status());
          return r.ok() && r->GetOr(0, 0) == "1";
        },
        30s))
        << i.name << " never replayed the row";
  }
  auto writer = StartWriter(cluster, "crash_writes");
  ASSERT_TRUE(writer);
  ASSERT_TRUE(WaitFor([&] { return writer->acknowledged_count() > 0; }, 20s))
      << writer->LastError();
  PrimarySampler sampler(cluster);

  ASSERT_TRUE(cluster.Crash(old_primary).ok());
  const int64_t at_crash = writer->acknowledged_count();
  EXPECT_TRUE(WaitFor([&] { return writer->acknowledged_count() > at_crash + 10; }, kRecovery))
      << "writes through the leader endpoint did not resume: " << writer->LastError() << "\n"
      << cluster.Describe();
  ASSERT_TRUE(Converged(cluster));
  writer->Stop();
  sampler.Stop();

  const std::string primary = cluster.CurrentPrimary();
  EXPECT_EQ(cluster.WritablePrimaries(), std::vector<std::string>{primary});
  auto now_leader = cluster.LeaderTarget();
  ASSERT_TRUE(now_leader.ok());
  auto kept = Sql(*now_leader, "SELECT v FROM crash_kept");
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(kept->GetOr(0, 0), "before the crash");
  ExpectReplicasStreamFrom(cluster, primary);
  EXPECT_EQ(sampler.Violation(), "");
}

TEST_F(HaE2e, FrozenPrimaryIsReplacedFencedAfterThawAndRejoinsOnItsVolume) {
  HaCluster* started = Cluster(ReplicationMode::kAsync);
  ASSERT_NE(started, nullptr);
  HaCluster& cluster = *started;
  ASSERT_TRUE(Converged(cluster));
  const std::string old_primary = cluster.CurrentPrimary();
  const std::string old_pvc = PvcUid(cluster, old_primary);
  auto old_ip = cluster.Instance(old_primary)->pod_ip;
  auto leader = cluster.LeaderTarget();
  ASSERT_TRUE(leader.ok());
  ASSERT_TRUE(Sql(*leader, "CREATE TABLE IF NOT EXISTS fence_probe (via text)").ok());
  // A session through the leader endpoint that is open on the old primary when it freezes.
  DeadlineConnOptions held_options;
  held_options.statement_timeout = 2s;
  auto held = DeadlineConn::Connect(leader->host, leader->port, leader->user, leader->password,
                                    leader->dbname, held_options);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  ASSERT_EQ(held->Exec("SELECT host(inet_server_addr())")->GetOr(0, 0), old_ip);
  auto writer = StartWriter(cluster, "freeze_writes");
  ASSERT_TRUE(writer);
  ASSERT_TRUE(WaitFor([&] { return writer->acknowledged_count() > 0; }, 20s))
      << writer->LastError();
  PrimarySampler sampler(cluster);

  ASSERT_TRUE(cluster.Freeze(old_primary).ok());
  std::string new_primary;
  bool replaced = WaitFor(
      [&] {
        new_primary = cluster.CurrentPrimary();
        if (new_primary.empty() || new_primary == old_primary) return false;
        auto t = cluster.PodTarget(new_primary);
        return t.ok() && cluster.AcceptsWrites(*t);
      },
      kRecovery);
  if (!replaced) cluster.Thaw();
  ASSERT_TRUE(replaced) << "no replica was promoted while " << old_primary << " was frozen\n"
                        << cluster.Describe();
  const int64_t at_failover = writer->acknowledged_count();
  EXPECT_TRUE(WaitFor([&] { return writer->acknowledged_count() > at_failover; }, kRecovery))
      << "writes through the leader endpoint did not resume: " << writer->LastError();

  // Thawed: from now on the old primary must not commit anything, whichever way it is asked.
  cluster.Thaw();
  auto own_service = cluster.InstanceServiceTarget(old_primary);
  auto pod = cluster.PodTarget(old_primary);
  ASSERT_TRUE(own_service.ok() && pod.ok());
  std::vector<std::string> committed_on_old;
  auto held_write = held->Exec(
      "INSERT INTO fence_probe VALUES ('held leader session') "
      "RETURNING host(inet_server_addr())");
  if (held_write.ok()) committed_on_old.push_back("the held leader session");
  auto window_end = std::chrono::steady_clock::now() + 8s;
  int leader_commits = 0;
  while (std::chrono::steady_clock::now() < window_end) {
    for (auto& [via, target] : std::vector<std::pair<std::string, PgTarget>>{
             {"its own Service", *own_service}, {"its Pod IP", *pod}, {"the leader", *leader}}) {
      auto r = Sql(target, "INSERT INTO fence_probe VALUES ($1) RETURNING host(inet_server_addr())",
                   {via});
      if (!r.ok()) continue;
      if (r->GetOr(0, 0) == old_ip) committed_on_old.push_back(via);
      if (via == "the leader") ++leader_commits;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(committed_on_old.empty())
      << "the replaced primary committed through " << committed_on_old.front();
  EXPECT_GT(leader_commits, 0) << "the leader endpoint took no write after the thaw";

  // Rejoin: the old primary streams from the new one, on the same volume.
  ASSERT_TRUE(Converged(cluster));
  writer->Stop();
  sampler.Stop();
  EXPECT_EQ(cluster.CurrentPrimary(), new_primary);
  EXPECT_TRUE(StreamsFrom(cluster, old_primary, new_primary)) << cluster.Describe();
  EXPECT_EQ(PvcUid(cluster, old_primary), old_pvc);
  // Status and events tell the story: who failed, who was promoted.
  Json last = cluster.Cluster()["status"].value("lastFailover", Json::object());
  EXPECT_EQ(last.value("from", ""), old_primary) << last.dump();
  EXPECT_EQ(last.value("to", ""), new_primary) << last.dump();
  EXPECT_TRUE(EventTells(cluster, "FailoverCompleted", {new_primary, old_primary}));
  EXPECT_EQ(cluster.WritablePrimaries(), std::vector<std::string>{new_primary});
  EXPECT_EQ(sampler.Violation(), "");
}

TEST_F(HaE2e, ControllerKilledMidFailoverResumesToOneWritablePrimary) {
  HaCluster* started = Cluster(ReplicationMode::kAsync);
  ASSERT_NE(started, nullptr);
  HaCluster& cluster = *started;
  ASSERT_TRUE(Converged(cluster));
  const std::string old_primary = cluster.CurrentPrimary();
  auto writer = StartWriter(cluster, "controller_crash_writes");
  ASSERT_TRUE(writer);
  ASSERT_TRUE(WaitFor([&] { return writer->acknowledged_count() > 0; }, 20s))
      << writer->LastError();
  PrimarySampler sampler(cluster);

  ASSERT_TRUE(cluster.Freeze(old_primary).ok());
  // SIGKILL the controller as soon as it has recorded the failover it started
  // (status.primaryChange) and before the new primary is in place: it dies mid-failover. It
  // stays dead for a while, then a new one starts and must finish the job.
  bool started_failover = WaitFor(
      [&] {
        Json status = cluster.Cluster().value("status", Json::object());
        return status.contains("primaryChange") ||
               status.value("currentPrimary", old_primary) != old_primary;
      },
      kRecovery);
  cluster.KillController();
  std::this_thread::sleep_for(3s);
  ASSERT_TRUE(cluster.StartController().ok());
  EXPECT_TRUE(started_failover) << "the controller never started a failover\n"
                                << cluster.Describe();

  std::string new_primary;
  bool replaced = WaitFor(
      [&] {
        new_primary = cluster.CurrentPrimary();
        if (new_primary.empty() || new_primary == old_primary) return false;
        auto t = cluster.PodTarget(new_primary);
        return t.ok() && cluster.AcceptsWrites(*t);
      },
      kRecovery);
  cluster.Thaw();
  ASSERT_TRUE(replaced) << cluster.Describe();
  ASSERT_TRUE(Converged(cluster));
  writer->Stop();
  sampler.Stop();

  EXPECT_EQ(cluster.WritablePrimaries(), std::vector<std::string>{new_primary});
  ExpectReplicasStreamFrom(cluster, new_primary);
  EXPECT_EQ(sampler.Violation(), "");
}

TEST_F(HaE2e, SynchronousModeLosesNoAcknowledgedWriteOfConcurrentWritersOnFailover) {
  HaCluster* started = Cluster(ReplicationMode::kSync);
  ASSERT_NE(started, nullptr);
  HaCluster& cluster = *started;
  ASSERT_TRUE(Converged(cluster));
  const std::string old_primary = cluster.CurrentPrimary();
  constexpr int kWriters = 4;
  std::vector<std::unique_ptr<FailoverWriter>> writers;
  for (int k = 0; k < kWriters; ++k) {
    writers.push_back(StartWriter(cluster, "sync_writes", k + 1, kWriters));
    ASSERT_TRUE(writers.back());
  }
  auto total = [&] {
    int64_t n = 0;
    for (auto& w : writers) n += w->acknowledged_count();
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return total() > 200; }, 30s)) << writers[0]->LastError();
  PrimarySampler sampler(cluster);

  ASSERT_TRUE(cluster.Freeze(old_primary).ok());
  std::string new_primary;
  bool replaced = WaitFor(
      [&] {
        new_primary = cluster.CurrentPrimary();
        return !new_primary.empty() && new_primary != old_primary;
      },
      kRecovery);
  const int64_t at_failover = total();
  bool resumed = replaced && WaitFor([&] { return total() > at_failover + 50; }, kRecovery);
  cluster.Thaw();
  ASSERT_TRUE(replaced) << cluster.Describe();
  EXPECT_TRUE(resumed) << "writes did not resume: " << writers[0]->LastError();
  ASSERT_TRUE(Converged(cluster));
  std::vector<const FailoverWriter*> all;
  for (auto& w : writers) {
    w->Stop();
    all.push_back(w.get());
  }
  sampler.Stop();

  EXPECT_TRUE(NoAcknowledgedWriteLost(cluster, "sync_writes", all));
  EXPECT_EQ(cluster.WritablePrimaries(), std::vector<std::string>{cluster.CurrentPrimary()});
  EXPECT_EQ(sampler.Violation(), "");
}

}  // namespace
}  // namespace petrel
