// Snapshots and restore against a real kube-apiserver (issue 7). The test installs Petrel's
// CRDs and RBAC, and a VolumeSnapshot CRD (tests/support/crds/volumesnapshots.yaml; a bare
// API server has none). The cluster and snapshot reconcilers run as the controller's
// ServiceAccount, so RBAC in manifests/ is exercised for real. Instances are modelled by
// FakeInstances and the test plays two missing parts: the kubelet (Pod IPs) and the CSI
// snapshotter (it sets readyToUse, restoreSize and creationTime as a driver would). The
// snapshot reconciler runs on a FakeClock so schedule slots pass without waiting.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <optional>
#include <thread>

#include "controller/event_recorder.h"
#include "controller/manager.h"
#include "controller/registry.h"
#include "reconcilers/cluster_reconciler.h"
#include "reconcilers/snapshot_reconciler.h"
#include "tests/reconcilers/client_object_reader.h"
#include "tests/reconcilers/fake_instances.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

constexpr const char* kControllerUser = "system:serviceaccount:petrel-system:petrel";

class SnapshotEnvtest : public EnvtestTest {
 protected:
  static void SetUpTestSuite() { ASSERT_TRUE(Envtest::Configure({{{kControllerUser, {}}}}).ok()); }

  void SetUp() override {
    EnvtestTest::SetUp();
    if (HasFatalFailure()) return;
    InstallOnce({"crds/", "manifests/", "tests/support/crds/volumesnapshots.yaml"},
                {"crd/postgresclusters.petrel.dev", "crd/volumesnapshots.snapshot.storage.k8s.io"});
    if (HasFatalFailure()) return;
    auto token = env().TokenFor(kControllerUser);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    auto client = env().ClientAs(*token);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    controller_client_ = std::move(*client);
    reader_ = std::make_unique<ClientObjectReader>(*controller_client_);
    events_ = std::make_unique<KubeEventRecorder>(*controller_client_, "petrel-test");
    clusters_ = std::make_unique<ClusterReconciler>(
        ClusterReconcilerDeps{*reader_, *controller_client_, *events_, instances_, Clock::Real()});
    snapshots_ = std::make_unique<SnapshotReconciler>(
        SnapshotReconcilerDeps{*reader_, *controller_client_, *events_, clock_});
  }

  // Moves the fake clock to `t` (forward only).
  void SetClock(SystemTime t) {
    ASSERT_GE(t, clock_.WallNow());
    clock_.Advance(t - clock_.WallNow());
  }

