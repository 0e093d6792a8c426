#include "reconcilers/snapshot_plan.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace petrel {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

SystemTime At(const std::string& rfc3339) {
  SystemTime t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

// One cluster "db" (uid-db, created 2026-11-20) with three ready instances, db-1 primary, and
// the snapshots a test adds.
class SnapshotWorld {
 public:
  SnapshotWorld() {
    cluster_ = {{"apiVersion", "petrel.dev/v1alpha1"},
                {"kind", "PostgresCluster"},
                {"metadata",
                 {{"name", "db"},
                  {"namespace", "ns"},
                  {"uid", "uid-db"},
                  {"creationTimestamp", "2026-11-20T10:00:00Z"}}},
                {"spec",
                 {{"replicas", 3},
                  {"image", "ghcr.io/petrel-dev/postgres:15.4"},
                  {"storage", {{"size", "1Gi"}}},
                  {"snapshots", Json::object()}}},
                {"status",
                 {{"currentPrimary", "db-1"},
                  {"targetPrimary", "db-1"},
                  {"postgresMajorVersion", 15},
                  {"systemID", "7300000000000000001"},
                  {"instances",
                   {{{"name", "db-1"}, {"role", "primary"}, {"ready", true}},
                    {{"name", "db-2"}, {"role", "replica"}, {"ready", true}, {"lagBytes", 100}},
                    {{"name", "db-3"}, {"role", "replica"}, {"ready", true}, {"lagBytes", 0}}}}}}};
    for (const char* n : {"db-1", "db-2", "db-3"}) {
      pvcs_.push_back({{"metadata", {{"name", n}, {"namespace", "ns"}}}});
    }
  }

  Json& cluster() { return cluster_; }
  void Spec(const std::string& pointer, Json value) {
    cluster_["spec"]["snapshots"][Json::json_pointer(pointer)] = std::move(value);
  }
  Json& Instance(const std::string& name) {
    for (auto& i : cluster_["status"]["instances"]) {
      if (i["name"] == name) return i;
    }
    ADD_FAILURE() << "no instance " << name;
    static Json none;
    return none;
  }

  // A snapshot Petrel took at `time`, ready or not, optionally failed.
  Json& AddSnapshot(const std::string& name, const std::string& time, bool ready,
                    const std::string& error = "", const std::string& slot = "") {
    Json s = {{"apiVersion", "snapshot.storage.k8s.io/v1"},
              {"kind", "VolumeSnapshot"},
              {"metadata",
               {{"name", name},
                {"namespace", "ns"},
                {"creationTimestamp", time},
                {"labels",
                 {{"petrel.dev/cluster", "db"},
                  {"petrel.dev/cluster-uid", "uid-db"},
                  {"petrel.dev/instance", "db-3"},
                  {"app.kubernetes.io/managed-by", "petrel"}}},
                {"annotations", Json::object()}}},
              {"spec", {{"source", {{"persistentVolumeClaimName", "db-3"}}}}},
              {"status", {{"readyToUse", ready}}}};
    if (ready) {
      s["status"]["creationTime"] = time;
      s["status"]["restoreSize"] = "1Gi";
    }
    if (!error.empty()) s["status"]["error"] = {{"message", error}};
    if (!slot.empty()) s["metadata"]["annotations"]["petrel.dev/snapshot-slot"] = slot;
    snapshots_.push_back(std::move(s));
    return snapshots_.back();
  }

  void Apply(const SnapshotPlan& plan) {
    if (plan.create) {
      Json s = *plan.create;
      s["metadata"]["creationTimestamp"] = FormatRfc3339(now_);
      snapshots_.push_back(s);
    }
    for (const auto& d : plan.deletes) {
      snapshots_.erase(std::remove_if(snapshots_.begin(), snapshots_.end(),
                                      [&](const Json& s) { return meta::Name(s) == d; }),
                       snapshots_.end());
    }
    if (plan.status) cluster_["status"]["snapshots"] = plan.status->ToJson();
  }

  SnapshotPlan Plan(const std::string& now) {
    now_ = At(now);
    SnapshotObservation o;
    o.cluster = cluster_;
    o.snapshots = snapshots_;
    o.pvcs = pvcs_;
    o.now = now_;
    return PlanSnapshots(o);
  }

  std::vector<Json>& snapshots() { return snapshots_; }
  std::vector<Json>& pvcs() { return pvcs_; }

 private:
  Json cluster_;
  std::vector<Json> snapshots_;
  std::vector<Json> pvcs_;
  SystemTime now_;
};

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(SnapshotPlan, TakesTheDueSlotFromTheLeastLaggingReadyReplica) {
  SnapshotWorld w;
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  ASSERT_TRUE(plan.create.has_value());
  const Json& s = *plan.create;
  EXPECT_EQ(s["apiVersion"], "snapshot.storage.k8s.io/v1");
  EXPECT_EQ(s["kind"], "VolumeSnapshot");
  EXPECT_EQ(s["metadata"]["name"], "db-20261124000030");
  EXPECT_EQ(s["metadata"]["namespace"], "ns");
  EXPECT_EQ(s["spec"]["source"]["persistentVolumeClaimName"], "db-3");
  EXPECT_FALSE(s["spec"].contains("volumeSnapshotClassName"));
  EXPECT_EQ(s["metadata"]["labels"], (Json{{"petrel.dev/cluster", "db"},
                                           {"petrel.dev/cluster-uid", "uid-db"},
                                           {"petrel.dev/instance", "db-3"},
                                           {"app.kubernetes.io/managed-by", "petrel"}}));
  EXPECT_EQ(s["metadata"]["annotations"]["petrel.dev/pg-major"], "15");
  EXPECT_EQ(s["metadata"]["annotations"]["petrel.dev/system-id"], "7300000000000000001");
  EXPECT_EQ(s["metadata"]["annotations"]["petrel.dev/snapshot-slot"], "2026-11-24T00:00:00Z");
  EXPECT_FALSE(s["metadata"].contains("ownerReferences")) << "snapshots outlive the cluster";
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->last_schedule_time, "2026-11-24T00:00:00Z");
  EXPECT_EQ(plan.status->next_schedule_time, "2026-11-25T00:00:00Z");
  EXPECT_TRUE(plan.status->healthy);
  ASSERT_EQ(plan.events.size(), 1u);
  EXPECT_EQ(plan.events[0].reason, "SnapshotStarted");
  EXPECT_EQ(plan.requeue_after, std::chrono::seconds(10));
}

