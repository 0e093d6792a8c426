// The restore part of the cluster planner (spec.bootstrap.snapshot): refusals that create
// nothing, the first PVC's dataSource, and the InstanceSpecs of a restored cluster.
#include <gtest/gtest.h>

#include <algorithm>

#include "reconcilers/cluster_plan.h"
#include "reconcilers/volume_snapshot.h"

namespace petrel {
namespace {

Json RestoreCluster(int replicas, const std::string& size = "1Gi") {
  return {
      {"apiVersion", "petrel.dev/v1alpha1"},
      {"kind", "PostgresCluster"},
      {"metadata", {{"name", "copy"}, {"namespace", "ns"}, {"uid", "uid-copy"}, {"generation", 1}}},
      {"spec",
       {{"replicas", replicas},
        {"image", "ghcr.io/petrel-dev/postgres:15.4"},
        {"storage", {{"size", size}}},
        {"bootstrap", {{"snapshot", {{"name", "db-20261124000000"}}}}}}}};
}

Json Snapshot(bool ready, const std::string& major = "15", const std::string& error = "") {
  Json s = {{"apiVersion", "snapshot.storage.k8s.io/v1"},
            {"kind", "VolumeSnapshot"},
            {"metadata",
             {{"name", "db-20261124000000"},
              {"namespace", "ns"},
              {"labels",
               {{"petrel.dev/cluster", "db"},
                {"petrel.dev/cluster-uid", "uid-db"},
                {"petrel.dev/instance", "db-2"},
                {"app.kubernetes.io/managed-by", "petrel"}}},
              {"annotations", Json::object()}}},
            {"spec", {{"source", {{"persistentVolumeClaimName", "db-2"}}}}},
            {"status", {{"readyToUse", ready}, {"restoreSize", "1Gi"}}}};
  if (!major.empty()) s["metadata"]["annotations"]["petrel.dev/pg-major"] = major;
  if (!error.empty()) s["status"]["error"] = {{"message", error}};
  return s;
}

ClusterObservation Observe(const Json& cluster, std::optional<Result<Json>> snapshot) {
  ClusterObservation o;
  o.cluster = cluster;
  o.now = "2026-11-24T03:00:00Z";
  o.restore_snapshot = std::move(snapshot);
  return o;
}

const ObjectAction* FindAction(const ClusterPlan& plan, const std::string& description) {
  for (const auto& a : plan.actions) {
    if (a.description == description) return &a;
  }
  return nullptr;
}

struct RefusalCase {
  const char* name;
  Json cluster;
  std::optional<Result<Json>> snapshot;
  const char* reason;
  const char* mentions;
};

TEST(ClusterRestorePlan, RefusesABadSnapshotAndCreatesNothing) {
  Json big = Snapshot(true);
  big["status"]["restoreSize"] = "10Gi";
  const RefusalCase kCases[] = {
      {"missing", RestoreCluster(3), Result<Json>(NotFoundError("not found")), "SnapshotNotFound",
       "does not exist in namespace ns"},
      {"not read", RestoreCluster(3), std::nullopt, "SnapshotUnreadable", "cannot be read"},
      {"forbidden", RestoreCluster(3), Result<Json>(ForbiddenError("no list")),
       "SnapshotUnreadable", "no list"},
      {"not ready", RestoreCluster(3), Result<Json>(Snapshot(false)), "SnapshotNotReady",
       "not ready to use yet"},
      {"failed", RestoreCluster(3), Result<Json>(Snapshot(false, "15", "disk on fire")),
       "SnapshotFailed", "disk on fire"},
      {"other major", RestoreCluster(3), Result<Json>(Snapshot(true, "14")),
       "SnapshotMajorVersionMismatch", "holds Postgres 14 data"},
      {"no major", RestoreCluster(3), Result<Json>(Snapshot(true, "")), "SnapshotNotFromPetrel",
       "petrel.dev/pg-major"},
      {"too big", RestoreCluster(3), Result<Json>(big), "SnapshotLargerThanStorage",
       "at least 10Gi"},
  };
  for (const auto& c : kCases) {
    ClusterPlan plan = PlanCluster(Observe(c.cluster, c.snapshot));
    EXPECT_TRUE(plan.actions.empty()) << c.name;
    EXPECT_TRUE(plan.secrets.empty()) << c.name;
    EXPECT_TRUE(plan.spec_puts.empty()) << c.name;
    ASSERT_TRUE(plan.status) << c.name;
    EXPECT_EQ(plan.status->phase, "Degraded") << c.name;
    const Condition* degraded = plan.status->FindCondition("Degraded");
    ASSERT_NE(degraded, nullptr) << c.name;
    EXPECT_EQ(degraded->status, "True") << c.name;
    EXPECT_EQ(degraded->reason, c.reason) << c.name;
    EXPECT_NE(degraded->message.find(c.mentions), std::string::npos)
        << c.name << ": " << degraded->message;
    EXPECT_NE(degraded->message.find("nothing was created"), std::string::npos) << c.name;
    ASSERT_EQ(plan.events.size(), 1u) << c.name;
    EXPECT_EQ(plan.events[0].type, EventType::kWarning) << c.name;
    EXPECT_EQ(plan.events[0].reason, c.reason) << c.name;
    EXPECT_FALSE(plan.status->restored_from.has_value()) << c.name;
    EXPECT_EQ(plan.requeue_after, std::string(c.reason) == "SnapshotNotReady"
                                      ? std::chrono::milliseconds(10000)
                                      : std::chrono::milliseconds(60000))
        << c.name;
  }
}

TEST(ClusterRestorePlan, TheFirstVolumeIsCreatedFromTheSnapshot) {
  ClusterPlan plan = PlanCluster(Observe(RestoreCluster(3), Result<Json>(Snapshot(true))));
  const ObjectAction* first =
      FindAction(plan, "create PVC copy-1 from VolumeSnapshot db-20261124000000");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->body["spec"]["dataSource"], (Json{{"apiGroup", "snapshot.storage.k8s.io"},
                                                     {"kind", "VolumeSnapshot"},
                                                     {"name", "db-20261124000000"}}));
  EXPECT_EQ(first->body["spec"]["resources"]["requests"]["storage"], "1Gi");
  for (const char* other : {"create PVC copy-2", "create PVC copy-3"}) {
    const ObjectAction* a = FindAction(plan, other);
    ASSERT_NE(a, nullptr) << other;
    EXPECT_FALSE(a->body["spec"].contains("dataSource")) << "replicas are cloned, not restored";
  }
  ASSERT_TRUE(plan.status);
  ASSERT_TRUE(plan.status->restored_from.has_value());
  EXPECT_EQ(*plan.status->restored_from, (RestoreStatus{"db-20261124000000", "db", "db-2"}));
  EXPECT_EQ(plan.secrets.size(), 3u) << "the restored cluster gets its own credentials";
  EXPECT_TRUE(std::any_of(plan.events.begin(), plan.events.end(), [](const PlannedEvent& e) {
    return e.reason == "RestoringFromSnapshot";
  }));
}

TEST(ClusterRestorePlan, InstanceSpecsBootstrapFromTheSnapshotAndCarryTheClusterUid) {
  Json cluster = RestoreCluster(2);
  ClusterPlan first = PlanCluster(Observe(cluster, Result<Json>(Snapshot(true))));
  ASSERT_TRUE(first.status);
  cluster["status"] = first.status->ToJson();
  EXPECT_EQ(cluster["status"]["currentPrimary"], "copy-1");

  // Second round: the volumes and Pods exist, the Pods have IPs, the instances answer.
  ClusterObservation o = Observe(cluster, std::nullopt);  // no longer read once started
  for (const auto& a : first.actions) {
    Json obj = a.body;
    obj["metadata"]["uid"] = "uid-" + a.key.name;
    if (a.type == &resources::kPod) {
      obj["status"]["podIP"] = "10.1.0." + a.key.name.substr(5);
      o.pods.push_back(obj);
      o.instances.emplace(a.key.name, InstanceStatus{a.key.name});
    } else if (a.type == &resources::kPersistentVolumeClaim) {
      o.pvcs.push_back(obj);
    }
  }
  ClusterPlan second = PlanCluster(o);
  const Condition* degraded = second.status ? second.status->FindCondition("Degraded") : nullptr;
  EXPECT_TRUE(!degraded || degraded->status == "False");
  std::map<std::string, InstanceSpec> puts;
  for (const auto& p : second.spec_puts) puts[p.pod] = p.spec;
  ASSERT_EQ(puts.size(), 2u);
  EXPECT_EQ(puts["copy-1"].role, InstanceRole::kPrimary);
  EXPECT_EQ(puts["copy-1"].bootstrap, BootstrapMethod::kSnapshot);
  EXPECT_EQ(puts["copy-1"].snapshot_path, "") << "the volume already holds the data";
  EXPECT_EQ(puts["copy-1"].cluster_uid, "uid-copy");
  EXPECT_EQ(puts["copy-2"].role, InstanceRole::kReplica);
  EXPECT_EQ(puts["copy-2"].bootstrap, BootstrapMethod::kClone);
  EXPECT_EQ(puts["copy-2"].cluster_uid, "uid-copy");
  for (const auto& a : second.actions) {
    bool volume_or_pod = a.type == &resources::kPersistentVolumeClaim || a.type == &resources::kPod;
    EXPECT_FALSE(volume_or_pod && a.op == ObjectOp::kCreate) << a.description;
  }
}

TEST(ClusterRestorePlan, AnExistingVolumeNeverGetsADataSource) {
  // A PVC left by an earlier cluster of the same name (reclaimPolicy Retain).
  ClusterObservation o = Observe(RestoreCluster(1), Result<Json>(Snapshot(true)));
  o.pvcs.push_back(
      {{"apiVersion", "v1"},
       {"kind", "PersistentVolumeClaim"},
       {"metadata",
        {{"name", "copy-1"}, {"namespace", "ns"}, {"labels", {{"petrel.dev/cluster", "copy"}}}}},
       {"spec", {{"resources", {{"requests", {{"storage", "1Gi"}}}}}}}});
  ClusterPlan plan = PlanCluster(o);
  for (const auto& a : plan.actions) {
    if (a.key.name == "copy-1") {
      EXPECT_FALSE(a.body.contains("spec") && a.body["spec"].contains("dataSource"))
          << a.description;
    }
  }
  const ObjectAction* fresh =
      FindAction(plan, "create PVC copy-2 from VolumeSnapshot db-20261124000000");
  ASSERT_NE(fresh, nullptr) << "the serial held by the old volume is skipped";
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->current_primary, "copy-2");
}