  void CreateCluster(const std::string& name, int replicas, Json extra = Json::object()) {
    Json cluster = {{"apiVersion", "petrel.dev/v1alpha1"},
                    {"kind", "PostgresCluster"},
                    {"metadata", {{"name", name}, {"namespace", ns_}}},
                    {"spec",
                     {{"replicas", replicas},
                      {"image", "ghcr.io/petrel-dev/postgres:15.4"},
                      {"storage", {{"size", "1Gi"}}}}}};
    cluster["spec"].merge_patch(extra);
    auto r = client().Create(resources::kPostgresCluster, cluster);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // What a kubelet would do: give every Pod an IP.
  void Kubelet() {
    auto pods = client().List(resources::kPod, ns_, {});
    ASSERT_TRUE(pods.ok());
    for (auto& pod : pods->items) {
      if (pod.contains("status") && pod["status"].contains("podIP")) continue;
      pod["status"]["podIP"] = "10.1." + std::to_string(++ips_) + ".1";
      pod["status"]["phase"] = "Running";
      auto r = client().UpdateStatus(resources::kPod, pod);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
  }

  Json Cluster(const std::string& name) {
    auto r = client().Get(resources::kPostgresCluster, {ns_, name});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : Json();
  }

  void ConvergeTo(const std::string& name, int replicas) {
    for (int round = 0; round < 15; ++round) {
      auto r = clusters_->Reconcile({ns_, name});
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      Kubelet();
      Json status = Cluster(name).value("status", Json::object());
      if (status.value("phase", "") == "Healthy" && status.value("readyReplicas", 0) == replicas) {
        return;
      }
    }
    FAIL() << "not converged: " << Cluster(name)["status"].dump(2);
  }

  ReconcileResult ReconcileSnapshots(const std::string& name) {
    auto r = snapshots_->Reconcile({ns_, name});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ReconcileResult{};
  }

  std::vector<Json> Snapshots() {
    auto r = client().List(resources::kVolumeSnapshot, ns_, {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<Json> items = r.ok() ? r->items : std::vector<Json>{};
    std::sort(items.begin(), items.end(),
              [](const Json& a, const Json& b) { return meta::Name(a) < meta::Name(b); });
    return items;
  }

  // What a CSI snapshotter does once the copy is cut: the status a driver publishes.
  void CsiDriverReadies(const std::string& name) {
    auto s = client().Get(resources::kVolumeSnapshot, {ns_, name});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    Json snap = *s;
    snap["status"] = {{"readyToUse", true},
                      {"restoreSize", "1Gi"},
                      {"creationTime", FormatRfc3339(clock_.WallNow())},
                      {"boundVolumeSnapshotContentName", "snapcontent-" + meta::Uid(snap)}};
    auto r = client().UpdateStatus(resources::kVolumeSnapshot, snap);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  bool HasEvent(const std::string& reason) {
    auto events = client().List(resources::kEvent, ns_, {});
    EXPECT_TRUE(events.ok());
    if (!events.ok()) return false;
    return std::any_of(events->items.begin(), events->items.end(),
                       [&](const Json& e) { return e.value("reason", "") == reason; });
  }

  std::unique_ptr<HttpKubeClient> controller_client_;
  std::unique_ptr<ClientObjectReader> reader_;
  std::unique_ptr<KubeEventRecorder> events_;
  FakeInstances instances_;
  FakeClock clock_;
  std::unique_ptr<ClusterReconciler> clusters_;
  std::unique_ptr<SnapshotReconciler> snapshots_;
  int ips_ = 0;
};

TEST_F(SnapshotEnvtest, ScheduleSnapshotsAReplicaAndRetentionPrunesTheOldest) {
  CreateCluster("db", 3,
                {{"snapshots", {{"schedule", "0 * * * *"}, {"retention", {{"count", 2}}}}}});
  ConvergeTo("db", 3);
  // The fake clock moves to the first hourly slot after the cluster was created.
  SystemTime created;
  ASSERT_TRUE(ParseRfc3339(Cluster("db")["metadata"]["creationTimestamp"], &created));
  auto slot = std::chrono::ceil<std::chrono::hours>(created + std::chrono::seconds(1));
  SetClock(slot + std::chrono::seconds(30));

  std::vector<std::string> taken;
  for (int i = 0; i < 3; ++i) {
    ReconcileResult r = ReconcileSnapshots("db");
    ASSERT_TRUE(r.requeue_after.has_value());
    auto snaps = Snapshots();
    ASSERT_EQ(snaps.size(), std::min<size_t>(taken.size() + 1, 3)) << "slot " << i;
    const Json& fresh = snaps.back();
    taken.push_back(meta::Name(fresh));
    EXPECT_EQ(fresh["spec"]["source"]["persistentVolumeClaimName"], "db-2")
        << "a ready replica, not the primary";
    EXPECT_EQ(meta::Label(fresh, "petrel.dev/cluster"), "db");
    EXPECT_EQ(meta::Label(fresh, "petrel.dev/instance"), "db-2");
    EXPECT_EQ(meta::Label(fresh, "app.kubernetes.io/managed-by"), "petrel");
    EXPECT_EQ(meta::Annotation(fresh, "petrel.dev/pg-major"), "15");
    EXPECT_EQ(meta::Annotation(fresh, "petrel.dev/system-id"), "7300000000000000001");
    EXPECT_FALSE(fresh["metadata"].contains("ownerReferences"));
    // The same slot again takes nothing.
    ReconcileSnapshots("db");
    EXPECT_EQ(Snapshots().size(), snaps.size());
    CsiDriverReadies(taken.back());
    if (i < 2) clock_.Advance(std::chrono::hours(1));
  }
  // The third slot's reconcile ran before its snapshot was ready; this one prunes the oldest
  // (retention.count 2) and publishes the newest.
  ReconcileSnapshots("db");
  std::vector<std::string> left;
  for (const auto& s : Snapshots()) left.push_back(meta::Name(s));
  EXPECT_EQ(left, std::vector<std::string>(taken.begin() + 1, taken.end()));
  EXPECT_TRUE(HasEvent("SnapshotsPruned"));

  Json status = Cluster("db")["status"];
  ASSERT_TRUE(status.contains("snapshots")) << status.dump(2);
  const Json& snap = status["snapshots"];
  EXPECT_EQ(snap["lastSnapshot"]["name"], taken.back());
  EXPECT_EQ(snap["lastSnapshot"]["instance"], "db-2");
  EXPECT_EQ(snap["readyCount"], 2);
  EXPECT_EQ(snap["healthy"], true);
  EXPECT_EQ(snap["nextScheduleTime"],
            FormatRfc3339(std::chrono::ceil<std::chrono::hours>(clock_.WallNow())));

  // `kubectl get pgc -o wide` shows it (a fresh discovery cache: the CRD changed).
  auto wide = env().Kubectl({"get", "pgc", "db", "-n", ns_, "-o", "wide",
                             "--cache-dir=" + env().Dir() + "/kubectl-cache-" + ns_});
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  EXPECT_NE(wide.out.find("LAST-SNAPSHOT"), std::string::npos) << wide.out;
  EXPECT_NE(wide.out.find(taken.back()), std::string::npos) << wide.out;

  // The cluster reconciler's own status writes (here: a new generation to observe) keep
  // status.snapshots.
  ASSERT_TRUE(client()
                  .Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                         {{"spec", {{"enablePDB", false}}}})
                  .ok());
  ASSERT_TRUE(clusters_->Reconcile({ns_, "db"}).ok());
  EXPECT_EQ(Cluster("db")["status"]["observedGeneration"], meta::Generation(Cluster("db")));
  EXPECT_EQ(Cluster("db")["status"]["snapshots"]["lastSnapshot"]["name"], taken.back());
}

TEST_F(SnapshotEnvtest, OnDemandAnnotationTakesOneSnapshot) {
  CreateCluster("db", 1);
  ConvergeTo("db", 1);
  EXPECT_FALSE(ReconcileSnapshots("db").requeue_after.has_value()) << "snapshots not in use";
  EXPECT_TRUE(Snapshots().empty());

  auto patched =
      client().Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                     {{"metadata", {{"annotations", {{"petrel.dev/snapshot-request", "first"}}}}}});
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  ReconcileSnapshots("db");
  ReconcileSnapshots("db");
  auto snaps = Snapshots();
  ASSERT_EQ(snaps.size(), 1u);
  EXPECT_EQ(snaps[0]["spec"]["source"]["persistentVolumeClaimName"], "db-1")
      << "no replica: the primary";
  EXPECT_EQ(meta::Annotation(snaps[0], "petrel.dev/snapshot-request"), "first");
  Json status = Cluster("db")["status"]["snapshots"];
  EXPECT_EQ(status["lastRequest"], "first");
  EXPECT_EQ(status["reason"], "OnDemandOnly");

  CsiDriverReadies(meta::Name(snaps[0]));
  ReconcileSnapshots("db");
  status = Cluster("db")["status"]["snapshots"];
  EXPECT_EQ(status["lastSnapshot"]["name"], meta::Name(snaps[0]));
  EXPECT_EQ(status["readyCount"], 1);
  // Deleted by hand: status forgets it (the merge patch removes the field, not just omits it).
  ASSERT_TRUE(client().Delete(resources::kVolumeSnapshot, {ns_, meta::Name(snaps[0])}).ok());
  ReconcileSnapshots("db");
  status = Cluster("db")["status"]["snapshots"];
  EXPECT_FALSE(status.contains("lastSnapshot")) << status.dump(2);
  EXPECT_EQ(status["readyCount"], 0);
  EXPECT_EQ(status["lastRequest"], "first");
  EXPECT_TRUE(Snapshots().empty()) << "an answered request is not taken again";
}

TEST_F(SnapshotEnvtest, RestoreCreatesTheFirstVolumeFromTheSnapshot) {
  CreateCluster("db", 2);
  ConvergeTo("db", 2);
  ASSERT_TRUE(client()
                  .Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                         {{"metadata", {{"annotations", {{"petrel.dev/snapshot-request", "r"}}}}}})
                  .ok());
  ReconcileSnapshots("db");
  auto snaps = Snapshots();
  ASSERT_EQ(snaps.size(), 1u);
  std::string snapshot = meta::Name(snaps[0]);

  // Not ready yet: refused, nothing created.
  CreateCluster("copy", 2, {{"bootstrap", {{"snapshot", {{"name", snapshot}}}}}});
  ASSERT_TRUE(clusters_->Reconcile({ns_, "copy"}).ok());
  Json refused = Cluster("copy")["status"];
  EXPECT_EQ(refused["phase"], "Degraded") << refused.dump(2);
  auto pvcs = client().List(resources::kPersistentVolumeClaim, ns_,
                            {.label_selector = "petrel.dev/cluster=copy"});
  ASSERT_TRUE(pvcs.ok());
  EXPECT_TRUE(pvcs->items.empty());

  CsiDriverReadies(snapshot);
  // The first spec the restored primary receives bootstraps from the snapshot (later ones,
  // once it reports data, bootstrap nothing).
  std::optional<InstanceSpec> first_spec;
  for (int round = 0; round < 10 && !first_spec; ++round) {
    ASSERT_TRUE(clusters_->Reconcile({ns_, "copy"}).ok());
    Kubelet();
    auto specs = instances_.specs();
    if (specs.count("copy-1")) first_spec = specs["copy-1"];
  }
  ASSERT_TRUE(first_spec.has_value());
  EXPECT_EQ(first_spec->bootstrap, BootstrapMethod::kSnapshot);
  EXPECT_EQ(first_spec->role, InstanceRole::kPrimary);
  EXPECT_EQ(first_spec->cluster_uid, meta::Uid(Cluster("copy")));
  ConvergeTo("copy", 2);
  auto pvc = client().Get(resources::kPersistentVolumeClaim, {ns_, "copy-1"});
  ASSERT_TRUE(pvc.ok()) << pvc.status().ToString();
  EXPECT_EQ((*pvc)["spec"]["dataSource"]["kind"], "VolumeSnapshot");
  EXPECT_EQ((*pvc)["spec"]["dataSource"]["apiGroup"], "snapshot.storage.k8s.io");
  EXPECT_EQ((*pvc)["spec"]["dataSource"]["name"], snapshot);
  auto replica = client().Get(resources::kPersistentVolumeClaim, {ns_, "copy-2"});
  ASSERT_TRUE(replica.ok());
  EXPECT_FALSE((*replica)["spec"].contains("dataSource"));
  Json status = Cluster("copy")["status"];
  EXPECT_EQ(status["restoredFrom"]["snapshot"], snapshot);
  EXPECT_EQ(status["restoredFrom"]["cluster"], "db");
  EXPECT_EQ(status["restoredFrom"]["instance"], "db-2");
  auto specs = instances_.specs();
  EXPECT_EQ(specs["copy-2"].bootstrap, BootstrapMethod::kClone);
  EXPECT_EQ(specs["copy-2"].cluster_uid, meta::Uid(Cluster("copy")));
  // The source is untouched: still its own two volumes, no dataSource.
  auto source = client().Get(resources::kPersistentVolumeClaim, {ns_, "db-1"});
  ASSERT_TRUE(source.ok());
  EXPECT_FALSE((*source)["spec"].contains("dataSource"));
}

TEST_F(SnapshotEnvtest, MissingSnapshotIsRefusedAndNothingIsCreated) {
  CreateCluster("bad", 1, {{"bootstrap", {{"snapshot", {{"name", "no-such-snapshot"}}}}}});
  ASSERT_TRUE(clusters_->Reconcile({ns_, "bad"}).ok());
  ASSERT_TRUE(clusters_->Reconcile({ns_, "bad"}).ok());
  Json status = Cluster("bad")["status"];
  bool found = false;
  for (const auto& c : status["conditions"]) {
    if (c["type"] != "Degraded") continue;
    found = true;
    EXPECT_EQ(c["status"], "True");
    EXPECT_EQ(c["reason"], "SnapshotNotFound");
    EXPECT_NE(c["message"].get<std::string>().find("no-such-snapshot"), std::string::npos);
  }
  EXPECT_TRUE(found) << status.dump(2);
  EXPECT_TRUE(HasEvent("SnapshotNotFound"));
  for (const ResourceType* t : {&resources::kPersistentVolumeClaim, &resources::kPod,
                                &resources::kSecret, &resources::kService}) {
    auto items = client().List(*t, ns_, {.label_selector = "petrel.dev/cluster=bad"});
    ASSERT_TRUE(items.ok());
    EXPECT_TRUE(items->items.empty()) << t->resource;
  }
}

// The registered controller (what `petrel controller` and `petrel local` run) in a real
// Manager: informers, workqueue and the on-demand annotation, end to end.
TEST_F(SnapshotEnvtest, RegisteredControllerAnswersAnOnDemandRequest) {
  CreateCluster("db", 2);
  ConvergeTo("db", 2);
  auto factory = ControllerFactories().find("postgressnapshot");
  ASSERT_NE(factory, ControllerFactories().end()) << "snapshot controller not registered";
  ManagerOptions options;
  options.namespaces = {ns_};
  options.leader_election = LeaderElectionMode::kDisabled;
  options.metrics_bind_address = "0";
  options.health_probe_bind_address = "0";
  Manager manager(*controller_client_, options);
  ASSERT_TRUE(factory->second(manager).ok());
  auto run = std::async(std::launch::async, [&] { return manager.Run(); });

  ASSERT_TRUE(client()
                  .Patch(resources::kPostgresCluster, {ns_, "db"}, PatchType::kMerge,
                         {{"metadata", {{"annotations", {{"petrel.dev/snapshot-request", "m"}}}}}})
                  .ok());
  bool answered = false;
  for (int i = 0; i < 150 && !answered; ++i) {  // up to 30 s
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    answered =
        Snapshots().size() == 1 &&
        Cluster("db")["status"].value("snapshots", Json::object()).value("lastRequest", "") == "m";
  }
  manager.RequestStop();
  ASSERT_EQ(run.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
  ASSERT_TRUE(answered) << Cluster("db")["status"].dump(2);
  auto snaps = Snapshots();
  EXPECT_EQ(snaps[0]["spec"]["source"]["persistentVolumeClaimName"], "db-2");
  EXPECT_EQ(meta::Annotation(snaps[0], "petrel.dev/snapshot-request"), "m");
}

}  // namespace
}  // namespace petrel