struct SourceCase {
  const char* name;
  std::function<void(SnapshotWorld&)> setup;
  const char* want;  // "" = nothing taken
};

TEST(SnapshotPlan, ChoosesTheSource) {
  const SourceCase kCases[] = {
      {"least lag wins", [](SnapshotWorld&) {}, "db-3"},
      {"ties go to the lowest serial",
       [](SnapshotWorld& w) { w.Instance("db-3")["lagBytes"] = 100; }, "db-2"},
      {"unknown lag sorts last", [](SnapshotWorld& w) { w.Instance("db-3").erase("lagBytes"); },
       "db-2"},
      {"a replica that is not ready is skipped",
       [](SnapshotWorld& w) { w.Instance("db-3")["ready"] = false; }, "db-2"},
      {"a replica without a volume is skipped", [](SnapshotWorld& w) { w.pvcs().pop_back(); },
       "db-2"},
      {"no ready replica: the primary",
       [](SnapshotWorld& w) {
         w.Instance("db-2")["ready"] = false;
         w.Instance("db-3")["ready"] = false;
       },
       "db-1"},
      {"target primary", [](SnapshotWorld& w) { w.Spec("/target", "primary"); }, "db-1"},
      {"the switchover target is not a source",
       [](SnapshotWorld& w) {
         w.cluster()["status"]["targetPrimary"] = "db-3";
         w.Instance("db-2")["ready"] = false;
       },
       ""},
      {"nothing ready",
       [](SnapshotWorld& w) {
         for (const char* n : {"db-1", "db-2", "db-3"}) w.Instance(n)["ready"] = false;
       },
       ""},
      {"no data yet", [](SnapshotWorld& w) { w.cluster()["status"].erase("systemID"); }, ""},
  };
  for (const auto& c : kCases) {
    SnapshotWorld w;
    c.setup(w);
    SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
    if (std::string(c.want).empty()) {
      EXPECT_FALSE(plan.create.has_value()) << c.name;
      EXPECT_EQ(plan.requeue_after, std::chrono::seconds(10)) << c.name;
    } else {
      ASSERT_TRUE(plan.create.has_value()) << c.name;
      EXPECT_EQ((*plan.create)["spec"]["source"]["persistentVolumeClaimName"], c.want) << c.name;
    }
  }
}

