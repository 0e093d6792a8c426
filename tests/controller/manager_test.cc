#include "controller/manager.h"

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "net/http.h"
#include "tests/controller/fake_kube_client.h"

namespace petrel {
namespace {
using namespace std::chrono_literals;
using testing_support::FakeKubeClient;

template <typename Pred>
bool WaitUntil(Pred pred, int tries = 1000) {
  for (int i = 0; i < tries; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

class CountingReconciler : public Reconciler {
 public:
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_[key.ToString()];
    return ReconcileResult::Done();
  }
  int Calls(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[key];
  }
  int Total() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (auto& [k, v] : calls_) n += v;
    return n;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> calls_;
};

Json Cluster(const std::string& ns, const std::string& name) {
  return {{"apiVersion", "petrel.dev/v1alpha1"},
          {"kind", "PostgresCluster"},
          {"metadata", {{"namespace", ns}, {"name", name}}}};
}

ManagerOptions Options(const std::string& identity, MetricsRegistry* metrics) {
  ManagerOptions o;
  o.metrics_bind_address = "127.0.0.1:0";
  o.health_probe_bind_address = "127.0.0.1:0";
  o.leader_election_config.namespace_ = "petrel-system";
  o.leader_election_config.name = "petrel-controller";
  o.leader_election_config.identity = identity;
  o.leader_election_config.lease_duration = 1000ms;
  o.leader_election_config.renew_deadline = 400ms;
  o.leader_election_config.retry_period = 50ms;
  o.metrics = metrics;
  return o;
}

std::string HolderOf(FakeKubeClient& fake) {
  auto lease = fake.Get(resources::kLease, ObjectKey{"petrel-system", "petrel-controller"});
  return lease.ok() ? (*lease)["spec"].value("holderIdentity", "") : "";
}

TEST(ManagerTest, LeadsServesProbesAndMetricsReconcilesAndReleasesOnStop) {
  FakeKubeClient fake;
  ASSERT_TRUE(fake.Create(resources::kPostgresCluster, Cluster("a", "db")).ok());
  MetricsRegistry metrics;
  Manager mgr(fake, Options("one", &metrics));
  auto reconciler = std::make_shared<CountingReconciler>();
  Controller& c = mgr.AddController("postgrescluster", reconciler);
  mgr.Watch(c, resources::kPostgresCluster, EnqueueSelf());
  auto run = std::async(std::launch::async, [&] { return mgr.Run(); });

  ASSERT_TRUE(WaitUntil([&] { return reconciler->Calls("a/db") == 1; }));
  EXPECT_TRUE(mgr.IsLeader());
  EXPECT_EQ(HolderOf(fake), "one");
  ASSERT_NE(mgr.health_port(), 0);
  std::string base = "http://127.0.0.1:";
  auto ready = HttpCall("GET", base + std::to_string(mgr.health_port()) + "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status().ToString();
  EXPECT_EQ(ready->status, 200);
  auto healthz = HttpCall("GET", base + std::to_string(mgr.health_port()) + "/healthz");
  ASSERT_TRUE(healthz.ok());
  EXPECT_EQ(healthz->status, 200);
  auto scraped = HttpCall("GET", base + std::to_string(mgr.metrics_port()) + "/metrics");
  ASSERT_TRUE(scraped.ok());
  EXPECT_NE(scraped->body.find("leader_election_master_status{name=\"petrel-controller\"} 1"),
            std::string::npos);
  EXPECT_NE(scraped->body.find(
                "controller_runtime_reconcile_total{controller=\"postgrescluster\",result=\"success\"} 1"),
            std::string::npos);

  // The cache-backed reader serves what the informers hold.
  ObjectPtr cached = mgr.Get(resources::kPostgresCluster, ObjectKey{"a", "db"});
  ASSERT_NE(cached, nullptr);
  EXPECT_EQ(mgr.List(resources::kPostgresCluster, "").size(), 1u);

  mgr.RequestStop();
  ASSERT_EQ(run.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
  EXPECT_EQ(HolderOf(fake), "") << "a clean stop releases the lease";
}

TEST(ManagerTest, AStandbyReconcilesNothingUntilTheLeaderStopsThenTakesOver) {
  FakeKubeClient fake;
  ASSERT_TRUE(fake.Create(resources::kPostgresCluster, Cluster("a", "db")).ok());
  MetricsRegistry m1, m2;
  auto r1 = std::make_shared<CountingReconciler>();
  auto r2 = std::make_shared<CountingReconciler>();
  Manager first(fake, Options("first", &m1));

  first.Watch(first.AddController("c", r1), resources::kPostgresCluster, EnqueueSelf());
  auto run1 = std::async(std::launch::async, [&] { return first.Run(); });
  ASSERT_TRUE(WaitUntil([&] { return r1->Calls("a/db") == 1; }));

  Manager second(fake, Options("second", &m2));
  second.Watch(second.AddController("c", r2), resources::kPostgresCluster, EnqueueSelf());
  auto run2 = std::async(std::launch::async, [&] { return second.Run(); });
  ASSERT_TRUE(WaitUntil([&] { return second.Ready(); }));
  std::this_thread::sleep_for(200ms);  // several retry periods
  EXPECT_FALSE(second.IsLeader());
  EXPECT_EQ(r2->Total(), 0) << "a standby must not reconcile";

  first.RequestStop();
  ASSERT_EQ(run1.wait_for(20s), std::future_status::ready);
  ASSERT_TRUE(WaitUntil([&] { return r2->Calls("a/db") == 1; }));
  EXPECT_EQ(HolderOf(fake), "second");
  second.RequestStop();
  ASSERT_EQ(run2.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(run2.get().ok());
}

TEST(ManagerTest, LostLeadershipStopsWorkersAndRunReportsIt) {
  FakeKubeClient fake;
  MetricsRegistry metrics;
  std::atomic<bool> lost_hook{false};
  ManagerOptions o = Options("one", &metrics);
  o.on_lost_leadership = [&] { lost_hook = true; };
  Manager mgr(fake, o);
  auto reconciler = std::make_shared<CountingReconciler>();
  mgr.Watch(mgr.AddController("c", reconciler), resources::kPostgresCluster, EnqueueSelf());
  auto run = std::async(std::launch::async, [&] { return mgr.Run(); });
  ASSERT_TRUE(WaitUntil([&] { return mgr.IsLeader(); }));
  fake.fail_updates = 1000000;
  ASSERT_EQ(run.wait_for(20s), std::future_status::ready);
  Status s = run.get();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_TRUE(lost_hook);
  EXPECT_FALSE(mgr.IsLeader());
}

TEST(ManagerTest, MalformedBindAddressIsRejectedBeforeAnythingStarts) {
  FakeKubeClient fake;
  MetricsRegistry metrics;
  ManagerOptions o = Options("one", &metrics);
  o.metrics_bind_address = "localhost";
  Manager mgr(fake, o);
  Status s = mgr.Run();
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_NE(s.message().find("host:port"), std::string::npos);
  EXPECT_EQ(fake.list_calls, 0);
}

TEST(ManagerTest, WatchedNamespacesLimitTheCache) {
  FakeKubeClient fake;
  ASSERT_TRUE(fake.Create(resources::kPostgresCluster, Cluster("a", "db")).ok());
  ASSERT_TRUE(fake.Create(resources::kPostgresCluster, Cluster("b", "db")).ok());
  ASSERT_TRUE(fake.Create(resources::kPostgresCluster, Cluster("c", "db")).ok());
  MetricsRegistry metrics;
  ManagerOptions o = Options("one", &metrics);
  o.namespaces = {"a", "b"};
  o.leader_election = LeaderElectionMode::kDisabled;
  Manager mgr(fake, o);
  auto reconciler = std::make_shared<CountingReconciler>();
  mgr.Watch(mgr.AddController("c", reconciler), resources::kPostgresCluster, EnqueueSelf());
  EXPECT_EQ(mgr.Informers(resources::kPostgresCluster).size(), 2u);
  EXPECT_EQ(mgr.Informers(resources::kNamespace).size(), 1u) << "cluster-scoped: one informer";
  auto run = std::async(std::launch::async, [&] { return mgr.Run(); });
  ASSERT_TRUE(WaitUntil([&] { return reconciler->Total() == 2; }));
  EXPECT_EQ(reconciler->Calls("c/db"), 0);
  EXPECT_EQ(mgr.List(resources::kPostgresCluster, "").size(), 2u);
  EXPECT_EQ(mgr.Get(resources::kPostgresCluster, ObjectKey{"c", "db"}), nullptr);
  mgr.RequestStop();
  ASSERT_EQ(run.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
}

TEST(ManagerTest, ReadingAnUndeclaredTypeWatchesItAndWaitsForItsCache) {
  FakeKubeClient fake;
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"namespace", "a"}, {"name", "db-1"}}}};
  ASSERT_TRUE(fake.Create(resources::kPod, pod).ok());
  MetricsRegistry metrics;
  ManagerOptions o = Options("one", &metrics);
  o.leader_election = LeaderElectionMode::kDisabled;
  Manager mgr(fake, o);
  auto run = std::async(std::launch::async, [&] { return mgr.Run(); });
  ASSERT_TRUE(WaitUntil([&] { return mgr.Ready(); }));
  // Nobody declared Pods: the first read starts an informer and returns once it has synced.
  ObjectPtr got = mgr.Get(resources::kPod, ObjectKey{"a", "db-1"});
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(mgr.List(resources::kPod, "a").size(), 1u);
  EXPECT_EQ(mgr.Informers(resources::kPod).size(), 1u) << "later reads share that informer";
  mgr.RequestStop();
  ASSERT_EQ(run.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
}

TEST(BindAddressTest, ParsesHostPortFormsAndRejectsTheRest) {
  std::string host;
  uint16_t port = 0;
  bool disabled = false;
  ASSERT_TRUE(ParseBindAddress(":8080", &host, &port, &disabled));
  EXPECT_EQ(host, "");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(ParseBindAddress("127.0.0.1:0", &host, &port, &disabled));
  EXPECT_EQ(host, "127.0.0.1");
  ASSERT_TRUE(ParseBindAddress("[::1]:9", &host, &port, &disabled));
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(ParseBindAddress("0", &host, &port, &disabled));
  EXPECT_TRUE(disabled);
  EXPECT_FALSE(ParseBindAddress("8080", &host, &port, &disabled));
  EXPECT_FALSE(ParseBindAddress("h:99999", &host, &port, &disabled));
  EXPECT_FALSE(ParseBindAddress("h:x", &host, &port, &disabled));
}

}  // namespace
}  // namespace petrel
