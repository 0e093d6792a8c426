// The cluster reconciler against a real kube-apiserver, running with exactly the RBAC of
// manifests/ (a token user named like the controller's ServiceAccount, bound by the
// manifests' ClusterRoleBinding). Instances are modelled by FakeInstances (envtest has no
// kubelet to run Postgres); the test plays the kubelet by giving Pods an IP.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include "controller/event_recorder.h"
#include "reconcilers/cluster_reconciler.h"
#include "tests/reconcilers/client_object_reader.h"
#include "tests/reconcilers/fake_instances.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

constexpr const char* kControllerUser = "system:serviceaccount:petrel-system:petrel";

class ClusterEnvtest : public EnvtestTest {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(Envtest::Configure({{{kControllerUser, {}}}}).ok()); }

  void SetUp() override {
    EnvtestTest::SetUp();
    if (HasFatalFailure()) return;
    InstallOnce({"crds/", "manifests/"}, {"crd/postgresclusters.petrel.dev"});
    if (HasFatalFailure()) return;
    auto token = env().TokenFor(kControllerUser);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    auto client = env().ClientAs(*token);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    controller_client_ = std::move(*client);
    controller_client_->SetObserver([this](const std::string& verb, int, double) {
      if (verb == "create" || verb == "update" || verb == "patch" || verb == "delete") ++writes_;
    });
    reader_ = std::make_unique<ClientObjectReader>(*controller_client_);
    events_ = std::make_unique<KubeEventRecorder>(*controller_client_, "postgrescluster");
    leases_ = std::make_unique<LeaseKeeper>(instances_, Clock::Real());
    ClusterReconcilerDeps deps{*reader_, *controller_client_, *events_, instances_, Clock::Real()};
    deps.leases = leases_.get();
    deps.metrics = &metrics_;
    reconciler_ = std::make_unique<ClusterReconciler>(std::move(deps));
  }

  void CreateCluster(int replicas) {
    Json cluster = {{"apiVersion", "petrel.dev/v1alpha1"},
                    {"kind", "PostgresCluster"},
                    {"metadata", {{"name", "db"}, {"namespace", ns_}}},
                    {"spec",
                     {{"replicas", replicas},
                      {"image", "ghcr.io/petrel-dev/postgres:15.4"},
                      {"storage", {{"size", "1Gi"}}}}}};
    auto r = client().Create(resources::kPostgresCluster, cluster);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // What a kubelet would do: give every Pod an IP and mark it running.
  void Kubelet() {
    auto pods = client().List(resources::kPod, ns_, {});
    ASSERT_TRUE(pods.ok());
    for (auto& pod : pods->items) {
      if (pod.contains("status") && pod["status"].contains("podIP")) continue;
      int serial = InstanceSerial("db", meta::Name(pod));
      pod["status"]["podIP"] = "10.1.0." + std::to_string(serial);
      pod["status"]["phase"] = "Running";
      auto r = client().UpdateStatus(resources::kPod, pod);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
  }

  Json Cluster() {
    auto r = client().Get(resources::kPostgresCluster, {ns_, "db"});
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : Json();
  }

  // Reconciles (and plays the kubelet) until the cluster reports Healthy with `replicas`
  // instances; bounded.
  void ConvergeTo(int replicas) {
    for (int round = 0; round < 15; ++round) {
      auto r = reconciler_->Reconcile({ns_, "db"});
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      Kubelet();
      Json status = Cluster().value("status", Json::object());
      if (status.value("phase", "") == "Healthy" && status.value("readyReplicas", 0) == replicas &&
          status.value("replicas", 0) == replicas) {
        return;
      }
    }
    FAIL() << "not converged: " << Cluster()["status"].dump(2);
  }

  // Reconciles as the controller would (sleeping for the requeue it asks for, capped) until
  // `done` holds for the published status; bounded by a deadline.
  void ReconcileUntil(const std::function<bool(const PostgresClusterStatus&)>& done,
                      const std::string& what) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = reconciler_->Reconcile({ns_, "db"});
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      Kubelet();
      auto status = PostgresClusterStatus::FromJson(Cluster().value("status", Json::object()));
      if (done(status)) return;
      auto pause = std::min<std::chrono::milliseconds>(
          r->requeue_after.value_or(std::chrono::milliseconds(200)), std::chrono::milliseconds(500));
      std::this_thread::sleep_for(pause);
    }
    FAIL() << "timed out waiting for " << what << ": " << Cluster()["status"].dump(2);
  }

  std::vector<std::string> EventReasons() {
    std::vector<std::string> out;
    for (const auto& e : Items(resources::kEvent)) out.push_back(e.value("reason", ""));
    return out;
  }

  std::vector<Json> Items(const ResourceType& type) {
    auto r = client().List(type, ns_, {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->items : std::vector<Json>{};
  }

  std::unique_ptr<HttpKubeClient> controller_client_;
  std::unique_ptr<ClientObjectReader> reader_;
  std::unique_ptr<KubeEventRecorder> events_;
  FakeInstances instances_;
  MetricsRegistry metrics_;
  std::unique_ptr<LeaseKeeper> leases_;
  std::unique_ptr<ClusterReconciler> reconciler_;
  std::atomic<int> writes_{0};
};

TEST_F(ClusterEnvtest, CreatesOwnedObjectsAndReportsStatus) {
  CreateCluster(3);
  ConvergeTo(3);
  Json cluster = Cluster();
  std::string uid = meta::Uid(cluster);

  auto pods = Items(resources::kPod);
  ASSERT_EQ(pods.size(), 3u);
  for (const auto& pod : pods) {
    EXPECT_EQ(meta::ControllerOf(pod)->uid, uid) << meta::Name(pod);
    EXPECT_EQ(meta::Label(pod, "petrel.dev/role"),
              meta::Name(pod) == "db-1" ? "primary" : "replica");
  }
  auto pvcs = Items(resources::kPersistentVolumeClaim);
  ASSERT_EQ(pvcs.size(), 3u);
  for (const auto& pvc : pvcs)
    EXPECT_FALSE(meta::ControllerOf(pvc)) << "Retain: volumes outlive the cluster";
  std::set<std::string> services;
  for (const auto& s : Items(resources::kService)) {
    services.insert(meta::Name(s));
    EXPECT_EQ(meta::ControllerOf(s)->uid, uid);
  }
  EXPECT_EQ(services, (std::set<std::string>{"db-rw", "db-ro", "db-r", "db-1", "db-2", "db-3"}));
  std::set<std::string> secrets;
  for (const auto& s : Items(resources::kSecret)) {
    if (meta::Label(s, "petrel.dev/cluster") != "db") continue;
    secrets.insert(meta::Name(s));
    EXPECT_EQ(meta::ControllerOf(s)->uid, uid);
    EXPECT_EQ(s["type"], "kubernetes.io/basic-auth");
    EXPECT_GE(s["data"]["password"].get<std::string>().size(), 40u);
  }
  EXPECT_EQ(secrets, (std::set<std::string>{"db-superuser", "db-replication", "db-petrel"}));
  auto pdbs = Items(resources::kPodDisruptionBudget);
  ASSERT_EQ(pdbs.size(), 2u);
  for (const auto& p : pdbs) EXPECT_EQ(meta::ControllerOf(p)->uid, uid);

  const Json& status = cluster["status"];
  EXPECT_EQ(status["currentPrimary"], "db-1");
  EXPECT_EQ(status["selector"], "petrel.dev/cluster=db");
  EXPECT_EQ(status["postgresMajorVersion"], 15);
  EXPECT_EQ(status["observedGeneration"], meta::Generation(cluster));
  EXPECT_EQ(instances_.specs()["db-1"].role, InstanceRole::kPrimary);
  EXPECT_EQ(instances_.specs()["db-2"].primary->host, "10.1.0.1");

  // A fresh discovery cache: the shared one may predate the CRD.
  auto table = env().Kubectl({"get", "pgc", "db", "-n", ns_, "--no-headers",
                              "--cache-dir=" + env().Dir() + "/kubectl-cache-" + ns_});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::istringstream cols(table.out);
  std::vector<std::string> fields;
  for (std::string f; cols >> f;) fields.push_back(f);
  ASSERT_GE(fields.size(), 7u) << table.out;
  EXPECT_EQ(std::vector<std::string>(fields.begin(), fields.begin() + 6),
            (std::vector<std::string>{"db", "3", "3", "db-1", "15", "Healthy"}))
      << table.out;
}

TEST_F(ClusterEnvtest, SteadyStateMakesNoWrites) {
  CreateCluster(2);
  ConvergeTo(2);
  int puts = instances_.puts();
  writes_ = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = reconciler_->Reconcile({ns_, "db"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->requeue_after.has_value());
    EXPECT_EQ(*r->requeue_after, std::chrono::seconds(60));
  }
  EXPECT_EQ(writes_.load(), 0);
  EXPECT_EQ(instances_.puts(), puts);
}

TEST_F(ClusterEnvtest, KubectlScaleConvergesUpAndDownKeepingVolumes) {
  CreateCluster(2);
  ConvergeTo(2);
  std::string cache = "--cache-dir=" + env().Dir() + "/kubectl-cache-" + ns_;
  auto up = env().Kubectl({"scale", "pgc", "db", "-n", ns_, "--replicas=4", cache});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  ConvergeTo(4);
  EXPECT_EQ(Items(resources::kPod).size(), 4u);
  EXPECT_EQ(instances_.specs()["db-1"].replication_slots.size(), 3u);

  auto down = env().Kubectl({"scale", "pgc", "db", "-n", ns_, "--replicas=1", cache});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  ConvergeTo(1);
  auto pods = Items(resources::kPod);
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_EQ(meta::Name(pods[0]), "db-1");
  EXPECT_EQ(Items(resources::kPersistentVolumeClaim).size(), 4u);
  EXPECT_EQ(Items(resources::kPodDisruptionBudget).size(), 0u) << "one instance: no PDB";
}

TEST_F(ClusterEnvtest, HandEditedServiceIsReverted) {
  CreateCluster(1);
  ConvergeTo(1);
  auto patched = client().Patch(resources::kService, {ns_, "db-rw"}, PatchType::kMerge,
                                {{"spec", {{"selector", {{"app", "hijack"}}}}}});
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  auto r = reconciler_->Reconcile({ns_, "db"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto svc = client().Get(resources::kService, {ns_, "db-rw"});
  ASSERT_TRUE(svc.ok());
  EXPECT_EQ((*svc)["spec"]["selector"],
            Json({{"petrel.dev/cluster", "db"}, {"petrel.dev/role", "primary"}}));
}

TEST_F(ClusterEnvtest, ShrinkingStorageIsRefusedWithAConditionAndAnEvent) {
  CreateCluster(1);
  ConvergeTo(1);
  auto grow = client().Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                             {{"spec", {{"storage", {{"size", "512Mi"}}}}}});
  ASSERT_TRUE(grow.ok()) << grow.status().ToString();
  writes_ = 0;
  auto r = reconciler_->Reconcile({ns_, "db"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(writes_.load(), 2) << "the status and one event, nothing else";
  Json status = Cluster()["status"];
  bool found = false;
  for (const auto& c : status["conditions"]) {
    if (c["type"] == "Degraded") {
      found = true;
      EXPECT_EQ(c["status"], "True");
      EXPECT_EQ(c["reason"], "StorageShrinkRefused");
    }
  }
  EXPECT_TRUE(found);
  auto events = client().List(resources::kEvent, ns_, {});
  ASSERT_TRUE(events.ok());
  bool warned = false;
  for (const auto& e : events->items) warned |= e.value("reason", "") == "StorageShrinkRefused";
  EXPECT_TRUE(warned);
  auto pvc = client().Get(resources::kPersistentVolumeClaim, {ns_, "db-1"});
  ASSERT_TRUE(pvc.ok());
  EXPECT_EQ((*pvc)["spec"]["resources"]["requests"]["storage"], "1Gi");
}

}  // namespace
}  // namespace petrel

namespace petrel {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A user asks for a switchover with a merge patch on the status subresource (what
// `kubectl petrel promote` sends): refused when the target is not a ready replica, carried
// out otherwise, with the term growing and the old primary following the new one.
TEST_F(ClusterEnvtest, SwitchoverRequestedThroughTheStatusSubresource) {
  CreateCluster(3);
  ConvergeTo(3);
  PatchOptions status_patch;
  status_patch.subresource = "status";
  auto bad = client().Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                            {{"status", {{"targetPrimary", "db-9"}}}}, status_patch);
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  ReconcileUntil([](const PostgresClusterStatus& s) { return s.target_primary == "db-1"; },
                 "the refused request to be cleared");
  EXPECT_TRUE(Contains(EventReasons(), "SwitchoverRefused"));

  auto good = client().Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                             {{"status", {{"targetPrimary", "db-3"}}}}, status_patch);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ReconcileUntil(
      [](const PostgresClusterStatus& s) {
        return s.current_primary == "db-3" && !s.primary_change && s.phase == "Healthy";
      },
      "db-3 to be the primary");
  auto status = PostgresClusterStatus::FromJson(Cluster()["status"]);
  EXPECT_EQ(status.term, 2);
  EXPECT_EQ(status.failovers, 0);
  auto specs = instances_.specs();
  EXPECT_EQ(specs["db-3"].role, InstanceRole::kPrimary);
  EXPECT_EQ(specs["db-3"].term, 2);
  EXPECT_EQ(specs["db-1"].role, InstanceRole::kReplica);
  EXPECT_FALSE(specs["db-1"].fenced);
  EXPECT_EQ(specs["db-1"].primary->host, "10.1.0.3");
  EXPECT_GT(instances_.leases("db-3"), 0) << "the new primary's lease is renewed";
  auto reasons = EventReasons();
  EXPECT_TRUE(Contains(reasons, "SwitchoverStarted"));
  EXPECT_TRUE(Contains(reasons, "SwitchoverCompleted"));
  for (const auto& pod : Items(resources::kPod)) {
    EXPECT_EQ(meta::Label(pod, "petrel.dev/role"), meta::Name(pod) == "db-3" ? "primary" : "replica");
  }
}

// The primary stops answering: the controller revokes, waits out the old lease (bounded by
// this controller's start, since it never renewed before), promotes the most advanced replica
// and tells the story; the old primary rejoins as a replica when it answers again.
TEST_F(ClusterEnvtest, FailoverWhenThePrimaryStopsAnswering) {
  CreateCluster(3);
  ConvergeTo(3);
  ASSERT_GT(instances_.leases("db-1"), 0);
  instances_.SetDown("db-1", true);
  ReconcileUntil(
      [](const PostgresClusterStatus& s) { return s.failovers == 1 && !s.primary_change; },
      "the failover to complete");
  auto status = PostgresClusterStatus::FromJson(Cluster()["status"]);
  EXPECT_EQ(status.current_primary, "db-2");  // equal positions: the lowest serial
  EXPECT_EQ(status.term, 2);
  ASSERT_TRUE(status.last_failover.has_value());
  EXPECT_EQ(status.last_failover->from, "db-1");
  EXPECT_EQ(status.last_failover->to, "db-2");
  EXPECT_EQ(status.last_failover->lsn, "0/3000060");
  EXPECT_GT(status.last_failover->duration_ms, 0);
  auto reasons = EventReasons();
  EXPECT_TRUE(Contains(reasons, "FailoverStarted"));
  EXPECT_TRUE(Contains(reasons, "FailoverCompleted"));
  EXPECT_NE(metrics_.Expose().find("petrel_cluster_failovers_total{namespace=\"" + ns_ +
                                   "\",cluster=\"db\"} 1"),
            std::string::npos)
      << metrics_.Expose();

  instances_.SetDown("db-1", false);
  ReconcileUntil([](const PostgresClusterStatus& s) { return s.phase == "Healthy"; },
                 "the old primary to rejoin");
  auto specs = instances_.specs();
  EXPECT_EQ(specs["db-1"].role, InstanceRole::kReplica);
  EXPECT_EQ(specs["db-1"].term, 2);
  EXPECT_EQ(specs["db-1"].primary->host, "10.1.0.2");
  EXPECT_EQ(specs["db-3"].primary->host, "10.1.0.2");
}

// The informer cache lags the reconciler's own status write by a watch event. Planning on the
// object from before that write ended in a Conflict and a retry, dozens of times per failover
// in the benchmark; the reconciler plans on what it wrote until the cache catches up.
TEST_F(ClusterEnvtest, PlansOnItsOwnStatusWriteWhileTheCacheLagsBehind) {
  CreateCluster(3);
  ConvergeTo(3);
  Json before = Cluster();
  instances_.SetDown("db-2", true);
  auto first = reconciler_->Reconcile({ns_, "db"});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_NE(meta::ResourceVersion(Cluster()), meta::ResourceVersion(before))
      << "the first reconcile records db-2 as not ready";
  reader_->HoldBack(resources::kPostgresCluster, {ns_, "db"}, before);
  auto second = reconciler_->Reconcile({ns_, "db"});
  reader_->Release();
  EXPECT_TRUE(second.ok()) << second.status().ToString();
  instances_.SetDown("db-2", false);
}

// A primary frozen just as a reconcile asks for its status: the read hangs (in production
// until the client's 3 s timeout). Once its lease renewal fails too, the reconcile stops
// waiting after the suspect timeout and starts the failover, instead of holding it up by the
// rest of the ordinary timeout (4.3 s unavailability in one benchmark run).
TEST_F(ClusterEnvtest, AFrozenPrimaryDoesNotHoldUpTheObservationOnceItsLeaseRenewalFails) {
  CreateCluster(3);
  ConvergeTo(3);
  instances_.SetHung("db-1", true);
  auto reconciled = std::async(std::launch::async, [this] {
    return reconciler_->Reconcile({ns_, "db"});
  });
  // The keeper's thread, played here: renewals fall due every 200 ms and fail.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (reconciled.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready &&
         std::chrono::steady_clock::now() < deadline) {
    leases_->RenewDue();
  }
  bool finished_while_frozen =
      reconciled.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  instances_.SetHung("db-1", false);
  ASSERT_TRUE(finished_while_frozen) << "the reconcile waited for the frozen primary";
  auto r = reconciled.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto status = PostgresClusterStatus::FromJson(Cluster()["status"]);
  ASSERT_TRUE(status.primary_change.has_value()) << status.phase_reason;
  EXPECT_EQ(status.primary_change->from, "db-1");
  EXPECT_EQ(status.phase, "FailingOver");
}

}  // namespace
}  // namespace petrel