TEST(SnapshotPlan, ScheduleIsLevelTriggeredWithoutBursts) {
  SnapshotWorld w;
  w.Apply(w.Plan("2026-11-24T00:00:30Z"));
  ASSERT_EQ(w.snapshots().size(), 1u);
  // Same slot again (a later reconcile, a restart): nothing new.
  EXPECT_FALSE(w.Plan("2026-11-24T00:05:00Z").create.has_value());
  // Three slots missed while the controller was down: one snapshot, for the latest slot.
  SnapshotPlan late = w.Plan("2026-11-27T08:00:00Z");
  ASSERT_TRUE(late.create.has_value());
  EXPECT_EQ((*late.create)["metadata"]["annotations"]["petrel.dev/snapshot-slot"],
            "2026-11-27T00:00:00Z");
  w.Apply(late);
  EXPECT_FALSE(w.Plan("2026-11-27T08:00:10Z").create.has_value());
  EXPECT_EQ(w.snapshots().size(), 2u);
}

TEST(SnapshotPlan, ASnapshotAnnotatedWithTheSlotCountsEvenIfStatusWasLost) {
  SnapshotWorld w;
  w.AddSnapshot("db-20261124000030", "2026-11-24T00:00:30Z", false, "", "2026-11-24T00:00:00Z");
  SnapshotPlan plan = w.Plan("2026-11-24T00:01:00Z");
  EXPECT_FALSE(plan.create.has_value());
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->ready_count, 0);
}

TEST(SnapshotPlan, NoSnapshotForASlotBeforeTheClusterExisted) {
  SnapshotWorld w;
  w.cluster()["metadata"]["creationTimestamp"] = "2026-11-24T00:00:10Z";
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  EXPECT_FALSE(plan.create.has_value());
  ASSERT_TRUE(plan.status);
  EXPECT_TRUE(plan.status->healthy);
  EXPECT_EQ(plan.status->next_schedule_time, "2026-11-25T00:00:00Z");
  // Requeued to wake up just after the next slot.
  EXPECT_EQ(plan.requeue_after, std::chrono::minutes(10));
}

TEST(SnapshotPlan, RequeuesForTheNextSlot) {
  SnapshotWorld w;
  w.Spec("/schedule", "*/5 * * * *");
  w.cluster()["metadata"]["creationTimestamp"] = "2026-11-24T00:00:10Z";
  SnapshotPlan plan = w.Plan("2026-11-24T00:01:00Z");
  EXPECT_FALSE(plan.create.has_value());
  EXPECT_EQ(plan.requeue_after, std::chrono::seconds(4 * 60 + 1));
}

TEST(SnapshotPlan, SuspendedScheduleTakesOnlyRequests) {
  SnapshotWorld w;
  w.Spec("/suspend", true);
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  EXPECT_FALSE(plan.create.has_value());
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->reason, "Suspended");
  EXPECT_EQ(plan.status->next_schedule_time, "");

  w.cluster()["metadata"]["annotations"]["petrel.dev/snapshot-request"] = "r1";
  plan = w.Plan("2026-11-24T00:00:40Z");
  ASSERT_TRUE(plan.create.has_value());
  EXPECT_EQ((*plan.create)["metadata"]["annotations"]["petrel.dev/snapshot-request"], "r1");
  EXPECT_FALSE((*plan.create)["metadata"]["annotations"].contains("petrel.dev/snapshot-slot"));
  EXPECT_EQ(plan.status->last_request, "r1");
}