TEST(ClusterRestorePlan, OnceStartedTheSnapshotIsNotNeededAnyMore) {
  Json cluster = RestoreCluster(1);
  cluster["status"] = {{"currentPrimary", "copy-1"}, {"instanceNames", {"copy-1"}}};
  ClusterPlan plan = PlanCluster(Observe(cluster, std::nullopt));
  ASSERT_TRUE(plan.status);
  EXPECT_NE(plan.status->phase, "Degraded") << plan.status->phase_reason;
  // The volume is created plainly if it went missing: a restore never re-runs over data.
  const ObjectAction* pvc = FindAction(plan, "create PVC copy-1");
  ASSERT_NE(pvc, nullptr);
  EXPECT_FALSE(pvc->body["spec"].contains("dataSource"));
}

TEST(ClusterRestorePlan, InitdbClustersAreUnchangedButCarryTheirUid) {
  Json cluster = RestoreCluster(1);
  cluster["spec"].erase("bootstrap");
  ClusterPlan first = PlanCluster(Observe(cluster, std::nullopt));
  cluster["status"] = first.status->ToJson();
  ClusterObservation o = Observe(cluster, std::nullopt);
  for (const auto& a : first.actions) {
    Json obj = a.body;
    if (a.type == &resources::kPod) {
      obj["status"]["podIP"] = "10.1.0.1";
      o.pods.push_back(obj);
      o.instances.emplace(a.key.name, InstanceStatus{a.key.name});
    }
  }
  ClusterPlan second = PlanCluster(o);
  ASSERT_EQ(second.spec_puts.size(), 1u);
  EXPECT_EQ(second.spec_puts[0].spec.bootstrap, BootstrapMethod::kInitdb);
  EXPECT_EQ(second.spec_puts[0].spec.cluster_uid, "uid-copy");
  EXPECT_FALSE(second.status && second.status->restored_from.has_value());
}

}  // namespace
}  // namespace petrel