TEST(SnapshotPlan, OnDemandRequestIsTakenOnceAndWorksWithoutSchedule) {
  SnapshotWorld w;
  w.cluster()["spec"].erase("snapshots");
  EXPECT_FALSE(w.Plan("2026-11-24T12:00:00Z").status.has_value()) << "snapshots not in use";

  w.cluster()["metadata"]["annotations"]["petrel.dev/snapshot-request"] = "2026-11-24T12:00:00Z";
  SnapshotPlan plan = w.Plan("2026-11-24T12:00:01Z");
  ASSERT_TRUE(plan.create.has_value());
  EXPECT_EQ((*plan.create)["metadata"]["name"], "db-20261124120001");
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->reason, "OnDemandOnly");
  w.Apply(plan);
  EXPECT_FALSE(w.Plan("2026-11-24T12:00:05Z").create.has_value());

  // Status lost after the snapshot was created: the snapshot's annotation answers the request.
  w.cluster()["status"].erase("snapshots");
  plan = w.Plan("2026-11-24T12:00:06Z");
  EXPECT_FALSE(plan.create.has_value());
  ASSERT_TRUE(plan.status);
  EXPECT_EQ(plan.status->last_request, "2026-11-24T12:00:00Z");
}

TEST(SnapshotPlan, ADueSlotAndARequestShareOneSnapshot) {
  SnapshotWorld w;
  w.cluster()["metadata"]["annotations"]["petrel.dev/snapshot-request"] = "now";
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  ASSERT_TRUE(plan.create.has_value());
  const Json& a = (*plan.create)["metadata"]["annotations"];
  EXPECT_EQ(a["petrel.dev/snapshot-slot"], "2026-11-24T00:00:00Z");
  EXPECT_EQ(a["petrel.dev/snapshot-request"], "now");
  w.Apply(plan);
  EXPECT_FALSE(w.Plan("2026-11-24T00:00:40Z").create.has_value());
}

TEST(SnapshotPlan, VolumeSnapshotClassIsPassedOn) {
  SnapshotWorld w;
  w.Spec("/volumeSnapshotClassName", "csi-hostpath-snapclass");
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  ASSERT_TRUE(plan.create.has_value());
  EXPECT_EQ((*plan.create)["spec"]["volumeSnapshotClassName"], "csi-hostpath-snapclass");
}

struct RetentionCase {
  const char* name;
  Json retention;  // null = default (maxAge 5d)
  // name, time, state: "ready" | "pending" | "failed"
  std::vector<std::tuple<std::string, std::string, std::string>> snapshots;
  std::vector<std::string> deleted;
  std::string last_snapshot;
  int ready_count;
};

TEST(SnapshotPlan, Retention) {
  const RetentionCase kCases[] = {
      {"default keeps five days",
       nullptr,
       {{"s1", "2026-11-18T00:00:00Z", "ready"},
        {"s2", "2026-11-19T12:00:00Z", "ready"},
        {"s3", "2026-11-23T00:00:00Z", "ready"}},
       {"s1"},
       "s3",
       2},
      {"count prunes oldest first",
       {{"count", 2}},
       {{"s1", "2026-11-21T00:00:00Z", "ready"},
        {"s2", "2026-11-22T00:00:00Z", "ready"},
        {"s3", "2026-11-23T00:00:00Z", "ready"},
        {"s4", "2026-11-23T12:00:00Z", "ready"}},
       {"s1", "s2"},
       "s4",
       2},
      {"count and age together",
       {{"count", 3}, {"maxAge", "36h"}},
       {{"s1", "2026-11-20T00:00:00Z", "ready"},
        {"s2", "2026-11-22T00:00:00Z", "ready"},
        {"s3", "2026-11-23T00:00:00Z", "ready"},
        {"s4", "2026-11-23T12:00:00Z", "ready"}},
       {"s1", "s2"},
       "s4",
       2},
      {"the only ready snapshot is kept however old, while a newer one is pending",
       {{"maxAge", "1d"}},
       {{"old", "2026-11-10T00:00:00Z", "ready"}, {"new", "2026-11-23T23:00:00Z", "pending"}},
       {},
       "old",
       1},
      {"count 1 keeps the newest ready, not the pending",
       {{"count", 1}},
       {{"a", "2026-11-22T00:00:00Z", "ready"},
        {"b", "2026-11-23T00:00:00Z", "ready"},
        {"c", "2026-11-23T23:00:00Z", "pending"}},
       {"a"},
       "b",
       1},
      {"a failed snapshot goes once a newer one is ready",
       {{"count", 5}},
       {{"f1", "2026-11-22T00:00:00Z", "failed"},
        {"ok", "2026-11-23T00:00:00Z", "ready"},
        {"f2", "2026-11-23T12:00:00Z", "failed"}},
       {"f1"},
       "ok",
       1},
      {"a failed snapshot goes when too old",
       {{"maxAge", "1d"}},
       {{"f1", "2026-11-20T00:00:00Z", "failed"}},
       {"f1"},
       "",
       0},
      {"pending snapshots are never pruned",
       {{"count", 1}, {"maxAge", "1d"}},
       {{"p1", "2026-11-10T00:00:00Z", "pending"}, {"r", "2026-11-23T00:00:00Z", "ready"}},
       {},
       "r",
       1},
  };
  for (const auto& c : kCases) {
    SnapshotWorld w;
    w.Spec("/suspend", true);  // retention only
    if (!c.retention.is_null()) w.Spec("/retention", c.retention);
    for (const auto& [name, time, state] : c.snapshots) {
      w.AddSnapshot(name, time, state == "ready", state == "failed" ? "quota exceeded" : "");
    }
    SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
    EXPECT_EQ(Sorted(plan.deletes), Sorted(c.deleted)) << c.name;
    ASSERT_TRUE(plan.status) << c.name;
    EXPECT_EQ(plan.status->last_snapshot, c.last_snapshot) << c.name;
    EXPECT_EQ(plan.status->ready_count, c.ready_count) << c.name;
    if (!c.deleted.empty()) {
      EXPECT_TRUE(std::any_of(plan.events.begin(), plan.events.end(), [](const PlannedEvent& e) {
        return e.reason == "SnapshotsPruned";
      })) << c.name;
    }
  }
}

TEST(SnapshotPlan, OtherClustersSnapshotsAreLeftAlone) {
  SnapshotWorld w;
  w.Spec("/suspend", true);
  w.Spec("/retention", {{"count", 1}});
  w.AddSnapshot("mine-1", "2026-11-22T00:00:00Z", true);
  w.AddSnapshot("mine-2", "2026-11-23T00:00:00Z", true);
  Json& foreign = w.AddSnapshot("old-db", "2026-11-01T00:00:00Z", true);
  foreign["metadata"]["labels"]["petrel.dev/cluster-uid"] = "uid-of-a-deleted-db";
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  EXPECT_EQ(plan.deletes, std::vector<std::string>{"mine-1"});
}

TEST(SnapshotPlan, HealthReportsFailuresStuckSnapshotsAndMissedSlots) {
  {
    SnapshotWorld w;
    w.AddSnapshot("db-1", "2026-11-23T00:00:00Z", true);
    w.AddSnapshot("db-2", "2026-11-24T00:00:30Z", false, "VolumeSnapshotClass not found",
                  "2026-11-24T00:00:00Z");
    SnapshotPlan plan = w.Plan("2026-11-24T00:05:00Z");
    ASSERT_TRUE(plan.status);
    EXPECT_FALSE(plan.status->healthy);
    EXPECT_EQ(plan.status->reason, "SnapshotFailed");
    EXPECT_NE(plan.status->message.find("VolumeSnapshotClass not found"), std::string::npos);
    ASSERT_EQ(plan.events.size(), 1u);
    EXPECT_EQ(plan.events[0].type, EventType::kWarning);
    w.Apply(plan);
    EXPECT_TRUE(w.Plan("2026-11-24T00:06:00Z").events.empty()) << "events on transitions only";
  }
  {
    SnapshotWorld w;
    w.AddSnapshot("db-2", "2026-11-24T00:00:30Z", false, "", "2026-11-24T00:00:00Z");
    SnapshotPlan soon = w.Plan("2026-11-24T00:30:00Z");
    ASSERT_TRUE(soon.status);
    EXPECT_TRUE(soon.status->healthy);
    SnapshotPlan stuck = w.Plan("2026-11-24T02:00:00Z");
    ASSERT_TRUE(stuck.status);
    EXPECT_FALSE(stuck.status->healthy);
    EXPECT_EQ(stuck.status->reason, "SnapshotNotReady");
  }
  {
    SnapshotWorld w;
    for (const char* n : {"db-1", "db-2", "db-3"}) w.Instance(n)["ready"] = false;
    SnapshotPlan early = w.Plan("2026-11-24T00:05:00Z");
    EXPECT_TRUE(early.status->healthy) << "within the grace period";
    SnapshotPlan late = w.Plan("2026-11-24T00:20:00Z");
    ASSERT_TRUE(late.status);
    EXPECT_FALSE(late.status->healthy);
    EXPECT_EQ(late.status->reason, "ScheduleMissed");
  }
}

TEST(SnapshotPlan, MissingSnapshotApiIsReported) {
  SnapshotWorld w;
  SnapshotObservation o;
  o.cluster = w.cluster();
  o.snapshots = NotFoundError("the server could not find the requested resource");
  o.now = At("2026-11-24T00:00:30Z");
  SnapshotPlan plan = PlanSnapshots(o);
  EXPECT_FALSE(plan.create.has_value());
  ASSERT_TRUE(plan.status);
  EXPECT_FALSE(plan.status->healthy);
  EXPECT_EQ(plan.status->reason, "VolumeSnapshotApiMissing");
  EXPECT_EQ(plan.requeue_after, std::chrono::minutes(5));
}

TEST(SnapshotPlan, SteadyStateWritesNothing) {
  SnapshotWorld w;
  w.Apply(w.Plan("2026-11-24T00:00:30Z"));
  w.snapshots().back()["status"] = {
      {"readyToUse", true}, {"creationTime", "2026-11-24T00:00:31Z"}, {"restoreSize", "1Gi"}};
  w.Apply(w.Plan("2026-11-24T00:01:00Z"));
  SnapshotPlan plan = w.Plan("2026-11-24T00:02:00Z");
  EXPECT_FALSE(plan.create.has_value());
  EXPECT_TRUE(plan.deletes.empty());
  EXPECT_FALSE(plan.status.has_value());
  EXPECT_TRUE(plan.events.empty());
  EXPECT_EQ(w.cluster()["status"]["snapshots"]["lastSnapshot"]["name"], "db-20261124000030");
  EXPECT_EQ(w.cluster()["status"]["snapshots"]["lastSnapshot"]["instance"], "db-3");
}

TEST(SnapshotPlan, NothingForADeletedOrInvalidCluster) {
  SnapshotWorld w;
  w.cluster()["metadata"]["deletionTimestamp"] = "2026-11-24T00:00:00Z";
  SnapshotPlan plan = w.Plan("2026-11-24T00:00:30Z");
  EXPECT_FALSE(plan.create || plan.status || !plan.deletes.empty());
  SnapshotWorld bad;
  bad.Spec("/schedule", "never");
  plan = bad.Plan("2026-11-24T00:00:30Z");
  EXPECT_FALSE(plan.create || plan.status || !plan.deletes.empty());
}

}  // namespace
}  // namespace petrel
